"""jobcomp/python (build/plugins/jobcomp_python.so) driven by the C test
host acting as slurmctld: records appended under the host's job lock, the
spool on disk, and what the handler received (in out/calls.jsonl) as the
oracle.  Every wait is for an event, with a generous deadline.
"""
from __future__ import annotations

import json
import os
import time

import pytest

from .conftest import PLUGIN_DIR, wait_for

JC_SO = PLUGIN_DIR / "jobcomp_python.so"
NO_VAL = 0xFFFFFFFE
# enum job_states (slurm.h); JOB_COMPLETING is a flag set at this call
STATE = {"COMPLETED": 3, "CANCELLED": 4, "FAILED": 5, "TIMEOUT": 6, "NODE_FAIL": 7,
         "OUT_OF_MEMORY": 11}
JOB_COMPLETING = 1 << 15

# job_end() runs out/end.py (exec, with job in scope) when it exists, so
# each test chooses what the handler does; every call, delivered or not,
# is appended to out/calls.jsonl first.
HANDLER = """\
import dataclasses
import spmtest_rec as R
from slurmpy_plugins import JobCompHandler

def run(name, **scope):
    try:
        with open("{out}/%s.py" % name) as f:
            code = f.read()
    except FileNotFoundError:
        return
    exec(code, dict(scope, R=R, OUT="{out}"))

class Sink(JobCompHandler):
    def job_end(self, job):
        R.append("{out}/calls.jsonl", dataclasses.asdict(job))
        run("end", job=job)
"""


def start(make_host, handlers, tmp_path, extra=(), write_handler=True):
    if write_handler:
        handlers.write("sink", HANDLER)
    slurm_conf = handlers.path.parent / "slurm.conf"
    slurm_conf.write_text("# not read by the host\n")
    conf = ["handler=sink:Sink", f"path={handlers.path}", *extra]
    (handlers.path.parent / "jobcomp_python.conf").write_text("\n".join(conf) + "\n")
    state = tmp_path / "state"
    state.mkdir(exist_ok=True)
    h = make_host(so=JC_SO)
    h.conf(slurm_conf=str(slurm_conf), state_save_location=str(state), cluster_name="testc")
    h.load()
    return h


def calls(handlers) -> list[dict]:
    try:
        text = (handlers.out / "calls.jsonl").read_text()
    except FileNotFoundError:
        return []
    # complete lines only: a handler may be appending a long one right now
    return [json.loads(line) for line in text.splitlines(keepends=True) if line.endswith("\n")]


def job(job_id: int, state: str = "COMPLETED", **kw) -> dict:
    d = dict(job_id=job_id, job_state=STATE[state] | JOB_COMPLETING, name=f"j{job_id}",
             user_id=1000, user_name="alice", group_id=1000, account="phys", partition="debug",
             submit_time=1_700_000_000 + job_id, start_time=1_700_000_100,
             end_time=1_700_000_160, exit_code=0, derived_ec=0, node_cnt=1, total_cpus=2,
             nodes="node1", tres_fmt_alloc_str="cpu=2,mem=100M,node=1", time_limit=NO_VAL,
             array_task_id=NO_VAL)
    d.update(kw)
    return d


def delivered(handlers, n, timeout=30.0):
    """The first n distinct keys delivered (waits for them)."""
    def got():
        keys = list(dict.fromkeys(c["key"] for c in calls(handlers)))
        return keys if len(keys) >= n else None
    return wait_for(got, timeout=timeout, what=f"{n} records delivered")


def test_n_jobs_give_n_records_with_their_states_in_order(make_host, handlers, tmp_path):
    h = start(make_host, handlers, tmp_path)
    states = ["COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY"]
    for i, st in enumerate(states, 1):
        res = h.jc_end(**job(i, st, exit_code=(2 << 8) if st == "FAILED" else 0))
        assert res["rc"] == 0 and res["lock_bypassed"] == 0
    keys = delivered(handlers, len(states))
    got = calls(handlers)
    assert keys == [f"testc:{i}:{1_700_000_000 + i}:1700000100" for i in range(1, 7)]
    assert [c["state"] for c in got] == states
    first, failed = got[0], got[1]
    assert first["job_id"] == 1 and first["name"] == "j1" and first["user_name"] == "alice"
    assert first["account"] == "phys" and first["partition"] == "debug"
    assert first["cluster"] == "testc" and first["event"] == "end"
    assert first["start_time"] == 1_700_000_100 and first["end_time"] == 1_700_000_160
    assert first["elapsed"] == 60 and first["cpus"] == 2 and first["nodes"] == "node1"
    assert first["tres_alloc"] == "cpu=2,mem=100M,node=1"
    assert first["time_limit"] is None and first["array_task_id"] is None
    assert first["exit_code"] == [0, 0] and failed["exit_code"] == [2, 0]
    # everything acknowledged: the ack offset is the spool's end
    spool = tmp_path / "state" / "jobcomp_python"
    size = (spool / "records").stat().st_size
    wait_for(lambda: int((spool / "acked").read_text()) == size, timeout=10,
             what="the ack offset at the spool's end")


def test_a_raising_handler_keeps_its_record_and_the_order(make_host, handlers, tmp_path):
    # record 2 raises on its first two attempts: it is retried (with
    # backoff), and record 3 only comes after it
    (handlers.out / "end.py").write_text(
        "if job.job_id == 2 and R.__dict__.setdefault('fails', [0])[0] < 2:\n"
        "    R.fails[0] += 1\n"
        "    raise RuntimeError('ledger down')\n")
    h = start(make_host, handlers, tmp_path)
    for i in (1, 2, 3):
        assert h.jc_end(**job(i))["rc"] == 0
    delivered(handlers, 3)
    wait_for(lambda: [c["job_id"] for c in calls(handlers)] == [1, 2, 2, 2, 3], timeout=30,
             what="2 failed attempts, then 2 and 3 in order")
    log = h.log()
    assert "RuntimeError: ledger down" in log
    assert "delivery of record testc:2:1700000002:1700000100 failed (attempt 2" in log
    assert "a record held back by 2 failed attempts is delivered" in log


def test_a_hung_handler_never_holds_the_lock_and_is_retried(make_host, handlers, tmp_path):
    # job_end hangs while out/hang exists (timeout=1): records keep coming
    # at once, nothing is lost, and all arrive once it is gone
    (handlers.out / "hang").write_text("")
    (handlers.out / "end.py").write_text(
        "import os, time\n"
        "while os.path.exists(OUT + '/hang'):\n"
        "    time.sleep(0.05)\n")
    h = start(make_host, handlers, tmp_path, extra=["timeout=1"])
    t0 = time.monotonic()
    for i in range(1, 6):
        res = h.jc_end(**job(i))
        assert res["rc"] == 0
        assert res["us"] < 500_000, res     # an append and an fdatasync
    assert time.monotonic() - t0 < 10
    wait_for(lambda: "did not return within its time limit" in h.log(), timeout=30,
             what="a delivery timed out")
    os.unlink(handlers.out / "hang")
    delivered(handlers, 5, timeout=60)
    firsts = list(dict.fromkeys(c["job_id"] for c in calls(handlers)))
    assert firsts == [1, 2, 3, 4, 5]


def test_kill_9_with_records_undelivered_loses_none(make_host, handlers, tmp_path):
    # the ledger is down (every call raises) while three jobs end; the
    # host is killed -9; a torn append at the spool's end (a crash inside
    # a hook, before it returned) is cut off; the next slurmctld delivers
    # all three
    (handlers.out / "end.py").write_text("raise ConnectionError('ledger down')\n")
    h = start(make_host, handlers, tmp_path)
    for i in (1, 2, 3):
        assert h.jc_end(**job(i, "FAILED"))["rc"] == 0
    # two attempts, both of the first record: nothing after it comes first
    wait_for(lambda: len(calls(handlers)) >= 2, timeout=30, what="two failed attempts")
    h._kill()
    assert {c["job_id"] for c in calls(handlers)} == {1}
    records = tmp_path / "state" / "jobcomp_python" / "records"
    with open(records, "ab") as f:
        f.write(b'{"v":1,"event":"end","key":"torn')
    os.unlink(handlers.out / "end.py")
    before = len(calls(handlers))
    h2 = start(make_host, handlers, tmp_path, write_handler=False)
    wait_for(lambda: len({c["key"] for c in calls(handlers)[before:]}) == 3, timeout=30,
             what="the three records after the restart")
    assert [c["job_id"] for c in calls(handlers)[before:]] == [1, 2, 3]
    assert all(c["state"] == "FAILED" for c in calls(handlers)[before:])
    log = h2.log()
    assert "torn by a crash cut off" in log
    assert "bytes of records not yet delivered" in log


def test_reconfigure_keeps_the_spool_and_its_records(make_host, handlers, tmp_path):
    (handlers.out / "end.py").write_text("raise ConnectionError('ledger down')\n")
    h = start(make_host, handlers, tmp_path)
    assert h.jc_end(**job(1))["rc"] == 0
    wait_for(lambda: len(calls(handlers)) >= 2, timeout=30, what="two failed attempts")
    assert h.jc_reconfig()["rc"] == 0
    os.unlink(handlers.out / "end.py")
    assert h.jc_end(**job(2))["rc"] == 0
    delivered(handlers, 2)
    assert list(dict.fromkeys(c["job_id"] for c in calls(handlers))) == [1, 2]


def test_a_full_spool_drops_with_an_error_each_time_and_never_blocks(make_host, handlers,
                                                                     tmp_path):
    # spool_max=1 (MiB) and a hung handler: 300 KiB records fill it after
    # three; the fourth and fifth are dropped, each with an error
    (handlers.out / "hang").write_text("")
    (handlers.out / "end.py").write_text(
        "import os, time\n"
        "while os.path.exists(OUT + '/hang'):\n"
        "    time.sleep(0.05)\n")
    h = start(make_host, handlers, tmp_path, extra=["timeout=1", "spool_max=1"])
    big = "x" * (300 * 1024)
    rcs = [h.jc_end(**job(i, comment="c", name=big))["rc"] for i in range(1, 6)]
    assert rcs == [0, 0, 0, -1, -1]
    log = h.log()
    assert log.count("is dropped: the spool") == 2
    assert "(2 dropped since slurmctld started)" in log
    os.unlink(handlers.out / "hang")
    delivered(handlers, 3, timeout=60)


def test_the_spool_directory_comes_from_spool(make_host, handlers, tmp_path):
    spool = tmp_path / "elsewhere"
    h = start(make_host, handlers, tmp_path, extra=[f"spool={spool}"])
    assert h.jc_end(**job(7))["rc"] == 0
    delivered(handlers, 1)
    assert (spool / "records").stat().st_size > 0
    assert oct((spool).stat().st_mode & 0o777) == "0o700"
    assert not (tmp_path / "state" / "jobcomp_python").exists()


START_HANDLER = HANDLER + """
    def job_start(self, job):
        R.append("{out}/calls.jsonl", dataclasses.asdict(job))
"""


def test_job_start_from_25_05_and_only_when_the_handler_has_it(make_host, handlers, tmp_path):
    from tests.harness.hostdriver import HostError, slurm_at_least
    h = start(make_host, handlers, tmp_path)
    if not slurm_at_least(25, 5):
        # up to 24.11 Slurm has no record_job_start: the plugin exports none
        with pytest.raises(HostError, match="missing_symbol jobcomp_p_record_job_start"):
            h.jc_start(**job(1, job_state=1))
        return
    h.wait_booted()
    # Slurm calls record_job_start for every job: Sink has no job_start,
    # nothing is spooled for a start even with enable_job_start
    h.conf(job_comp_params="enable_job_start")
    assert h.jc_start(**dict(job(1), job_state=1))["rc"] == 0
    assert h.jc_end(**job(1))["rc"] == 0
    delivered(handlers, 1)
    assert [c["event"] for c in calls(handlers)] == ["end"]
    # a handler with job_start: only with JobCompParams=enable_job_start
    handlers.write("sink", START_HANDLER)
    h2 = start(make_host, handlers, tmp_path, write_handler=False,
               extra=[f"spool={tmp_path / 'spool2'}"])
    h2.wait_booted()
    assert h2.jc_start(**dict(job(3), job_state=1, end_time=0))["rc"] == 0
    h2.conf(job_comp_params="enable_job_start")
    assert h2.jc_start(**dict(job(2), job_state=1, end_time=0))["rc"] == 0
    assert h2.jc_end(**job(2))["rc"] == 0
    wait_for(lambda: len(calls(handlers)) >= 3, timeout=30, what="start and end of job 2")
    assert 3 not in [c["job_id"] for c in calls(handlers)]
    start_rec, end_rec = calls(handlers)[1:3]
    assert start_rec["event"] == "start" and start_rec["state"] == "RUNNING"
    assert start_rec["key"] == "testc:2:1700000002:1700000100:start"
    assert end_rec["event"] == "end" and end_rec["key"] == "testc:2:1700000002:1700000100"


def test_a_handler_that_cannot_load_keeps_the_records_until_fixed(make_host, handlers,
                                                                  tmp_path):
    handlers.write("sink", "def broken(:\n")
    h = start(make_host, handlers, tmp_path, write_handler=False)
    h.wait_booted()
    for i in (1, 2):
        assert h.jc_end(**job(i))["rc"] == 0
    wait_for(lambda: h.log().count("delivery of record testc:1:1700000001:1700000100 failed") >= 2,
             timeout=30, what="two failed attempts of the first record")
    assert "no usable handler" in h.log()
    handlers.write("sink", HANDLER)        # fixed: picked up within reload= (2 s)
    assert delivered(handlers, 2, timeout=60) == ["testc:1:1700000001:1700000100",
                                                  "testc:2:1700000002:1700000100"]


def test_two_slurmctld_processes_on_one_spool_lose_nothing(make_host, handlers, tmp_path):
    # a reconfigure from 23.11 (daemonized/systemd) runs the new slurmctld
    # while the old one still runs: the old one keeps delivering, the new
    # one appends at the real end and takes over once the old has exited
    (handlers.out / "end.py").write_text("raise ConnectionError('ledger down')\n")
    old = start(make_host, handlers, tmp_path)
    assert old.jc_end(**job(1))["rc"] == 0
    wait_for(lambda: len(calls(handlers)) >= 2, timeout=30, what="two failed attempts")
    new = start(make_host, handlers, tmp_path, write_handler=False)
    assert "this one takes over once it has exited" in new.log()
    # each appends after the other opened: neither overwrites the other
    assert old.jc_end(**job(2))["rc"] == 0
    assert new.jc_end(**job(3))["rc"] == 0
    os.unlink(handlers.out / "end.py")
    assert delivered(handlers, 2) == ["testc:1:1700000001:1700000100", "testc:2:1700000002:1700000100"]
    old._kill()
    wait_for(lambda: "this slurmctld delivers from it now" in new.log(), timeout=30,
             what="the new process taking over")
    assert delivered(handlers, 3) == ["testc:1:1700000001:1700000100", "testc:2:1700000002:1700000100",
                                      "testc:3:1700000003:1700000100"]
    records = (tmp_path / "state" / "jobcomp_python" / "records").read_bytes()
    assert records.count(b"\n") == 3 and b"\0" not in records
