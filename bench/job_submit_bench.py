"""job_submit throughput: sbatch submissions per second with no job_submit
plugin, with job_submit/python and with job_submit/lua running the same
policy (a default time limit, a comment stamp, a refusal rule that never
fires), on throwaway clusters; plus job_submit/python's per-call cost in
the C test host.  Not part of `make bench` yet; run it directly:

    .venv/bin/python bench/job_submit_bench.py [N_JOBS] [CLIENTS]

Prints one line per mode.  No test asserts on these numbers.
"""
from __future__ import annotations

import concurrent.futures
import os
import pathlib
import statistics
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from slurmcluster import Cluster  # noqa: E402

PLUGINS = ROOT / "build" / "plugins"

PY_POLICY = """\
from slurmpy_plugins import JobSubmitHandler, Reject

class Policy(JobSubmitHandler):
    def submit(self, job, submit_uid):
        if job.time_limit is None:
            job.time_limit = 10
        if job.name == "forbidden":
            raise Reject("forbidden name")
        job.comment = "stamped"
"""

LUA_POLICY = """\
function slurm_job_submit(job_desc, part_list, submit_uid)
    if job_desc.time_limit == slurm.NO_VAL then
        job_desc.time_limit = 10
    end
    if job_desc.name == "forbidden" then
        slurm.log_user("forbidden name")
        return slurm.ERROR
    end
    job_desc.comment = "stamped"
    return slurm.SUCCESS
end
function slurm_job_modify(job_desc, job_rec, part_list, modify_uid)
    return slurm.SUCCESS
end
return slurm.SUCCESS
"""


def run_mode(mode: str, n: int, clients: int, work: pathlib.Path) -> float:
    hdir = work / "handlers"
    hdir.mkdir(mode=0o755, exist_ok=True)
    (hdir / "bench_policy.py").write_text(PY_POLICY)
    os.chmod(hdir / "bench_policy.py", 0o644)
    extra = ["MaxJobCount=100000", "SlurmctldDebug=info"]
    if mode != "none":
        extra.append(f"JobSubmitPlugins={mode}")
    c = Cluster(work / mode, plugin_dirs=[str(PLUGINS)], conf_extra=extra, debug="info")
    (c.conf_path.parent / "job_submit_python.conf").write_text(
        f"handler=bench_policy:Policy\npath={hdir}\n")
    (c.conf_path.parent / "job_submit.lua").write_text(LUA_POLICY)
    c.start()
    try:
        def submit(i):
            cp = c.run("sbatch", "--parsable", "--hold", "-J", f"b{i}", "--wrap=true",
                       check=False, timeout=120)
            return cp.returncode
        # warm up (first submission loads the handler / lua script)
        submit(-1)
        t0 = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(clients) as ex:
            rcs = list(ex.map(submit, range(n)))
        dt = time.monotonic() - t0
        if any(rcs):
            raise RuntimeError(f"{mode}: {sum(1 for r in rcs if r)} submissions failed")
        jobs = c.jobs()
        if mode != "none":
            assert all(j.get("Comment") == "stamped" for j in jobs.values()), mode
        return n / dt
    finally:
        c.stop()


def per_call_us(n: int = 2000) -> float:
    import hostdriver
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="jsbench."))
    os.chmod(tmp, 0o755)
    (tmp / "bench_policy.py").write_text(PY_POLICY)
    os.chmod(tmp / "bench_policy.py", 0o644)
    (tmp / "slurm.conf").write_text("")
    (tmp / "job_submit_python.conf").write_text(f"handler=bench_policy:Policy\npath={tmp}\n")
    h = hostdriver.Host(str(PLUGINS / "job_submit_python.so"), debug=3)
    try:
        h.conf(slurm_conf=str(tmp / "slurm.conf"))
        h.load()
        h.parts_add(name="debug", nodes="n1", total_cpus=64, total_nodes=1, default=True)
        us = [h.js_submit(name="x", environment=["A=1"] * 30)["us"] for _ in range(n)]
        return statistics.median(us)
    finally:
        h.close()


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    clients = int(sys.argv[2]) if len(sys.argv) > 2 else 8
    work = pathlib.Path(tempfile.mkdtemp(prefix="jsbench-"))
    os.chmod(work, 0o755)
    rates = {}
    for mode in ("none", "python", "lua"):
        rates[mode] = run_mode(mode, n, clients, work)
        print(f"{mode:7s} {rates[mode]:8.1f} submissions/s ({n} sbatch, {clients} clients)",
              flush=True)
    print(f"python/none {rates['python'] / rates['none']:.3f}   "
          f"lua/none {rates['lua'] / rates['none']:.3f}")
    print(f"job_submit/python per call (C host, median of 2000, handler included): "
          f"{per_call_us():.0f} us")


if __name__ == "__main__":
    main()
