"""``python -m slurmpy_plugins check [SLURM_CONF]`` (also the
``slurmpy-plugins`` console script)."""
from __future__ import annotations

import sys

COMMANDS = ("check",)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in COMMANDS:
        print(f"usage: slurmpy-plugins {{{','.join(COMMANDS)}}} ...", file=sys.stderr)
        return 2
    from . import _check
    return _check.main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
