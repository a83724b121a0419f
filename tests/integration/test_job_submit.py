"""job_submit/python on a real slurmctld/slurmd: what the user sees, what
Slurm stores, and how the plugin fails (issue 10, "Done when")."""
from __future__ import annotations

import concurrent.futures
import json
import os
import pathlib
import re
import textwrap
import threading
import time

import pytest

from tests.harness.slurmcluster import SLURM_PLUGIN_DIR, slurm_at_least

from .conftest import BUILD_PLUGINS, read_calls, write_handler

LUA_SO = pathlib.Path(SLURM_PLUGIN_DIR) / "job_submit_lua.so"

HANDLER = '''
import json, os, time
from slurmpy_plugins import JobSubmitHandler, Reject

CALLS = {calls!r}

def record(hook, **kw):
    line = json.dumps(dict(hook=hook, t=time.time(), **kw))
    fd = os.open(CALLS, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\\n").encode())
    finally:
        os.close(fd)

class Policy(JobSubmitHandler):
{body}
'''


def write_conf_file(cluster, lines) -> pathlib.Path:
    p = cluster.conf_path.parent / "job_submit_python.conf"
    p.write_text("\n".join(lines) + "\n")
    os.chmod(p, 0o644)
    return p


@pytest.fixture
def js_cluster(cluster_factory, tmp_path):
    """make(body, conf=(), plugins="python", start=True) -> (cluster, calls):
    a cluster with JobSubmitPlugins=<plugins>, job_submit_python.conf beside
    slurm.conf and a handler module `site_submit` (class Policy, body
    `body`) that may call record()."""
    if not (BUILD_PLUGINS / "job_submit_python.so").exists():
        pytest.fail("build/plugins/job_submit_python.so is missing: run `make build` first")

    def make(body: str, conf=(), plugins: str = "python", conf_extra=(), start: bool = True,
             handler_source: str | None = None, **kw):
        hdir = tmp_path / "handlers"
        calls = tmp_path / "calls.jsonl"
        write_handler(hdir, "site_submit", handler_source if handler_source is not None
                      else HANDLER.format(calls=str(calls), body=textwrap.indent(
                          textwrap.dedent(body), "    ")))
        c = cluster_factory(plugin_dirs=[str(BUILD_PLUGINS)],
                            conf_extra=[f"JobSubmitPlugins={plugins}",
                                        "PartitionName=gpu Nodes=node1 MaxTime=120 "
                                        "DefaultTime=30 State=UP AllowAccounts=ALL",
                                        *conf_extra], **kw)
        write_conf_file(c, [f"handler=site_submit:Policy", f"path={hdir}", *conf])
        c.handler_dir = hdir
        if start:
            c.start()
        return c, calls

    return make


def sbatch_raw(c, *args, wrap="true", timeout=60):
    argv = ["sbatch", "--parsable", *args]
    if wrap is not None:
        argv.append(f"--wrap={wrap}")
    return c.run(*argv, check=False, timeout=timeout)


def test_defaults_set_by_the_handler_are_what_scontrol_shows(js_cluster):
    c, calls = js_cluster('''
        def submit(self, job, submit_uid):
            record("submit", uid=submit_uid, time_limit=job.time_limit,
                   partition=job.partition, parts=sorted(self.partitions))
            if job.time_limit is None:
                job.time_limit = 7
            if job.partition is None:
                p = self.partitions["gpu"]
                job.partition = p.name
            job.comment = "stamped by policy"
            self.log_user(f"policy: time limit {job.time_limit} min in {job.partition}")
    ''')
    cp = sbatch_raw(c, "--hold")
    assert cp.returncode == 0, cp.stderr
    jid = int(cp.stdout.strip().split(";")[0])
    job = c.job(jid)
    assert job["TimeLimit"] == "00:07:00"
    assert job["Partition"] == "gpu"
    assert job["Comment"] == "stamped by policy"
    # the message on success reaches the user
    assert "policy: time limit 7 min in gpu" in cp.stderr
    rec = read_calls(calls)
    assert [r["hook"] for r in rec] == ["submit"]
    assert rec[0]["uid"] == 0 and rec[0]["time_limit"] is None and rec[0]["partition"] is None
    assert rec[0]["parts"] == ["debug", "gpu"]
    # an explicit value is kept
    cp = sbatch_raw(c, "--hold", "-t", "3", "-p", "debug")
    job = c.job(int(cp.stdout.strip().split(";")[0]))
    assert job["TimeLimit"] == "00:03:00" and job["Partition"] == "debug"


def test_partitions_are_visible_with_their_limits(js_cluster):
    c, calls = js_cluster('''
        def submit(self, job, submit_uid):
            record("submit", parts={n: p.as_dict() for n, p in self.partitions.items()})
    ''')
    assert sbatch_raw(c, "--hold").returncode == 0
    parts = read_calls(calls)[0]["parts"]
    gpu, debug = parts["gpu"], parts["debug"]
    assert gpu["max_time"] == 120 and gpu["default_time"] == 30 and gpu["state"] == "UP"
    assert gpu["nodes"] == "node1" and gpu["total_cpus"] == 64 and gpu["total_nodes"] == 1
    assert gpu["default"] is False and debug["default"] is True
    assert debug["max_time"] is None          # MaxTime=INFINITE
    assert debug["default_time"] is None      # not set


def test_reject_prints_the_message_and_sbatch_fails(js_cluster):
    c, calls = js_cluster('''
        def submit(self, job, submit_uid):
            record("submit")
            job.comment = "never stored"
            if job.account is None:
                self.log_user("first line")
                raise Reject("please give --account: your balance is 0 SU")
    ''')
    before = c.jobs()
    cp = sbatch_raw(c)
    assert cp.returncode != 0
    assert "please give --account: your balance is 0 SU" in cp.stderr
    assert "first line" in cp.stderr
    assert c.jobs() == before
    assert "rejected by the handler: please give --account" in c.ctld_log()


def test_reject_with_a_code_gives_slurms_message_for_it(js_cluster):
    """Reject(code=...) by name or number: sbatch prints the handler's
    text and then Slurm's own message for the code (not "Unspecified
    error"); scontrol update too, also on 22.05 whose job_modify() has no
    message for the user."""
    c, calls = js_cluster('''
        def submit(self, job, submit_uid):
            if job.account == "nosuch":
                raise Reject("account nosuch has no allocation here", code="ESLURM_INVALID_ACCOUNT")
            if job.name == "by-number":
                raise Reject("time limit too long for this partition", code=2051)

        def modify(self, job, current, submit_uid):
            if job.time_limit is not None and job.time_limit > 60:
                raise Reject("at most 60 minutes", code="ESLURM_INVALID_TIME_LIMIT")
    ''')
    cp = sbatch_raw(c, "-A", "nosuch")
    assert cp.returncode != 0
    assert "sbatch: error: account nosuch has no allocation here\n" in cp.stderr, cp.stderr
    assert ("Batch job submission failed: Invalid account or account/partition combination "
            "specified") in cp.stderr, cp.stderr
    assert "Unspecified error" not in cp.stderr
    cp = sbatch_raw(c, "-J", "by-number")
    assert cp.returncode != 0
    assert "sbatch: error: time limit too long for this partition\n" in cp.stderr, cp.stderr
    assert ("Batch job submission failed: Requested time limit is invalid (missing or exceeds "
            "some limit)") in cp.stderr, cp.stderr
    assert c.jobs() == {}
    assert ("rejected by the handler (ESLURM_INVALID_ACCOUNT): account nosuch has no "
            "allocation here") in c.ctld_log()
    jid = c.sbatch("--hold", "-t", "5")
    cp = c.scontrol("update", f"JobId={jid}", "TimeLimit=90", check=False)
    assert cp.returncode != 0
    assert "Requested time limit is invalid" in cp.stderr, cp.stderr
    if slurm_at_least(23, 2):
        assert "at most 60 minutes" in cp.stderr, cp.stderr
    assert c.job(jid)["TimeLimit"] == "00:05:00"


def test_unlimited_time_reads_as_unlimited_and_a_handler_can_set_it(js_cluster):
    """sbatch --time=UNLIMITED reaches the handler as UNLIMITED (not
    4294967295), and a handler's time_limit = UNLIMITED is what scontrol
    shows (TimeLimit=UNLIMITED, in a partition with MaxTime=INFINITE)."""
    c, calls = js_cluster('''
        def submit(self, job, submit_uid):
            from slurmpy_plugins import UNLIMITED
            record("submit", name=job.name, time_limit=repr(job.time_limit),
                   unlimited=job.time_limit is UNLIMITED)
            if job.name == "make-unlimited":
                job.time_limit = UNLIMITED
            elif job.name == "cap" and job.time_limit > 60:
                job.time_limit = 60

        def modify(self, job, current, submit_uid):
            from slurmpy_plugins import UNLIMITED
            record("modify", time_limit=repr(job.time_limit))
    ''')
    jid = c.sbatch("--hold", "-p", "debug", "--time=UNLIMITED", "-J", "as-given")
    assert c.job(jid)["TimeLimit"] == "UNLIMITED"
    jid2 = c.sbatch("--hold", "-p", "debug", "-t", "5", "-J", "make-unlimited")
    assert c.job(jid2)["TimeLimit"] == "UNLIMITED"
    jid3 = c.sbatch("--hold", "-p", "debug", "--time=UNLIMITED", "-J", "cap")
    assert c.job(jid3)["TimeLimit"] == "01:00:00"
    c.scontrol("update", f"JobId={jid3}", "TimeLimit=UNLIMITED")
    assert c.job(jid3)["TimeLimit"] == "UNLIMITED"
    rec = read_calls(calls)
    assert [(r["hook"], r.get("name"), r["time_limit"], r.get("unlimited")) for r in rec] == [
        ("submit", "as-given", "UNLIMITED", True),
        ("submit", "make-unlimited", "5", False),
        ("submit", "cap", "UNLIMITED", True),
        ("modify", None, "UNLIMITED", None)]


def test_test_only_goes_through_the_handler(js_cluster):
    c, calls = js_cluster('''
        def submit(self, job, submit_uid):
            record("submit", name=job.name)
            if job.name == "refuse-me":
                raise Reject("refused in test-only too")
    ''')
    cp = c.run("sbatch", "--test-only", "-J", "fine", "--wrap=true", check=False)
    assert cp.returncode == 0, cp.stderr
    assert "to start at" in cp.stderr
    cp = c.run("sbatch", "--test-only", "-J", "refuse-me", "--wrap=true", check=False)
    assert cp.returncode != 0
    assert "refused in test-only too" in cp.stderr
    assert [r["name"] for r in read_calls(calls)] == ["fine", "refuse-me"]
    assert c.jobs() == {}


def test_scontrol_update_calls_modify(js_cluster):
    c, calls = js_cluster('''
        def modify(self, job, current, submit_uid):
            record("modify", job_id=job.job_id, current_id=current.job_id,
                   current_limit=current.time_limit, new_limit=job.time_limit,
                   uid=submit_uid)
            if job.time_limit is not None and job.time_limit > 60:
                raise Reject("at most 60 minutes")
            if job.comment is None:
                job.comment = "modified by policy"
    ''')
    jid = c.sbatch("--hold", "-t", "5")
    c.scontrol("update", f"JobId={jid}", "TimeLimit=10")
    job = c.job(jid)
    assert job["TimeLimit"] == "00:10:00"
    assert job["Comment"] == "modified by policy"
    rec = read_calls(calls)
    assert rec == [dict(rec[0], hook="modify", job_id=jid, current_id=jid,
                        current_limit=5, new_limit=10, uid=0)]
    off = c.log_offset()
    cp = c.scontrol("update", f"JobId={jid}", "TimeLimit=90", check=False)
    assert cp.returncode != 0
    if slurm_at_least(23, 2):
        # job_modify() has an err_msg: the user sees the handler's message
        assert "at most 60 minutes" in cp.stderr, cp.stderr
    else:
        # 22.05's job_modify() has no err_msg: the user sees the error code
        assert "Unspecified error" in cp.stderr
    assert c.job(jid)["TimeLimit"] == "00:10:00"
    c.wait_for_log(rf"modify\(\) refused the update of JobId={jid}: at most 60 minutes",
                   since=off, timeout=10)


def test_raising_handler_refuses_with_a_generic_message(js_cluster):
    c, _ = js_cluster('''
        def submit(self, job, submit_uid):
            job.comment = "x"
            return {}["missing"]
    ''')
    cp = sbatch_raw(c)
    assert cp.returncode != 0
    assert "the site's job submission policy failed" in cp.stderr
    assert "KeyError" not in cp.stderr     # the details stay in the log
    log = c.ctld_log()
    assert re.search(r"job_submit/python: submit\(\) for a job of uid 0 failed at "
                     r".*site_submit\.py:\d+: KeyError: 'missing'", log)
    assert "Traceback" in log


def test_wrong_type_and_misspelled_field_name_the_field(js_cluster):
    c, calls = js_cluster('''
        def submit(self, job, submit_uid):
            errors = []
            for f in (lambda: setattr(job, "time_limit", "60"),
                      lambda: setattr(job, "time_limit", -1),
                      lambda: setattr(job, "partiton", "gpu"),
                      lambda: job.partiton,
                      lambda: setattr(job, "user_id", 5),
                      lambda: setattr(job, "comment", 5)):
                try:
                    f()
                except Exception as e:
                    errors.append(f"{type(e).__name__}: {e}")
            record("submit", errors=errors)
            job.time_limit = None     # unset: the partition's default applies
    ''')
    jid = c.sbatch("--hold", "-t", "9", "-p", "gpu")
    errors = read_calls(calls)[0]["errors"]
    assert errors[0] == "TypeError: job.time_limit must be an int, UNLIMITED or None, not str"
    assert errors[1].startswith("ValueError: job.time_limit=-1 is out of range")
    assert errors[2] == "AttributeError: job has no field 'partiton' (did you mean 'partition'?)"
    assert errors[3] == errors[2]
    assert errors[4] == "AttributeError: job.user_id is read-only (set by Slurm)"
    assert errors[5] == "TypeError: job.comment must be a str or None, not int"
    assert c.job(jid)["TimeLimit"] == "00:30:00"   # gpu's DefaultTime


def test_broken_handler_fails_closed_naming_the_problem(js_cluster):
    c, _ = js_cluster("", handler_source="def oops(:\n")
    cp = sbatch_raw(c)
    assert cp.returncode != 0
    assert "policy is not loaded" in cp.stderr
    assert "site_submit.py:1: syntax error" in cp.stderr, cp.stderr
    assert c.jobs() == {}


def test_bad_conf_file_fails_closed_naming_file_and_line(js_cluster):
    c, _ = js_cluster("    pass\n", conf=["# a comment", "timeuot=3"])
    cp = sbatch_raw(c)
    assert cp.returncode != 0
    assert re.search(r"job_submit_python\.conf:4: unknown key 'timeuot'", cp.stderr), cp.stderr


def test_on_failure_accept_accepts_unchanged_and_logs(js_cluster):
    c, _ = js_cluster('''
        def submit(self, job, submit_uid):
            job.comment = "lost"
            raise RuntimeError("ledger down")
    ''', conf=["on_failure=accept"])
    jid = c.sbatch("--hold")
    assert c.job(jid).get("Comment") in (None, "(null)")
    assert "on_failure=accept: the request is accepted unchanged" in c.ctld_log()


def test_hung_handler_is_refused_at_timeout(js_cluster):
    c, calls = js_cluster('''
        def submit(self, job, submit_uid):
            record("submit", name=job.name)
            if job.name == "hang":
                while True:      # pure Python: TimeoutError stops it
                    pass
    ''', conf=["timeout=1"])
    t0 = time.monotonic()
    cp = sbatch_raw(c, "-J", "hang")
    took = time.monotonic() - t0
    assert cp.returncode != 0
    assert "did not answer within its time limit of 1000 ms" in cp.stderr
    # refused at its 1 s limit: the loop never ends unless interrupted, so
    # a missing limit would not return at all (generous: a shared machine)
    assert took < 20, took
    c.ping_seconds()        # slurmctld answers (raises unless UP)
    # the interrupted worker comes back: the next job is accepted
    deadline = time.monotonic() + 20
    while True:
        cp = sbatch_raw(c, "--hold", "-J", "ok")
        if cp.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert cp.returncode == 0, cp.stderr


def test_changed_file_reloads_and_broken_change_keeps_the_last_good(js_cluster):
    c, _ = js_cluster('''
        def submit(self, job, submit_uid):
            job.comment = "v1"
    ''', conf=["reload=1"])
    src = c.handler_dir / "site_submit.py"
    assert c.job(c.sbatch("--hold"))["Comment"] == "v1"
    off = c.log_offset()
    write_handler(c.handler_dir, "site_submit",
                  src.read_text().replace('"v1"', '"v2"'))
    c.wait_for_log(r"job_submit/python: reloaded handler site_submit:Policy", since=off,
                   timeout=20)
    assert c.job(c.sbatch("--hold"))["Comment"] == "v2"
    off = c.log_offset()
    write_handler(c.handler_dir, "site_submit", "def broken(:\n")
    c.wait_for_log(r"changed handler refused, the previous one keeps running", since=off,
                   timeout=20)
    assert c.job(c.sbatch("--hold"))["Comment"] == "v2"


def test_changed_conf_file_takes_effect_without_reconfigure(js_cluster):
    """slurmctld does not re-init job_submit plugins on a reconfigure: the
    plugin watches job_submit_python.conf itself."""
    c, _ = js_cluster('''
        def submit(self, job, submit_uid):
            job.comment = "seen"
            raise RuntimeError("ledger down")
    ''', conf=["reload=1"])
    cp = sbatch_raw(c, "--hold")
    assert cp.returncode != 0                       # on_failure=reject
    off = c.log_offset()
    write_conf_file(c, ["handler=site_submit:Policy", f"path={c.handler_dir}", "reload=1",
                        "on_failure=accept"])
    c.wait_for_log(r"job_submit_python\.conf changed: settings reloaded", since=off, timeout=20)
    jid = c.sbatch("--hold")
    assert c.job(jid).get("Comment") in (None, "(null)")   # accepted unchanged
    # a bad change is refused; the last good settings keep running
    off = c.log_offset()
    write_conf_file(c, ["handler=site_submit:Policy", f"path={c.handler_dir}", "reload=1",
                        "on_failure=acept"])
    c.wait_for_log(r"previous settings and handler keep running: .*on_failure='acept'",
                   since=off, timeout=20)
    assert c.sbatch("--hold")


def test_conf_file_writable_by_others_fails_closed(js_cluster):
    c, _ = js_cluster("    pass\n", start=False)
    conf = c.conf_path.parent / "job_submit_python.conf"
    os.chmod(conf, 0o664)
    c.start()
    cp = sbatch_raw(c)
    assert cp.returncode != 0
    assert f"refusing job_submit/python settings {conf}: writable by group or others " \
        "(mode 0664)" in cp.stderr, cp.stderr
    assert c.jobs() == {}


@pytest.mark.skipif(not LUA_SO.exists(), reason="job_submit/lua is not installed")
def test_lua_then_python_run_in_order(js_cluster):
    c, calls = js_cluster('''
        def submit(self, job, submit_uid):
            record("submit", comment=job.comment)
            job.comment = (job.comment or "") + "+python"
    ''', plugins="lua,python", start=False)
    (c.conf_path.parent / "job_submit.lua").write_text(textwrap.dedent('''
        function slurm_job_submit(job_desc, part_list, submit_uid)
            job_desc.comment = "lua"
            return slurm.SUCCESS
        end
        function slurm_job_modify(job_desc, job_rec, part_list, modify_uid)
            return slurm.SUCCESS
        end
        return slurm.SUCCESS
    '''))
    c.start()
    jid = c.sbatch("--hold")
    assert c.job(jid)["Comment"] == "lua+python"
    assert read_calls(calls)[0]["comment"] == "lua"


def test_500_submissions_from_8_clients(js_cluster):
    c, calls = js_cluster('''
        def submit(self, job, submit_uid):
            record("submit", name=job.name)
            job.comment = "seen"
    ''', conf_extra=["MaxJobCount=2000"])
    names = [f"burst-{i}" for i in range(500)]
    stop = threading.Event()
    pings: list[float] = []

    def pinger():
        while not stop.is_set():
            pings.append(c.ping_seconds())
            time.sleep(0.2)

    def submit(name):
        cp = c.run("sbatch", "--parsable", "--hold", "-J", name, "--wrap=true",
                   check=False, timeout=120)
        return name, cp.returncode, cp.stdout.strip(), cp.stderr

    t = threading.Thread(target=pinger)
    t.start()
    try:
        with concurrent.futures.ThreadPoolExecutor(8) as ex:
            results = list(ex.map(submit, names))
    finally:
        stop.set()
        t.join()
    failed = [r for r in results if r[1] != 0]
    assert not failed, failed[:3]
    seen = [r["name"] for r in read_calls(calls)]
    assert sorted(seen) == sorted(names)        # exactly one submit() per job
    jobs = c.jobs()
    assert len(jobs) == 500
    assert all(j.get("Comment") == "seen" for j in jobs.values())
    assert pings and max(pings) < 1.0, max(pings)


def test_one_stuck_submit_costs_one_refusal(js_cluster):
    """issue 18.2 on a real slurmctld: a submit() stuck in C (time.sleep) is
    refused at timeout=; the submissions after it, from 8 parallel clients,
    and `scontrol update` are served at once, not refused while it sleeps."""
    c, calls = js_cluster('''
        def submit(self, job, submit_uid):
            record("submit", name=job.name)
            if job.name == "hang":
                time.sleep(600)  # in C: no TimeoutError reaches it
            job.comment = "seen"

        def modify(self, job, current, submit_uid):
            record("modify", job_id=job.job_id)
            job.comment = "modified"
    ''', conf=["timeout=1"])
    cp = sbatch_raw(c, "-J", "hang")
    assert cp.returncode != 0
    assert "did not answer within its time limit of 1000 ms" in cp.stderr, cp.stderr
    names = [f"after-{i}" for i in range(40)]

    def submit(name):
        cp = c.run("sbatch", "--parsable", "--hold", "-J", name, "--wrap=true",
                   check=False, timeout=120)
        return name, cp.returncode, cp.stderr

    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        results = list(ex.map(submit, names))
    assert [r for r in results if r[1] != 0] == []
    jid = next(iter(c.jobs()))
    c.scontrol("update", f"JobId={jid}", "TimeLimit=10")
    assert c.job(jid)["Comment"] == "modified"
    seen = [r for r in read_calls(calls)]
    assert sorted(r["name"] for r in seen if r["hook"] == "submit") == sorted(["hang", *names])
    assert "failed at once" not in c.ctld_log()


@pytest.mark.skipif(not LUA_SO.exists(), reason="job_submit/lua is not installed")
def test_lua_user_messages_come_before_python_s(js_cluster):
    """issue 18.6: with JobSubmitPlugins=lua,python the user sees the lines
    Lua's slurm.log_user gave, then python's log_user lines."""
    c, calls = js_cluster('''
        def submit(self, job, submit_uid):
            self.log_user("python: second")
    ''', plugins="lua,python", start=False)
    (c.conf_path.parent / "job_submit.lua").write_text(textwrap.dedent('''
        function slurm_job_submit(job_desc, part_list, submit_uid)
            slurm.log_user("lua: first")
            return slurm.SUCCESS
        end
        function slurm_job_modify(job_desc, job_rec, part_list, modify_uid)
            return slurm.SUCCESS
        end
        return slurm.SUCCESS
    '''))
    c.start()
    cp = sbatch_raw(c, "--hold")
    assert cp.returncode == 0, cp.stderr
    assert "lua: first" in cp.stderr and "python: second" in cp.stderr, cp.stderr
    assert cp.stderr.index("lua: first") < cp.stderr.index("python: second")


# -- issue 22: what a site moving from Lua needs ---------------------------

LUA_FIELDS_BODY = '''
def submit(self, job, submit_uid):
    record("submit", name=job.name, user_id=job.user_id, user_name=job.user_name,
           default_account=job.default_account, default_qos=job.default_qos,
           argv=job.argv, all=sorted(self.partitions),
           usable=sorted(self.usable_partitions))
    if "REMOVE_ME" in job.environment:
        job.environment["FOO"] = "bar"
        del job.environment["REMOVE_ME"]
'''


def _wait_assoc(c, user: str, timeout: float = 60.0) -> None:
    """Until slurmctld's assoc_mgr holds `user` (slurmdbd pushes it)."""
    deadline = time.monotonic() + timeout
    while True:
        cp = c.run("scontrol", "show", "assoc_mgr", f"users={user}", "flags=users",
                   check=False)
        if f"UserName={user}(" in cp.stdout:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"slurmctld never got user {user}: {cp.stdout}\n"
                                 + c.log_tails())
        time.sleep(0.2)


def test_lua_fields_with_accounting(js_cluster, dbd, tmp_path):
    """user_name, default_account, default_qos for a user with an
    association (accounting on: slurmdbd), argv of a batch script, and
    usable_partitions leaving out a partition whose AllowGroups the user
    is not in; root's job sees that partition."""
    import pwd
    # "daemon", not "nobody": 26.05 maps the name "nobody" to its
    # own SLURM_AUTH_NOBODY, so that user's association never gets a uid
    user = pwd.getpwnam("daemon")
    c, calls = js_cluster(LUA_FIELDS_BODY, conf_extra=[
        *dbd.accounting_conf(),
        "PartitionName=private Nodes=node1 State=UP AllowGroups=root"])
    dbd.sacctmgr("-i", "add", "qos", "jsfast")
    dbd.sacctmgr("-i", "add", "account", "physics", f"cluster={c.name}")
    dbd.sacctmgr("-i", "add", "user", "daemon", "account=physics", f"cluster={c.name}",
                 "qos=normal,jsfast", "defaultqos=jsfast")
    _wait_assoc(c, "daemon")

    script = tmp_path / "job.sh"
    script.write_text("#!/bin/sh\ntrue\n")
    script.chmod(0o755)
    c.sbatch("--hold", "-J", "as-daemon", "--uid", str(user.pw_uid), "--chdir", "/tmp",
             "-o", "/dev/null", str(script), "first arg", "second", wrap=None)
    c.sbatch("--hold", "-J", "as-root", "-o", "/dev/null")
    recs = {r["name"]: r for r in read_calls(calls) if r["hook"] == "submit"}
    n, r = recs["as-daemon"], recs["as-root"]
    assert n["user_id"] == user.pw_uid and n["user_name"] == "daemon"
    assert n["default_account"] == "physics" and n["default_qos"] == "jsfast"
    assert n["argv"] == [str(script), "first arg", "second"]
    assert n["all"] == ["debug", "gpu", "private"]
    assert n["usable"] == ["debug", "gpu"]
    assert r["user_name"] == "root" and r["argv"] == []
    assert r["usable"] == ["debug", "gpu", "private"]


def test_lua_fields_without_accounting(js_cluster):
    c, calls = js_cluster(LUA_FIELDS_BODY)
    c.sbatch("--hold", "-J", "plain", "-o", "/dev/null")
    (rec,) = [r for r in read_calls(calls) if r["hook"] == "submit"]
    assert rec["user_name"] == "root"
    assert rec["default_account"] is None and rec["default_qos"] is None


def test_environment_set_and_removed_by_the_handler_reach_the_job(js_cluster, tmp_path):
    c, calls = js_cluster(LUA_FIELDS_BODY)
    out = tmp_path / "env.out"
    jid = c.sbatch("-J", "env", "--export=ALL,REMOVE_ME=1,KEEP_ME=2", "-o", str(out),
                   wrap="env")
    c.wait_job(jid)
    env = dict(line.split("=", 1) for line in out.read_text().splitlines() if "=" in line)
    assert env.get("FOO") == "bar", env
    assert "REMOVE_ME" not in env
    assert env.get("KEEP_ME") == "2"
