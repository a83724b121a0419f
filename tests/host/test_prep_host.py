"""prep/python (build/plugins/prep_python.so) driven by the C test host.

Handlers write what they saw into JSON files (conftest.HandlerDir.out) and
the tests compare that with what the host passed in; callbacks, return
codes and threads are what the host observed.  Every host is closed with
a check that the plugin never would have deadlocked slurmctld and never
called back without an outstanding async call.
"""
from __future__ import annotations

import os
import re
import sys
import time

import pytest

from .conftest import (ENV_FIELDS, HOST_NODE_NAME, JOB_FIELDS, NICE_OFFSET, WAIT_FAILED,
                       WAIT_KILLED, compare_record, expected_job,
                       expected_jobenv, wait_for)
from tests.harness import hostdriver  # noqa: E402
from tests.harness.hostdriver import INFINITE, NO_VAL

CTLD_HOOKS = ("prolog_slurmctld", "epilog_slurmctld")
SLURMD_HOOKS = ("prolog", "epilog")
ALL_HOOKS = CTLD_HOOKS + SLURMD_HOOKS

# A handler that records every call: out/<hook>.<job_id>.json holds the
# record, out/calls.jsonl one line per call.
RECORDING = """\
import os, threading
import spmtest_rec as R
from slurmpy_plugins import PrEpHandler

VERSION = "v1"

class H(PrEpHandler):
    def _save(self, hook, rec):
        d = R.plain(rec)
        d["_type"] = type(rec).__name__
        d["_tid"] = threading.get_native_id()
        d["_version"] = VERSION
        R.dump("{out}/%s.%d.json" % (hook, rec.job_id), d)
        R.append("{out}/calls.jsonl", [hook, rec.job_id, VERSION])

    def prolog_slurmctld(self, job):
        self._save("prolog_slurmctld", job)

    def epilog_slurmctld(self, job):
        self._save("epilog_slurmctld", job)

    def prolog(self, env):
        self._save("prolog", env)

    def epilog(self, env):
        self._save("epilog", env)
"""

JOB_RUNNING = 1
JOB_CONFIGURING = 1 << 14
JOB_COMPLETING = 1 << 15
JOB_REQUEUE = 1 << 10

# Every field the snapshot copies, with awkward values: non-ASCII, invalid
# UTF-8, empty and NULL strings, and the extremes of each integer type.
FULL_JOB = dict(
    job_id=4242, array_job_id=4240, array_task_id=2,
    het_job_id=0xFFFFFFFF, het_job_offset=NO_VAL, user_id=0,
    group_id=0xFFFFFFFF,
    job_state=JOB_RUNNING | JOB_CONFIGURING | JOB_COMPLETING | JOB_REQUEUE,
    state_reason=17, exit_code=2 << 8, derived_ec=0xFFFFFFFF,
    priority=0xFFFFFFFF, time_limit=INFINITE, time_min=1, node_cnt=3,
    total_cpus=96, min_nodes=2, max_nodes=4, min_cpus=8,
    restart_cnt=0xFFFF, qos_id=7, assoc_id=0xFFFFFFFF, resv_id=1,
    batch_flag=0xFFFF, requeue=1, nice=NICE_OFFSET - 10,
    site_factor=0xFFFFFFFF, pn_min_memory=2**64 - 1, bit_flags=2**64 - 1,
    submit_time=1700000000, begin_time=-1, start_time=-(2**63),
    end_time=2**63 - 1, deadline=0,
    account="physics-ü", admin_comment=b"bad \xff\xfe utf8 \xc3(",
    alloc_node="login1", batch_host="n1", burst_buffer="#BB create",
    comment="", licenses="matlab:2", mcs_label=None, name="ジョブ 🚀\ttab",
    nodes="n[1-3]", partition="batch", resv_name="", state_desc="\n",
    system_comment="a" * 5000, tres_alloc_str="cpu=96,mem=1G",
    tres_req_str="cpu=8", tres_per_job=None, tres_per_node="gres:gpu:2",
    tres_per_task="cpu:2", user_name="alice", wckey="", features="a&b",
    std_err=None, std_in="/dev/null", std_out="/tmp/o-%j.out",
    work_dir="/home/ü", qos="normal",
    spank_job_env=["A=1", "UNI=é", b"BAD=\xff\xfe", "NOEQ", "=lead",
                   "DUP=1", "DUP=2", "EQ=a=b", "EMPTY="],
)

# Nothing given: NULL strings, NULL spank env, a user_id without a name.
BARE_JOB = dict(job_id=1, user_id=4000000000)

FULL_ENV = dict(
    jobid=0xFFFFFFFF, step_id=0xFFFFFFFE, uid=0, gid=4294967294,
    het_job_id=NO_VAL, exit_code=0xFFFFFFFF, derived_ec=1,
    user_name="bob-ß", partition=b"\xff\xfe", node_list="", node_aliases=None,
    work_dir="/w/" + "d" * 4000,
    spank_job_env=["X=1", "Y=é", b"Z=\x80", "NOEQ"],
    gres_job_env=["CUDA_VISIBLE_DEVICES=0,1", "GPU_DEVICE_ORDINAL=0,1"],
)


def start(make_host, handlers, daemon="slurmctld", source=RECORDING,
          module="hh", cls="H", callbacks=True, **keys):
    """A host with the given handler loaded (PrEpParameters with path=)."""
    handlers.write(module, source)
    h = make_host("prep", daemon)
    h.conf(prep_params=handlers.params("%s:%s" % (module, cls), **keys))
    h.load()
    h.wait_booted()
    if callbacks and daemon == "slurmctld":
        h.callbacks()
    return h


def cb_of(h, hook, job_id):
    return [c for c in h.callback_events
            if c["hook"] == hook and c["job_id"] == job_id]


def assert_async_ok(res):
    assert res["rc"] == 0 and res["async"] == 1, res


# ---------------------------------------------------------------------------
# success path and field round trip
# ---------------------------------------------------------------------------

def test_prolog_slurmctld_field_round_trip(make_host, handlers):
    h = start(make_host, handlers)
    assert_async_ok(h.prolog_slurmctld(**FULL_JOB))
    cb = h.wait_callbacks(1)[0]
    assert cb == dict(cb, hook="prolog_slurmctld", job_id=4242, rc=0,
                      timed_out=0, thread="other", deadlock=0, expected=1)
    seen = handlers.read("prolog_slurmctld.4242.json")
    assert seen["_type"] == "Job"
    # the handler ran on a worker, not on the thread that called the hook
    assert seen["_tid"] != h.ready["pid"]
    compare_record(seen, expected_job(FULL_JOB), JOB_FIELDS)
    # spot checks, so a broken oracle cannot hide a broken snapshot
    assert seen["name"] == "ジョブ 🚀\ttab"
    assert seen["admin_comment"] == "bad \udcff\udcfe utf8 \udcc3("
    assert seen["comment"] == "" and seen["mcs_label"] is None
    assert seen["state"] == "RUNNING"
    assert seen["state_flags"] == ["COMPLETING", "CONFIGURING", "REQUEUE"]
    assert seen["site_factor"] == 2**31 - 1 and seen["nice"] == -10
    assert seen["start_time"] == -(2**63) and seen["end_time"] == 2**63 - 1
    assert seen["spank_env"] == {"A": "1", "UNI": "é", "BAD": "\udcff\udcfe",
                                 "NOEQ": "", "": "lead", "DUP": "2",
                                 "EQ": "a=b", "EMPTY": ""}
    assert seen["system_comment"] == "a" * 5000


def test_epilog_slurmctld_bare_record(make_host, handlers):
    h = start(make_host, handlers)
    assert_async_ok(h.epilog_slurmctld(**BARE_JOB))
    # an explicitly empty (non-NULL) spank env array, and user_id 0
    assert_async_ok(h.epilog_slurmctld(job_id=2, spank_job_env=[],
                                       user_id=0, nice=0, site_factor=0))
    cbs = h.wait_callbacks(2)
    assert sorted((c["hook"], c["job_id"], c["rc"]) for c in cbs) == [
        ("epilog_slurmctld", 1, 0), ("epilog_slurmctld", 2, 0)]
    seen = handlers.read("epilog_slurmctld.1.json")
    compare_record(seen, expected_job(BARE_JOB), JOB_FIELDS)
    assert seen["user_name"] is None          # uid 4000000000 has no name
    assert seen["account"] is None and seen["spank_env"] == {}
    assert seen["state"] == "PENDING" and seen["state_flags"] == []
    assert seen["array_task_id"] == NO_VAL and seen["nice"] == 0
    seen = handlers.read("epilog_slurmctld.2.json")
    compare_record(seen, expected_job(dict(job_id=2, spank_job_env=[],
                                           user_id=0, nice=0,
                                           site_factor=0)), JOB_FIELDS)
    # user_name is NULL in the record: looked up from user_id
    assert seen["user_name"] == "root"
    assert seen["nice"] == -(2**31) and seen["site_factor"] == -(2**31)
    # an empty (non-NULL) user_name is what Slurm has: not looked up
    assert_async_ok(h.epilog_slurmctld(job_id=3, user_name="", user_id=0))
    h.wait_callbacks(3)
    assert handlers.read("epilog_slurmctld.3.json")["user_name"] == ""


def test_slurmd_prolog_epilog_field_round_trip(make_host, handlers):
    h = start(make_host, handlers, daemon="slurmd")
    res = h.prolog(**FULL_ENV)
    assert res["rc"] == 0 and res["job_id"] == 0xFFFFFFFF
    seen = handlers.read("prolog.%d.json" % 0xFFFFFFFF)
    assert seen["_type"] == "JobEnv" and seen["_tid"] != h.ready["pid"]
    compare_record(seen, expected_jobenv(FULL_ENV), ENV_FIELDS)
    assert seen["partition"] == "\udcff\udcfe" and seen["node_list"] == ""
    assert seen["spank_env"] == {"X": "1", "Y": "é", "Z": "\udc80",
                                 "NOEQ": ""}
    assert seen["gres_env"]["CUDA_VISIBLE_DEVICES"] == "0,1"

    bare = dict(jobid=5, spank_job_env=None, gres_job_env=[])
    assert h.epilog(**bare)["rc"] == 0
    seen = handlers.read("epilog.5.json")
    compare_record(seen, expected_jobenv(bare), ENV_FIELDS)
    # no user name given: None on 22.05 (job_env_t.user_name is NULL); from
    # 23.11 on the name of uid 0, looked up as prep/script does
    assert seen["user_name"] == ("root" if hostdriver.slurm_at_least(23, 11)
                                 else None)
    assert seen["gres_env"] == {}


def test_record_is_a_copy_that_outlives_the_slurm_record(make_host,
                                                         handlers):
    """The host frees (and scribbles 0x5a over) the job record as soon as
    the hook returns; a handler reading its Job later still sees the
    values, and a Job kept across calls stays valid."""
    # Ordering, not timing: each handler reads its Job only once the test
    # has seen the hook return (the host has freed the record by then).
    h = start(make_host, handlers, source="""\
        import os, time
        import spmtest_rec as R
        from slurmpy_plugins import PrEpHandler
        KEPT = []
        class H(PrEpHandler):
            def prolog_slurmctld(self, job):
                KEPT.append(job)
                gate = "{out}/go.%d" % job.job_id
                for _ in range(6000):           # at most 60 s: catches a hang only
                    if os.path.exists(gate):
                        break
                    time.sleep(0.01)
                R.dump("{out}/late.%d.json" % job.job_id,
                       [R.plain(j) for j in KEPT])
        """)
    j1 = dict(job_id=11, name="first", account="a" * 300,
              spank_job_env=["K=v" * 50])
    j2 = dict(job_id=12, name="second", comment="c")
    for n, j in enumerate((j1, j2), 1):
        assert_async_ok(h.prolog_slurmctld(**j))
        (handlers.out / ("go.%d" % j["job_id"])).touch()
        assert h.wait_callbacks(n, timeout=90)[-1]["rc"] == 0
    first, second = handlers.read("late.12.json")
    compare_record(first, expected_job(j1), JOB_FIELDS)
    compare_record(second, expected_job(j2), JOB_FIELDS)


# ---------------------------------------------------------------------------
# prep_p_required, per daemon
# ---------------------------------------------------------------------------

def _handler_with(hooks, via_base=False):
    body = "".join("    def %s(self, rec):\n        pass\n" % n for n in hooks)
    if via_base:       # overridden in an intermediate class
        return ("from slurmpy_plugins import PrEpHandler\n"
                "class Base(PrEpHandler):\n" + (body or "    pass\n") +
                "class H(Base):\n    pass\n")
    return ("from slurmpy_plugins import PrEpHandler\n"
            "class H(PrEpHandler):\n" + (body or "    pass\n"))


@pytest.mark.parametrize("daemon", ["slurmctld", "slurmd"])
@pytest.mark.parametrize("hooks,via_base", [
    ((), False),
    (("prolog_slurmctld",), False),
    (("epilog_slurmctld", "epilog"), False),
    (("prolog", "epilog"), True),
    (ALL_HOOKS, False),
])
def test_required_reflects_overrides_in_the_right_daemon(
        make_host, handlers, daemon, hooks, via_base):
    h = start(make_host, handlers, daemon=daemon,
              source=_handler_with(hooks, via_base))
    req = h.required()
    mine = CTLD_HOOKS if daemon == "slurmctld" else SLURMD_HOOKS
    want = {n: (n in hooks and n in mine) for n in ALL_HOOKS}
    want.update(register_callbacks=False, unset_mask=0)
    assert req == want
    assert "prep/python: loaded handler hh:H" in h.log()


def test_hook_not_overridden_is_not_called(make_host, handlers):
    h = start(make_host, handlers, source="""\
        import spmtest_rec as R
        from slurmpy_plugins import PrEpHandler
        class H(PrEpHandler):
            def prolog_slurmctld(self, job):
                R.append("{out}/calls.jsonl", ["prolog_slurmctld", job.job_id])
        """)
    # Slurm would not call it; if it does anyway the plugin must succeed
    # synchronously, with no callback.
    res = h.epilog_slurmctld(job_id=3)
    assert res["rc"] == 0 and res["async"] == 0
    assert_async_ok(h.prolog_slurmctld(job_id=4))
    h.wait_callbacks(1)
    # a callback for the synchronous epilog would be one without an
    # outstanding call: the host counts those (and make_host's teardown
    # fails on any that comes later), so no wait for "nothing more"
    assert h.stats()["unexpected"] == 0
    assert [(c["hook"], c["job_id"]) for c in h.callback_events] == [
        ("prolog_slurmctld", 4)]
    assert handlers.lines("calls.jsonl") == [["prolog_slurmctld", 4]]


def test_epilog_without_epilog_conf_warns(make_host, handlers):
    src = _handler_with(("epilog",))
    h = start(make_host, handlers, daemon="slurmd", source=src)
    assert h.required()["epilog"] is True
    assert "defines epilog(), but slurm.conf has no Epilog=" in h.log()
    h2 = make_host("prep", "slurmd")
    h2.conf(prep_params=handlers.params("hh:H"), epilog="/bin/true")
    h2.load()
    h2.wait_booted()
    assert h2.required()["epilog"] is True
    assert "no Epilog=" not in h2.log()


# ---------------------------------------------------------------------------
# fail closed: no handler, bad handler
# ---------------------------------------------------------------------------

GOOD = """\
from slurmpy_plugins import PrEpHandler
class H(PrEpHandler):
    def prolog_slurmctld(self, job):
        pass
class NotSub:
    def prolog_slurmctld(self, job):
        pass
class Ctor(PrEpHandler):
    def __init__(self):
        raise RuntimeError("no constructor today")
"""


def _case_no_params(hd):
    return None, ["PrEpParameters is not set: it needs handler=<module>:<Class>"]


def _case_empty_params(hd):
    return "  ", ["PrEpParameters is not set"]


def _case_unknown_key(hd):
    return hd.params("good:H", bogus=1), ["PrEpParameters: unknown key 'bogus'"]


def _case_bad_timeout(hd):
    return hd.params("good:H", timeout="-1"), [
        "PrEpParameters: timeout='-1' must be a positive number of seconds"]


def _case_timeout_too_large(hd):
    # the C side keeps milliseconds in a uint32: 1e10 s must not slip through
    return hd.params("good:H", timeout="1e10"), [
        "PrEpParameters: timeout='1e10' is out of range: it must be more than 0 "
        "and at most 86400 seconds"]


def _case_reload_too_large(hd):
    return hd.params("good:H", reload="86401"), [
        "PrEpParameters: reload='86401' is out of range: it must be from 0 (never) "
        "to 86400 seconds"]


def _case_syntax_error(hd):
    p = hd.write("syn", "from slurmpy_plugins import PrEpHandler\n\n"
                 "class H(PrEpHandler)\n    pass\n")
    return hd.params("syn:H"), ["%s:3: syntax error" % p]


def _case_nul_bytes(hd):
    # a crash while the file was written can leave it with zero-filled
    # blocks: Python 3.11's compile() raises ValueError there, 3.12+ a
    # SyntaxError; either way it is this handler's load error, with its file
    p = hd.write("nul", GOOD + "\0" * 4096)
    line = GOOD.count("\n") + 1
    return hd.params("nul:H"), [
        "%s:%d: syntax error: the file contains a NUL byte" % (p, line)]


def _case_import_error(hd):
    p = hd.write("imp", "import os\nimport no_such_module_xyz\n")
    return hd.params("imp:H"), [
        "%s:2: importing imp failed: ModuleNotFoundError: "
        "No module named 'no_such_module_xyz'" % p]


def _case_raise_at_import(hd):
    p = hd.write("rai", "x = 1\n\n\nraise SystemExit(3)\n")
    return hd.params("rai:H"), ["%s:4: importing rai failed: SystemExit: 3" % p]


def _case_missing_module(hd):
    return hd.params("missing:H"), [
        "module 'missing' not found in path %s" % hd.path]


def _case_missing_class(hd):
    p = hd.write("good", GOOD)
    return hd.params("good:Nope"), ["%s: module good has no class 'Nope'" % p]


def _case_not_subclass(hd):
    p = hd.write("good", GOOD)
    return hd.params("good:NotSub"), [
        "%s: good:NotSub is not a subclass of slurmpy_plugins.PrEpHandler" % p]


def _case_constructor_raises(hd):
    p = hd.write("good", GOOD)
    return hd.params("good:Ctor"), [
        "%s:10: good:Ctor() failed: RuntimeError: no constructor today" % p]


def _case_group_writable_file(hd):
    p = hd.write("good", GOOD, mode=0o664)
    return hd.params("good:H"), [
        "refusing handler file %s: writable by group or others (mode 0664); "
        "run chmod go-w %s" % (p, p)]


def _case_other_writable_dir(hd):
    hd.write("good", GOOD)
    os.chmod(hd.path, 0o757)
    return hd.params("good:H"), [
        "refusing handler directory %s: writable by group or others "
        "(mode 0757)" % hd.path]


def _case_foreign_owner(hd):
    p = hd.write("good", GOOD)
    os.chown(p, 4242, 4242)
    return hd.params("good:H"), [
        "refusing handler file %s: owned by uid 4242; it must be owned by "
        "root or SlurmUser" % p]


FAIL_CASES = {n[len("_case_"):]: f for n, f in list(globals().items())
              if n.startswith("_case_")}


@pytest.mark.parametrize("daemon", ["slurmctld", "slurmd"])
@pytest.mark.parametrize("case", sorted(FAIL_CASES))
def test_unusable_handler_fails_closed(make_host, handlers, case, daemon):
    params, fragments = FAIL_CASES[case](handlers)
    h = make_host("prep", daemon)
    if params is not None:
        h.conf(prep_params=params)
    h.load()
    # every hook of this daemon is required, so that Slurm calls it ...
    req = h.required()
    for n in ALL_HOOKS:
        assert req[n] is (n in (CTLD_HOOKS if daemon == "slurmctld"
                                else SLURMD_HOOKS)), (n, req)
    # ... and every call fails
    if daemon == "slurmctld":
        h.callbacks()
        assert_async_ok(h.prolog_slurmctld(job_id=31))
        assert_async_ok(h.epilog_slurmctld(job_id=32))
        cbs = h.wait_callbacks(2)
        assert sorted((c["hook"], c["job_id"], c["rc"], c["timed_out"],
                       c["thread"]) for c in cbs) == [
            ("epilog_slurmctld", 32, WAIT_FAILED, 0, "other"),
            ("prolog_slurmctld", 31, WAIT_FAILED, 0, "other")]
    else:
        assert h.prolog(jobid=31)["rc"] == -1
        assert h.epilog(jobid=32)["rc"] == -1
    log = h.log()
    assert "error: prep/python: handler not loaded: " in log
    for frag in fragments:
        assert frag in log, frag
    first = "prolog_slurmctld" if daemon == "slurmctld" else "prolog"
    assert ("prep/python: %s for JobId=31 failed: no usable handler (%s"
            % (first, fragments[0])) in log


def test_slurm_user_may_own_the_handler(make_host, handlers):
    p = handlers.write("hh", RECORDING)
    os.chown(p, 4242, 4242)
    h = make_host("prep")
    h.conf(prep_params=handlers.params("hh:H"), slurm_user_id=4242)
    h.load()
    h.callbacks()
    assert_async_ok(h.prolog_slurmctld(job_id=8))
    assert h.wait_callbacks(1)[0]["rc"] == 0
    assert "(uid 0, 4242)" not in h.log()


def test_broken_handler_recovers_once_fixed(make_host, handlers):
    handlers.write("hh", "import nope_not_here\n")
    h = make_host("prep")
    h.conf(prep_params=handlers.params("hh:H", reload="0.2"))
    h.load()
    h.callbacks()
    assert_async_ok(h.prolog_slurmctld(job_id=1))
    assert h.wait_callbacks(1)[0]["rc"] == WAIT_FAILED
    handlers.write("hh", RECORDING)
    # the reload check (every 0.2 s) loads it; the deadline only catches a hang
    wait_for(lambda: "prep/python: loaded handler hh:H" in h.log(), 30,
             what="the fixed handler to load")
    assert_async_ok(h.prolog_slurmctld(job_id=2))
    assert h.wait_callbacks(2)[-1]["rc"] == 0
    assert handlers.read("prolog_slurmctld.2.json")["job_id"] == 2


# ---------------------------------------------------------------------------
# hooks that raise or return something
# ---------------------------------------------------------------------------

RAISING = """\
import sys
from slurmpy_plugins import PrEpHandler

def helper(job_id):
    raise ValueError("boom %d" % job_id)

class H(PrEpHandler):
    def prolog_slurmctld(self, job):
        if job.job_id == 1:
            helper(job.job_id)
        if job.job_id == 2:
            sys.exit(7)
        if job.job_id == 3:
            raise KeyboardInterrupt("ctrl-c")

    def epilog_slurmctld(self, job):
        return job.job_id

    def prolog(self, env):
        helper(env.job_id)

    def epilog(self, env):
        return False
"""


def test_hook_exceptions_fail_with_traceback(make_host, handlers):
    h = start(make_host, handlers, source=RAISING)
    path = str(handlers.path / "hh.py")
    for job in (1, 2, 3, 4):
        assert_async_ok(h.prolog_slurmctld(job_id=job))
    cbs = {c["job_id"]: c for c in h.wait_callbacks(4)}
    assert {j: (c["rc"], c["timed_out"]) for j, c in cbs.items()} == {
        1: (WAIT_FAILED, 0), 2: (WAIT_FAILED, 0), 3: (WAIT_FAILED, 0),
        4: (0, 0)}
    log = h.log()
    assert ("error: prep/python: prolog_slurmctld for JobId=1 failed at "
            "%s:5: ValueError: boom 1" % path) in log
    assert "error: prep/python: Traceback (most recent call last):" in log
    assert ('prep/python:   File "%s", line 10, in prolog_slurmctld' % path
            ) in log
    assert 'prep/python:   File "%s", line 5, in helper' % path in log
    assert "prolog_slurmctld for JobId=2 failed at %s:12: SystemExit: 7" \
        % path in log
    assert "prolog_slurmctld for JobId=3 failed at %s:14: KeyboardInterrupt" \
        % path in log
    assert "prolog_slurmctld for JobId=4 failed" not in log


def test_hook_returning_a_value_fails(make_host, handlers):
    h = start(make_host, handlers, source=RAISING)
    path = str(handlers.path / "hh.py")
    assert_async_ok(h.epilog_slurmctld(job_id=42))
    cb = h.wait_callbacks(1)[0]
    assert (cb["rc"], cb["timed_out"]) == (WAIT_FAILED, 0)
    assert ("error: prep/python: epilog_slurmctld for JobId=42 failed: "
            "%s:16: epilog_slurmctld() returned 42 (int); a hook returns "
            "None to succeed and raises to fail" % path) in h.log()


def test_slurmd_hook_exception_and_return_value(make_host, handlers):
    h = start(make_host, handlers, daemon="slurmd", source=RAISING)
    path = str(handlers.path / "hh.py")
    assert h.prolog(jobid=9)["rc"] == -1
    assert h.epilog(jobid=9)["rc"] == -1
    log = h.log()
    assert "prolog for JobId=9 failed at %s:5: ValueError: boom 9" % path \
        in log
    assert 'File "%s", line 20, in prolog' % path in log
    assert ("epilog for JobId=9 failed: %s:22: epilog() returned False "
            "(bool)" % path) in log


# ---------------------------------------------------------------------------
# async: exactly once, from another thread, no deadlock
# ---------------------------------------------------------------------------

def test_async_calls_back_exactly_once_from_another_thread(make_host,
                                                           handlers):
    h = start(make_host, handlers, workers=4, source="""\
        import random, time
        import spmtest_rec as R
        from slurmpy_plugins import PrEpHandler
        class H(PrEpHandler):
            def _run(self, hook, job):
                time.sleep(random.random() * 0.02)
                R.append("{out}/calls.jsonl", [hook, job.job_id])
                if job.job_id % 5 == 0:
                    raise RuntimeError("job %d fails" % job.job_id)
            def prolog_slurmctld(self, job):
                self._run("prolog_slurmctld", job)
            def epilog_slurmctld(self, job):
                self._run("epilog_slurmctld", job)
        """)
    jobs = range(100, 140)
    for j in jobs:
        # some from another daemon thread, as slurmctld's RPC threads do
        assert_async_ok(h.prolog_slurmctld(job_id=j, _thread=j % 3 == 0))
        assert_async_ok(h.epilog_slurmctld(job_id=j, _thread=j % 4 == 0))
    h.wait_callbacks(2 * len(jobs), timeout=30)
    # every handler has returned (one line each), so every answer is given;
    # a second callback for a job would have no outstanding call: the host
    # counts it (stats below; make_host's teardown fails on a later one)
    wait_for(lambda: len(handlers.lines("calls.jsonl")) == 2 * len(jobs), 30,
             what="every handler to return")
    cbs = h.callback_events
    assert len(cbs) == 2 * len(jobs)
    got = sorted((c["hook"], c["job_id"]) for c in cbs)
    assert got == sorted((hk, j) for hk in CTLD_HOOKS for j in jobs)
    for c in cbs:
        assert c["thread"] == "other" and c["deadlock"] == 0, c
        assert c["expected"] == 1 and c["timed_out"] == 0, c
        assert c["rc"] == (WAIT_FAILED if c["job_id"] % 5 == 0 else 0), c
    st = h.stats()
    assert (st["pending"], st["deadlocks"], st["lock_deadlocks"],
            st["unexpected"]) == (0, 0, 0, 0)
    assert not h.deadlocks
    assert len(handlers.lines("calls.jsonl")) == 2 * len(jobs)


def test_async_hook_returns_before_the_handler_finishes(make_host,
                                                       handlers, tmp_path):
    # Ordering, not timing: the handler cannot finish until the test
    # releases it, which the test only does after the hook call returned.
    gate = tmp_path / "release"
    h = start(make_host, handlers, source=f"""\
        import os, time
        from slurmpy_plugins import PrEpHandler
        class H(PrEpHandler):
            def prolog_slurmctld(self, job):
                for _ in range(3000):
                    if os.path.exists({str(gate)!r}):
                        return
                    time.sleep(0.01)
                raise RuntimeError("never released")
        """)
    res = h.prolog_slurmctld(job_id=77)
    assert_async_ok(res)
    assert h.callback_events == []   # the handler is still waiting
    gate.touch()
    cb = h.wait_callbacks(1, timeout=60)[0]
    assert cb["rc"] == 0 and cb["thread"] == "other" and cb["expected"] == 1


def test_bench_many_async_calls(make_host, handlers):
    """A burst of 500 calls through the host's timed loop: every one is
    answered (the host counts callbacks and waits for all of them)."""
    h = start(make_host, handlers, source=_handler_with(CTLD_HOOKS))
    b = h.call_many("prolog_slurmctld", 500, timeout=60)
    assert b["async"] == 500 and b["callbacks"] == 500 and b["waited"] == 1
    st = h.stats()
    assert st["pending"] == 0 and st["unexpected"] == 0


# ---------------------------------------------------------------------------
# timeouts
# ---------------------------------------------------------------------------

HANGING = """\
import time
import spmtest_rec as R
from slurmpy_plugins import PrEpHandler

def hang(tag):
    R.append("{out}/calls.jsonl", ["start", tag])
    try:
        t0 = time.monotonic()
        while time.monotonic() - t0 < 20:
            time.sleep(0.02)
    except BaseException as e:
        R.append("{out}/calls.jsonl", ["interrupted", tag, type(e).__name__])
        raise

class H(PrEpHandler):
    def prolog_slurmctld(self, job):
        if job.job_id == 1:
            hang(job.job_id)
        R.append("{out}/calls.jsonl", ["ran", job.job_id])

    def prolog(self, env):
        if env.job_id == 1:
            hang(env.job_id)
        R.append("{out}/calls.jsonl", ["ran", env.job_id])
"""


def test_async_timeout_kills_and_pool_keeps_working(make_host, handlers):
    h = start(make_host, handlers, source=HANGING, timeout="0.5",
              workers=1)
    t0 = time.monotonic()
    assert_async_ok(h.prolog_slurmctld(job_id=1))
    cb = h.wait_callbacks(1, timeout=10)[0]
    elapsed = time.monotonic() - t0
    assert (cb["job_id"], cb["rc"], cb["timed_out"]) == (1, WAIT_KILLED, 1)
    assert cb["thread"] == "other" and cb["expected"] == 1
    # not before its 0.5 s limit, and long before the handler's own 20 s:
    # the upper bound is generous (a shared 2-vCPU machine), it only tells
    # "answered at its timeout" from "answered when the handler ended"
    # at the 0.5 s limit (ms clock: may come a millisecond early), not at the end
    assert 0.45 <= elapsed < 15, elapsed
    # the only worker is stuck: a replacement must run the next jobs
    for j in (2, 3):
        assert_async_ok(h.prolog_slurmctld(job_id=j))
    cbs = h.wait_callbacks(3, timeout=10)
    assert sorted((c["job_id"], c["rc"], c["timed_out"]) for c in cbs[1:]) == [
        (2, 0, 0), (3, 0, 0)]
    # the stuck handler is interrupted (TimeoutError) and its late result
    # is discarded: still exactly one callback for job 1
    # (the discard is the decision not to call back: nothing to wait for after it)
    wait_for(lambda: "its result was discarded" in h.log(), 30,
             what="the overrunning handler to return")
    assert len(cb_of(h, "prolog_slurmctld", 1)) == 1
    assert h.stats()["unexpected"] == 0
    assert ["interrupted", 1, "TimeoutError"] in handlers.lines("calls.jsonl")
    log = h.log()
    assert "handler exceeded its time limit of 500 ms" in log
    assert "prolog_slurmctld for JobId=1 timed out" in log


def test_prolog_epilog_timeout_is_the_default_limit(make_host, handlers):
    handlers.write("hh", HANGING)
    h = make_host("prep")
    h.conf(prep_params=handlers.params("hh:H"), **hostdriver.prep_timeout_conf(1))
    h.load()
    h.callbacks()
    t0 = time.monotonic()
    assert_async_ok(h.prolog_slurmctld(job_id=1))
    cb = h.wait_callbacks(1, timeout=10)[0]
    assert (cb["rc"], cb["timed_out"]) == (WAIT_KILLED, 1)
    # at its 1 s limit, not at the handler's own end (20 s); generous bound
    # answered at the 1 s limit, not at the handler's end (20 s); 0.9: the
    # limit is counted from the plugin's own clock read, just after t0's
    assert 0.9 <= time.monotonic() - t0 < 15
    assert "time limit of 1000 ms" in h.log()


@pytest.mark.skipif(not hostdriver.slurm_at_least(25, 5),
                    reason="PrologTimeout/EpilogTimeout are 25.05's")
@pytest.mark.parametrize("prolog, epilog, ms", [(1, None, 1000), (None, 1, 1000),
                                                (1, 2, 2000)])
def test_split_timeouts_default_limit_is_the_larger_set_one(make_host, handlers,
                                                            prolog, epilog, ms):
    """25.05 splits PrologEpilogTimeout into PrologTimeout and EpilogTimeout;
    the prep context's one default limit is the larger that is set
    (csrc/compat.h spm_compat_prep_timeout)."""
    handlers.write("hh", HANGING)
    h = make_host("prep")
    conf = {k: v for k, v in (("prolog_timeout", prolog), ("epilog_timeout", epilog))
            if v is not None}
    h.conf(prep_params=handlers.params("hh:H"), **conf)
    h.load()
    h.callbacks()
    assert_async_ok(h.prolog_slurmctld(job_id=1))
    cb = h.wait_callbacks(1, timeout=10)[0]
    assert (cb["rc"], cb["timed_out"]) == (WAIT_KILLED, 1)
    assert f"time limit of {ms} ms" in h.log()


def test_slurmd_prolog_timeout_fails_and_next_call_works(make_host,
                                                         handlers):
    h = start(make_host, handlers, daemon="slurmd", source=HANGING,
              timeout="0.5", workers=1)
    res = h.prolog(jobid=1)
    assert res["rc"] == -1
    # at its 0.5 s limit, not at the handler's own end (20 s); generous bound
    assert 450000 <= res["us"] < 15000000, res     # (the host times from its own clock read)
    res = h.prolog(jobid=2)
    assert res["rc"] == 0          # a replacement worker answered
    assert ["ran", 2] in handlers.lines("calls.jsonl")
    log = h.log()
    assert "prolog for JobId=1 timed out" in log
    assert "handler exceeded its time limit of 500 ms" in log


# ---------------------------------------------------------------------------
# reconfigure: unload + reload without register_callbacks
# ---------------------------------------------------------------------------

def test_reload_without_callbacks_still_calls_back(make_host, handlers):
    h = start(make_host, handlers)
    assert_async_ok(h.prolog_slurmctld(job_id=1))
    h.wait_callbacks(1)
    h.unload()
    h.load()                       # no h.callbacks(), as 22.05 does
    assert h.required()["prolog_slurmctld"] is True
    assert_async_ok(h.prolog_slurmctld(job_id=2))
    res = h.reload()               # the host's reload: the same, in one go
    assert res["rc"] == 0
    assert_async_ok(h.epilog_slurmctld(job_id=3))
    cbs = h.wait_callbacks(3)
    assert sorted((c["job_id"], c["hook"], c["rc"], c["expected"])
                  for c in cbs) == [(1, "prolog_slurmctld", 0, 1),
                                    (2, "prolog_slurmctld", 0, 1),
                                    (3, "epilog_slurmctld", 0, 1)]
    assert handlers.read("epilog_slurmctld.3.json")["job_id"] == 3


def test_reload_with_changed_params_loads_the_new_handler(make_host,
                                                         handlers):
    h = start(make_host, handlers)
    handlers.write("other", RECORDING.replace('"v1"', '"other"'))
    assert_async_ok(h.prolog_slurmctld(job_id=1))
    h.wait_callbacks(1)
    h.conf(prep_params=handlers.params("other:H"))
    h.reload()
    assert_async_ok(h.prolog_slurmctld(job_id=2))
    assert h.wait_callbacks(2)[-1]["rc"] == 0
    assert handlers.lines("calls.jsonl") == [
        ["prolog_slurmctld", 1, "v1"], ["prolog_slurmctld", 2, "other"]]


def test_reload_with_broken_params_fails_closed(make_host, handlers):
    """A reconfigure to unusable PrEpParameters must fail closed, like a
    start with them does: the old handler must not keep running while the
    plugin reports every hook as required."""
    h = start(make_host, handlers)
    assert_async_ok(h.prolog_slurmctld(job_id=1))
    h.wait_callbacks(1)
    h.conf(prep_params=handlers.params("hh:H", bogus=1))
    h.reload()
    assert h.required()["epilog_slurmctld"] is True
    assert_async_ok(h.prolog_slurmctld(job_id=2))
    cb = h.wait_callbacks(2)[-1]
    assert "unknown key 'bogus'" in h.log()
    assert handlers.lines("calls.jsonl") == [["prolog_slurmctld", 1, "v1"]]
    assert cb["rc"] == WAIT_FAILED


def test_no_callbacks_registered_answers_through_slurmctlds_exports(
        make_host, handlers):
    """22.05 loads a plugin added by `scontrol reconfigure` with
    prep_g_init(NULL): no callbacks.  A synchronous failure would be ignored
    by Slurm (prep_g_prolog_slurmctld is void) and the job would run
    unchecked: the plugin answers through the callbacks slurmctld exports
    (prep_prolog_slurmctld_callback, as the host does)."""
    h = start(make_host, handlers, callbacks=False, source=RAISING)
    assert_async_ok(h.prolog_slurmctld(job_id=1))      # raises ValueError
    cb = h.wait_callbacks(1)[0]
    assert (cb["hook"], cb["job_id"], cb["rc"], cb["timed_out"]) == (
        "prolog_slurmctld", 1, WAIT_FAILED, 0)
    assert "no slurmctld callback" not in h.log()
    # a NULL entry keeps the exported one for that hook
    h.callbacks(prolog=True, epilog=False)
    assert_async_ok(h.epilog_slurmctld(job_id=6))
    cb = h.wait_callbacks(2)[-1]
    assert (cb["hook"], cb["job_id"], cb["rc"]) == ("epilog_slurmctld", 6, WAIT_FAILED)


# ---------------------------------------------------------------------------
# hot reload of the handler file
# ---------------------------------------------------------------------------

def recording(version, hooks=ALL_HOOKS):
    """RECORDING with another VERSION and only some hooks overridden."""
    src = RECORDING.replace('VERSION = "v1"', 'VERSION = %r' % version)
    for hook in set(ALL_HOOKS) - set(hooks):
        arg = "job" if hook in CTLD_HOOKS else "env"
        src = src.replace('    def %s(self, %s):\n        self._save("%s", %s)\n'
                          % (hook, arg, hook, arg), "")
    assert src.count("    def ") == 1 + len(hooks)
    return src


class Caller:
    """Calls hooks with fresh job ids, one at a time, and returns the
    VERSION of the handler that ran."""

    def __init__(self, h, handlers):
        self.h, self.hd, self.job = h, handlers, 1000

    def call(self, hook="prolog_slurmctld"):
        self.job += 1
        n = len(self.h.callback_events)
        assert_async_ok(getattr(self.h, hook)(job_id=self.job))
        cb = self.h.wait_callbacks(n + 1)[-1]
        assert (cb["hook"], cb["job_id"], cb["rc"]) == (hook, self.job, 0)
        last = self.hd.lines("calls.jsonl")[-1]
        assert last[:2] == [hook, self.job]
        return last[2]

    def until(self, pred, what, limit=30.0):
        # limit only catches a hang (reload= is 0.2 s in these tests): it
        # is no claim about how soon a reload happens
        t0 = time.monotonic()
        while True:
            v = self.call()
            if pred(v):
                return v
            assert time.monotonic() - t0 < limit, \
                "%s: not within %.1fs (handler %s)" % (what, limit, v)
            time.sleep(0.05)


def test_hot_reload_picks_up_a_replaced_file(make_host, handlers):
    h = start(make_host, handlers, reload="0.2")
    c = Caller(h, handlers)
    assert c.call() == "v1"
    path = handlers.write("hh", recording("v2"))
    c.until(lambda v: v == "v2", "v2 to run")
    assert "prep/python: reloaded handler hh:H from %s" % path in h.log()

    # a broken replacement is refused and v2 keeps running
    handlers.write("hh", recording("v3") + "\ndef (:\n")
    c.until(lambda v: "changed handler refused" in h.log(),
            "the broken file to be refused")
    for _ in range(5):
        assert c.call() == "v2"
        time.sleep(0.05)
    log = h.log()
    assert ("error: prep/python: changed handler refused, the previous one "
            "keeps running: %s:" % path) in log
    assert "syntax error" in log
    assert log.count("changed handler refused") == 1   # not once per call

    # so is a replacement with unsafe permissions
    handlers.write("hh", recording("v4"), mode=0o666)
    c.until(lambda v: "refusing handler file %s" % path in h.log(),
            "the writable file to be refused")
    assert c.call() == "v2"

    # a good file is picked up again
    handlers.write("hh", recording("v5"))
    c.until(lambda v: v == "v5", "v5 to run")
    assert all(cb["rc"] == 0 for cb in h.callback_events)


def test_a_zero_filled_handler_file_is_the_handlers_load_error(make_host, handlers):
    """A crash while the handler file is written can leave zero-filled
    blocks in it: a reload refuses it as the handler's error, naming the
    file (Python 3.11's compile() raises ValueError on a NUL byte, not
    SyntaxError), and the running handler keeps running.  Booted with such
    a file, the plugin fails closed with that error, and the fixed file is
    taken at the next reload check."""
    h = start(make_host, handlers, reload="0.2")
    c = Caller(h, handlers)
    assert c.call() == "v1"
    good = recording("v2")
    path = handlers.write("hh", good[:len(good) // 2] + "\0" * 8192)
    line = good[:len(good) // 2].count("\n") + 1
    c.until(lambda v: "changed handler refused" in h.log(),
            "the zero-filled file to be refused")
    assert c.call() == "v1"
    log = h.log()
    assert ("error: prep/python: changed handler refused, the previous one keeps "
            "running: %s:%d: syntax error: the file contains a NUL byte" % (path, line)) in log
    assert "internal error" not in log
    handlers.write("hh", good)
    c.until(lambda v: v == "v2", "the repaired file to run")
    log = h.log()
    assert "internal error" not in log
    assert log.count("changed handler refused") == 1


def test_booted_with_a_zero_filled_handler_file_fails_closed_until_fixed(make_host, handlers):
    path = handlers.write("hh", "\0" * 4096 + RECORDING)
    h = make_host("prep")
    h.conf(prep_params=handlers.params("hh:H", reload="0.2"))
    h.load()
    h.callbacks()
    h.wait_booted()
    assert_async_ok(h.prolog_slurmctld(job_id=1))
    assert h.wait_callbacks(1)[0]["rc"] == WAIT_FAILED
    why = "%s:1: syntax error: the file contains a NUL byte" % path
    log = h.log()
    assert "error: prep/python: handler not loaded: " + why in log, log
    assert ("prolog_slurmctld for JobId=1 failed: no usable handler (%s" % why) in log
    assert "did not attach" not in log and "not booted" not in log
    # the reload check retries it (every reload= s) without an internal
    # error, and takes the repaired file
    handlers.write("hh", RECORDING)
    wait_for(lambda: "loaded handler hh:H from %s" % path in h.log(), 30,
             what="the repaired handler to load")
    assert_async_ok(h.prolog_slurmctld(job_id=2))
    assert h.wait_callbacks(2)[-1]["rc"] == 0
    log = h.log()
    assert "internal error" not in log
    assert log.count("handler not loaded") == 1


def test_hot_reload_changes_the_set_of_hooks(make_host, handlers):
    h = start(make_host, handlers, reload="0.2",
              source=recording("v1", ["prolog_slurmctld"]))
    c = Caller(h, handlers)
    assert h.required()["epilog_slurmctld"] is False
    res = h.epilog_slurmctld(job_id=1)
    assert res["rc"] == 0 and res["async"] == 0      # not overridden
    handlers.write("hh", recording("v2"))
    c.until(lambda v: v == "v2", "v2 to run")
    assert h.required()["epilog_slurmctld"] is True
    assert c.call("epilog_slurmctld") == "v2"
    assert "(hooks: prolog, epilog, prolog_slurmctld, epilog_slurmctld)" \
        in h.log()


def test_hot_reload_off(make_host, handlers):
    h = start(make_host, handlers, reload="0")
    c = Caller(h, handlers)
    assert c.call() == "v1"
    handlers.write("hh", recording("v2"))
    for _ in range(8):
        time.sleep(0.2)
        assert c.call() == "v1"
    assert "reloaded handler" not in h.log()


# ---------------------------------------------------------------------------
# handler modules behave like imported modules
# ---------------------------------------------------------------------------

DATACLASS_HANDLER = """\
from __future__ import annotations
import dataclasses, pickle, sys, typing
import spmtest_rec as R
from slurmpy_plugins import PrEpHandler

VERSION = "v1"

@dataclasses.dataclass
class Rule:
    name: str
    limit: int = 3
    shared: typing.ClassVar[int] = 0

class H(PrEpHandler):
    def __init__(self):
        if VERSION == "bad-ctor":
            raise RuntimeError("refuse me")
        self.rule = pickle.loads(pickle.dumps(Rule("r")))

    def prolog_slurmctld(self, job: "Job") -> None:
        hints = typing.get_type_hints(Rule)
        R.append("{out}/calls.jsonl",
                 [job.job_id, VERSION, sys.modules[__name__].VERSION,
                  self.rule.limit, sorted(hints)])
"""


def test_handler_module_is_in_sys_modules_while_it_runs(make_host,
                                                        handlers):
    """dataclasses (with `from __future__ import annotations`), pickle and
    typing.get_type_hints look the module up in sys.modules while it is
    imported; a refused reload leaves the running module there."""
    h = start(make_host, handlers, source=DATACLASS_HANDLER, reload="0.2")
    assert "handler not loaded" not in h.log()
    assert_async_ok(h.prolog_slurmctld(job_id=1))
    assert h.wait_callbacks(1)[0]["rc"] == 0
    assert handlers.lines("calls.jsonl") == [
        [1, "v1", "v1", 3, ["limit", "name", "shared"]]]
    # a replacement whose constructor fails is refused ...
    handlers.write("hh", DATACLASS_HANDLER.replace('"v1"', '"bad-ctor"'))
    job = 2
    t0 = time.monotonic()
    while "changed handler refused" not in h.log():
        assert time.monotonic() - t0 < 30      # catches a hang only (reload=0.2)
        assert_async_ok(h.prolog_slurmctld(job_id=job))
        h.wait_callbacks(job)
        job += 1
        time.sleep(0.05)
    assert_async_ok(h.prolog_slurmctld(job_id=job))
    assert h.wait_callbacks(job)[-1]["rc"] == 0
    # ... and sys.modules still holds the module that runs
    assert handlers.lines("calls.jsonl")[-1] == [
        job, "v1", "v1", 3, ["limit", "name", "shared"]]


def test_import_failure_inside_a_library_names_the_handler_line(
        make_host, handlers):
    p = handlers.write("hh", "import json\n\nCONF = json.loads('{')\n")
    h = make_host("prep")
    h.conf(prep_params=handlers.params("hh:H"))
    h.load()
    h.wait_booted()
    log = h.log()
    assert "importing hh failed: JSONDecodeError" in log
    assert "%s:3" % p in log


def test_many_overrunning_handlers_each_call_back_once(make_host, handlers):
    """Timeouts under load: some handlers overrun and can be interrupted,
    some block in C (time.sleep) past the limit, the rest are quick; every
    job gets exactly one callback and the pool keeps serving."""
    h = start(make_host, handlers, timeout="0.3", workers=3, source="""\
        import time
        import spmtest_rec as R
        from slurmpy_plugins import PrEpHandler
        class H(PrEpHandler):
            def prolog_slurmctld(self, job):
                R.append("{out}/started.jsonl", job.job_id)
                kind = job.job_id % 3
                if kind == 0:                 # overruns, interruptible
                    while True:
                        time.sleep(0.01)
                elif kind == 1:               # overruns inside one C call
                    time.sleep(0.6)
                R.append("{out}/calls.jsonl", [job.job_id])
            def epilog_slurmctld(self, job):
                R.append("{out}/calls.jsonl", ["epilog", job.job_id])
        """)
    jobs = list(range(30, 60))
    for j in jobs:
        assert_async_ok(h.prolog_slurmctld(job_id=j))
    cbs = h.wait_callbacks(len(jobs), timeout=30)
    # late results of the overrunning handlers must not call back again:
    # wait until each handler that started and was answered "timed out" has
    # returned and had its result discarded (the decision not to call back)
    started = set(handlers.lines("started.jsonl"))
    overran = {c["job_id"] for c in cbs if c["timed_out"]} & started
    wait_for(lambda: h.log().count("its result was discarded") >= len(overran), 60,
             what="the overrunning handlers to return")
    cbs = h.callback_events
    assert sorted(c["job_id"] for c in cbs) == jobs
    for c in cbs:
        # a deadline counts from submission: a quick job that waited in
        # the queue behind overrunning ones past 0.3 s times out too
        if c["job_id"] % 3 != 2:
            assert (c["rc"], c["timed_out"]) == (WAIT_KILLED, 1), c
        else:
            assert (c["rc"], c["timed_out"]) in ((0, 0), (WAIT_KILLED, 1)), c
        assert c["expected"] == 1 and c["thread"] == "other"
    # the pool still works
    assert_async_ok(h.epilog_slurmctld(job_id=99))
    assert h.wait_callbacks(len(jobs) + 1)[-1]["rc"] == 0
    st = h.stats()
    assert st["pending"] == 0 and st["unexpected"] == 0


def test_handler_logging_and_print_reach_the_daemon_log(make_host,
                                                       handlers):
    h = start(make_host, handlers, source="""\
        import logging, sys
        from slurmpy_plugins import PrEpHandler
        log = logging.getLogger("site.prep")
        class H(PrEpHandler):
            def prolog_slurmctld(self, job):
                log.info("info for %s", job.job_id)
                log.warning("careful with %s", job.name)
                log.error("bad %d", job.job_id)
                print("printed", job.job_id)
                print("to stderr", file=sys.stderr)
        """)
    assert_async_ok(h.prolog_slurmctld(job_id=5, name="ü"))
    h.wait_callbacks(1)
    log = h.log()
    assert "prep/python: site.prep: info for 5" in log
    assert "prep/python: warning: site.prep: careful with ü" in log
    assert "error: prep/python: site.prep: bad 5" in log
    assert "prep/python: printed 5" in log
    assert "error: prep/python: to stderr" in log


def test_reload_applies_a_changed_timeout(make_host, handlers):
    h = start(make_host, handlers, source=HANGING)
    assert_async_ok(h.prolog_slurmctld(job_id=2))     # boots: no limit
    assert h.wait_callbacks(1)[0]["rc"] == 0
    h.conf(prep_params=handlers.params("hh:H", timeout="0.4"))
    h.reload()
    assert_async_ok(h.prolog_slurmctld(job_id=1))
    cb = h.wait_callbacks(2, timeout=10)[-1]
    assert (cb["rc"], cb["timed_out"]) == (WAIT_KILLED, 1)
    assert "time limit of 400 ms" in h.log()


@pytest.mark.parametrize("daemon", ["slurmctld", "slurmd"])
def test_bridge_that_never_attaches_fails_closed(make_host, handlers,
                                                 broken_bridge_plugins,
                                                 daemon):
    handlers.write("hh", RECORDING)
    h = make_host("prep", daemon,
                  so=str(broken_bridge_plugins / "prep_python.so"))
    h.conf(prep_params=handlers.params("hh:H"))
    h.load()
    req = h.required()
    mine = CTLD_HOOKS if daemon == "slurmctld" else SLURMD_HOOKS
    assert all(req[n] for n in mine), req
    if daemon == "slurmctld":
        h.callbacks()
        assert_async_ok(h.prolog_slurmctld(job_id=1))
        cb = h.wait_callbacks(1)[0]
        assert (cb["rc"], cb["timed_out"], cb["thread"]) == (
            WAIT_FAILED, 0, "other")
    else:
        assert h.prolog(jobid=1)["rc"] == -1
        assert h.epilog(jobid=1)["rc"] == -1
    log = h.log()
    assert ("slurmpy: Python bridge failed to start: ImportError: staged "
            "package is broken") in log
    assert ("prep/python: the Python bridge did not attach (see the "
            "slurmpy errors above); every hook will fail") in log
    assert handlers.lines("calls.jsonl") == []


def test_venv_packages_importable_from_a_bare_environment(make_host, handlers, tmp_path):
    """venv= adds a virtualenv's site-packages; the interpreter finds its
    stdlib, our package and the handler with systemd's bare environment."""
    import subprocess
    import sysconfig
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    for d in [venv, *venv.rglob("*")]:
        if d.is_dir():
            d.chmod(0o755)
    ver = "python%d.%d" % sys.version_info[:2]
    site = venv / "lib" / ver / "site-packages"
    (site / "site_only_pkg.py").write_text("VALUE = 'from the venv'\n")
    (site / "site_only_pkg.py").chmod(0o644)
    handlers.write("vh", """\
        import json, os, sys
        import site_only_pkg
        from slurmpy_plugins import PrEpHandler
        class H(PrEpHandler):
            def prolog_slurmctld(self, job):
                with open("{out}/venv.json", "w") as f:
                    json.dump({"value": site_only_pkg.VALUE,
                               "environ": sorted(os.environ)}, f)
        """)
    h = make_host("prep", clean_env=True)
    h.conf(prep_params=handlers.params("vh:H", venv=str(venv)))
    h.load()
    h.callbacks()
    assert h.required()["prolog_slurmctld"]
    assert_async_ok(h.prolog_slurmctld(job_id=5))
    assert h.wait_callbacks(1)[0]["rc"] == 0
    got = handlers.read("venv.json")
    assert got["value"] == "from the venv"
    assert not any(k.startswith("PYTHON") for k in got["environ"]), got["environ"]


def test_venv_that_is_not_a_venv_of_this_python_fails_closed(make_host, handlers, tmp_path):
    bogus = tmp_path / "notavenv"
    bogus.mkdir(mode=0o755)
    bogus.chmod(0o755)
    h = start(make_host, handlers, venv=str(bogus))
    assert h.required()["prolog_slurmctld"]      # fail closed: every hook
    assert_async_ok(h.prolog_slurmctld(job_id=6))
    assert h.wait_callbacks(1)[0]["rc"] == WAIT_FAILED
    assert "venv %s has no lib/python%d.%d/site-packages" % ((bogus,) + sys.version_info[:2]) in h.log()


def _threads(h) -> int:
    return len(os.listdir("/proc/%d/task" % h.proc.pid))


def test_slurmstepd_starts_python_on_the_first_hook_call_only(make_host, handlers):
    """24.05+ calls init() in every slurmstepd; with PrologFlags=RunInJob the
    extern step's slurmstepd then calls prolog/epilog.  init() there must
    not start Python; the first hook call does, and runs the handler."""
    handlers.write("hh", RECORDING)
    # init() starts a boot inside the call, on a thread of its own, which
    # lives until the handler is loaded (and Python's threads after it): a
    # boot started by init() shows as a thread more once init() returns
    # (checked on slurmd, which does start one), no waiting involved
    ctl = make_host("prep", "slurmd")
    ctl.conf(prep_params=handlers.params("hh:H"))
    before = _threads(ctl)
    ctl.load()
    assert _threads(ctl) > before
    h = make_host("prep", "slurmstepd")
    h.conf(prep_params=handlers.params("hh:H"))
    before = _threads(h)
    h.load()
    assert _threads(h) == before, h.log()
    assert h.boots_done() == 0, h.log()
    assert not re.search(r"slurmpy: Python \S+ .* started", h.log()), h.log()
    res = h.prolog(jobid=7, step_id=0xFFFFFFFC)
    assert res["rc"] == 0, res
    assert h.boots_done() == 1
    assert re.search(r"slurmpy: Python \S+ .* started", h.log()), h.log()
    seen = handlers.read("prolog.7.json")
    assert seen["_type"] == "JobEnv" and seen["step_id"] == 0xFFFFFFFC
    assert seen["node_name"] == HOST_NODE_NAME   # the slurmstepd's conf
    assert h.epilog(jobid=7)["rc"] == 0
    assert handlers.read("epilog.7.json")["job_id"] == 7
    assert h.boots_done() == 1                   # one interpreter, one load


# ---------------------------------------------------------------------------
# a failed slurmd prolog/epilog drains the node with the handler's reason
# (drain.c; the host answers slurmctld's two node RPCs, see its README)
# ---------------------------------------------------------------------------

FAILING = """\
from slurmpy_plugins import PrEpHandler

class H(PrEpHandler):
    def prolog(self, env):
        if env.job_id == 3:
            raise RuntimeError("line one\\n  line two " + "x" * 400)
        raise ValueError("/scratch is full")

    def epilog(self, env):
        return 0

    def prolog_slurmctld(self, job):
        raise ValueError("not a node's failure")
"""
NODE_STATE_DRAIN = 0x0200


def drains(h):
    return [e for e in h.events if e["event"] == "update_node"]


def test_failed_prolog_and_epilog_drain_the_node_with_the_handlers_reason(make_host,
                                                                         handlers):
    h = start(make_host, handlers, daemon="slurmd", source=FAILING)
    assert h.prolog(jobid=1)["rc"] == -1
    assert h.epilog(jobid=2)["rc"] == -1
    assert h.prolog(jobid=3)["rc"] == -1
    got = drains(h)
    assert [(e["node"], e["state"], e["uid"]) for e in got] == \
        [(HOST_NODE_NAME, NODE_STATE_DRAIN, os.getuid())] * 3
    assert got[0]["reason"] == "prep/python: ValueError: /scratch is full"
    assert got[1]["reason"] == "prep/python: epilog() returned 0 (int)"
    # on one line, cut to the 255 bytes slurmdbd keeps of a node event's reason
    long = got[2]["reason"]
    assert long.startswith("prep/python: RuntimeError: line one line two xxx")
    assert long.endswith("...") and len(long.encode()) == 255 and "\n" not in long
    log = h.log()
    assert f'JobId=1: node {HOST_NODE_NAME} drained: "prep/python: ValueError: /scratch is full"' \
        in log


def test_a_node_already_draining_keeps_its_reason(make_host, handlers):
    h = start(make_host, handlers, daemon="slurmd", source=FAILING)
    h.request("node_draining", "v=1")
    assert h.prolog(jobid=1)["rc"] == -1
    assert drains(h) == []
    assert (f"JobId=1: node {HOST_NODE_NAME} is already draining (reason: maintenance by "
            'the admin): its reason is kept, not "prep/python: ValueError: /scratch is full"'
            ) in h.log()


def test_a_timed_out_prolog_drains_with_the_limit(make_host, handlers):
    h = start(make_host, handlers, daemon="slurmd", source=HANGING, timeout="0.5", workers=1)
    assert h.prolog(jobid=1)["rc"] == -1
    (e,) = drains(h)
    assert e["reason"] == "prep/python: prolog timed out after 500 ms"


def test_slurmctld_hooks_drain_nothing(make_host, handlers):
    h = start(make_host, handlers, source=FAILING)
    h.prolog_slurmctld(job_id=1)
    h.wait_callbacks(1)
    assert drains(h) == []
