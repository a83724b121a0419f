"""jobcomp/python on a real slurmctld/slurmd (issue 20, "Done when"): N
finished jobs give N distinct records with the right states, through a
raising handler, a hung one, and a kill -9 of slurmctld with records still
undelivered; slurmctld stays responsive meanwhile; `sacct -c` starts no
Python."""
from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import time

import pytest

from tests.harness.slurmcluster import slurm_at_least

from .conftest import BUILD_PLUGINS, read_calls, wait_calls, write_handler

# Every attempt is appended to CALLS ({"key", "job_id", "state", ...,
# "outcome"}); the handler raises while RAISE exists (and on the first
# attempt of every record when FIRST_FAILS is set), and hangs while HANG
# exists.  Each import appends the importing pid to IMPORTS.
HANDLER = '''
import dataclasses, json, os, time
from slurmpy_plugins import JobCompHandler

CALLS, RAISE, HANG, IMPORTS = {calls!r}, {raise_!r}, {hang!r}, {imports!r}
FIRST_FAILS = {first_fails!r}
SEEN = set()

with open(IMPORTS, "a") as f:
    f.write("%d\\n" % os.getpid())

def record(job, outcome):
    d = dataclasses.asdict(job)
    d["outcome"] = outcome
    fd = os.open(CALLS, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps(d) + "\\n").encode())
    finally:
        os.close(fd)

class Ledger(JobCompHandler):
    def job_start(self, job):
        record(job, "start")

    def job_end(self, job):
        while os.path.exists(HANG):
            time.sleep(0.05)
        if os.path.exists(RAISE) or (FIRST_FAILS and job.key not in SEEN):
            SEEN.add(job.key)
            record(job, "raised")
            raise ConnectionError("the ledger is down")
        record(job, "delivered")
'''


@pytest.fixture
def jc_cluster(cluster_factory, tmp_path):
    """make(conf=(), first_fails=False) -> cluster with JobCompType=
    jobcomp/python and the Ledger handler; the cluster has .calls, .raise_,
    .hang, .imports (paths)."""
    if not (BUILD_PLUGINS / "jobcomp_python.so").exists():
        pytest.fail("build/plugins/jobcomp_python.so is missing: run `make build` first")

    def make(conf=(), first_fails=False, start=True, conf_extra=()):
        hdir = tmp_path / "handlers"
        paths = {k: tmp_path / f"{k}.flag" for k in ("raise_", "hang")}
        calls, imports = tmp_path / "calls.jsonl", tmp_path / "imports.txt"
        write_handler(hdir, "ledger", HANDLER.format(
            calls=str(calls), raise_=str(paths["raise_"]), hang=str(paths["hang"]),
            imports=str(imports), first_fails=first_fails))
        c = cluster_factory(plugin_dirs=[str(BUILD_PLUGINS)],
                            conf_extra=["JobCompType=jobcomp/python", *conf_extra])
        p = c.conf_path.parent / "jobcomp_python.conf"
        p.write_text("\n".join(["handler=ledger:Ledger", f"path={hdir}", *conf]) + "\n")
        os.chmod(p, 0o644)
        c.calls, c.imports = calls, imports
        c.raise_, c.hang = paths["raise_"], paths["hang"]
        if start:
            c.start()
        return c

    return make


def test_job_start_with_enable_job_start_from_25_05(jc_cluster):
    c = jc_cluster(conf_extra=["JobCompParams=enable_job_start"])
    jobs = [c.sbatch() for _ in range(3)]
    c.wait_jobs(jobs, ("COMPLETED",))
    got = delivered(c, 3)
    assert sorted(r["job_id"] for r in got.values()) == sorted(jobs)
    starts = [r for r in read_calls(c.calls) if r["outcome"] == "start"]
    if not slurm_at_least(25, 5):
        assert starts == []          # no record_job_start before 25.05
        return
    assert sorted(r["job_id"] for r in starts) == sorted(jobs)
    for r in starts:
        assert r["event"] == "start" and r["state"] == "RUNNING"
        assert r["key"] == f"{c.name}:{r['job_id']}:{r['submit_time']}:{r['start_time']}:start"
    # each start came before its end
    calls = read_calls(c.calls)
    for j in jobs:
        kinds = [r["outcome"] for r in calls if r["job_id"] == j]
        assert kinds == ["start", "delivered"], (j, kinds)


def delivered(c, keys_wanted: int, timeout: float = 90.0) -> dict[str, dict]:
    """{key: the delivered call} once `keys_wanted` distinct keys are
    delivered."""
    recs = wait_calls(c.calls, lambda rs: len({r["key"] for r in rs
                                               if r["outcome"] == "delivered"}) >= keys_wanted,
                      timeout=timeout, what=f"{keys_wanted} records delivered", cluster=c)
    return {r["key"]: r for r in recs if r["outcome"] == "delivered"}


def finish_jobs(c) -> dict[int, str]:
    """Jobs ending COMPLETED, FAILED, CANCELLED and TIMEOUT: {job_id: state}."""
    want = {c.sbatch(): "COMPLETED", c.sbatch(wrap="exit 3"): "FAILED",
            c.sbatch(): "COMPLETED"}
    cancel = c.sbatch(wrap="sleep 300")
    timeout = c.sbatch("--time=1", wrap="sleep 300")
    c.wait_job(cancel, ("RUNNING",))
    c.run("scancel", str(cancel))
    want[cancel] = "CANCELLED"
    want[timeout] = "TIMEOUT"
    for jid, st in want.items():
        c.wait_job(jid, (st,), timeout=240)
    return want


def test_n_jobs_give_n_records_with_their_states_through_a_raising_handler(jc_cluster):
    # every record's first attempt raises: each is retried and delivered,
    # in order, once
    c = jc_cluster(first_fails=True)
    want = finish_jobs(c)
    got = delivered(c, len(want))
    assert {r["job_id"]: r["state"] for r in got.values()} == want
    assert len(got) == len(want)
    for key, r in got.items():
        assert key == f"{c.name}:{r['job_id']}:{r['submit_time']}:{r['start_time']}"
        assert r["cluster"] == c.name and r["partition"] and r["user_name"] == "root"
        assert r["nodes"] == "node1" and r["cpus"] >= 1 and r["end_time"] >= r["start_time"]
    assert got[next(k for k, r in got.items() if r["state"] == "FAILED")]["exit_code"] == [3, 0]
    calls = read_calls(c.calls)
    raised = [r["key"] for r in calls if r["outcome"] == "raised"]
    assert sorted(raised) == sorted(got), "every record raised once, then was delivered"
    # in order: each record's retry comes before the next record's attempt
    order = list(dict.fromkeys(r["key"] for r in calls))
    assert all(calls[2 * i]["key"] == calls[2 * i + 1]["key"] == k for i, k in enumerate(order))
    assert "ConnectionError: the ledger is down" in c.ctld_log()


def test_a_hung_handler_leaves_slurmctld_responsive_and_loses_nothing(jc_cluster):
    c = jc_cluster(conf=["timeout=2"])
    c.hang.write_text("")
    jobs = [c.sbatch() for _ in range(5)]
    c.wait_jobs(jobs, ("COMPLETED",))
    c.wait_for_log(r"did not return within its time limit", timeout=60)
    # The handler hangs for as long as the HANG file exists: a slurmctld
    # that waited for it would not answer at all.  The bounds are that,
    # made generous for a loaded 2-vCPU CI machine (the figures, well
    # under a second, are the bench's).
    for _ in range(5):
        assert c.ping_seconds() < 5.0
        t0 = time.monotonic()
        c.run("squeue")
        assert time.monotonic() - t0 < 5.0
    more = [c.sbatch() for _ in range(3)]
    c.wait_jobs(more, ("COMPLETED",))
    assert not read_calls(c.calls)
    c.hang.unlink()
    got = delivered(c, 8, timeout=120)
    assert sorted(r["job_id"] for r in got.values()) == sorted(jobs + more)
    assert all(r["state"] == "COMPLETED" for r in got.values())


def test_kill_9_with_records_undelivered_loses_none(jc_cluster):
    c = jc_cluster()
    c.raise_.write_text("")
    jobs = {c.sbatch(): "COMPLETED", c.sbatch(wrap="exit 2"): "FAILED", c.sbatch(): "COMPLETED"}
    for jid, st in jobs.items():
        c.wait_job(jid, (st,))
    wait_calls(c.calls, lambda rs: len(rs) >= 2, what="two failed attempts", cluster=c)
    assert not [r for r in read_calls(c.calls) if r["outcome"] == "delivered"]
    pid = c.ctld_pid
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while c.ctld_running() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert c.ctld_returncode == -signal.SIGKILL
    c.raise_.unlink()
    c.start_ctld(clean=False)
    # A kill -9 can lose a completion from slurmctld's own state files:
    # Slurm then runs that job again, and the second run is a record of
    # its own (another start time, so another key); a job it lost
    # altogether is simply gone.  Once no job is left in the queue, the
    # spool holds every record Slurm gave.
    deadline = time.monotonic() + 90
    while c.run("squeue", "-h", "-o", "%i").stdout.strip():
        assert time.monotonic() < deadline, c.run("squeue").stdout
        time.sleep(0.2)
    spool = c.state_dir / "jobcomp_python" / "records"
    spooled = {json.loads(line)["key"] for line in spool.read_text().splitlines()}
    got = delivered(c, len(spooled))
    assert set(got) == spooled
    assert {r["job_id"]: r["state"] for r in got.values()} == jobs
    assert "bytes of records not yet delivered" in c.ctld_log()
    # nothing delivered twice: the records were never acknowledged before
    delivered_keys = [r["key"] for r in read_calls(c.calls) if r["outcome"] == "delivered"]
    assert sorted(delivered_keys) == sorted(got)


def test_reconfigure_keeps_undelivered_records(jc_cluster):
    c = jc_cluster()
    c.raise_.write_text("")
    first = c.sbatch()
    c.wait_job(first)
    wait_calls(c.calls, lambda rs: len(rs) >= 1, what="a failed attempt", cluster=c)
    c.reconfigure()
    assert c.ping()
    second = c.sbatch()
    c.wait_job(second)
    c.raise_.unlink()
    got = delivered(c, 2)
    assert sorted(r["job_id"] for r in got.values()) == sorted([first, second])


def test_sacct_c_starts_no_python(jc_cluster):
    c = jc_cluster()
    job = c.sbatch()
    c.wait_job(job)
    delivered(c, 1)
    before = c.imports.read_text().split()
    # LD_DEBUG=files: the loader names every object it maps, so the test
    # knows sacct really loaded jobcomp_python.so
    env = dict(c.client_env(), LD_DEBUG="files")
    p = subprocess.run(["sacct", "-c", "-j", str(job)], env=env, capture_output=True, text=True,
                       timeout=60)
    after = c.imports.read_text().split()
    assert p.returncode == 0 and "JobID" in p.stdout, p
    assert "jobcomp_python.so" in p.stderr, "sacct -c did not load the plugin"
    assert after == before, f"sacct -c imported the handler: {p.stdout}{p.stderr[-2000:]}"
    assert str(c.ctld_pid) in before


def test_the_kit_says_what_slurmctld_does(jc_cluster):
    # the daemon's record of a finished job, handed to the kit: the same
    # record, and the same outcome and log line for a raising handler
    from slurmpy_plugins import CompletedJob
    from slurmpy_plugins import testing as kit
    c = jc_cluster()
    c.raise_.write_text("")
    j = c.sbatch(wrap="exit 4")
    c.wait_job(j, ("FAILED",))
    (rec,) = wait_calls(c.calls, lambda rs: len(rs) >= 1, what="a failed attempt", cluster=c)[:1]
    rec.pop("outcome")
    job = CompletedJob(**{k: tuple(v) if isinstance(v, list) else v for k, v in rec.items()})
    assert job.state == "FAILED" and job.exit_code == (4, 0)
    handler = kit.load_handler("ledger:Ledger", path=str(c.calls.parent / "handlers"),
                               kind="jobcomp")
    out = kit.run_job_end(handler, job)
    assert not out.delivered and not out.timed_out
    (line,) = [x for x in out.log if "delivery of record" in x]
    assert line in c.ctld_log(), (line, c.ctld_log()[-3000:])
    c.raise_.unlink()
    delivered(c, 1)
    assert kit.run_job_end(handler, job).delivered
