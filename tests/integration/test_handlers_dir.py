"""handlers=<dir> on real daemons (issue 23 item 1): a directory of handler
files, run in file-name order, each loaded, checked and reloaded on its
own, with its own log prefix and its errors' file:line."""
from __future__ import annotations

import json
import os
import re
import textwrap
import time

import pytest

from .conftest import BUILD_PLUGINS, read_calls, wait_calls, write_handler
from .test_stats import _stats, parse_openmetrics

pytestmark = pytest.mark.integration

RECORD = '''
import json, os, time
CALLS = {calls!r}

def record(file, hook, **kw):
    line = json.dumps(dict(file=file, hook=hook, t=time.time(), **kw))
    fd = os.open(CALLS, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\\n").encode())
    finally:
        os.close(fd)
'''


def put(d, name: str, source: str):
    """A handler file `name`.py in `d`, written as an admin would (root,
    0644, renamed into place)."""
    return write_handler(d, name, textwrap.dedent(source))


def remove(d, name: str) -> None:
    os.unlink(d / f"{name}.py")


# -- job_submit ---------------------------------------------------------------

JS_DEFAULTS = '''
from slurmpy_plugins import JobSubmitHandler
from record import record

class Defaults(JobSubmitHandler):
    def submit(self, job, submit_uid):
        record("10-defaults", "submit", comment=job.comment)
        job.comment = "{tag}"
'''

JS_CHECK = '''
import logging
from slurmpy_plugins import JobSubmitHandler, Reject
from record import record

class Check(JobSubmitHandler):
    def submit(self, job, submit_uid):
        record("20-check", "submit", comment=job.comment)
        logging.getLogger("check").info("saw comment %s", job.comment)
        if job.name == "forbidden":
            raise Reject("jobs named forbidden are refused by 20-check")
        job.comment = job.comment + "+checked"
'''

JS_LAST = '''
from slurmpy_plugins import JobSubmitHandler
from record import record

class Last(JobSubmitHandler):
    def submit(self, job, submit_uid):
        record("30-last", "submit", comment=job.comment)
'''


@pytest.fixture
def js_dir_cluster(cluster_factory, tmp_path):
    if not (BUILD_PLUGINS / "job_submit_python.so").exists():
        pytest.fail("build/plugins/job_submit_python.so is missing: run `make build` first")

    def make(files: dict[str, str], start: bool = True):
        hdir, lib = tmp_path / "submit.d", tmp_path / "lib"
        calls = tmp_path / "calls.jsonl"
        write_handler(lib, "record", RECORD.format(calls=str(calls)))
        hdir.mkdir(mode=0o755)
        for name, src in files.items():
            put(hdir, name, src)
        c = cluster_factory(plugin_dirs=[str(BUILD_PLUGINS)],
                            conf_extra=["JobSubmitPlugins=python"])
        conf = c.conf_path.parent / "job_submit_python.conf"
        conf.write_text(f"handlers={hdir}\npath={lib}\nreload=1\n")
        os.chmod(conf, 0o644)
        c.handler_dir = hdir
        if start:
            c.start()
        return c, calls

    return make


def test_job_submit_runs_the_files_in_order_and_the_first_reject_stops(js_dir_cluster):
    c, calls = js_dir_cluster({"10-defaults": JS_DEFAULTS.format(tag="v1"),
                               "20-check": JS_CHECK, "30-last": JS_LAST})
    c.wait_for_log(r"job_submit/python: loaded handlers from \S+/submit\.d: 10-defaults\.py, "
                   r"20-check\.py, 30-last\.py, in this order", timeout=30)
    jid = c.sbatch("--hold")
    # each file saw what the previous one did
    assert c.job(jid)["Comment"] == "v1+checked"
    recs = read_calls(calls)
    assert [(r["file"], r["comment"]) for r in recs] == [
        ("10-defaults", None), ("20-check", "v1"), ("30-last", "v1+checked")]
    # each file's log lines carry its own prefix
    c.wait_for_log(r"job_submit/python\[20-check\]: check: saw comment v1", timeout=10)
    # the first Reject refuses with its message; 30-last does not run
    cp = c.run("sbatch", "-J", "forbidden", "--hold", "--wrap=true", check=False)
    assert cp.returncode != 0
    assert "jobs named forbidden are refused by 20-check" in cp.stderr
    c.wait_for_log(r"job_submit/python\[20-check\]: submit\(\) for a job of uid \d+ rejected "
                   r"by the handler: jobs named forbidden", timeout=10)
    assert [r["file"] for r in read_calls(calls)][3:] == ["10-defaults", "20-check"]
    # each file's own figures, in slurmpy-plugins stats (published within a
    # second by the plugin's reload thread)
    deadline = time.monotonic() + 30
    while True:
        (d,) = [d for d in json.loads(_stats(c, "--json"))["daemons"]
                if d["daemon"] == "slurmctld" and d["state"] == "running"]
        fs = d["files"].get("job_submit/python", {}).get("files", {})
        if fs.get("30-last.py", {}).get("hooks", {}).get("submit", {}).get("calls") == 1 and \
                fs["10-defaults.py"]["hooks"]["submit"]["calls"] == 2:
            break
        assert time.monotonic() < deadline, d
        time.sleep(0.2)
    assert d["files"]["job_submit/python"]["directory"] == str(c.handler_dir)
    check = fs["20-check.py"]["hooks"]["submit"]
    assert (check["calls"], check["failures"], check["refusals"]) == (2, 0, 1)
    assert fs["20-check.py"]["last_error"] is None
    text = _stats(c)
    assert "job_submit/python handlers from" in text
    assert "20-check.py submit: 2 call(s), 0 failed, 1 refused" in text
    om = parse_openmetrics(_stats(c, "--openmetrics"))
    assert ("slurmpy_handler_file_refusals_total", "20-check.py") in {
        (n, re.search(r'file="([^"]*)"', lab).group(1))
        for n, lab, v in om["slurmpy_handler_file_refusals"] if v == 1}


def test_job_submit_files_reload_each_on_its_own(js_dir_cluster):
    c, calls = js_dir_cluster({"10-defaults": JS_DEFAULTS.format(tag="v1"),
                               "20-check": JS_CHECK})
    assert c.job(c.sbatch("--hold"))["Comment"] == "v1+checked"
    hdir = c.handler_dir
    # a changed file is reloaded, the other keeps its handler
    off = c.log_offset()
    put(hdir, "10-defaults", JS_DEFAULTS.format(tag="v2"))
    c.wait_for_log(r"job_submit/python: reloaded handlers from \S+: 10-defaults\.py, "
                   r"20-check\.py", since=off, timeout=30)
    assert c.job(c.sbatch("--hold"))["Comment"] == "v2+checked"
    # a broken change is refused, naming file and line; its previous
    # version keeps running
    off = c.log_offset()
    put(hdir, "10-defaults", "from slurmpy_plugins import JobSubmitHandler\n\n"
                             "class Broken(JobSubmitHandler:\n    pass\n")
    c.wait_for_log(r"changed handler file 10-defaults\.py refused, its previous version keeps "
                   r"running: \S+/10-defaults\.py:3: syntax error", since=off, timeout=30)
    assert c.job(c.sbatch("--hold"))["Comment"] == "v2+checked"
    # a new file that does not load is not added; the set keeps running
    off = c.log_offset()
    put(hdir, "15-two", "from slurmpy_plugins import JobSubmitHandler\n"
                        "class A(JobSubmitHandler): pass\nclass B(JobSubmitHandler): pass\n")
    c.wait_for_log(r"new handler file 15-two\.py refused, not run until it loads: "
                   r"\S+/15-two\.py: a handler file defines exactly one subclass of "
                   r"slurmpy_plugins\.JobSubmitHandler \(found 2: A, B\)", since=off, timeout=30)
    assert c.job(c.sbatch("--hold"))["Comment"] == "v2+checked"
    # a removed file's handler no longer runs (the broken 10 goes too)
    off = c.log_offset()
    remove(hdir, "15-two")
    remove(hdir, "10-defaults")
    c.wait_for_log(r"handler file 10-defaults\.py removed from \S+: its handler no longer "
                   r"runs", since=off, timeout=30)
    jid = c.sbatch("--hold", "--comment", "own")
    assert c.job(jid)["Comment"] == "own+checked"


def test_job_submit_boot_with_a_file_that_does_not_load_fails_closed(js_dir_cluster):
    c, calls = js_dir_cluster({"10-defaults": JS_DEFAULTS.format(tag="v1"),
                               "20-check": "from slurmpy_plugins import JobSubmitHandler\n"
                                           "raise RuntimeError('ledger unreachable')\n"})
    cp = c.run("sbatch", "--hold", "--wrap=true", check=False)
    assert cp.returncode != 0
    assert "policy is not loaded" in cp.stderr, cp.stderr
    assert re.search(r"20-check\.py:2: loading \S+/20-check\.py failed: RuntimeError: ledger "
                     r"unreachable", cp.stderr), cp.stderr
    assert read_calls(calls) == []
    # fixed: the whole set loads, and jobs go through it again
    off = c.log_offset()
    put(c.handler_dir, "20-check", JS_CHECK)
    c.wait_for_log(r"job_submit/python: loaded handlers from \S+: 10-defaults\.py, "
                   r"20-check\.py", since=off, timeout=30)
    assert c.job(c.sbatch("--hold"))["Comment"] == "v1+checked"


# -- prep (slurmd) ------------------------------------------------------------

def test_slurmd_prolog_files_in_order_the_first_failure_drains_with_its_reason(
        cluster_factory, tmp_path):
    hdir, lib = tmp_path / "prep.d", tmp_path / "lib"
    calls = tmp_path / "calls.jsonl"
    write_handler(lib, "record", RECORD.format(calls=str(calls)))
    hdir.mkdir(mode=0o755)
    put(hdir, "10-ok", '''
        from slurmpy_plugins import PrEpHandler
        from record import record

        class Ok(PrEpHandler):
            def prolog(self, env):
                record("10-ok", "prolog", job_id=env.job_id)
    ''')
    put(hdir, "20-scratch", '''
        from slurmpy_plugins import PrEpHandler
        from record import record

        class Scratch(PrEpHandler):
            def prolog(self, env):
                record("20-scratch", "prolog", job_id=env.job_id)
                raise OSError("scratch full marker-7731")
    ''')
    put(hdir, "30-never", '''
        from slurmpy_plugins import PrEpHandler
        from record import record

        class Never(PrEpHandler):
            def prolog(self, env):
                record("30-never", "prolog", job_id=env.job_id)
    ''')
    c = cluster_factory(plugin_dirs=[str(BUILD_PLUGINS)], conf_extra=[
        "PrEpPlugins=prep/python", f"PrEpParameters=handlers={hdir},path={lib}"])
    c.start()
    jid = c.sbatch("-o", "/dev/null", wrap="true")
    node = c.wait_node(predicate=lambda n: "DRAIN" in n.get("State", ""), timeout=60)
    assert node.get("Reason", "").startswith("prep/python: OSError: scratch full marker-7731"), node
    recs = wait_calls(calls, lambda r: len(r) >= 2)
    assert [(r["file"], r["job_id"]) for r in recs] == [("10-ok", jid), ("20-scratch", jid)]
    c.wait_for_log(rf"prep/python\[20-scratch\]: prolog for JobId={jid} failed at "
                   rf"{re.escape(str(hdir))}/20-scratch\.py:8: OSError: scratch full "
                   r"marker-7731", "slurmd", timeout=30)


# -- site_factor --------------------------------------------------------------

def test_site_factors_of_the_files_add_up_then_are_clamped_once(cluster_factory, tmp_path):
    hdir = tmp_path / "factor.d"
    hdir.mkdir(mode=0o755)
    put(hdir, "10-base", '''
        from slurmpy_plugins import SiteFactorHandler

        class Base(SiteFactorHandler):
            def set(self, job):
                return 1000 if job.name == "small" else 2**31 - 10
    ''')
    put(hdir, "20-bonus", '''
        from slurmpy_plugins import SiteFactorHandler

        class Bonus(SiteFactorHandler):
            def set(self, job):
                return 234 if job.name == "small" else 100
    ''')
    put(hdir, "30-abstain", '''
        from slurmpy_plugins import SiteFactorHandler

        class Abstain(SiteFactorHandler):
            def set(self, job):
                return None
    ''')
    c = cluster_factory(plugin_dirs=[str(BUILD_PLUGINS)], conf_extra=[
        "PrioritySiteFactorPlugin=site_factor/python",
        f"PrioritySiteFactorParameters=handlers={hdir}"])
    c.start()
    c.drain("handlers_dir test: keep jobs pending")
    c.wait_node(predicate=lambda n: "DRAIN" in n["State"].split("+"))
    small = c.sbatch("-J", "small", "-o", "/dev/null")
    big = c.sbatch("-J", "big", "-o", "/dev/null")
    recs = c.sprio(fmt="%i|%S", jobs=[small, big])
    # 1000 + 234; 2**31 - 10 + 100 is past the largest factor: clamped once
    assert int(recs[small]["SITE"]) == 1234
    assert int(recs[big]["SITE"]) == 2**31 - 1
    c.wait_for_log(rf"JobId={big}: site factor {2**31 + 90} is out of range", timeout=10)


# -- jobcomp ------------------------------------------------------------------

def test_jobcomp_files_in_order_a_failing_file_gets_the_record_again(cluster_factory, tmp_path):
    """A delivery succeeds when every file returned; one that raises fails
    it, and the record comes again to every file (at least once)."""
    hdir, lib = tmp_path / "jobcomp.d", tmp_path / "lib"
    calls, flaky = tmp_path / "calls.jsonl", tmp_path / "failed-once"
    write_handler(lib, "record", RECORD.format(calls=str(calls)))
    hdir.mkdir(mode=0o755)
    put(hdir, "10-ledger", '''
        from slurmpy_plugins import JobCompHandler
        from record import record

        class Ledger(JobCompHandler):
            def job_end(self, job):
                record("10-ledger", "job_end", job_id=job.job_id, key=job.key)
    ''')
    put(hdir, "20-flaky", f'''
        import os
        from slurmpy_plugins import JobCompHandler
        from record import record

        class Flaky(JobCompHandler):
            def job_end(self, job):
                record("20-flaky", "job_end", job_id=job.job_id, key=job.key)
                if not os.path.exists({str(flaky)!r}):
                    open({str(flaky)!r}, "w").close()
                    raise ConnectionError("archive unreachable marker-5517")
    ''')
    c = cluster_factory(plugin_dirs=[str(BUILD_PLUGINS)], conf_extra=["JobCompType=jobcomp/python"])
    conf = c.conf_path.parent / "jobcomp_python.conf"
    conf.write_text(f"handlers={hdir}\npath={lib}\n")
    os.chmod(conf, 0o644)
    c.start()
    jid = c.sbatch("-o", "/dev/null", wrap="true")
    # 10, 20 (fails), then the retry: 10, 20 again
    recs = wait_calls(calls, lambda r: len(r) >= 4, timeout=90)
    assert [(r["file"], r["job_id"]) for r in recs] == [
        ("10-ledger", jid), ("20-flaky", jid), ("10-ledger", jid), ("20-flaky", jid)]
    assert len({r["key"] for r in recs}) == 1
    c.wait_for_log(r"jobcomp/python\[20-flaky\]: job_end\(\) for JobId=\d+ .* failed at "
                   r"\S+/20-flaky\.py:\d+: ConnectionError: archive unreachable marker-5517",
                   timeout=30)
