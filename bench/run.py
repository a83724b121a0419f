#!/usr/bin/env python3
"""slurmpy_plugins benchmarks: bridge cost, site_factor update(), a real
cluster's job throughput and prolog latency, slurmctld memory.

    make bench                               # full run, both releases, ~25 min
    make bench BENCH_ARGS=--quick            # 10k calls, 100 jobs: iterate fast
    .venv/bin/python bench/run.py [--quick]  # this machine's Slurm only

Everything is measured in one run.  Output: a table on stdout, and
bench/results/latest.{txt,json} plus a timestamped copy of both.  Nothing
here asserts on time: targets are reported as PASS/MISS with the measured
ratio (see bench/NOTES.md for what dominates a miss).

Parts
 1. Bridge cost per hook call, through tests/host/spm_host (a fake slurmctld /
    slurmd that dlopens the plugin as Slurm does): prep_python.so with a no-op
    handler vs bench/noop_prep.c (a C no-op prep plugin built the same way)
    vs starting /bin/true (bench/spawn_true.c, posix_spawn+waitpid in C).
 2. site_factor update() over 100,000 pending jobs via the host's
    update_many (snapshot, hand-off, Python, applying factors) vs the host's
    C baseline loop.
 3. A real slurmctld+slurmd (tests/harness/slurmcluster.py): 1,000 `sbatch
    --wrap=true` jobs with (a) no PrEp work, (b) prep/script with trivial
    PrologSlurmctld/EpilogSlurmctld shell scripts, (c) prep/python with
    trivial prolog/epilog_slurmctld handlers: jobs/s and the prolog stage
    latency (allocation -> "Configuration for JobId=N is complete").
 4. slurmctld VmRSS after those jobs, with and without prep/python.
 5. Attribution: the shim's C pieces (bench/micro_snapshot.c) and the
    Python side of a hook call (bench/micro_bridge.py), each alone.
 6. Job steps: N `srun true` steps in one job, time per step and the step's
    slurmstepd VmRSS, with and without prep/python in PrEpPlugins (24.05+
    loads PrEp plugins in every slurmstepd: Python must not start there).
 7. job_submit: submissions/s from 8 parallel sbatch clients with no
    plugin, job_submit/python and job_submit/lua running the same policy;
    per-call cost of each plugin's job_submit() from uprobes (perf probe)
    in the real slurmctld, net of the probes' own cost.
 8. jobcomp: jobs/s and slurmctld CPU per job with JobCompType=
    jobcomp/python (no-op handler) against jobcomp/none, alternating; the
    cost of a record inside the real slurmctld from uprobes on slurmctld's
    jobcomp call and the plugin's (the probes' own cost: the generic call
    timed under jobcomp/none); the hook alone in the C test host and the
    records/s the deliverer sustains (bench/jobcomp.py).
 9. spank: `srun true` step time and the step's slurmstepd peak RSS with
    no SPANK plugin, a C plugin doing spank_setenv in user_init,
    spank/python with a user_init doing setenv, and spank/python with an
    option and no hook in slurmstepd; one job of N steps per
    configuration (bench/spank.py).
With --trixie-root DIR (what `make bench` passes), parts 3, 4 and 6 also
run inside that Debian 13 root against Slurm 24.11 (this script with
--json-out there) and are reported as 3', 4', 6'.
Part 3 also runs (d), a C no-op async prep plugin, as a control, and an
"isolated" latency phase; every part records how much CPU other processes
took meanwhile (this machine is shared).  See bench/NOTES.md.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import pathlib
import platform
import shutil
import subprocess
import sys
import tempfile
import time

from bench.parts.common import (ForeignCPU, HERE, PLUGINS, PREP_SO, RESULTS, ROOT, SF_SO,
                                UPDATE_SIZES, build_tools, log, quiet_check, tree_state)
from bench.parts.calls import part_calls
from bench.parts.update import part_update
from bench.parts.attrib import part_attrib
from bench.parts.cluster import part_cluster
from bench.parts.steps import part_steps
from bench.parts.jsubmit import part_jsubmit
from bench.parts.jobcomp import part_jobcomp
from bench.parts.spank import part_spank
from bench.parts.report import report


ALL_PARTS = "calls,update,attrib,cluster,steps,jsubmit,jobcomp,spank"


def where_am_i() -> str:
    """'Debian 13 (trixie) root' inside scripts/trixie-root.sh's root."""
    try:
        osr = dict(l.rstrip("\n").split("=", 1) for l in open("/etc/os-release") if "=" in l)
    except OSError:
        return "?"
    name = f"Debian {osr.get('VERSION_ID', '?').strip(chr(34))} ({osr.get('VERSION_CODENAME', '?')})"
    # scripts/trixie-root.sh leaves its stamps in the root's /var/lib/slurmpy
    return name + (" root" if os.path.exists("/var/lib/slurmpy/debootstrap") else "")


def run_in_trixie(args) -> dict:
    """Run bench/run.py --parts <trixie-parts> inside the Debian 13 root
    against its Slurm 24.11 daemons (same checkout, the root's own build/),
    and return its results; its progress goes to our stderr.  A failure
    there is reported, not fatal: the host's figures stand."""
    root = os.path.realpath(args.trixie_root)
    name = f"slurmpy-bench-release2-{os.getpid()}.json"
    inner = [f"SLURM_SRC={args.trixie_slurm_src}", args.trixie_python, str(HERE / "run.py"),
             "--parts", args.trixie_parts, "--json-out", f"/tmp/{name}",
             "--cpus", str(args.cpus), "--wait-quiet", str(args.wait_quiet)]
    for opt in ("jobs", "rounds", "steps"):
        v = getattr(args, opt)
        if v:
            inner += [f"--{opt}", str(v)]
    if args.quick:
        inner.append("--quick")
    cmd = [str(ROOT / "scripts" / "trixie-root.sh"), "-r", root, "run", "/usr/bin/env", *inner]
    log(f"release 2: {' '.join(cmd)}")
    out = pathlib.Path(root + "/tmp/" + name)
    cp = subprocess.run(cmd, stdout=subprocess.DEVNULL)
    try:
        if cp.returncode:
            return {"meta": {"where": f"the Debian 13 root {root}"},
                    "error": f"bench/run.py in the root exited {cp.returncode} (its log is above)"}
        r2 = json.loads(out.read_text())
    finally:
        out.unlink(missing_ok=True)
    r2["meta"]["where"] = f"{r2['meta']['where']} {root}"
    return r2


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="10k calls, 100 jobs")
    ap.add_argument("--parts", default=ALL_PARTS,
                    help=f"comma-separated subset of {ALL_PARTS}")
    ap.add_argument("--calls", type=int, help="calls per run (100000)")
    ap.add_argument("--reps", type=int, help="runs per measurement (3)")
    ap.add_argument("--jobs", type=int, help="sbatch jobs per cluster run (1000)")
    ap.add_argument("--rounds", type=int, help="rounds of (a),(b),(c) (3; 1 with --quick)")
    ap.add_argument("--update-jobs", type=int,
                    help="pending jobs for update() (default: 1k, 10k, 100k, 1M; --quick: no 1M)")
    ap.add_argument("--cpus", type=int, default=64, help="CPUs of the cluster's node")
    ap.add_argument("--wait-quiet", type=float, default=0, metavar="S",
                    help="before each part, wait up to S s for the machine to be idle")
    ap.add_argument("--steps", type=int, help="srun steps per steps run (100; 20 with --quick)")
    ap.add_argument("--js-jobs", type=int, help="sbatch per job_submit run (2000; 100 with --quick)")
    ap.add_argument("--js-probe", type=int,
                    help="traced sbatch per job_submit run for the per-call cost (300; 100)")
    ap.add_argument("--clients", type=int, default=8, help="parallel sbatch clients (job_submit)")
    ap.add_argument("--spank-steps", type=int,
                    help="srun steps per spank configuration (1000; 50 with --quick)")
    ap.add_argument("--jc-jobs", type=int, help="jobs per jobcomp run (500; 100 with --quick)")
    ap.add_argument("--jc-probe", type=int,
                    help="traced jobs per jobcomp run for the per-record cost (200; 50)")
    ap.add_argument("--trixie-root", metavar="DIR",
                    help="then run --trixie-parts against Slurm 24.11 inside this Debian 13 "
                    "root (scripts/trixie-root.sh; the plugins built there first: make bench "
                    "does both) and merge its figures into the report")
    ap.add_argument("--trixie-parts", default="cluster,steps",
                    help="parts run in the trixie root (cluster,steps)")
    ap.add_argument("--trixie-python", default=str(ROOT / ".venv" / "trixie" / "bin" / "python"),
                    help="the root's venv interpreter (the Makefile's TRIXIE_MAKE VENV)")
    ap.add_argument("--trixie-slurm-src", default="/usr/src/slurm-24.11.5",
                    help="the configured Slurm tree inside the root")
    ap.add_argument("--json-out", metavar="PATH",
                    help="write the results as JSON to PATH only (no report, no bench/results): "
                    "what --trixie-root runs inside the root")
    ap.add_argument("--no-save", action="store_true", help="do not write bench/results")
    args = ap.parse_args()
    q = args.quick
    calls = args.calls or (10_000 if q else 100_000)
    reps = args.reps or (3 if q else 3)
    jobs = args.jobs or (100 if q else 1000)
    rounds = args.rounds or (1 if q else 3)
    ujobs = args.update_jobs or (100_000)
    parts = set(args.parts.split(","))
    unknown = parts - set(ALL_PARTS.split(","))
    if unknown:
        sys.exit(f"bench: --parts: unknown part(s) {', '.join(sorted(unknown))} "
                 f"(known: {ALL_PARTS})")
    steps = args.steps or (20 if q else 100)
    js_jobs = args.js_jobs or (100 if q else 2000)
    js_probe = args.js_probe if args.js_probe is not None else (100 if q else 300)
    spank_steps = args.spank_steps or (50 if q else 1000)
    jc_jobs = args.jc_jobs or (100 if q else 500)
    jc_probe = args.jc_probe if args.jc_probe is not None else (50 if q else 200)

    if os.geteuid() != 0 and (parts & {"cluster", "steps", "jsubmit", "jobcomp", "spank"}
                              or args.trixie_root):
        sys.exit("bench: the cluster, steps, jsubmit, jobcomp and spank parts run "
                 "slurmctld/slurmd and need root")
    for p in (PREP_SO, SF_SO, *([PLUGINS / "jobcomp_python.so"] if "jobcomp" in parts else [])):
        if not p.exists():
            sys.exit(f"bench: {p} missing: run `make build` first")

    t_begin = time.monotonic()
    started = dt.datetime.now().astimezone()
    res: dict = {"meta": {
        "started": started.isoformat(timespec="seconds"),
        "mode": "quick" if q else "full", "cpus": os.cpu_count(),
        "host": platform.node(), "kernel": platform.release(),
        "python": platform.python_version(),
        "slurm": subprocess.run(["slurmctld", "-V"], capture_output=True,
                                text=True).stdout.strip(),
        # the Debian 13 root has no git: the host's report names the commit
        "git": (subprocess.run(["git", "-C", str(ROOT), "describe", "--always", "--dirty"],
                               capture_output=True, text=True).stdout.strip()
                if shutil.which("git") else None),
        "tree": tree_state(),
        "params": {"calls": calls, "reps": reps, "jobs": jobs, "rounds": rounds,
                   "update_jobs": ujobs, "node_cpus": args.cpus, "steps": steps,
                   "js_jobs": js_jobs, "js_probe": js_probe, "clients": args.clients,
                   "jc_jobs": jc_jobs, "jc_probe": jc_probe, "spank_steps": spank_steps},
    }}
    tools = build_tools(parts)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="slurmpy-bench."))
    os.chmod(tmp, 0o755)
    try:
        fg = res["meta"]["foreign_cpu"] = {}
        if "calls" in parts:
            quiet_check("calls", args.wait_quiet, res)
            with ForeignCPU() as f:
                res["calls"] = part_calls(tools, tmp, calls, reps, 500 if q else 2000)
            fg["calls"] = f.result()
        if "update" in parts:
            quiet_check("update", args.wait_quiet, res)
            with ForeignCPU() as f:
                sizes = UPDATE_SIZES if not args.update_jobs else (args.update_jobs,)
                res["update"] = part_update(tmp, sizes[:3] if q else sizes, 3)
            fg["update"] = f.result()
        if "attrib" in parts:
            quiet_check("attrib", args.wait_quiet, res)
            with ForeignCPU() as f:
                res["attrib"] = part_attrib(tools, q)
            fg["attrib"] = f.result()
        if "cluster" in parts:
            quiet_check("cluster", args.wait_quiet, res)
            res["cluster"] = part_cluster(jobs, rounds, args.cpus, tmp, 5 if q else 12)
        if "steps" in parts:
            quiet_check("steps", args.wait_quiet, res)
            res["steps"] = part_steps(steps, 1 if q else 3, tmp)
        if "jsubmit" in parts:
            quiet_check("jsubmit", args.wait_quiet, res)
            res["jsubmit"] = part_jsubmit(js_jobs, js_probe, 1 if q else 5, args.clients, tmp,
                                          n_serial=30 if q else 200)
        if "jobcomp" in parts:
            quiet_check("jobcomp", args.wait_quiet, res)
            res["jobcomp"] = part_jobcomp(jc_jobs, jc_probe, 2 if q else 4,
                                          500 if q else 2000, tmp)
        if "spank" in parts:
            quiet_check("spank", args.wait_quiet, res)
            res["spank"] = part_spank(spank_steps, 1)
        if args.trixie_root:
            res["release2"] = run_in_trixie(args)
    finally:
        if os.environ.get("BENCH_KEEP") != "1":
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            log(f"kept {tmp}")
    res["meta"]["runtime_s"] = time.monotonic() - t_begin
    if args.json_out:
        res["meta"]["where"] = where_am_i()
        tmpf = args.json_out + ".tmp"
        with open(tmpf, "w") as f:
            json.dump(res, f, indent=1, default=str)
        os.replace(tmpf, args.json_out)
        return 0
    text, targets = report(res)
    res["targets"] = targets
    print(text, end="")
    if not args.no_save:
        RESULTS.mkdir(exist_ok=True)
        stamp = started.strftime("%Y%m%dT%H%M%S")
        for name in ("latest", stamp):
            for ext, data in (("txt", text), ("json", json.dumps(res, indent=1, default=str) + "\n")):
                p = RESULTS / f"{name}.{ext}"
                tmpf = RESULTS / f"{name}.{ext}.tmp"
                tmpf.write_text(data)
                os.replace(tmpf, p)
        log(f"wrote {RESULTS}/latest.txt, latest.json, {stamp}.*")
    return 0


if __name__ == "__main__":
    sys.exit(main())
