#!/usr/bin/env python3
"""jobcomp/python figures (issue 20): what a record costs slurmctld, what
the deliverer sustains, and jobs/s on real daemons against jobcomp/none.

  hook     jobcomp_p_log_record / record_job_end in the C test host acting
           as slurmctld: wall time inside the hook (under the job lock:
           the JSON line, the append, the fdatasync), n calls back to back
  deliver  records/s the deliverer hands to a no-op job_end(): n records
           spooled behind a held first one, timed from its release until
           the ack offset reaches the spool's end
  cluster  real slurmctld/slurmd of this machine: n `true` jobs (4
           submitters), jobs/s from the first sbatch to the last job gone
           from squeue, and slurmctld's CPU time per job, with
           JobCompType=jobcomp/none and jobcomp/python (no-op handler),
           alternating, `rounds` times each

Writes bench/results/jobcomp-<UTC time>.json and prints a summary.  Also
records the machine's load (other processes' CPU) while it ran: figures
taken beside other work are skewed.
"""
from __future__ import annotations

import argparse
import concurrent.futures
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

from tests.harness.hostdriver import Host  # noqa: E402
from tests.harness.slurmcluster import Cluster  # noqa: E402

PLUGINS = ROOT / "build" / "plugins"
JC_SO = PLUGINS / "jobcomp_python.so"

NOOP = '''
import os, time
from slurmpy_plugins import JobCompHandler

HOLD = {hold!r}

class Noop(JobCompHandler):
    def job_end(self, job):
        while os.path.exists(HOLD):
            time.sleep(0.001)
'''


def _cpu_jiffies() -> tuple[int, int]:
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return sum(v) - v[3] - v[4], sum(v)


def _proc_cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        v = f.read().rsplit(")", 1)[1].split()
    return (int(v[11]) + int(v[12])) / os.sysconf("SC_CLK_TCK")


def handler_dir(work: pathlib.Path, hold: pathlib.Path) -> pathlib.Path:
    d = work / "handlers"
    d.mkdir(parents=True)
    os.chmod(work, 0o755)
    os.chmod(d, 0o755)
    (d / "noop.py").write_text(NOOP.format(hold=str(hold)))
    os.chmod(d / "noop.py", 0o644)
    return d


def job(i: int) -> dict:
    return dict(job_id=i, job_state=3 | (1 << 15), name=f"bench{i}", user_id=0, group_id=0,
                account="acct", partition="debug", submit_time=1_700_000_000 + i,
                start_time=1_700_000_100, end_time=1_700_000_160, exit_code=0, derived_ec=0,
                node_cnt=1, total_cpus=1, nodes="node1", tres_fmt_alloc_str="cpu=1,node=1")


def part_host(tmp: pathlib.Path, n: int) -> dict:
    work = tmp / "host"
    hold = work / "hold"
    hdir = handler_dir(work, hold)
    (work / "slurm.conf").write_text("# not read by the host\n")
    (work / "jobcomp_python.conf").write_text(
        f"handler=noop:Noop\npath={hdir}\ntimeout=600\nspool_max=4096\n")
    (work / "state").mkdir()
    hold.write_text("")
    with Host(str(JC_SO), daemon="slurmctld", debug=4, timeout=600) as h:
        h.conf(slurm_conf=str(work / "slurm.conf"), state_save_location=str(work / "state"),
               cluster_name="bench")
        h.load()
        h.wait_booted()
        us = []
        for i in range(1, n + 1):
            r = h.jc_end(**job(i))
            if r["rc"] != 0:
                raise RuntimeError(f"jc_end: {r}")
            us.append(int(r["us"]))
        spool = work / "state" / "jobcomp_python"
        size = (spool / "records").stat().st_size
        t0 = time.monotonic()
        hold.unlink()
        # delivered: the ack offset at the file's end (both 0 once the
        # deliverer has compacted a spool of 1 MiB or more)
        while int((spool / "acked").read_text() or 0) != (spool / "records").stat().st_size:
            if time.monotonic() - t0 > 600:
                raise RuntimeError("the deliverer did not finish in 600 s")
            time.sleep(0.005)
        took = time.monotonic() - t0
    us.sort()
    return {
        "n": n,
        "hook_us": {"median": statistics.median(us), "p10": us[len(us) // 10],
                    "p90": us[len(us) * 9 // 10], "p99": us[len(us) * 99 // 100]},
        "record_bytes": size / n,
        "deliver_records_per_s": (n - 1) / took,
    }


def probe_targets(libdir: str) -> dict[str, tuple[str, str]]:
    """The functions to time inside slurmctld (name: (ELF, function)):
    slurmctld's generic jobcomp call in libslurmfull, which wraps the
    plugin's, and the plugin's own (python only; the caller drops it for
    jobcomp/none).  Slurm 25.05 renamed both (compat.h)."""
    full = os.path.join(libdir, "libslurmfull.so")
    syms = subprocess.run(["nm", "-D", "--defined-only", full], capture_output=True,
                          text=True, check=True).stdout
    if " jobcomp_g_record_job_end\n" in syms:
        return {"wrap": (full, "jobcomp_g_record_job_end"),
                "plugin": (str(JC_SO), "jobcomp_p_record_job_end")}
    return {"wrap": (full, "jobcomp_g_write"), "plugin": (str(JC_SO), "jobcomp_p_log_record")}


def _burst(c, n: int) -> list[str]:
    def one(_):
        return c.sbatch("-o", "/dev/null", "-e", "/dev/null", wrap="true", timeout=120)

    with concurrent.futures.ThreadPoolExecutor(4) as ex:
        return list(ex.map(one, range(n)))


def _drain(c, t0: float) -> None:
    """Until no job is left in the queue (each job's record written)."""
    while True:
        cp = c.run("squeue", "-h", "-t", "PD,CF,R,CG", "-o", "%i", check=False)
        if cp.returncode == 0 and not cp.stdout.strip():
            return
        if time.monotonic() - t0 > 900:
            raise RuntimeError("jobs not done in 900 s")
        time.sleep(0.1)


def run_cluster(tmp: pathlib.Path, kind: str, n: int, idx: int, *, n_probe: int = 0,
                uprobes=None, libdir: str | None = None) -> dict:
    """One cluster with JobCompType=jobcomp/<kind>: n `true` jobs from 4
    submitters (jobs/s, slurmctld CPU per job); then, given n_probe and
    the Uprobes class of bench/parts/common.py, n_probe more jobs with uprobes on
    the jobcomp calls inside slurmctld (probe_targets): wall us per call."""
    work = tmp / f"cluster-{kind}-{idx}"
    hold = work / "never"
    extra = ["JobCompType=jobcomp/none"]
    if kind == "python":
        hdir = handler_dir(work, hold)
        extra = ["JobCompType=jobcomp/python"]
    c = Cluster(work, plugin_dirs=[str(PLUGINS)], cpus=64, conf_extra=extra, debug="info")
    if kind == "python":
        p = c.conf_path.parent / "jobcomp_python.conf"
        p.write_text(f"handler=noop:Noop\npath={hdir}\n")
        os.chmod(p, 0o644)
    try:
        c.start()
        pid = c.ctld_pid
        cpu0 = _proc_cpu_s(pid)
        busy0 = _cpu_jiffies()
        t0 = time.monotonic()
        ids = _burst(c, n)
        _drain(c, t0)
        took = time.monotonic() - t0
        cpu = _proc_cpu_s(pid) - cpu0
        busy1 = _cpu_jiffies()
        probe: dict = {}
        if n_probe and uprobes is not None:
            targets = probe_targets(libdir)
            if kind != "python":
                del targets["plugin"]
            with uprobes(targets, pid, work / "perf.data") as up:
                ids += _burst(c, n_probe)
                _drain(c, time.monotonic())
            for k, v in up.durations().items():
                if len(v) < 0.9 * n_probe:
                    raise RuntimeError(f"jobcomp/{kind}: {len(v)} {k} calls traced "
                                       f"for {n_probe} jobs")
                v.sort()
                probe[k] = {"n": len(v), "med_us": statistics.median(v),
                            "mean_us": statistics.fmean(v), "p90_us": v[len(v) * 9 // 10],
                            "p99_us": v[len(v) * 99 // 100], "fn": targets[k][1]}
        if kind == "python":
            spool = c.state_dir / "jobcomp_python"
            size = (spool / "records").stat().st_size
            deadline = time.monotonic() + 300
            while int((spool / "acked").read_text() or 0) != size:   # < 1 MiB: no compaction
                if time.monotonic() > deadline:
                    raise RuntimeError("records not all delivered in 300 s")
                time.sleep(0.05)
            lines = (spool / "records").read_bytes().count(b"\n")
            if lines != len(ids):
                raise RuntimeError(f"{lines} records for {len(ids)} jobs")
        return {"jobs_per_s": n / took, "ctld_cpu_us_per_job": cpu / n * 1e6,
                "machine_busy": (busy1[0] - busy0[0]) / max(1, busy1[1] - busy0[1]),
                "probe": probe}
    finally:
        c.stop()
        shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n-host", type=int, default=2000)
    ap.add_argument("--n-jobs", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--parts", default="host,cluster")
    a = ap.parse_args()
    parts = set(a.parts.split(","))
    out: dict = {"when": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                 "cpus": os.cpu_count(), "load_before": os.getloadavg()}
    with tempfile.TemporaryDirectory(prefix="jcbench.") as t:
        tmp = pathlib.Path(t)
        os.chmod(tmp, 0o755)
        if "host" in parts:
            out["host"] = part_host(tmp, a.n_host)
            h = out["host"]
            print(f"hook (C host): median {h['hook_us']['median']} us, p90 "
                  f"{h['hook_us']['p90']} us, p99 {h['hook_us']['p99']} us per record "
                  f"({h['record_bytes']:.0f} bytes); deliverer {h['deliver_records_per_s']:.0f} "
                  "records/s (no-op job_end)", flush=True)
        if "cluster" in parts:
            res: dict[str, list] = {"none": [], "python": []}
            for r in range(a.rounds):
                for kind in ("none", "python"):
                    res[kind].append(run_cluster(tmp, kind, a.n_jobs, r))
                    x = res[kind][-1]
                    print(f"cluster jobcomp/{kind} round {r + 1}: {x['jobs_per_s']:.1f} jobs/s, "
                          f"slurmctld {x['ctld_cpu_us_per_job']:.0f} us CPU per job, machine "
                          f"{x['machine_busy']:.0%} busy", flush=True)
            out["cluster"] = res
    out["load_after"] = os.getloadavg()
    dst = HERE / "results" / f"jobcomp-{out['when'].replace(':', '')}.json"
    dst.write_text(json.dumps(out, indent=1) + "\n")
    print(f"written {dst.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
