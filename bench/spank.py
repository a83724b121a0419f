#!/usr/bin/env python3
"""spank/python figures (issue 21): `srun true` step time inside one job
and slurmstepd's peak RSS, on this machine's real slurmctld/slurmd, with

  none         an empty plugstack.conf
  c_setenv     a C SPANK plugin whose user_init does spank_setenv
  py_setenv    spank_python.so, a handler whose user_init does setenv
  py_options   spank_python.so, a handler with an option and no hook
               slurmstepd calls (Python never starts)

The configurations alternate (round-robin, `rounds` rounds of `steps`
steps each), so that load from other work spreads over all of them.  Each
round is one sbatch job whose script runs `srun true` `steps` times and
writes each step's wall time (ns) to a file; the peak RSS is VmHWM of the
step's slurmstepd, read while an `srun sleep` step runs.

Writes bench/results/spank-<UTC time>.json and prints a table.  Records
the machine's other load: figures taken beside other work are skewed.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent

from tests.harness.slurmcluster import Cluster  # noqa: E402

PLUGINS = pathlib.Path(os.environ.get("SPM_PLUGIN_DIR") or ROOT / "build" / "plugins")
SLURM_SRC = os.environ.get("SLURM_SRC", "")

C_PLUGIN = r'''
#include <slurm/spank.h>
SPANK_PLUGIN(bench_setenv, 1);
int slurm_spank_user_init(spank_t sp, int ac, char **av)
{
	(void)ac; (void)av;
	return spank_setenv(sp, "BENCH_TAG", "c", 1) == ESPANK_SUCCESS ? 0 : -1;
}
'''

PY_SETENV = '''
from slurmpy_plugins import SpankHandler, SpankOption

class Bench(SpankHandler):
    options = [SpankOption("bench-tag", arg="TAG", help="bench")]

    def user_init(self, spank):
        spank.setenv("BENCH_TAG", "py")
'''

PY_OPTIONS = '''
from slurmpy_plugins import SpankHandler, SpankOption

class Bench(SpankHandler):
    options = [SpankOption("bench-tag", arg="TAG", help="bench")]
'''

SCRIPT = '''#!/bin/bash
out={out}
for i in $(seq {steps}); do
  t0=$(date +%s%N); srun -n1 true; t1=$(date +%s%N)
  echo $((t1 - t0)) >> $out
done
'''


def _busy() -> tuple[int, int]:
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return sum(v) - v[3] - v[4], sum(v)


def _hwm(c: Cluster, timeout: float = 30.0) -> int:
    """VmHWM (kB) of the slurmstepd of an `srun sleep` step."""
    p = subprocess.Popen(["srun", "-n1", "sleep", "3"], env=c.client_env(),
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    best = 0
    try:
        while time.monotonic() < deadline and p.poll() is None:
            for pid in c.slurmstepd_pids():
                try:
                    status = pathlib.Path(f"/proc/{pid}/status").read_text()
                    cmd = pathlib.Path(f"/proc/{pid}/cmdline").read_bytes()
                except OSError:
                    continue
                if b"extern" in cmd:
                    continue
                for line in status.splitlines():
                    if line.startswith("VmHWM:"):
                        best = max(best, int(line.split()[1]))
            time.sleep(0.05)
    finally:
        p.wait()
    return best


def measure(steps: int, rounds: int, slurm_src: str, log=print) -> dict:
    """The four configurations, `rounds` rounds of one job of `steps`
    `srun true` steps each (the configurations alternating), on a cluster
    of this machine's Slurm: {"busy", "steps", "rounds", "results": {name:
    {steps, median_ms, mean_ms, p90_ms, stepd_hwm_kb}}}."""
    if not slurm_src:
        raise RuntimeError("SLURM_SRC must name the configured Slurm source")
    work = pathlib.Path(tempfile.mkdtemp(prefix="spank-bench-"))
    os.chmod(work, 0o755)
    so_c = work / "bench_setenv.so"
    (work / "bench_setenv.c").write_text(C_PLUGIN)
    subprocess.run(["gcc", "-O2", "-shared", "-fPIC", "-I", slurm_src, "-o", str(so_c),
                    str(work / "bench_setenv.c")], check=True)
    hdirs = {}
    for name, src in (("py_setenv", PY_SETENV), ("py_options", PY_OPTIONS)):
        d = work / name
        d.mkdir(mode=0o755)
        os.chmod(d, 0o755)
        (d / "bench.py").write_text(src)
        os.chmod(d / "bench.py", 0o644)
        hdirs[name] = d
    so_py = PLUGINS / "spank_python.so"
    confs = {
        "none": "",
        "c_setenv": f"required {so_c}\n",
        "py_setenv": f"required {so_py} handler=bench:Bench path={hdirs['py_setenv']}\n",
        "py_options": f"required {so_py} handler=bench:Bench path={hdirs['py_options']}\n",
    }
    times: dict[str, list[int]] = {k: [] for k in confs}
    hwm: dict[str, list[int]] = {k: [] for k in confs}
    b0 = _busy()
    try:
        with Cluster(work / "cluster", plugin_dirs=[str(PLUGINS)], debug="info") as c:
            plugstack = c.workdir / "plugstack.conf"
            for r in range(rounds):
                for name, line in confs.items():
                    plugstack.write_text(line)
                    out = work / f"{name}-{r}.txt"
                    script = work / f"{name}-{r}.sh"
                    script.write_text(SCRIPT.format(out=out, steps=steps))
                    script.chmod(0o755)
                    job = c.sbatch(str(script), wrap=None)
                    c.wait_job(job, ("COMPLETED",), timeout=60 + steps * 2)
                    times[name] += [int(x) for x in out.read_text().split()]
                    hwm[name].append(_hwm(c))
                    log(f"spank: round {r + 1}/{rounds} {name}: median "
                        f"{statistics.median(times[name]) / 1e6:.1f} ms per step")
    finally:
        if os.environ.get("BENCH_KEEP") != "1":
            shutil.rmtree(work, ignore_errors=True)
    b1 = _busy()
    busy = (b1[0] - b0[0]) / max(1, b1[1] - b0[1])
    res = {name: {"steps": len(t), "median_ms": statistics.median(t) / 1e6,
                  "mean_ms": statistics.fmean(t) / 1e6,
                  "p90_ms": sorted(t)[int(len(t) * 0.9)] / 1e6,
                  "stepd_hwm_kb": max(hwm[name])}
           for name, t in times.items()}
    return {"busy": busy, "steps": steps, "rounds": rounds, "results": res}


def table(m: dict) -> list[str]:
    res = m["results"]
    base, c_ = res["none"]["median_ms"], res["c_setenv"]["median_ms"]
    lines = ["| configuration | steps | median ms | mean ms | p90 ms | vs none | vs C | "
             "slurmstepd VmHWM kB |", "|---|---|---|---|---|---|---|---|"]
    for name, v in res.items():
        lines.append(f"| {name} | {v['steps']} | {v['median_ms']:.1f} | {v['mean_ms']:.1f} | "
                     f"{v['p90_ms']:.1f} | {v['median_ms'] / base:.2f}x | "
                     f"{v['median_ms'] / c_:.2f}x | {v['stepd_hwm_kb']} |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=250)
    ap.add_argument("--rounds", type=int, default=4)
    a = ap.parse_args()
    try:
        m = measure(a.steps, a.rounds, SLURM_SRC)
    except RuntimeError as e:
        sys.exit(str(e))
    print(f"\nmachine busy {m['busy']:.0%} (all CPUs, this bench included)")
    print("\n".join(table(m)))
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    dest = HERE / "results" / f"spank-{stamp}.json"
    dest.parent.mkdir(exist_ok=True)
    dest.write_text(json.dumps(m, indent=1))
    print(f"\nwrote {dest}")


if __name__ == "__main__":
    main()
