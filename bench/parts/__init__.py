"""The parts of the benchmark run (bench/run.py parses the arguments and runs
the selected ones): common (what they share), calls (1), update (2),
cluster (3, 4), attrib (5), steps (6), jsubmit (7), jobcomp (8), spank (9),
and report (the table and targets of a run)."""
