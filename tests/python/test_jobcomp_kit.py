"""jobcomp/python without a cluster: the kit (run_job_end, run_job_start,
make_completed_job), jobcomp_python.conf's keys, the spool record as
Python reads it, and `slurmpy-plugins check` (its message is the line the
daemon logs: the real plugin in the C host is the oracle)."""
from __future__ import annotations

import json

import pytest

from slurmpy_plugins import CompletedJob, ConfigError, JobCompHandler, _comprecord, _config
from slurmpy_plugins.testing import JobCompOutcome, make_completed_job, run_job_end, run_job_start

from .test_check import run_check, slurm_conf


class Ledger(JobCompHandler):
    def __init__(self) -> None:
        self.seen: list[CompletedJob] = []

    def job_end(self, job: CompletedJob) -> None:
        if job.state == "FAILED" and job.account == "down":
            raise ConnectionError("ledger down")
        self.seen.append(job)


def test_run_job_end_delivers_and_a_raise_keeps_the_record():
    h = Ledger()
    out = run_job_end(h, make_completed_job(job_id=5, state="TIMEOUT", account="phys"))
    assert isinstance(out, JobCompOutcome)
    assert out.delivered and not out.timed_out and out.retry_in is None
    assert [j.job_id for j in h.seen] == [5] and h.seen[0].state == "TIMEOUT"
    assert h.seen[0].key == "cluster:5:1700000000:1700000010" and h.seen[0].elapsed == 60
    out = run_job_end(h, make_completed_job(job_id=6, state="FAILED", account="down"))
    assert not out.delivered and not out.timed_out and out.retry_in == 0.25
    text = "\n".join(out.log)
    assert "ConnectionError: ledger down" in text
    assert "delivery of record cluster:6:1700000000:1700000010 failed (attempt 1" in text
    assert "kept and retried" in text


def test_run_job_end_past_its_timeout_is_not_delivered():
    class Hang(JobCompHandler):
        def job_end(self, job: CompletedJob) -> None:
            while True:
                pass

    out = run_job_end(Hang, make_completed_job(), timeout=0.3)
    assert not out.delivered and out.timed_out
    assert "did not return within its time limit of 300 ms" in "\n".join(out.log)


def test_run_job_start_calls_job_start_with_a_start_key():
    got = []

    class Starts(JobCompHandler):
        def job_start(self, job: CompletedJob) -> None:
            got.append(job)

    assert run_job_start(Starts, make_completed_job(job_id=9, state="RUNNING",
                                                    event="start")).delivered
    assert got[0].event == "start" and got[0].key.endswith(":start")


def test_make_completed_job_refuses_unknown_fields_and_states():
    with pytest.raises(TypeError, match="no field 'acount'.*account"):
        make_completed_job(acount="x")
    with pytest.raises(ValueError, match="unknown job state 'COMPLETE'"):
        make_completed_job(state="COMPLETE")


def test_a_spool_line_reads_as_the_record():
    line = json.dumps(dict(
        v=1, event="end", key="c:7:100", cluster="c", job_id=7, array_job_id=0,
        array_task_id=0xFFFFFFFE, het_job_id=0, het_job_offset=0xFFFFFFFE, name="n",
        user_id=5, user_name="u", group_id=5, account="a", partition="p", qos="normal",
        wckey=None, reservation=None, state="FAILED", exit_code=2 << 8, derived_ec=9,
        submit_time=100, eligible_time=100, start_time=110, end_time=200, suspended=30,
        time_limit=0xFFFFFFFF, requeues=1, nodes="n[1-2]", node_count=2, cpus=8,
        tres_alloc="cpu=8,node=2", tres_req=None, work_dir="/w"))
    j = _comprecord.parse(line)
    assert j.exit_code == (2, 0) and j.derived_exit_code == (0, 9) and j.exit_status == 2
    assert j.elapsed == 90 and j.suspended == 30 and j.time_limit is None and j.array_task_id is None
    assert j.het_job_id is None and j.requeues == 1 and j.nodes == "n[1-2]"
    with pytest.raises(_comprecord.RecordError):
        _comprecord.parse('{"v":1,"event":"end"}')
    with pytest.raises(_comprecord.RecordError):
        _comprecord.parse("not json")


@pytest.mark.parametrize("line, message", [
    ("spool=relative/dir", "spool='relative/dir' must be an absolute directory"),
    ("spool_max=0", "spool_max='0' must be a number of MiB"),
    ("spool_max=lots", "spool_max='lots' must be a number of MiB"),
    ("workers=2", "unknown key 'workers'"),
    ("on_failure=accept", "unknown key 'on_failure'"),
])
def test_jobcomp_conf_keys_are_checked(line, message):
    with pytest.raises(ConfigError, match=message):
        _config.parse_file("/etc/slurm/jobcomp_python.conf", f"handler=m:C\n{line}\n",
                           conf_path="/etc/slurm/slurm.conf", keys=_config.JC_KEYS)
    cfg = _config.parse_file("/x/jobcomp_python.conf", "handler=m:C\nspool=/var/spool/jc\n"
                             "spool_max=64\n", conf_path="/x/slurm.conf", keys=_config.JC_KEYS)
    assert cfg.spool == "/var/spool/jc" and cfg.spool_max == 64


def test_check_lists_the_jobcomp_hooks_and_its_trap(handlers, tmp_path):
    handlers.write("ledger", "from slurmpy_plugins import JobCompHandler\n"
                             "class Ledger(JobCompHandler):\n"
                             "    def job_end(self, job): pass\n"
                             "    def job_start(self, job): pass\n")
    conf = slurm_conf(tmp_path, ["JobCompType=jobcomp/python"])
    (tmp_path / "jobcomp_python.conf").write_text(
        f"handler=ledger:Ledger\npath={handlers.path}\nspool=/var/spool/jc\n")
    cp = run_check(str(conf), "--json")
    assert cp.returncode == 0, cp
    out = json.loads(cp.stdout)
    (p,) = out["plugins"]
    assert p["plugin"] == "jobcomp/python" and list(p["hooks"]) == ["job_end", "job_start"]
    assert "job.key" in p["hooks"]["job_end"]
    assert any("JobCompParams=enable_job_start" in t for t in out["traps"])
