"""Part 5: attribution: the shim's C pieces (bench/micro_snapshot.c) and the
Python side of a hook call (bench/micro_bridge.py), each alone."""
from __future__ import annotations

import os
import subprocess
import sys

from .common import HERE, PLUGINS, ROOT, log


# --------------------------------------------------------------------------
# part 5: attribution (pieces alone, one thread, no contention)
# --------------------------------------------------------------------------

def _kv_lines(text: str) -> dict:
    out = {}
    for line in text.splitlines():
        parts = line.split()
        if not parts:
            continue
        out[parts[0]] = {k: float(v) for k, v in (p.split("=", 1) for p in parts[1:])}
    return out


def part_attrib(tools: dict, quick: bool) -> dict:
    log("attrib: bench/micro_snapshot (C pieces) and bench/micro_bridge.py (Python side)")
    env = dict(os.environ, SPM_LIB=str(PLUGINS / "slurmpy" / "libslurmpy.so"))
    c = subprocess.run([tools["micro"], "100000", "50000" if quick else "200000"],
                       check=True, capture_output=True, text=True, env=env, cwd=ROOT)
    p = subprocess.run([sys.executable, str(HERE / "micro_bridge.py"),
                        "50000" if quick else "300000", "100000"],
                       check=True, capture_output=True, text=True, cwd=ROOT)
    return {"c": _kv_lines(c.stdout), "py": _kv_lines(p.stdout)}
