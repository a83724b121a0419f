"""``python -m slurmpy_plugins check|preview|stats ...`` (also the
``slurmpy-plugins`` console script)."""
from __future__ import annotations

import sys

COMMANDS = ("check", "preview", "stats")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in COMMANDS:
        print(f"usage: slurmpy-plugins {{{','.join(COMMANDS)}}} ...", file=sys.stderr)
        return 2
    if argv[0] == "preview":
        from . import _preview
        return _preview.main(argv[1:])
    if argv[0] == "stats":
        from . import _stats
        return _stats.main(argv[1:])
    from . import _check
    return _check.main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
