"""slurmpy_plugins.testing: the daemon's records and decisions outside the
daemon (no compiler, no Slurm).  Fidelity against real daemons is in
tests/integration/test_kit_fidelity.py."""
from __future__ import annotations

import json
import sys
import threading
import time

import pytest

from slurmpy_plugins import (JobDesc, JobSubmitHandler, PrEpHandler, Reject,
                             SiteFactorHandler)
from slurmpy_plugins import testing as kit


from .conftest import REPO, UID

# what the user sees when a handler raises (dispatch_job_submit.c _answer())
GENERIC = ("job_submit/python: request refused: the site's job submission policy failed "
           "(an administrator can find the error in slurmctld's log)")

FIX = REPO / "tests" / "fixtures" / "slurm_json"


def _c_fields(ctype: str) -> set[str]:
    return {n for n, _ in kit.ffi.typeof(ctype).fields}


def test_records_have_every_field_of_the_header():
    header = (REPO / "csrc" / "spm_types.h").read_text()
    assert kit._abi.HEADER == header
    job = kit.make_job(job_id=1)
    want = {kit._records._RENAMED.get(n, n) for n in _c_fields("spm_job_t")} \
        - kit._records._INTERNAL_FIELDS
    assert want <= set(job.fields())
    assert set(kit.make_job_desc().fields()) == \
        {kit._jobdesc._RENAMED.get(n, n) for n in _c_fields("spm_jobdesc_t")} - kit._jobdesc._INTERNAL


def test_typos_raise_attribute_error_like_the_daemon():
    with pytest.raises(AttributeError, match="did you mean 'account'"):
        kit.make_job(acount="x")
    with pytest.raises(AttributeError):
        kit.make_job().acount
    with pytest.raises(AttributeError, match="did you mean 'partition'"):
        kit.make_job_desc(partiton="x")
    d = kit.make_job_desc()
    with pytest.raises(AttributeError, match="did you mean 'partition'"):
        d.partiton = "gpu"
    with pytest.raises(AttributeError, match="read-only"):
        d.user_id = 5


def test_types_and_sentinels():
    d = kit.make_job_desc(bare=True)
    assert all(v is None for k, v in d.as_dict().items() if k not in ("environment", "spank_env", "argv"))
    with pytest.raises(TypeError, match="job.time_limit must be an int"):
        kit.make_job_desc(time_limit="10")
    with pytest.raises(ValueError, match="job.time_limit=4294967294 is out of range"):
        kit.make_job_desc(time_limit=kit.lib.SPM_NO_VAL)
    with pytest.raises(TypeError, match="job.requeue must be an int"):
        kit.make_job(requeue=True)
    with pytest.raises(ValueError, match="does not fit"):
        kit.make_job(job_id=-1)
    j = kit.make_job(job_id=3, nice=-5, spank_env={"A": "1"}, state="RUNNING")
    assert (j.nice, j.spank_env, j.state, j.account) == (-5, {"A": "1"}, "RUNNING", None)
    e = kit.make_env(job_id=3, gres_env={"CUDA_VISIBLE_DEVICES": "0"})
    assert e.gres_env == {"CUDA_VISIBLE_DEVICES": "0"} and e.spank_env == {}
    p = kit.make_partition("gpu", default=True, max_time=60)
    assert (p.name, p.default, p.max_time, p.max_nodes, p.default_time) == ("gpu", True, 60, None, None)


class Prep(PrEpHandler):
    def prolog(self, env):
        print("checking", env.job_id)
        raise OSError("disk full")

    def epilog(self, env):
        time.sleep(2)

    def prolog_slurmctld(self, job):
        if job.comment == "bad":
            raise RuntimeError("refused")

    def epilog_slurmctld(self, job):
        return 1


def test_prep_outcomes():
    out = kit.run_prep(Prep, "prolog", kit.make_env(job_id=4))
    assert (out.ok, out.action, out.drain_reason) == (False, "drain",
                                                      "prep/python: OSError: disk full")
    assert out.log[0] == "prep/python: checking 4"
    assert out.log[1].startswith("error: prep/python: prolog for JobId=4 failed at ")
    assert out.log[1].endswith("OSError: disk full")
    out = kit.run_prep(Prep, "epilog", kit.make_env(job_id=5), timeout=0.2)
    assert (out.timed_out, out.action, out.drain_reason) == (
        True, "drain", "prep/python: epilog timed out after 200 ms")
    assert out.log[-1] == ("error: prep/python: epilog for JobId=5 timed out: the handler "
                           "exceeded its time limit of 200 ms")
    bad = dict(comment="bad", batch_flag=1)
    assert kit.run_prep(Prep, "prolog_slurmctld", kit.make_job(requeue=1, **bad)).action == "requeue"
    out = kit.run_prep(Prep, "prolog_slurmctld", kit.make_job(requeue=0, **bad))
    assert (out.action, out.job_state) == ("cancel", "CANCELLED")
    assert kit.run_prep(Prep, "prolog_slurmctld", kit.make_job()).action == "success"
    out = kit.run_prep(Prep, "epilog_slurmctld", kit.make_job(job_id=6))
    assert out.action == "logged"
    assert "epilog_slurmctld() returned 1 (int); a hook returns None to succeed" in out.log[0]
    with pytest.raises(TypeError):
        kit.run_prep(Prep, "prolog", kit.make_job())
    with pytest.raises(ValueError, match="did you mean 'prolog'"):
        kit.run_prep(Prep, "prolg", kit.make_env())


class Factor(SiteFactorHandler):
    def set(self, job):
        return {"big": 2**40, "low": -2**40, "str": "5"}.get(job.account, 17)

    def update(self, jobs):
        return {j.job_id: j.job_id * 10 for j in jobs} | {999: 1}


def test_site_factor_outcomes():
    out = kit.run_set(Factor, kit.make_job(job_id=1, account="big"))
    assert (out.factor, out.site_factor) == (2**31 - 1, 2**32 - 1)
    assert "site factor 1099511627776 is out of range" in out.log[0]
    out = kit.run_set(Factor, kit.make_job(job_id=1, account="low"))
    assert (out.factor, out.site_factor) == (-2**31, 0)
    out = kit.run_set(Factor, kit.make_job(job_id=2, account="str", site_factor=3))
    assert (out.ok, out.changed, out.factor) == (False, False, 3)
    assert "set() returned '5' (str); expected an int or None; factor left unchanged" in out.log[0]
    assert kit.run_set(Factor, kit.make_job(job_id=2)).site_factor == 17 + kit.NICE_OFFSET
    jobs = [kit.make_job(job_id=i, state=s) for i, s in ((1, "PENDING"), (2, "RUNNING"))]
    out = kit.run_update(Factor, jobs)
    # 3 answers for 2 jobs: refused as the daemon does
    assert not out.ok and "returned 3 factors for 2 pending jobs" in out.log[0]

    class Upd(SiteFactorHandler):
        def update(self, jobs):
            return {j.job_id: 5 for j in jobs}
    out = kit.run_update(Upd, jobs)
    assert out.factors == {1: 5, 2: 0} and out.ignored == [2]
    assert "update() returned factors for 1 job(s) that are unknown or no longer pending" in out.log[0]


class Policy(JobSubmitHandler):
    def submit(self, job, submit_uid):
        if job.name == "crash":
            {}["x"]
        if job.name == "no":
            self.log_user("first")
            raise Reject("not this one")
        job.min_mem_per_cpu = 100
        job.time_limit = min(job.time_limit or 30, self.partitions["gpu"].max_time)

    def modify(self, job, current, submit_uid):
        if job.time_limit is not None and job.time_limit > 60:
            raise Reject(f"JobId={current.job_id}: at most 60 minutes")


class KeepsPartitions(JobSubmitHandler):
    seen: list = []

    def submit(self, job, submit_uid):
        first = self.partitions
        assert self.partitions is first          # built once per call
        self.seen.append(first)


def test_partitions_only_during_a_call_and_valid_when_kept():
    h = KeepsPartitions()
    with pytest.raises(RuntimeError, match="during a submit"):
        h.partitions
    with pytest.raises(RuntimeError, match="during a submit"):
        h.log_user("x")
    parts = [kit.make_partition("gpu", max_time=20), kit.make_partition("cpu", default=True)]
    out = kit.run_submit(h, kit.make_job_desc(name="a"), partitions=parts)
    assert out.accepted
    with pytest.raises(RuntimeError, match="during a submit"):
        h.partitions
    kept = h.seen[-1]           # a dict the handler kept: still readable
    assert sorted(kept) == ["cpu", "gpu"]
    assert kept["gpu"].max_time == 20 and kept["cpu"].default


def test_job_submit_outcomes():
    parts = [kit.make_partition("gpu", max_time=20)]
    desc = kit.make_job_desc(name="a", min_mem_per_node=2000)
    out = kit.run_submit(Policy, desc, partitions=parts)
    assert out.accepted and out.message is None
    assert out.changes == {"min_mem_per_cpu": 100, "min_mem_per_node": None, "time_limit": 20}
    assert desc.min_mem_per_node == 2000 and desc.time_limit is None
    out = kit.run_submit(Policy, kit.make_job_desc(name="no"), partitions=parts)
    assert (out.accepted, out.message, out.changes) == (False, "first\nnot this one", {})
    out = kit.run_submit(Policy, kit.make_job_desc(name="crash"), partitions=parts)
    assert not out.accepted and out.message == GENERIC
    assert any("KeyError" in line for line in out.log)
    out = kit.run_modify(Policy, kit.make_job_desc(bare=True, time_limit=90),
                         kit.make_job(job_id=8))
    assert out.message == "JobId=8: at most 60 minutes"


@pytest.mark.parametrize("release", ["22.05.8", "24.11.5"])
@pytest.mark.parametrize("name", ["squeue.json", "scontrol_show_job.json"])
def test_jobs_from_real_json(release, name):
    path = FIX / release / name
    if not path.exists():
        assert (release, name) == ("22.05.8", "scontrol_show_job.json")   # no --json before 23.02
        return
    jobs = {j.name: j for j in kit.jobs_from_json(path)}
    run, held, later = jobs["kit-running"], jobs["kit-held"], jobs["kit-later"]
    assert (run.state, held.state, later.state) == ("RUNNING", "PENDING", "PENDING")
    assert run.comment == "sample run" and run.num_cpus == 2 and run.time_limit == 10
    assert held.nice == 50 and held.pn_min_memory == 100 and held.time_limit == 5
    assert later.requeue == 0 and held.requeue == 1 and run.batch_flag == 1
    assert held.user_name == "root" and held.partition == "debug"
    assert held.account is None          # "" in JSON is Slurm's NULL
    assert [j.name for j in kit.jobs_from_json(path, states=("RUNNING",))] == ["kit-running"]
    with pytest.raises(kit.JSONError, match="no \"jobs\" list"):
        kit.jobs_from_json({"meta": {}})


def test_update_access_paths_give_the_same_factors_in_the_kit():
    """The kit's batch (rows given, no lazy part) serves the same access
    paths as the daemon's: Job views, declared rows, columns, categories,
    answers by id or by position."""
    import array

    def f(acct, cpus, t):
        return (len(acct or "") * 7 + cpus * 3 - t % 11) % 1000

    class Views(SiteFactorHandler):
        def update(self, jobs):
            return {j.job_id: f(j.account, j.num_cpus, j.submit_time) for j in jobs}

    class Rows(SiteFactorHandler):
        fields = ("account", "num_cpus", "submit_time")

        def update(self, jobs):
            return [f(j.account, j.num_cpus, j.submit_time) for j in jobs]

    class Columns(SiteFactorHandler):
        def update(self, jobs):
            codes, values = jobs.categories("account")
            cpus, t = jobs.column("num_cpus"), jobs.column("submit_time")
            return array.array("q", (f(values[c], n, s) for c, n, s in zip(codes, cpus, t)))

    jobs = [kit.make_job(job_id=10 + i, state="PENDING", account=acct, num_cpus=i + 1,
                         submit_time=1_700_000_000 + 13 * i)
            for i, acct in enumerate(["phys", None, "chem", "phys", "bio"])]
    results = [kit.run_update(h, jobs) for h in (Views, Rows, Columns)]
    assert all(r.ok for r in results), [r.log for r in results]
    expected = {j.job_id: f(j.account, j.num_cpus, j.submit_time) for j in jobs}
    assert [r.factors for r in results] == [expected] * 3


# -- the kit against the daemon: fields, timeouts, on_failure, log capture ------

def test_reading_an_undeclared_field_raises_in_the_kit_as_in_slurmctld():
    class Declared(SiteFactorHandler):
        fields = ("account",)

        def update(self, jobs):
            return [j.num_cpus for j in jobs]

    out = kit.run_update(Declared, [kit.make_job(job_id=1, state="PENDING", num_cpus=4)])
    assert not out.ok and out.factors == {1: 0}
    assert ("AttributeError: JobId=1: 'num_cpus' is not among the fields the handler declared "
            "(job_id, account): add it to the handler's `fields`") in out.log[0]


def test_kit_timeout_and_on_failure_values_are_checked_as_the_daemon_checks_them():
    with pytest.raises(ValueError, match="timeout='0' must be a positive number of seconds"):
        kit.run_submit(Policy, kit.make_job_desc(), timeout=0)
    with pytest.raises(ValueError, match="at most 86400 seconds"):
        kit.run_set(Factor, kit.make_job(), timeout=86401)
    with pytest.raises(ValueError, match="on_failure='maybe' must be reject or accept"):
        kit.run_modify(Policy, kit.make_job_desc(bare=True), kit.make_job(),
                       on_failure="maybe")


def test_on_failure_accept_in_the_kit():
    class Crash(JobSubmitHandler):
        def submit(self, job, uid):
            job.comment = "changed"
            self.log_user("looked")
            {}["ledger"]

    out = kit.run_submit(Crash, kit.make_job_desc(comment="orig"), on_failure="accept")
    assert (out.accepted, out.changes, out.message) == (True, {}, "looked")
    assert out.log[-1] == (f"error: job_submit/python: submit() for a job of uid {UID} failed "
                           "(KeyError: 'ledger'); on_failure=accept: the request is accepted "
                           "unchanged")
    assert not kit.run_submit(Crash, kit.make_job_desc()).accepted      # reject: the default


class SixSeconds(JobSubmitHandler):
    release = threading.Event()

    def submit(self, job, uid):
        self.release.wait(6)


def test_kit_submit_has_the_daemons_default_timeout():
    """job_submit/python's default timeout is 5 s: a 6 s submit() is refused
    by slurmctld, and so by the kit (which has no timeout= given)."""
    try:
        out = kit.run_submit(SixSeconds, kit.make_job_desc())
    finally:
        SixSeconds.release.set()
    assert not out.accepted
    assert out.message == ("job_submit/python: request refused: the site's job submission "
                           "policy failed (the handler did not answer within its time limit "
                           f"of {kit.lib.SPM_JS_DEFAULT_TIMEOUT_MS} ms)")
    assert kit.lib.SPM_JS_DEFAULT_TIMEOUT_MS == 5000


class Stuck(PrEpHandler):
    release = threading.Event()
    threads: list = []

    def prolog(self, env):
        Stuck.threads.append(threading.current_thread())
        Stuck.release.wait(60)          # blocked: past its timeout

    def epilog(self, env):
        import logging
        logging.getLogger("h").info("while the timed-out call still runs")
        Stuck.release.set()
        Stuck.threads[0].join(60)       # it has returned now
        assert not Stuck.threads[0].is_alive()
        print("printed after it returned")
        logging.getLogger("h").info("logged after it returned")


def test_a_timed_out_call_leaves_the_next_calls_log_capture_alone(capsys):
    import logging
    # calls of earlier tests that timed out may still run (test_prep_outcomes'
    # 2 s epilog): wait for them, so that "before" has no kit capture in it
    for t in threading.enumerate():
        if t.name.startswith("slurmpy-kit-"):
            t.join(60)
            assert not t.is_alive(), t
    root = logging.getLogger()
    before = (root.level, list(root.handlers), sys.stdout, sys.stderr)
    out = kit.run_prep(Stuck, "prolog", kit.make_env(job_id=1), timeout=0.2)
    assert out.timed_out
    out = kit.run_prep(Stuck, "epilog", kit.make_env(job_id=2))
    assert out.ok, out.log
    assert out.log == ["prep/python: h: while the timed-out call still runs",
                       "prep/python: printed after it returned",
                       "prep/python: h: logged after it returned"]
    assert "printed after" not in capsys.readouterr().out
    assert (root.level, list(root.handlers), sys.stdout, sys.stderr) == before


class Spin(PrEpHandler):
    threads: list = []

    def prolog(self, env):
        Spin.threads.append(threading.current_thread())
        end = time.monotonic() + 60
        while time.monotonic() < end:     # pure Python, past its timeout
            pass


def test_kit_interrupts_a_timed_out_handler_with_timeout_error_as_the_daemon_does():
    out = kit.run_prep(Spin, "prolog", kit.make_env(job_id=1), timeout=0.2)
    assert out.timed_out and out.action == "drain"
    # a generous deadline that only catches a thread left running (60 s)
    Spin.threads[0].join(30)
    assert not Spin.threads[0].is_alive()
