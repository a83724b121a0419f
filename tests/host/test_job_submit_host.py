"""job_submit/python (build/plugins/job_submit_python.so) driven by the C
test host acting as slurmctld: job_submit() and job_modify() on real
job_desc_msg_t structs, with what the host finds in the struct (and in
err_msg) afterwards as the oracle.
"""
from __future__ import annotations

import os
import time

import pytest

from .conftest import PLUGIN_DIR, wait_for

JS_SO = PLUGIN_DIR / "job_submit_python.so"
NO_VAL, NO_VAL16, NO_VAL64 = 0xFFFFFFFE, 0xFFFE, 0xFFFFFFFFFFFFFFFE
MEM_PER_CPU = 1 << 63

# submit() runs the code in out/submit.py (exec, with job, self, uid in
# scope) so each test chooses what the handler does; it dumps what it saw.
HANDLER = """\
import json
import spmtest_rec as R
from slurmpy_plugins import JobSubmitHandler, Reject

VERSION = "v1"
KEPT = []

def run(name, **scope):
    try:
        with open("{out}/%s.py" % name) as f:
            code = f.read()
    except FileNotFoundError:
        return
    exec(code, dict(scope, Reject=Reject, KEPT=KEPT, R=R, OUT="{out}"))

class Policy(JobSubmitHandler):
    def submit(self, job, submit_uid):
        R.append("{out}/calls.jsonl", ["submit", job.name, VERSION])
        run("submit", job=job, self=self, uid=submit_uid)

    def modify(self, job, current, submit_uid):
        R.append("{out}/calls.jsonl", ["modify", job.job_id, current.job_id, VERSION])
        run("modify", job=job, current=current, self=self, uid=submit_uid)
"""


def start(make_host, handlers, conf=None, source=HANDLER, extra=()):
    handlers.write("policy", source)
    slurm_conf = handlers.path.parent / "slurm.conf"
    slurm_conf.write_text("# not read by the host\n")
    if conf is None:
        conf = ["handler=policy:Policy", f"path={handlers.path}", *extra]
    if conf is not False:
        (handlers.path.parent / "job_submit_python.conf").write_text("\n".join(conf) + "\n")
    h = make_host(so=JS_SO)
    h.conf(slurm_conf=str(slurm_conf))
    h.load()
    return h


def policy(handlers, code: str, name: str = "submit") -> None:
    (handlers.out / f"{name}.py").write_text(code)


def test_changes_reach_the_request_and_the_message_the_user(make_host, handlers):
    h = start(make_host, handlers)
    policy(handlers, """
job.time_limit = 60
job.partition = "gpu"
job.comment = "stamped ü"
job.min_mem_per_cpu = 100
job.account = None
self.log_user("line one")
self.log_user("line two")
""")
    res = h.js_submit(name="j", partition="debug", account="acct", pn_min_memory=5000)
    assert res["rc"] == 0
    d = res["desc"]
    assert d["time_limit"] == 60 and d["partition"] == "gpu"
    assert d["comment"] == "stamped ü" and d["account"] is None
    assert d["pn_min_memory"] == 100 | MEM_PER_CPU
    assert res["err_msg"] == "line one\nline two"
    # untouched fields stay as they came
    assert d["name"] == "j" and d["min_nodes"] == NO_VAL and d["num_tasks"] == NO_VAL


def test_unset_values_read_as_none(make_host, handlers):
    h = start(make_host, handlers)
    policy(handlers, "R.dump(OUT + '/job.json', job.as_dict())")
    h.js_submit(name="x", cpus_per_task=4, environment=["A=1", "B=x=y"], begin_time=0,
                pn_min_memory=2048, submit_uid=1234)
    seen = handlers.read("job.json")
    assert seen["name"] == "x" and seen["cpus_per_task"] == 4
    assert seen["environment"] == {"A": "1", "B": "x=y"}
    for f in ("time_limit", "partition", "account", "min_nodes", "ntasks_per_node",
              "begin_time", "min_mem_per_cpu", "job_id", "comment", "qos"):
        assert seen[f] is None, f
    assert seen["min_mem_per_node"] == 2048


def test_reject_after_changes_leaves_the_request_as_it_came(make_host, handlers):
    h = start(make_host, handlers)
    policy(handlers, """
job.comment = "changed"
job.time_limit = 5
self.log_user("before")
raise Reject("no budget: balance 3 SU, job needs 40 SU")
""")
    res = h.js_submit(comment="orig")
    assert res["rc"] != 0
    assert res["desc"]["comment"] == "orig" and res["desc"]["time_limit"] == NO_VAL
    assert res["err_msg"] == "before\nno budget: balance 3 SU, job needs 40 SU"


def test_other_exception_refuses_with_generic_message_and_logs_traceback(make_host, handlers):
    h = start(make_host, handlers)
    policy(handlers, "job.comment = 'changed'\n1 / 0\n")
    res = h.js_submit(comment="orig")
    assert res["rc"] != 0 and res["desc"]["comment"] == "orig"
    assert "the site's job submission policy failed" in res["err_msg"]
    assert "ZeroDivisionError" not in res["err_msg"]
    log = h.log()
    assert "submit() for a job of uid 0 failed at" in log and "ZeroDivisionError" in log
    assert "Traceback" in log


def test_type_range_and_name_errors_name_the_field(make_host, handlers):
    h = start(make_host, handlers)
    policy(handlers, """
errs = []
for name, value in [("time_limit", "1"), ("time_limit", True), ("time_limit", -1),
                    ("time_limit", 0xFFFFFFFE), ("cpus_per_task", 70000),
                    ("comment", 5), ("comment", "a\\0b"), ("partiton", "x"),
                    ("user_id", 3), ("environment", {}), ("begin_time", 0)]:
    try:
        setattr(job, name, value)
        errs.append("no error")
    except Exception as e:
        errs.append("%s: %s" % (type(e).__name__, e))
try:
    job.tiem_limit
except AttributeError as e:
    errs.append(str(e))
job.time_limit = 0xFFFFFFFD     # the largest value
job.cpus_per_task = None
R.dump(OUT + '/errs.json', errs)
""")
    res = h.js_submit(cpus_per_task=2)
    errs = handlers.read("errs.json")
    assert errs == [
        "TypeError: job.time_limit must be an int, UNLIMITED or None, not str",
        "TypeError: job.time_limit must be an int, UNLIMITED or None, not bool",
        "ValueError: job.time_limit=-1 is out of range: it must be from 0 to 4294967293 "
        "(or UNLIMITED, or None to unset it)",
        "ValueError: job.time_limit=4294967294 is out of range: it must be from 0 to "
        "4294967293 (or UNLIMITED, or None to unset it)",
        "ValueError: job.cpus_per_task=70000 is out of range: it must be from 0 to 65533 "
        "(or UNLIMITED, or None to unset it)",
        "TypeError: job.comment must be a str or None, not int",
        "ValueError: job.comment must not contain a NUL character",
        "AttributeError: job has no field 'partiton' (did you mean 'partition'?)",
        "AttributeError: job.user_id is read-only (set by Slurm)",
        "AttributeError: job.environment cannot be assigned: change it item by item "
        "(job.environment['NAME'] = 'value', del job.environment['NAME'])",
        "ValueError: job.begin_time=0 is out of range: it must be from 1 to "
        "9223372036854775807 (or None to unset it)",
        "job has no field 'tiem_limit' (did you mean 'time_limit'?)",
    ]
    assert res["rc"] == 0
    assert res["desc"]["time_limit"] == 0xFFFFFFFD
    assert res["desc"]["cpus_per_task"] == NO_VAL16


def test_a_kept_view_is_readable_but_closed_after_the_call(make_host, handlers):
    h = start(make_host, handlers)
    policy(handlers, """
if KEPT:
    old = KEPT[0]
    try:
        old.comment = "late"
        R.dump(OUT + '/late.json', ["no error", old.comment])
    except RuntimeError as e:
        R.dump(OUT + '/late.json', [str(e), old.comment, old.name])
else:
    job.comment = "first"
    KEPT.append(job)
""")
    assert h.js_submit(name="one")["desc"]["comment"] == "first"
    h.js_submit(name="two")
    msg, comment, name = handlers.read("late.json")
    assert "the hook has returned" in msg
    assert comment == "first" and name == "one"


def test_partitions_are_visible(make_host, handlers):
    h = start(make_host, handlers)
    h.parts_add(name="debug", nodes="n[1-4]", total_cpus=256, total_nodes=4,
                max_time=0xFFFFFFFF, default=True)
    h.parts_add(name="gpu", nodes="g1", total_cpus=64, total_nodes=1, max_time=120,
                default_time=30, allow_accounts="phys,chem", allow_qos="gpu",
                state_up=1)   # PARTITION_DOWN (PARTITION_SUBMIT only)
    policy(handlers, "R.dump(OUT + '/parts.json', "
                     "{n: p.as_dict() for n, p in self.partitions.items()})")
    assert h.js_submit()["rc"] == 0
    p = handlers.read("parts.json")
    assert sorted(p) == ["debug", "gpu"]
    assert p["debug"]["default"] is True and p["debug"]["max_time"] is None
    assert p["debug"]["default_time"] is None and p["debug"]["state"] == "UP"
    g = p["gpu"]
    assert g["default"] is False and g["max_time"] == 120 and g["default_time"] == 30
    assert g["allow_accounts"] == "phys,chem" and g["allow_qos"] == "gpu"
    assert g["state"] == "DOWN" and g["nodes"] == "g1" and g["total_cpus"] == 64


def test_modify_sees_the_request_and_the_job(make_host, handlers):
    h = start(make_host, handlers)
    policy(handlers, """
R.dump(OUT + '/mod.json', dict(job_id=job.job_id, limit=job.time_limit,
                               cur=current.time_limit, cur_name=current.name, uid=uid))
if job.time_limit is not None and job.time_limit > 60:
    raise Reject("at most 60 minutes")
job.comment = "modified"
""", name="modify")
    res = h.js_modify(dict(job_id=42, time_limit=5, name="old"), submit_uid=7,
                      time_limit=10)
    assert res["rc"] == 0 and res["desc"]["comment"] == "modified"
    assert handlers.read("mod.json") == dict(job_id=42, limit=10, cur=5, cur_name="old", uid=7)
    res = h.js_modify(dict(job_id=42, time_limit=5), time_limit=90)
    assert res["rc"] != 0 and res["desc"]["comment"] is None
    assert "modify() refused the update of JobId=42: at most 60 minutes" in h.log()


def test_a_hook_not_overridden_is_not_called(make_host, handlers):
    h = start(make_host, handlers, source="""\
from slurmpy_plugins import JobSubmitHandler
class Policy(JobSubmitHandler):
    def submit(self, job, submit_uid):
        job.comment = "s"
""")
    assert h.js_submit()["desc"]["comment"] == "s"
    res = h.js_modify(dict(job_id=3), comment="c")
    assert res["rc"] == 0 and res["desc"]["comment"] == "c"


def test_missing_conf_file_fails_closed_naming_it(make_host, handlers):
    h = start(make_host, handlers, conf=False)
    res = h.js_submit()
    assert res["rc"] != 0
    path = handlers.path.parent / "job_submit_python.conf"
    assert f"cannot read {path}: No such file or directory" in res["err_msg"]


@pytest.mark.parametrize("lines,error", [
    (["# site policy", "", "handler=policy:Policy", "timeuot=3"],
     r"job_submit_python.conf:4: unknown key 'timeuot' (known keys: handler, handlers, path, venv, "
     r"timeout, workers, reload, on_failure)"),
    (["handler=policy:Policy", "timeout=0"],
     "job_submit_python.conf:2: timeout='0' must be a positive number of seconds"),
    (["handler=policy:Policy", "workers=2", "workers=3"],
     "job_submit_python.conf:3: key 'workers' given twice (first at "),
    (["handler=policy:Policy", "on_failure=maybe"],
     "job_submit_python.conf:2: on_failure='maybe' must be reject or accept"),
    (["handler policy:Policy"],
     "job_submit_python.conf:1: 'handler policy:Policy' is not key=value"),
    (["# nothing"], "job_submit_python.conf: no settings"),
])
def test_conf_errors_name_file_and_line(make_host, handlers, lines, error):
    if "no settings" not in error:
        lines = lines + [f"path={handlers.path}"]
    h = start(make_host, handlers, conf=lines)
    res = h.js_submit()
    assert res["rc"] != 0
    assert error in res["err_msg"], res["err_msg"]
    assert error in h.log()


def test_broken_handler_fails_closed(make_host, handlers):
    h = start(make_host, handlers, source="import nonexistent_module_xyz\n")
    res = h.js_submit()
    assert res["rc"] != 0
    assert "policy is not loaded" in res["err_msg"]
    assert "nonexistent_module_xyz" in res["err_msg"]


def test_hung_handler_is_refused_at_timeout(make_host, handlers):
    h = start(make_host, handlers, extra=["timeout=0.5"])
    policy(handlers, "if job.name == 'hang':\n    while True:\n        pass\n"
                     "job.comment = 'ok'\n")
    t0 = time.monotonic()
    res = h.js_submit(name="hang", comment="orig")
    took = time.monotonic() - t0
    assert res["rc"] != 0 and res["desc"]["comment"] == "orig"
    assert "did not answer within its time limit of 500 ms" in res["err_msg"]
    # not before the limit, and then at once: the loop never ends unless it
    # is interrupted, so without the limit the call would not return at all
    # (the bound is generous: a shared 2-vCPU machine)
    # at the 0.5 s limit (ms clock: may come a millisecond early), not at the end
    assert 0.45 <= took < 15, took
    # TimeoutError reaches the pure-Python loop: the pool recovers
    res = wait_for(lambda: (r := h.js_submit(name="fine")) and r["rc"] == 0 and r,
                   timeout=30, what="a call accepted after the hang")
    assert res["desc"]["comment"] == "ok"


def test_on_failure_accept_accepts_unchanged_and_logs(make_host, handlers):
    h = start(make_host, handlers, extra=["on_failure=accept", "timeout=0.5"])
    policy(handlers, "job.comment = 'changed'\nraise KeyError('ledger')\n")
    res = h.js_submit(comment="orig")
    assert res["rc"] == 0 and res["desc"]["comment"] == "orig"
    assert "on_failure=accept: the request is accepted unchanged" in h.log()
    # a Reject still refuses
    policy(handlers, "raise Reject('no')\n")
    assert h.js_submit()["rc"] != 0
    # a timeout accepts too
    policy(handlers, "while True:\n    pass\n")
    res = h.js_submit(comment="orig")
    assert res["rc"] == 0 and res["desc"]["comment"] == "orig"
    assert ("failed (the handler did not answer within its time limit of 500 ms); "
            "on_failure=accept: the request is accepted unchanged") in h.log()


GENERIC = ("job_submit/python: request refused: the site's job submission policy failed "
           "(an administrator can find the error in slurmctld's log)")


def test_a_failure_is_never_the_handlers_refusal(make_host, handlers):
    """A handler's refusal (Reject: SPM_PY_REFUSED) and its failure
    (SPM_PY_FAILED) have statuses of their own: dispatch_job_submit.c logs
    and answers each as what it is, not by whether a message came back.
    (job_modify() has an err_msg from 23.02 on: the user's text is checked
    on submit().)"""
    h = start(make_host, handlers)
    policy(handlers, "self.log_user('checked')\nraise KeyError('ledger')\n")
    res = h.js_submit()
    assert (res["rc"], res["err_msg"]) == (-1, "checked\n" + GENERIC)
    assert ("error: job_submit/python: submit() for a job of uid 0 refused: "
            "KeyError: 'ledger'") in h.log()
    policy(handlers, "self.log_user('checked')\nraise KeyError('ledger')\n", name="modify")
    assert h.js_modify({"job_id": 42}, comment="c")["rc"] == -1
    log = h.log()
    assert "error: job_submit/python: modify() for JobId=42 refused: KeyError: 'ledger'" in log
    assert "refused the update" not in log               # not logged as its refusal
    policy(handlers, "self.log_user('checked')\nraise Reject('not now')\n", name="modify")
    assert h.js_modify({"job_id": 42}, comment="c")["rc"] == -1
    assert "modify() refused the update of JobId=42: checked\nnot now" in h.log()
    assert "modify() for JobId=42 refused: " not in h.log()[len(log):]


def test_on_failure_accept_applies_to_failures_never_to_a_refusal(make_host, handlers):
    """on_failure=accept: a Reject (with or without a message) still
    refuses, with its code; a raise, a timeout and a handler that cannot
    load accept the request unchanged, each logged with its reason."""
    h = start(make_host, handlers, extra=["on_failure=accept", "timeout=0.5"])
    policy(handlers, "job.comment = 'changed'\nraise Reject('')\n")
    res = h.js_submit(comment="orig")
    assert (res["rc"], res["err_msg"], res["desc"]["comment"]) == (-1, None, "orig")
    policy(handlers, "raise Reject('no account', code='ESLURM_INVALID_ACCOUNT')\n")
    res = h.js_submit(comment="orig")
    assert (res["rc"], res["err_msg"]) == (2045, "no account")
    assert "accepted unchanged" not in h.log()
    policy(handlers, "self.log_user('looked')\nraise KeyError('ledger')\n")
    res = h.js_submit(comment="orig")
    assert (res["rc"], res["err_msg"], res["desc"]["comment"]) == (0, "looked", "orig")
    assert ("submit() for a job of uid 0 failed (KeyError: 'ledger'); on_failure=accept: "
            "the request is accepted unchanged") in h.log()
    policy(handlers, "while True:\n    pass\n")
    res = h.js_submit(comment="orig")
    assert (res["rc"], res["err_msg"], res["desc"]["comment"]) == (0, None, "orig")
    assert ("submit() for a job of uid 0 failed (the handler did not answer within its time "
            "limit of 500 ms); on_failure=accept: the request is accepted unchanged") in h.log()


def test_on_failure_accept_with_no_usable_handler(make_host, handlers):
    h = start(make_host, handlers, source="import nonexistent_module_xyz\n",
              extra=["on_failure=accept"])
    res = h.js_submit(comment="orig")
    assert (res["rc"], res["err_msg"], res["desc"]["comment"]) == (0, None, "orig")
    assert "submit() for a job of uid 0 failed (no usable handler (" in h.log()
    assert "nonexistent_module_xyz" in h.log()


def test_changed_file_reloads_and_a_broken_change_keeps_the_last_good(make_host, handlers):
    h = start(make_host, handlers, extra=["reload=0.2"])
    h.js_submit(name="a")
    assert handlers.lines("calls.jsonl")[-1] == ["submit", "a", "v1"]
    handlers.write("policy", HANDLER.replace('VERSION = "v1"', 'VERSION = "v2"'))
    wait_for(lambda: "reloaded handler policy:Policy" in h.log(), timeout=10,
             what="the reload")
    h.js_submit(name="b")
    assert handlers.lines("calls.jsonl")[-1] == ["submit", "b", "v2"]
    handlers.write("policy", "def broken(:\n")
    wait_for(lambda: "changed handler refused, the previous one keeps running" in h.log(),
             timeout=30, what="the refusal")
    assert h.js_submit(name="c")["rc"] == 0
    assert handlers.lines("calls.jsonl")[-1] == ["submit", "c", "v2"]


def _write_conf(handlers, lines) -> None:
    """Replace job_submit_python.conf as an editor would (a new inode)."""
    conf = handlers.path.parent / "job_submit_python.conf"
    tmp = conf.with_suffix(".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    os.chmod(tmp, 0o644)
    os.replace(tmp, conf)


@pytest.mark.parametrize("how,fault", [
    ("mode", "writable by group or others (mode 0666)"),
    ("owner", "owned by uid 65534; it must be owned by root or SlurmUser"),
    ("dir", "is writable by group or others (mode 0777)"),
])
def test_settings_others_could_change_fail_closed(make_host, handlers, tmp_path, how, fault):
    """job_submit_python.conf names the code slurmctld runs: it gets the
    handler files' owner/mode checks, and the file's directories too."""
    conf = handlers.path.parent / "job_submit_python.conf"
    lines = ["handler=policy:Policy", f"path={handlers.path}"]
    if how == "dir":
        sub = tmp_path / "etc"
        sub.mkdir()
        os.chmod(sub, 0o777)
        conf = sub / "job_submit_python.conf"
    conf.write_text("\n".join(lines) + "\n")
    if how == "mode":
        os.chmod(conf, 0o666)
    elif how == "owner":
        os.chown(conf, 65534, 65534)
    handlers.write("policy", HANDLER)
    slurm_conf = conf.parent / "slurm.conf"
    slurm_conf.write_text("# not read by the host\n")
    h = make_host(so=JS_SO)
    h.conf(slurm_conf=str(slurm_conf))
    h.load()
    res = h.js_submit(name="x")
    assert res["rc"] != 0
    assert f"refusing job_submit/python settings {conf}" in res["err_msg"], res["err_msg"]
    assert fault in res["err_msg"], res["err_msg"]
    assert handlers.lines("calls.jsonl") == []     # the handler never ran


def test_changed_settings_take_effect_without_reinit(make_host, handlers):
    """A changed job_submit_python.conf is picked up within reload= (Slurm
    does not re-init job_submit plugins on reconfigure): settings and
    handler change together; a bad change is refused and the last good
    settings and handler keep running; fixing it takes effect."""
    base = ["handler=policy:Policy", f"path={handlers.path}", "reload=0.2"]
    h = start(make_host, handlers, conf=base)
    policy(handlers, "job.comment = 'changed'\nraise KeyError('ledger')\n")
    assert h.js_submit(comment="orig")["rc"] != 0          # on_failure=reject

    _write_conf(handlers, base + ["on_failure=accept"])
    wait_for(lambda: "job_submit_python.conf changed: settings reloaded" in h.log(),
             timeout=30, what="the settings reload")
    res = h.js_submit(comment="orig")
    assert res["rc"] == 0 and res["desc"]["comment"] == "orig"   # accepted unchanged

    # a new handler class named by the settings
    handlers.write("other", HANDLER.replace('VERSION = "v1"', 'VERSION = "other"'))
    policy(handlers, "")
    _write_conf(handlers, ["handler=other:Policy", f"path={handlers.path}", "reload=0.2"])
    wait_for(lambda: "reloaded handler other:Policy" in h.log(), timeout=10,
             what="the new handler")
    assert h.js_submit(name="n")["rc"] == 0
    assert handlers.lines("calls.jsonl")[-1] == ["submit", "n", "other"]

    # a broken change: refused, the previous settings and handler keep running
    _write_conf(handlers, ["handler=other:Policy", f"path={handlers.path}", "reload=0.2",
                           "timeuot=1"])
    wait_for(lambda: "previous settings and handler keep running" in h.log(),
             timeout=30, what="the refusal")
    assert "job_submit_python.conf:4: unknown key 'timeuot'" in h.log()
    assert h.js_submit(name="m")["rc"] == 0
    assert handlers.lines("calls.jsonl")[-1] == ["submit", "m", "other"]

    # settings whose handler cannot load: refused the same way
    _write_conf(handlers, ["handler=missing_mod:Policy", f"path={handlers.path}",
                           "reload=0.2"])
    wait_for(lambda: h.log().count("previous settings and handler keep running") >= 2,
             timeout=30, what="the second refusal")
    assert h.js_submit(name="k")["rc"] == 0
    assert handlers.lines("calls.jsonl")[-1] == ["submit", "k", "other"]

    # a new time limit reaches the calls
    policy(handlers, "import time\ntime.sleep(2)\n")
    _write_conf(handlers, ["handler=policy:Policy", f"path={handlers.path}", "reload=0.2",
                           "timeout=0.5"])
    wait_for(lambda: h.log().count("settings reloaded") >= 3, timeout=10,
             what="the third reload")
    res = h.js_submit(name="slow")
    assert res["rc"] != 0
    assert "did not answer within its time limit of 500 ms" in res["err_msg"]


def test_bad_settings_at_start_are_retried_once_changed(make_host, handlers):
    """No usable settings at start: every call is refused with the reason,
    and a fixed file is taken without a restart (at the default reload=)."""
    h = start(make_host, handlers, conf=["handler=policy:Policy", "timeuot=3",
                                         f"path={handlers.path}"])
    res = h.js_submit(name="a")
    assert res["rc"] != 0 and "unknown key 'timeuot'" in res["err_msg"]
    _write_conf(handlers, ["handler=policy:Policy", f"path={handlers.path}"])
    res = wait_for(lambda: (r := h.js_submit(name="b")) and r["rc"] == 0 and r,
                   timeout=15, what="a call accepted after the fix")
    assert handlers.lines("calls.jsonl")[-1] == ["submit", "b", "v1"]


def test_one_hung_call_costs_one_refusal(make_host, handlers):
    """issue 18.2: a submit() stuck in C (time.sleep, a socket read, a
    locked file) is refused at timeout=, and its worker is written off: the
    very next requests, submit and modify, run on a fresh worker at once
    instead of being refused for as long as the stuck call lasts."""
    h = start(make_host, handlers, extra=["timeout=0.5"])
    policy(handlers, "import time\nif job.name == 'hang':\n    time.sleep(600)\n"
                     "job.comment = 'ok'\n")
    res = h.js_submit(name="hang", comment="orig")
    assert res["rc"] != 0 and res["desc"]["comment"] == "orig"
    assert "did not answer within its time limit of 500 ms" in res["err_msg"]
    for i in range(5):
        res = h.js_submit(name=f"next{i}", comment="orig")
        assert res["rc"] == 0 and res["desc"]["comment"] == "ok", res
    policy(handlers, "job.comment = 'changed'\n", name="modify")
    res = h.js_modify({"job_id": 77}, comment="orig")
    assert res["rc"] == 0 and res["desc"]["comment"] == "changed", res
    assert "failed at once" not in h.log()


def test_written_off_workers_are_bounded_and_the_bound_is_said(make_host, handlers):
    """Each hung call writes one worker off; at the pool's bound (128) no
    fresh worker starts: requests are then refused at once, the refusal and
    the log say why, until a stuck call returns."""
    h = start(make_host, handlers, extra=["timeout=0.05"])
    policy(handlers, "import time\nif job.name.startswith('hang'):\n    time.sleep(600)\n")
    for i in range(128):
        res = h.js_submit(name=f"hang{i}")
        assert "did not answer within its time limit of 50 ms" in res["err_msg"], (i, res)
    log = wait_for(lambda: (t := h.log()) and "(128 written off, the limit)" in t and t,
                   timeout=10, what="the bound's log line")
    assert "all worker threads are stuck in handlers (128 written off, the limit)" in log
    res = h.js_submit(name="fine")
    assert res["rc"] != 0
    assert ("the site's job submission policy failed (no worker thread can run it: "
            "all are stuck in handlers)") in res["err_msg"], res


@pytest.mark.parametrize("field,largest,stored", [
    ("min_mem_per_node", 2**63 - 1, 2**63 - 1),
    ("min_mem_per_cpu", 2**63 - 3, (2**63 - 3) | MEM_PER_CPU),
])
def test_memory_ranges_exclude_what_slurm_reads_as_something_else(
        make_host, handlers, field, largest, stored):
    """issue 18.4: pn_min_memory's bit 63 means per CPU, and NO_VAL64 and
    INFINITE64 have it set: a per-node value must stay below the bit, a
    per-CPU one below NO_VAL64 once flagged.  Out of range: a ValueError
    naming the field and the range; the largest value arrives exactly."""
    h = start(make_host, handlers)
    policy(handlers, f"""
errs = []
for value in ({largest + 1}, {largest + 2}, 2**64 - 2, 2**64 - 1):
    try:
        job.{field} = value
        errs.append("no error")
    except ValueError as e:
        errs.append(str(e))
job.{field} = {largest}
R.dump(OUT + '/errs.json', errs)
""")
    res = h.js_submit(name="mem")
    errs = handlers.read("errs.json")
    assert errs == [f"job.{field}={v} is out of range: it must be from 0 to {largest} "
                    "(or None to unset it)"
                    for v in (largest + 1, largest + 2, 2**64 - 2, 2**64 - 1)]
    assert res["rc"] == 0
    assert res["desc"]["pn_min_memory"] == stored
    assert stored not in (NO_VAL64, 2**64 - 1)


def test_an_earlier_plugins_user_messages_are_kept(make_host, handlers):
    """issue 18.6: with JobSubmitPlugins=lua,python, *err_msg already holds
    the lines Lua's slurm.log_user gave when python runs: python's message
    (accepted, refused, or the failure text) comes after them, none lost."""
    h = start(make_host, handlers)
    lua = "lua: line one\nlua: line two"
    policy(handlers, "self.log_user('py says hi')\n")
    res = h.js_submit(name="a", _err_msg=lua)
    assert res["rc"] == 0 and res["err_msg"] == lua + "\npy says hi"
    policy(handlers, "raise Reject('py refuses')\n")
    res = h.js_submit(name="b", _err_msg=lua)
    assert res["rc"] != 0 and res["err_msg"] == lua + "\npy refuses"
    policy(handlers, "raise KeyError('ledger')\n")
    res = h.js_submit(name="c", _err_msg=lua)
    assert res["rc"] != 0
    first, _, ours = res["err_msg"].partition("lua: line two\n")
    assert first == "lua: line one\n" and ours.startswith("job_submit/python: request refused")
    # python with nothing to say leaves Lua's lines as they are
    policy(handlers, "pass\n")
    assert h.js_submit(name="d", _err_msg=lua)["err_msg"] == lua


# -- issue 22: the fields a Lua port reads, and the environment --------------

def test_environment_changes_reach_the_request(make_host, handlers):
    """jobdesc.c replaces job_desc_msg_t.environment/env_size with the
    handler's, NULL-terminated (the host's row checks it) and xmalloc'd
    (the host xfree()s each entry and the array, as Slurm does; under
    make asan, ASan/LSan watch); untouched entries stay."""
    h = start(make_host, handlers)
    policy(handlers, "job.environment['FOO'] = 'bar'\n"
                     "job.environment['A'] = 'changed'\n"
                     "del job.environment['B']\n"
                     "R.dump(OUT + '/env.json', dict(job.environment))")
    res = h.js_submit(name="x", script="#!/bin/sh\ntrue\n",
                      environment=["A=1", "B=x=y", "C=3"])
    assert res["rc"] == 0
    assert handlers.read("env.json") == {"A": "changed", "C": "3", "FOO": "bar"}
    assert sorted(res["desc"]["environment"]) == ["A=changed", "C=3", "FOO=bar"]


def test_an_unchanged_environment_is_left_as_it_came(make_host, handlers):
    h = start(make_host, handlers)
    policy(handlers, "job.environment['A'] = '1'")   # the same value: no change
    res = h.js_submit(name="x", script="#!/bin/sh\ntrue\n", environment=["A=1", "B=2"])
    assert res["rc"] == 0 and res["desc"]["environment"] == ["A=1", "B=2"]


def test_environment_errors_name_the_variable(make_host, handlers):
    h = start(make_host, handlers)
    policy(handlers, """\
errs = []
for act in (lambda: job.environment.__setitem__('', 'v'),
            lambda: job.environment.__setitem__('A=B', 'v'),
            lambda: job.environment.__setitem__('A', 1),
            lambda: job.environment.__setitem__('A', 'x\\0y'),
            lambda: job.environment.__delitem__('NOPE')):
    try:
        act()
    except Exception as e:
        errs.append(f"{type(e).__name__}: {e}")
R.dump(OUT + '/errs.json', errs)
""")
    res = h.js_submit(name="x", script="#!/bin/sh\ntrue\n", environment=["A=1"])
    assert res["rc"] == 0 and res["desc"]["environment"] == ["A=1"]
    assert handlers.read("errs.json") == [
        "ValueError: job.environment['']: a variable name must be non-empty and contain "
        "no '=' and no NUL character",
        "ValueError: job.environment['A=B']: a variable name must be non-empty and contain "
        "no '=' and no NUL character",
        "TypeError: job.environment['A'] must be a str, not int",
        "ValueError: job.environment['A'] must not contain a NUL character",
        "KeyError: 'NOPE'",
    ]


def test_a_request_without_environment_refuses_changes(make_host, handlers):
    """srun/salloc send no environment (Lua refuses too): setting one is
    an AttributeError naming the field; the request is refused."""
    h = start(make_host, handlers)
    policy(handlers, "job.environment['FOO'] = 'bar'")
    res = h.js_submit(name="x")
    assert res["rc"] != 0
    assert "environment" not in res["desc"] or not res["desc"]["environment"]
    assert "job.environment: this request carries no environment" in h.log()


def test_argv_user_name_and_defaults_are_read_only(make_host, handlers):
    """argv is the script's arguments; user_name the passwd name of
    user_id (looked up by the shim as job_submit/lua does); without
    accounting default_account and default_qos are None."""
    import pwd
    h = start(make_host, handlers)
    policy(handlers, """\
errs = []
for f in ('argv', 'user_name', 'default_account', 'default_qos'):
    try:
        setattr(job, f, None)
    except AttributeError as e:
        errs.append(str(e))
R.dump(OUT + '/seen.json', [job.argv, job.user_name, job.default_account,
                            job.default_qos, errs])
""")
    uid = os.getuid()
    res = h.js_submit(name="x", script="#!/bin/sh\ntrue\n", argv=["/tmp/s.sh", "a b", "c"],
                      user_id=uid)
    assert res["rc"] == 0
    argv, name, acct, qos, errs = handlers.read("seen.json")
    assert argv == ["/tmp/s.sh", "a b", "c"]
    assert name == pwd.getpwuid(uid).pw_name
    assert acct is None and qos is None
    assert errs == [f"job.{f} is read-only (set by Slurm)"
                    for f in ("argv", "user_name", "default_account", "default_qos")]
    # the lookup is remembered per uid (snapshot.c): an unknown uid stays
    # None, and the known one keeps its name, call after call
    for u, want in ((3987654, None), (uid, pwd.getpwuid(uid).pw_name), (3987654, None),
                    (uid, pwd.getpwuid(uid).pw_name)):
        assert h.js_submit(name="x", script="#!/bin/sh\ntrue\n", user_id=u)["rc"] == 0
        assert handlers.read("seen.json")[1] == want, u
