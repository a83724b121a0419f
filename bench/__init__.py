"""The benchmarks (bench/run.py, bench/NOTES.md).  A package so that run.py's
parts import as bench.parts.* (the checkout's root is on the venv's path:
make deps)."""
