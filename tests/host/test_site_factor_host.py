"""site_factor/python (build/plugins/site_factor_python.so) driven by the C
test host acting as slurmctld: set(), update() and reconfig(), with the
factor the host finds in the job record afterwards as the oracle.
"""
from __future__ import annotations

import json
import os
import re

import time

import pytest

from .conftest import (JOB_FIELDS, NICE_OFFSET, compare_record,
                       expected_job, wait_for)

FMIN, FMAX = -(2**31), 2**31 - 1

# set() returns eval(job.comment) (None when the comment is NULL), so each
# call chooses its own return value; update() returns eval() of the file
# out/update.py with `jobs` in scope (None when absent).  Both dump what
# they saw.  reconfig() counts its calls and raises if out/reconfig_raise
# exists.
HANDLER = """\
import os
import spmtest_rec as R
from slurmpy_plugins import SiteFactorHandler

VERSION = "v1"

class H(SiteFactorHandler):
    def set(self, job):
        R.dump("{out}/set.%d.json" % job.job_id, R.plain(job))
        R.append("{out}/calls.jsonl", ["set", job.job_id, VERSION])
        if job.comment is None:
            return None
        return eval(job.comment)

    def update(self, jobs):
        R.dump("{out}/update.json", [R.plain(j) for j in jobs])
        R.append("{out}/calls.jsonl", ["update", len(jobs), VERSION])
        try:
            with open("{out}/update.py") as f:
                expr = f.read()
        except FileNotFoundError:
            return None
        return eval(expr, {"jobs": jobs})

    def reconfig(self):
        R.append("{out}/calls.jsonl", ["reconfig", 0, VERSION])
        if os.path.exists("{out}/reconfig_raise"):
            raise RuntimeError("reconfig refused")
"""
LINE_SET_RETURN = 13       # `return eval(job.comment)` in HANDLER
LINE_UPDATE_DEF = 15       # `def update(self, jobs):`
LINE_RECONFIG_RAISE = 28   # `raise RuntimeError("reconfig refused")`


def start(make_host, handlers, source=HANDLER, module="sf", cls="H",
          **keys):
    handlers.write(module, source)
    h = make_host("sf")
    h.conf(site_factor_params=handlers.params("%s:%s" % (module, cls),
                                              **keys))
    h.load()
    return h


def set_factor(h, job_id, ret, **job):
    """site_set with a comment that makes set() return `ret` (a Python
    expression); returns the host's answer."""
    res = h.site_set(job_id=job_id, comment=ret, **job)
    assert res["job_id"] == job_id and res["lock_bypassed"] == 0
    return res


def update_returns(handlers, expr):
    if expr is None:
        (handlers.out / "update.py").unlink(missing_ok=True)
    else:
        (handlers.out / "update.py").write_text(expr)


# ---------------------------------------------------------------------------
# set()
# ---------------------------------------------------------------------------

def test_set_int_is_stored_with_nice_offset(make_host, handlers):
    h = start(make_host, handlers)
    for i, v in enumerate([0, 1, -1, 12345, -777, FMIN, FMAX]):
        res = set_factor(h, 100 + i, repr(v))
        assert res["before"] == NICE_OFFSET
        assert res["site_factor"] == v + NICE_OFFSET, (v, res)
        assert res["slurm_warn"] == 0
    # an int subclass (e.g. an IntEnum) counts as an int
    res = set_factor(h, 200, "__import__('enum').IntEnum('E', 'A B').B")
    assert res["site_factor"] == NICE_OFFSET + 2
    assert "out of range" not in h.log() and "error:" not in h.log()


def test_set_sees_the_job(make_host, handlers):
    h = start(make_host, handlers)
    job = dict(job_id=7, account="ü", name=b"\xff", user_id=0, nice=5,
               site_factor=NICE_OFFSET + 3, job_state="PENDING",
               qos="high", spank_job_env=["A=B"], partition="",
               submit_time=1, begin_time=2, pn_min_memory=2**64 - 1)
    res = set_factor(h, ret="job.site_factor * 2 + job.nice", **job)
    job["comment"] = "job.site_factor * 2 + job.nice"
    seen = handlers.read("set.7.json")
    compare_record(seen, expected_job(job), JOB_FIELDS)
    assert seen["site_factor"] == 3 and seen["nice"] == 5 - NICE_OFFSET
    assert res["site_factor"] == NICE_OFFSET + 6 + 5 - NICE_OFFSET


def test_set_none_leaves_the_factor_unchanged(make_host, handlers):
    h = start(make_host, handlers)
    res = set_factor(h, 1, "None", site_factor=NICE_OFFSET + 7)
    assert res["site_factor"] == res["before"] == NICE_OFFSET + 7
    res = set_factor(h, 2, None, site_factor=5)       # comment NULL
    assert res["site_factor"] == 5
    assert [c[:2] for c in handlers.lines("calls.jsonl")] == [
        ["set", 1], ["set", 2]]
    assert "error:" not in h.log()


@pytest.mark.parametrize("ret,shown", [
    ("'12'", "'12' (str)"),
    ("12.0", "12.0 (float)"),
    ("True", "True (bool)"),
    ("False", "False (bool)"),
    ("[1]", "[1] (list)"),
    ("b'1'", "b'1' (bytes)"),
])
def test_set_wrong_type_leaves_the_factor_unchanged(make_host, handlers,
                                                    ret, shown):
    h = start(make_host, handlers)
    path = handlers.path / "sf.py"
    res = set_factor(h, 3, ret, site_factor=NICE_OFFSET + 9)
    assert res["site_factor"] == NICE_OFFSET + 9
    assert ("error: site_factor/python: set() for JobId=3: %s:8: set() "
            "returned %s; expected an int or None; factor left unchanged"
            % (path, shown)) in h.log()
    # and the next job is fine
    assert set_factor(h, 4, "4")["site_factor"] == NICE_OFFSET + 4


def test_a_failure_is_its_hooks_last_error_in_stats(make_host, handlers, capsys):
    """A set() that returns what set() does not take fails (SPM_PY_FAILED):
    its stats say why (Python's reason), not "the Python bridge is not
    attached"."""
    from slurmpy_plugins import _stats
    state = handlers.path.parent / "state"
    state.mkdir()
    slurm_conf = handlers.path.parent / "slurm.conf"
    slurm_conf.write_text(f"StateSaveLocation={state}\n")
    handlers.write("sf", HANDLER)
    h = make_host("sf")
    h.conf(site_factor_params=handlers.params("sf:H"), slurm_conf=str(slurm_conf),
           state_save_location=str(state))
    h.load()
    set_factor(h, 3, "'12'", site_factor=NICE_OFFSET + 9)

    def last_error():
        assert _stats.main([str(slurm_conf), "--json"]) == 0
        [d] = json.loads(capsys.readouterr().out)["daemons"]
        [sub] = [x for x in d["hooks"] if x["hook"] == "set"]
        return sub["failed"], sub["last_error"]

    failed, err = last_error()
    assert failed == 1
    assert err["where"] == f"{handlers.path / 'sf.py'}:8"
    assert err["text"] == "set() returned '12' (str); expected an int or None"


@pytest.mark.parametrize("ret,stored,shown", [
    ("2**31", NICE_OFFSET + FMAX, "2147483648"),
    ("-2**31 - 1", 0, "-2147483649"),
    ("10**30", NICE_OFFSET + FMAX, str(10**30)),
    ("-10**30", 0, str(-10**30)),
    ("2**63", NICE_OFFSET + FMAX, str(2**63)),
])
def test_set_out_of_range_is_clamped_with_a_warning(make_host, handlers,
                                                    ret, stored, shown):
    h = start(make_host, handlers)
    res = set_factor(h, 5, ret)
    assert res["site_factor"] == stored
    clamped = FMAX if stored else FMIN
    assert ("site_factor/python: warning: JobId=5: site factor %s is out of "
            "range [%d, %d]; using %d" % (shown, FMIN, FMAX, clamped)
            ) in h.log()


def test_set_exception_leaves_the_factor_unchanged(make_host, handlers):
    h = start(make_host, handlers)
    path = handlers.path / "sf.py"
    res = set_factor(h, 6, "1 // 0", site_factor=NICE_OFFSET + 1)
    assert res["site_factor"] == NICE_OFFSET + 1
    log = h.log()
    # the handler's own line, not the innermost (eval'd) frame
    assert ("error: site_factor/python: set() for JobId=6 failed at "
            "%s:%d: ZeroDivisionError: integer division or modulo by "
            "zero" % (path, LINE_SET_RETURN)) in log
    assert 'site_factor/python:   File "%s", line %d, in set' % (
        path, LINE_SET_RETURN) in log
    # even SystemExit / KeyboardInterrupt do not take the daemon down
    for i, exc in enumerate(["SystemExit(3)", "KeyboardInterrupt()"]):
        ret = "(_ for _ in ()).throw(%s)" % exc
        res = set_factor(h, 10 + i, ret, site_factor=NICE_OFFSET + 2)
        assert res["site_factor"] == NICE_OFFSET + 2
    log = h.log()
    assert "set() for JobId=10 failed at" in log and "SystemExit: 3" in log
    assert "set() for JobId=11 failed at" in log and \
        "KeyboardInterrupt" in log
    assert h.ping() == {}
    assert set_factor(h, 12, "-12")["site_factor"] == NICE_OFFSET - 12


def test_set_from_another_thread(make_host, handlers):
    h = start(make_host, handlers)
    res = h.site_set(job_id=1, comment="99", _thread=True)
    assert res["site_factor"] == NICE_OFFSET + 99


def test_set_not_overridden_is_not_called(make_host, handlers):
    h = start(make_host, handlers, source="""\
        import spmtest_rec as R
        from slurmpy_plugins import SiteFactorHandler
        class H(SiteFactorHandler):
            def update(self, jobs):
                R.append("{out}/calls.jsonl", ["update", len(jobs)])
                return {j.job_id: 1 for j in jobs}
        """)
    res = set_factor(h, 1, "5", site_factor=NICE_OFFSET + 3)
    assert res["site_factor"] == NICE_OFFSET + 3
    h.jobs_add(job_id=2)
    assert h.site_update() == {2: NICE_OFFSET + 1}
    assert handlers.lines("calls.jsonl") == [["update", 1]]
    assert "(hooks: update)" in h.log()


# ---------------------------------------------------------------------------
# update()
# ---------------------------------------------------------------------------

def _add_jobs(h):
    jobs = {
        1: dict(job_id=1, name="one", site_factor=NICE_OFFSET + 1),
        2: dict(job_id=2, name="two", account="ü", site_factor=NICE_OFFSET),
        3: dict(job_id=3, comment=b"\xfe", spank_job_env=["X=1"]),
        4: dict(job_id=4, job_state="RUNNING", site_factor=44),
        5: dict(job_id=5, user_id=0, site_factor=55, nice=0),
        6: dict(job_id=6, job_state="COMPLETE", site_factor=66),
    }
    for j in jobs.values():
        h.jobs_add(**j)
    return jobs


def test_update_applies_factors_to_pending_jobs_only(make_host, handlers):
    h = start(make_host, handlers)
    jobs = _add_jobs(h)
    # as many factors as pending jobs, two of them for other jobs
    update_returns(handlers, "{1: 10, 3: -5, 4: 7, 99: 1}")
    got = h.site_update()
    assert got == {1: NICE_OFFSET + 10, 2: NICE_OFFSET, 3: NICE_OFFSET - 5,
                   4: 44, 5: 55, 6: 66}
    seen = handlers.read("update.json")
    assert [j["job_id"] for j in seen] == [1, 2, 3, 5]
    for s in seen:
        compare_record(s, expected_job(jobs[s["job_id"]]), JOB_FIELDS)
    log = h.log()
    # one line for all of them: update() runs under the job write lock
    assert ("site_factor/python: warning: update() returned factors for 2 "
            "job(s) that are unknown or no longer pending (JobId=4, 99); "
            "ignored") in log
    assert log.count("unknown or no longer pending") == 1


def test_update_none_or_empty_changes_nothing(make_host, handlers):
    h = start(make_host, handlers)
    _add_jobs(h)
    before = {1: NICE_OFFSET + 1, 2: NICE_OFFSET, 3: NICE_OFFSET, 4: 44,
              5: 55, 6: 66}
    assert h.site_update() == before                   # no update.py: None
    update_returns(handlers, "{}")
    assert h.site_update() == before
    update_returns(handlers, "dict()")
    assert h.site_update() == before
    assert [c[0] for c in handlers.lines("calls.jsonl")] == ["update"] * 3
    assert "error:" not in h.log()


def test_update_accepts_any_mapping(make_host, handlers):
    h = start(make_host, handlers)
    _add_jobs(h)
    update_returns(handlers, "__import__('types').MappingProxyType("
                   "{j.job_id: j.job_id * 100 for j in jobs})")
    got = h.site_update()
    assert got == {1: NICE_OFFSET + 100, 2: NICE_OFFSET + 200,
                   3: NICE_OFFSET + 300, 4: 44, 5: NICE_OFFSET + 500, 6: 66}


def test_update_out_of_range_is_clamped(make_host, handlers):
    h = start(make_host, handlers)
    _add_jobs(h)
    update_returns(handlers, "{1: 2**40, 2: -2**40, 3: 2**31 - 1}")
    got = h.site_update()
    assert got[1] == NICE_OFFSET + FMAX and got[2] == 0
    assert got[3] == NICE_OFFSET + FMAX and got[5] == 55
    log = h.log()
    # one warning per call, naming the first and counting the others
    assert ("warning: JobId=1: site factor %d is out of range [%d, %d]; "
            "using %d (1 more factor(s) clamped too)" % (2**40, FMIN, FMAX, FMAX)) in log
    assert log.count("is out of range") == 1
    assert "JobId=3: site factor" not in log


def test_update_out_of_int64_range_is_clamped_too(make_host, handlers):
    """set() clamps any int; update() must clamp the same values rather
    than drop every factor of the batch."""
    h = start(make_host, handlers)
    _add_jobs(h)
    update_returns(handlers, "{1: 2**70, 2: 3}")
    got = h.site_update()
    assert got[1] == NICE_OFFSET + FMAX and got[2] == NICE_OFFSET + 3


@pytest.mark.parametrize("expr,fragment", [
    ("{1: 'x'}", "first bad entry 1 (int): 'x' (str)"),
    ("{1: 2.5}", "first bad entry 1 (int): 2.5 (float)"),
    ("{'1': 2}", "first bad entry '1' (str): 2 (int)"),
    ("[1, 2]", "got 2 factors by batch index for 4 pending jobs"),
    ("[1, 2, 'x', 4]", "first bad entry at index 2: 'x' (str)"),
    ("__import__('array').array('d', [1, 2, 3, 4])", "got a buffer of format 'd'"),
    ("[True, 1, 2, 3]", "first bad entry at index 0: True (bool)"),
    ("42", "42 (int)"),
    ("{1: 5, 2: None}", "first bad entry 2 (int): None (NoneType)"),
])
def test_update_wrong_types_change_nothing(make_host, handlers, expr,
                                           fragment):
    h = start(make_host, handlers)
    _add_jobs(h)
    update_returns(handlers, expr)
    got = h.site_update()
    assert got == {1: NICE_OFFSET + 1, 2: NICE_OFFSET, 3: NICE_OFFSET,
                   4: 44, 5: 55, 6: 66}
    path = handlers.path / "sf.py"
    log = h.log()
    shape = ("a mapping" if expr.startswith("{") else
             "one int factor (or None) per job, in the order of `jobs`, or a mapping")
    assert ("error: site_factor/python: update() over 4 pending jobs: %s:%d: "
            "update() must return %s of int job id to int factor; "
            % (path, LINE_UPDATE_DEF, shape)) in log
    assert fragment in log and "factors left unchanged" in log


def test_update_bool_factor_is_refused_like_in_set(make_host, handlers):
    """set() refuses bool (True is not a factor); update() must too."""
    h = start(make_host, handlers)
    _add_jobs(h)
    update_returns(handlers, "{2: True, 3: 4}")
    got = h.site_update()
    assert got[2] == NICE_OFFSET, "bool True applied as factor 1"
    assert got[3] == NICE_OFFSET          # the batch is refused as a whole
    assert "first bad entry 2 (int): True (bool)" in h.log()


def test_update_more_factors_than_pending_jobs(make_host, handlers):
    h = start(make_host, handlers)
    _add_jobs(h)
    update_returns(handlers, "{i: 1 for i in range(1, 10)}")
    got = h.site_update()
    assert got[1] == NICE_OFFSET + 1 and got[2] == NICE_OFFSET
    assert ("update() returned 9 factors for 4 pending jobs; factors left "
            "unchanged") in h.log()


def test_update_exception_changes_nothing(make_host, handlers):
    h = start(make_host, handlers)
    _add_jobs(h)
    update_returns(handlers, "{j.job_id: 1 // 0 for j in jobs}")
    got = h.site_update()
    assert got == {1: NICE_OFFSET + 1, 2: NICE_OFFSET, 3: NICE_OFFSET,
                   4: 44, 5: 55, 6: 66}
    log = h.log()
    assert re.search(r"error: site_factor/python: update\(\) over 4 pending jobs "
                     r"failed at %s:\d+: ZeroDivisionError"
                     % re.escape(str(handlers.path / "sf.py")), log)
    assert "Traceback (most recent call last):" in log
    assert h.ping() == {}
    update_returns(handlers, "{2: 2}")
    assert h.site_update()[2] == NICE_OFFSET + 2


def test_update_with_many_jobs(make_host, handlers):
    h = start(make_host, handlers)
    n = 3000
    b = h.update_many(n, keep=True, timeout=60)
    assert b["n"] == n
    update_returns(handlers, "{j.job_id: j.job_id % 1000 - 500 for j in jobs}")
    got = h.site_update()
    assert len(got) == n
    assert all(v == NICE_OFFSET + k % 1000 - 500 for k, v in got.items())
    assert handlers.lines("calls.jsonl")[-1][:2] == ["update", n]


def test_update_with_no_jobs(make_host, handlers):
    h = start(make_host, handlers)
    update_returns(handlers, "{}")
    assert h.site_update() == {}
    assert handlers.read("update.json") == []


# ---------------------------------------------------------------------------
# reconfig()
# ---------------------------------------------------------------------------

def test_reconfig_calls_the_handler(make_host, handlers):
    h = start(make_host, handlers)
    h.site_reconfig()
    h.site_reconfig(_thread=True)
    assert handlers.lines("calls.jsonl") == [["reconfig", 0, "v1"]] * 2
    (handlers.out / "reconfig_raise").touch()
    h.site_reconfig()
    log = h.log()
    assert ("error: site_factor/python: reconfig() failed at %s:%d: "
            "RuntimeError: reconfig refused" % (handlers.path / "sf.py",
                                                 LINE_RECONFIG_RAISE)
            ) in log
    assert h.ping() == {}
    assert set_factor(h, 1, "1")["site_factor"] == NICE_OFFSET + 1


def test_reconfig_reloads_a_changed_file_even_with_reload_off(make_host,
                                                              handlers):
    h = start(make_host, handlers, reload="0")
    assert set_factor(h, 1, "int(VERSION == 'v1')")["site_factor"] == \
        NICE_OFFSET + 1
    handlers.write("sf", HANDLER.replace('"v1"', '"v2"'))
    assert set_factor(h, 2, "len(VERSION)")["site_factor"] == NICE_OFFSET + 2
    assert handlers.lines("calls.jsonl")[-1] == ["set", 2, "v1"]
    h.site_reconfig()
    assert handlers.lines("calls.jsonl")[-1] == ["reconfig", 0, "v2"]
    set_factor(h, 3, "0")
    assert handlers.lines("calls.jsonl")[-1] == ["set", 3, "v2"]
    assert "site_factor/python: reloaded handler sf:H" in h.log()


def test_reconfig_with_new_params_switches_handler(make_host, handlers):
    h = start(make_host, handlers)
    handlers.write("other", HANDLER.replace('"v1"', '"other"'))
    h.conf(site_factor_params=handlers.params("other:H"))
    h.site_reconfig()
    # the new handler loads on the boot thread, not under the job lock
    h.wait_booted(2)
    set_factor(h, 1, "1")
    assert handlers.lines("calls.jsonl")[-1] == ["set", 1, "other"]


def test_reconfig_with_broken_params_fails_closed(make_host, handlers):
    """As with PrEpParameters: unusable parameters after a reconfigure must
    not leave the previous handler running."""
    h = start(make_host, handlers)
    assert set_factor(h, 1, "1")["site_factor"] == NICE_OFFSET + 1
    h.conf(site_factor_params=handlers.params("sf:H", workers="0"))
    h.site_reconfig()
    h.wait_booted(2)
    assert "workers='0' must be an integer from 1 to 64" in h.log()
    res = set_factor(h, 2, "2", site_factor=NICE_OFFSET + 5)
    assert res["site_factor"] == NICE_OFFSET + 5
    assert handlers.lines("calls.jsonl")[-1][:2] != ["set", 2]


def test_hot_reload_site_factor(make_host, handlers):
    h = start(make_host, handlers, reload="0.2")
    set_factor(h, 1, "0")
    handlers.write("sf", HANDLER.replace('"v1"', '"v2"'))
    job = 2
    t0 = time.monotonic()
    while handlers.lines("calls.jsonl")[-1][2] != "v2":
        assert time.monotonic() - t0 < 30        # catches a hang only (reload=0.2)
        time.sleep(0.05)
        set_factor(h, job, "0")
        job += 1
    handlers.write("sf", "this is not python\n")
    wait_for(lambda: set_factor(h, 500, "7")["site_factor"] == NICE_OFFSET + 7
             and "changed handler refused" in h.log(), 30)
    assert set_factor(h, 501, "8")["site_factor"] == NICE_OFFSET + 8
    assert handlers.lines("calls.jsonl")[-1] == ["set", 501, "v2"]


# ---------------------------------------------------------------------------
# fail closed, timeouts
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("case", ["no_params", "syntax", "prep_class",
                                  "group_writable"])
def test_unusable_handler_changes_nothing(make_host, handlers, case):
    h = make_host("sf")
    path = handlers.path / "sf.py"
    if case == "no_params":
        want = "PrioritySiteFactorParameters is not set"
    elif case == "syntax":
        handlers.write("sf", "x = (\n")
        want = "%s:1: syntax error" % path
    elif case == "prep_class":
        handlers.write("sf", "from slurmpy_plugins import PrEpHandler\n"
                       "class H(PrEpHandler):\n    pass\n")
        want = ("%s: sf:H is not a subclass of "
                "slurmpy_plugins.SiteFactorHandler" % path)
    else:
        handlers.write("sf", HANDLER, mode=0o620)
        want = "refusing handler file %s: writable by group" % path
    if case != "no_params":
        h.conf(site_factor_params=handlers.params("sf:H"))
    h.load()
    res = set_factor(h, 1, "1", site_factor=NICE_OFFSET + 4)
    assert res["site_factor"] == NICE_OFFSET + 4
    h.jobs_add(job_id=2, site_factor=22)
    assert h.site_update() == {2: 22}
    h.site_reconfig()
    log = h.log()
    assert "error: site_factor/python: handler not loaded: " + want in log
    assert ("site_factor/python: set() for JobId=1 failed: no usable handler"
            in log)
    assert handlers.lines("calls.jsonl") == []


def _open_gate(handlers):
    """Let the handler blocked on out/gate return (it is blocked there: its
    call was answered at the 2 s limit, long after it entered hang())."""
    os.close(os.open(handlers.out / "gate", os.O_WRONLY | os.O_NONBLOCK))


def test_set_and_update_timeouts(make_host, handlers):
    # hang() is blocked in C (no TimeoutError can stop it) until the test
    # opens out/gate, a FIFO, for writing: the call stays stuck for as long
    # as the test needs, however late the pool's interrupt comes (a Python
    # loop was interrupted before the next calls came, on a loaded machine)
    os.mkfifo(handlers.out / "gate", 0o600)
    h = start(make_host, handlers, timeout="2", workers=1, source="""\
        import os
        import spmtest_rec as R
        from slurmpy_plugins import SiteFactorHandler
        def hang():
            os.close(os.open("{out}/gate", os.O_RDONLY))
        class H(SiteFactorHandler):
            def set(self, job):
                if job.comment == "hang":
                    hang()
                return job.job_id
            def update(self, jobs):
                if len(jobs) == 1:
                    hang()
                return {j.job_id: -j.job_id for j in jobs}
        """)
    res = set_factor(h, 1, "hang", site_factor=NICE_OFFSET + 9)
    assert res["site_factor"] == NICE_OFFSET + 9
    # at its 2 s limit, not when the test lets the handler go: a generous
    # bound that only tells the two apart (the host times from its own
    # clock read, a little after the plugin's)
    assert 1900000 <= res["us"] < 15000000, res
    # While that call is stuck, the next ones must not each wait the full
    # timeout under the job write lock: they fail at once, factors
    # unchanged, with one log line for the lot.
    for j in (2, 3, 4):
        res = set_factor(h, j, "fine", site_factor=NICE_OFFSET + 7)
        assert res["site_factor"] == NICE_OFFSET + 7
        # not the full 2 s timeout: the bound sits halfway, so that only
        # waiting for the timeout can fail it
        assert res["us"] < 1000000, res
    assert "an earlier call is still stuck in the handler" in h.log()
    # the stuck handler returns (its TimeoutError is raised as it leaves
    # the gate): calls are answered again
    _open_gate(handlers)
    wait_for(lambda: h.log().count("its result was discarded") == 1, 30,
             what="the stuck handler to return")
    assert set_factor(h, 5, "fine")["site_factor"] == NICE_OFFSET + 5
    h.jobs_add(job_id=3)
    t0 = time.monotonic()
    assert h.site_update() == {3: NICE_OFFSET}
    # at its 2 s limit, not when the test lets the handler go (generous,
    # as above; 1.9: the deadline starts at the plugin's own clock read)
    assert 1.9 <= time.monotonic() - t0 < 15
    _open_gate(handlers)
    wait_for(lambda: h.log().count("its result was discarded") == 2, 30,
             what="the stuck update() to return")
    h.jobs_add(job_id=4)
    assert h.site_update() == {3: NICE_OFFSET - 3, 4: NICE_OFFSET - 4}
    log = h.log()
    assert "set(): the handler exceeded its time limit of 2000 ms; factors left unchanged" in log
    assert "update(): the handler exceeded its time limit of 2000 ms; factors left unchanged" in log


def test_joblist_api_and_records_kept_across_calls(make_host, handlers):
    """update() gets a JobList (len, indexing, slices, iteration); records
    are read-only copies that stay valid after the call that made them."""
    h = start(make_host, handlers, source="""\
        import spmtest_rec as R
        from slurmpy_plugins import SiteFactorHandler, Job
        KEPT = []
        class H(SiteFactorHandler):
            def update(self, jobs):
                out = {"len": len(jobs), "ids": [j.job_id for j in jobs],
                       "again": [j.job_id for j in jobs],
                       "last": jobs[-1].job_id if jobs else None,
                       "slice": [j.job_id for j in jobs[1:3]],
                       "types": sorted({type(j).__name__ for j in jobs})}
                try:
                    jobs[len(jobs)]
                except IndexError:
                    out["index_error"] = True
                for attr, value in (("name", "x"), ("nope", 1)):
                    try:
                        setattr(jobs[0], attr, value)
                    except AttributeError:
                        out.setdefault("readonly", []).append(attr)
                try:
                    jobs[0].no_such_field
                except AttributeError:
                    out["unknown_attr"] = True
                KEPT.extend(jobs)
                out["kept"] = [[j.job_id, j.name, j.spank_env] for j in KEPT]
                R.dump("{out}/api.%d.json" % len(KEPT), out)
                return {}
        """)
    for j in (1, 2, 3):
        h.jobs_add(job_id=j, name="job%d" % j, spank_job_env=["N=%d" % j])
    h.site_update()
    h.jobs_clear()          # the host frees (and scribbles over) the records
    h.jobs_add(job_id=4, name="job4")
    h.site_update()
    out = handlers.read("api.3.json")
    assert out["len"] == 3 and out["ids"] == out["again"] == [1, 2, 3]
    assert out["last"] == 3 and out["slice"] == [2, 3]
    out = handlers.read("api.4.json")
    assert out["len"] == 1 and out["ids"] == [4] and out["last"] == 4
    assert out["types"] == ["Job"] and out["index_error"] is True
    assert out["readonly"] == ["name", "nope"] and out["unknown_attr"]
    assert out["kept"] == [[j, "job%d" % j, {"N": str(j)}] for j in (1, 2, 3)
                           ] + [[4, "job4", {}]]


def test_handler_logs_with_the_site_factor_prefix(make_host, handlers):
    h = start(make_host, handlers, source="""\
        import logging
        from slurmpy_plugins import SiteFactorHandler
        class H(SiteFactorHandler):
            def set(self, job):
                logging.getLogger("sf").info("set %d", job.job_id)
                print("hello from set")
                return 1
        """)
    set_factor(h, 3, None)
    log = h.log()
    assert "site_factor/python: sf: set 3" in log
    assert "site_factor/python: hello from set" in log


def test_bridge_that_never_attaches_changes_nothing(make_host, handlers,
                                                    broken_bridge_plugins):
    handlers.write("sf", HANDLER)
    h = make_host("sf", so=str(broken_bridge_plugins /
                               "site_factor_python.so"))
    h.conf(site_factor_params=handlers.params("sf:H"))
    h.load()
    res = set_factor(h, 1, "1", site_factor=NICE_OFFSET + 4)
    assert res["site_factor"] == NICE_OFFSET + 4
    h.jobs_add(job_id=2, site_factor=22)
    assert h.site_update() == {2: 22}
    h.site_reconfig()
    log = h.log()
    assert "slurmpy: Python bridge failed to start" in log
    assert ("site_factor/python: set(): the Python bridge is not attached; "
            "factors left unchanged") in log
    assert handlers.lines("calls.jsonl") == []


def test_update_strings_are_lazy_and_closed_after_the_call(make_host, handlers):
    """update() jobs copy a field (for every job of the batch) on its
    first read during the call; afterwards a string field never read raises
    SnapshotClosed (Slurm's records are only guaranteed while slurmctld
    holds its job lock), while numbers (the handler kept the jobs) and
    fields read in time stay available."""
    handlers.write("lz", """\
        import json
        from slurmpy_plugins import SiteFactorHandler, SnapshotClosed
        class F(SiteFactorHandler):
            def update(self, jobs):
                self.kept = list(jobs)
                self.read_name = self.kept[0].name       # job 0: strings copied
                return {}
            def set(self, job):
                if not hasattr(self, "kept"):
                    return None
                out = {"numbers": [k.job_id for k in self.kept],
                       "priority": [k.priority for k in self.kept],
                       "name0": self.kept[0].name, "name1": self.kept[1].name}
                try:
                    self.kept[1].account
                    out["late"] = "no error"
                except SnapshotClosed as e:
                    out["late"] = str(e)
                with open("{out}/late.json", "w") as f:
                    json.dump(out, f)
                return None
        """)
    h = make_host("sf")
    h.conf(site_factor_params=handlers.params("lz:F"))
    h.load()
    h.jobs_add(job_id=11, name="first", account="acct1", job_state="PENDING",
               priority=7)
    h.jobs_add(job_id=12, name="second", account="acct2", job_state="PENDING",
               priority=8)
    h.site_update()
    h.site_set(job_id=13)
    late = handlers.read("late.json")
    assert late["numbers"] == [11, 12] and late["priority"] == [7, 8]
    assert late["name0"] == "first" and late["name1"] == "second"
    assert late["late"].startswith("account: fields of the jobs given to update() that "
                                   "were not read during update() cannot be read afterwards")


def test_repr_of_an_update_job_does_not_load_its_strings(make_host, handlers):
    """repr() (a log line, a debugger, a traceback) must not copy a lazy
    job's strings: it shows the numbers, and the name only once the name
    column was copied, and it still works after update() has returned."""
    handlers.write("rp", """\
        import json
        from slurmpy_plugins import SiteFactorHandler, SnapshotClosed
        class F(SiteFactorHandler):
            def update(self, jobs):
                self.kept = list(jobs)
                self.seen = {"before": repr(self.kept[1])}
                self.kept[0].name                   # the name column: copied
                self.seen["loaded"] = repr(self.kept[0])
                return {}
            def set(self, job):
                if not hasattr(self, "kept"):
                    return None
                out = dict(self.seen, after=repr(self.kept[1]))
                try:
                    self.kept[1].comment
                    out["late"] = "strings were loaded"
                except SnapshotClosed:
                    out["late"] = "closed"
                out["full"] = repr(job)
                with open("{out}/repr.json", "w") as f:
                    json.dump(out, f)
                return None
        """)
    h = make_host("sf")
    h.conf(site_factor_params=handlers.params("rp:F"))
    h.load()
    h.jobs_add(job_id=11, name="first", job_state="PENDING")
    h.jobs_add(job_id=12, name="second", job_state="PENDING")
    h.site_update()
    h.site_set(job_id=13, name="third", job_state="PENDING")
    got = handlers.read("repr.json")
    assert got == {"before": "<Job 12 PENDING>", "loaded": "<Job 11 'first' PENDING>",
                   "after": "<Job 12 'second' PENDING>", "late": "closed",
                   "full": "<Job 13 'third' PENDING>"}


def test_handlers_dir_update_reads_each_files_declared_fields(make_host, handlers):
    """handlers=DIR whose files declare different `fields`: in the plugin
    (as slurmctld runs it, not only in the kit) each file's update() reads
    job_id and its own field, and the factors add up."""
    d = handlers.path.parent / "sf.d"
    d.mkdir(mode=0o755)
    for name, field, k in (("10-acct", "account", 100), ("20-prio", "priority", 1)):
        p = d / f"{name}.py"
        p.write_text("from slurmpy_plugins import SiteFactorHandler\n"
                     "class F(SiteFactorHandler):\n"
                     f"    fields = ({field!r},)\n"
                     "    def update(self, jobs):\n"
                     f"        return {{j.job_id: {k} * len(str(j.{field})) for j in jobs}}\n")
        os.chmod(p, 0o644)
    h = make_host("sf")
    h.conf(site_factor_params=f"handlers={d}")
    h.load()
    h.jobs_add(job_id=11, account="ab", job_state="PENDING", priority=7)
    h.jobs_add(job_id=12, account="abcd", job_state="PENDING", priority=1234)
    assert h.site_update() == {11: NICE_OFFSET + 200 + 1, 12: NICE_OFFSET + 400 + 4}, h.log()
    assert "error" not in h.log()
