"""make demo: a throwaway single-node Slurm cluster on loopback that runs the
example handlers through the *installed* plugins, then stops.

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
sys.path.insert(0, str(HERE.parent / "tests"))
from slurmcluster import SLURM_PLUGIN_DIR, SLURM_VERSION, Cluster  # noqa: E402

PLUGINDIR = os.environ.get("PLUGINDIR", SLURM_PLUGIN_DIR)


def _ended(seen: pathlib.Path) -> set:
    """The job ids epilog_slurmctld has recorded so far."""
    if not seen.exists():
        return set()
    return {json.loads(l)["job_id"] for l in seen.read_text(encoding="utf-8").splitlines()
            if l.strip() and json.loads(l)["hook"] == "epilog_slurmctld"}


def main() -> int:
    for so in ("prep_python.so", "site_factor_python.so"):
        if not (pathlib.Path(PLUGINDIR) / so).exists():
            print(f"demo: {PLUGINDIR}/{so} is not installed: run `make install`", file=sys.stderr)
            return 1
    work = pathlib.Path(tempfile.mkdtemp(prefix="slurmpy-demo-"))
    handlers = work / "handlers"
    handlers.mkdir(mode=0o755)
    os.chmod(work, 0o755)
    for f in ("demo_prep.py", "demo_site_factor.py"):
        shutil.copy(HERE / f, handlers / f)
        os.chmod(handlers / f, 0o644)
    seen = work / "seen.jsonl"
    conf = [
        "PrEpPlugins=prep/python",
        f"PrEpParameters=handler=demo_prep:DemoPrEp,path={handlers}",
        "Epilog=/bin/true",
        "PriorityType=priority/multifactor",
        "PrioritySiteFactorPlugin=site_factor/python",
        f"PrioritySiteFactorParameters=handler=demo_site_factor:DemoFactor,path={handlers}",
    ]
    print(f"demo: cluster directory {work}")
    print("demo: slurm.conf additions:\n  " + "\n  ".join(conf))
    # `make demo PLUGINDIR=...` installs elsewhere: look there first.
    extra = [] if os.path.realpath(PLUGINDIR) == os.path.realpath(SLURM_PLUGIN_DIR) else [PLUGINDIR]
    c = Cluster(work / "cluster", conf_extra=conf, plugin_dirs=extra,
                env={"DEMO_SEEN": str(seen)})
    try:
        c.start()
        print("demo: Slurm %d.%02d.%d, " % SLURM_VERSION +
              f"slurmctld pid {c.ctld_pid}, slurmd pid {c.slurmd_pid}, "
              f"ports {c.ctld_port}/{c.slurmd_port}")
        ok = [c.sbatch("-J", name, "-o", "/dev/null", wrap="sleep 1")
              for name in ("hello-wörld", "second")]
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
        return 0
    finally:
        c.stop()
        print(f"\ndemo: daemons stopped; logs kept in {c.workdir}")


if __name__ == "__main__":
    sys.exit(main())
