"""make demo: a throwaway single-node Slurm cluster on loopback that runs the
example handlers through the *installed* plugins, then stops: prep/python,
site_factor/python, job_submit/python, jobcomp/python and spank/python.

Everything lives in a fresh temporary directory: slurm.conf, state, logs.
Ports are picked free; daemons are stopped by pid at the end.
"""
import json
import os
import pathlib
import shutil
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
from tests.harness.slurmcluster import SLURM_PLUGIN_DIR, SLURM_VERSION, Cluster  # noqa: E402

PLUGINDIR = os.environ.get("PLUGINDIR", SLURM_PLUGIN_DIR)


def _ended(seen: pathlib.Path) -> set:
    """The job ids epilog_slurmctld has recorded so far."""
    if not seen.exists():
        return set()
    return {json.loads(l)["job_id"] for l in seen.read_text(encoding="utf-8").splitlines()
            if l.strip() and json.loads(l)["hook"] == "epilog_slurmctld"}


PLUGINS = ("prep_python.so", "site_factor_python.so", "job_submit_python.so",
           "jobcomp_python.so", "spank_python.so")
HANDLERS = ("demo_prep.py", "demo_site_factor.py", "demo_job_submit.py", "demo_jobcomp.py",
            "demo_spank.py")


def _wait_lines(path: pathlib.Path, n: int, timeout: float = 60.0) -> list:
    """The JSON lines of path once it has n (or the deadline passed)."""
    deadline = time.monotonic() + timeout
    while True:
        rows = ([json.loads(l) for l in path.read_text(encoding="utf-8").splitlines() if l]
                if path.exists() else [])
        if len(rows) >= n or time.monotonic() > deadline:
            return rows
        time.sleep(0.2)


def main() -> int:
    for so in PLUGINS:
        if not (pathlib.Path(PLUGINDIR) / so).exists():
            print(f"demo: {PLUGINDIR}/{so} is not installed: run `make install`", file=sys.stderr)
            return 1
    work = pathlib.Path(tempfile.mkdtemp(prefix="slurmpy-demo-"))
    handlers = work / "handlers"
    handlers.mkdir(mode=0o755)
    os.chmod(work, 0o755)
    for f in HANDLERS:
        shutil.copy(HERE / f, handlers / f)
        os.chmod(handlers / f, 0o644)
    seen = work / "seen.jsonl"
    ledger = work / "ledger.jsonl"
    conf = [
        "PrEpPlugins=prep/python",
        f"PrEpParameters=handler=demo_prep:DemoPrEp,path={handlers}",
        "Epilog=/bin/true",
        "PriorityType=priority/multifactor",
        "PrioritySiteFactorPlugin=site_factor/python",
        f"PrioritySiteFactorParameters=handler=demo_site_factor:DemoFactor,path={handlers}",
        "JobSubmitPlugins=python",
        "JobCompType=jobcomp/python",
    ]
    files = {
        "job_submit_python.conf": f"handler=demo_job_submit:DemoSubmit\npath={handlers}\n",
        "jobcomp_python.conf": f"handler=demo_jobcomp:DemoLedger\npath={handlers}\n",
        "plugstack.conf": (f"required {PLUGINDIR}/spank_python.so "
                           f"handler=demo_spank:DemoTag path={handlers}\n"),
    }
    print(f"demo: cluster directory {work}")
    print("demo: slurm.conf additions:\n  " + "\n  ".join(conf))
    for name, text in files.items():
        print(f"demo: {name}:\n  " + "\n  ".join(text.splitlines()))
    # `make demo PLUGINDIR=...` installs elsewhere: look there first.
    extra = [] if os.path.realpath(PLUGINDIR) == os.path.realpath(SLURM_PLUGIN_DIR) else [PLUGINDIR]
    c = Cluster(work / "cluster", conf_extra=conf, plugin_dirs=extra,
                env={"DEMO_SEEN": str(seen), "DEMO_LEDGER": str(ledger)})
    for name, text in files.items():
        (c.conf_path.parent / name).write_text(text)
        os.chmod(c.conf_path.parent / name, 0o644)
    problems = []      # what the demo saw that the plugins should not have done
    try:
        c.start()
        print("demo: Slurm %d.%02d.%d, " % SLURM_VERSION +
              f"slurmctld pid {c.ctld_pid}, slurmd pid {c.slurmd_pid}, "
              f"ports {c.ctld_port}/{c.slurmd_port}")
        ok = [c.sbatch("-J", name, "-o", "/dev/null", wrap="sleep 1")
              for name in ("hello-wörld", "second")]
        print("\ndemo: job_submit/python")
        cp = c.run("sbatch", "--parsable", "-J", "defaulted", "-o", "/dev/null",
                   "--wrap=true")
        print("  sbatch -J defaulted (no --time) printed: "
              + " | ".join(l for l in cp.stderr.splitlines() if l.strip()))
        jid = int(cp.stdout.split(";")[0])
        limit = c.job(jid)["TimeLimit"]
        print(f"  JobId={jid} TimeLimit={limit} (set by DemoSubmit.submit)")
        if limit != "01:00:00":
            problems.append(f"job_submit/python: the default time limit was not set ({limit})")
        ok.append(jid)
        cp = c.run("sbatch", "--parsable", "-J", "forbidden", "--wrap=true", check=False)
        print(f"  sbatch -J forbidden: exit {cp.returncode}, printed: "
              + " | ".join(l for l in cp.stderr.splitlines() if l.strip()))
        if cp.returncode == 0 or "may not be 'forbidden'" not in cp.stderr:
            problems.append("job_submit/python: the job named 'forbidden' was not refused")
        print("\ndemo: spank/python (--demo-tag, from plugstack.conf)")
        help_ = c.run("sbatch", "--help").stdout
        print("  sbatch --help lists: " + next((l.strip() for l in help_.splitlines()
                                                 if "--demo-tag" in l), "NOT LISTED"))
        out = work / "tagged.out"
        jid = c.sbatch("--demo-tag=hello", "-o", str(out), wrap="echo DEMO_TAG=$DEMO_TAG")
        c.wait_job(jid, timeout=60)
        print(f"  sbatch --demo-tag=hello: JobId={jid} printed {out.read_text().strip()!r}")
        if out.read_text().strip() != "DEMO_TAG=hello" or "--demo-tag" not in help_:
            problems.append("spank/python: --demo-tag did not reach the job")
        ok.append(jid)
        bad = c.sbatch("-J", "refused", "--no-requeue", "--comment", "please refuse me",
                       "-o", "/dev/null", wrap="echo should not run")
        c.wait_jobs(ok, timeout=60)
        refused = c.wait_job(bad, states=("CANCELLED", "FAILED"), timeout=60)
        # epilog_slurmctld runs after a job has ended: wait for it (each
        # job's, the refused one's too), up to a generous deadline
        jobs = {*ok, bad}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not jobs <= _ended(seen):
            time.sleep(0.2)
        print("\ndemo: what each hook saw")
        for line in seen.read_text(encoding="utf-8").splitlines():
            e = json.loads(line)
            hook = e.pop("hook")
            print(f"  {hook:17} " + " ".join(f"{k}={v!r}" for k, v in e.items()))
        print(f"\ndemo: job {bad} (prolog_slurmctld raised) ended {refused['JobState']}; "
              "slurmctld log says:")
        for line in c.ctld_log().splitlines():
            if "prep/python" in line and ("refused" in line or "failed" in line):
                print("  " + line)
        print("\ndemo: jobcomp/python records (DemoLedger.job_end, off slurmctld's locks)")
        records = _wait_lines(ledger, len(jobs))
        for r in records:
            print(f"  JobId={r['job_id']:<4} {r['name']:<12} {r['state']:<10} "
                  f"elapsed={r['elapsed']}s cpus={r['cpus']} key={r['key']}")
        if {r["job_id"] for r in records} != jobs:
            problems.append(f"jobcomp/python: records for {sorted(r['job_id'] for r in records)},"
                            f" jobs {sorted(jobs)}")
        # Site factors: hold the node so jobs stay pending, then read sprio.
        c.drain("demo: keep jobs pending")
        pend = {name: c.sbatch("-J", name, "-o", "/dev/null", wrap="true")
                for name in ("urgent", "background", "ordinary")}
        deadline = time.monotonic() + 30
        prio = c.sprio(jobs=list(pend.values()))
        while time.monotonic() < deadline and len(prio) < len(pend):
            time.sleep(0.2)
            prio = c.sprio(jobs=list(pend.values()))
        print("\ndemo: sprio SITE column (from DemoFactor.set)")
        for name, jid in pend.items():
            print(f"  JobId={jid:<4} {name:<11} SITE={prio.get(jid, {}).get('SITE')}")
        c.run("scancel", *map(str, pend.values()), check=False)
        for msg in problems:
            print(f"demo: FAILED: {msg}", file=sys.stderr)
        return 1 if problems else 0
    finally:
        c.stop()
        print(f"\ndemo: daemons stopped; logs kept in {c.workdir}")


if __name__ == "__main__":
    sys.exit(main())
