"""The kit against the real plugin (the C host) and against the checkout
(preview and the examples run from it, the generated field types); the
kit's own tests are tests/python/test_kit.py."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from slurmpy_plugins import testing as kit

from tests.harness import hostdriver
from tests.python.test_kit import FIX, GENERIC

from .conftest import REPO, wait_for


def test_preview_on_captured_squeue_json(tmp_path):
    h = tmp_path / "h"
    h.mkdir()
    (h / "prev.py").write_text(
        "from slurmpy_plugins import SiteFactorHandler, JobSubmitHandler, Reject\n"
        "class F(SiteFactorHandler):\n"
        "    def set(self, job):\n        return 1000 + job.nice\n"
        "class P(JobSubmitHandler):\n"
        "    def submit(self, job, uid):\n"
        "        if job.name == 'kit-held':\n            raise Reject('no holds')\n"
        "        job.comment = 'seen'\n")
    (h / "prev.py").chmod(0o644)
    src = str(FIX / "24.11.5" / "squeue.json")

    def preview(*args):
        return subprocess.run([sys.executable, "-m", "slurmpy_plugins", "preview", *args,
                               "--path", str(h), "--input", src, "--json"],
                              capture_output=True, text=True, cwd=REPO, timeout=60)
    cp = preview("site-factor", "--handler", "prev:F")
    assert cp.returncode == 0, cp.stderr
    rows = {r["job_id"]: r["site"] for r in json.loads(cp.stdout)["jobs"]}
    assert sorted(rows.values()) == [1000, 1050]       # the two pending jobs
    cp = preview("job-submit", "--handler", "prev:P")
    got = {r["job_id"]: (r["accepted"], r["message"], r["changes"]) for r in json.loads(cp.stdout)["jobs"]}
    assert sorted(got.values(), key=str) == sorted(
        [(True, None, {"comment": "seen"}), (False, "no holds", {}), (True, None, {"comment": "seen"})],
        key=str)
    cp = preview("site-factor", "--handler", "missing:F")
    assert cp.returncode == 1 and "missing" in cp.stderr


def test_examples_pass_with_the_kit_plugin():
    cp = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "slurmpy_plugins.pytest_plugin",
                         "-p", "no:cacheprovider", "examples/node_health", "examples/gpu_policy",
                         "examples/fairshare"], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert cp.returncode == 0 and "13 passed" in cp.stdout, cp.stdout + cp.stderr


def test_generated_field_types_are_current():
    """slurmpy_plugins/_fields.py (the static types of the record fields)
    is generated from the header; a header change must regenerate it."""
    cp = subprocess.run([sys.executable, "scripts/gen_typing.py", "--check"], cwd=REPO,
                        capture_output=True, text=True, timeout=60)
    assert cp.returncode == 0, cp.stderr


def _import_file(path, name):
    """The module of a handler file, imported as the daemon names it."""
    import importlib.util
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod      # where the kit finds the handler's file, as for any import
    spec.loader.exec_module(mod)
    return mod


def _log_lines(h, needle):
    """The host log's lines containing `needle`, without their timestamp."""
    return [line.split("] ", 1)[1] for line in h.log().splitlines() if needle in line]


@pytest.mark.parametrize("fields", ['("account", "num_cpu")', '"account"', '("spank_env",)'])
def test_a_bad_fields_entry_fails_the_handler_in_the_kit_as_in_slurmctld(
        make_host, handlers, fields):
    """slurmctld refuses to load a handler whose `fields` names no Job
    column: every call then fails closed.  The kit must not accept it."""
    path = handlers.write("kit_fields", "from slurmpy_plugins import SiteFactorHandler\n"
                          "class H(SiteFactorHandler):\n"
                          f"    fields = {fields}\n"
                          "    def set(self, job):\n        return 7\n"
                          "    def update(self, jobs):\n        return [1 for j in jobs]\n")
    h = make_host("sf")
    h.conf(site_factor_params=handlers.params("kit_fields:H"))
    h.load()
    h.jobs_add(job_id=5, job_state="PENDING", site_factor=kit.NICE_OFFSET + 77)
    assert h.site_update() == {5: kit.NICE_OFFSET + 77}        # unchanged
    (daemon_line,) = _log_lines(h, "handler not loaded")
    cls = _import_file(path, "kit_fields").H
    out = kit.run_update(cls, [kit.make_job(job_id=5, state="PENDING", site_factor=77)])
    assert (out.ok, out.factors) == (False, {5: 77})
    assert out.log[0] == daemon_line
    assert out.log[1].startswith("error: site_factor/python: update() over 1 pending jobs "
                                 "failed: no usable handler (")
    out = kit.run_set(cls, kit.make_job(job_id=6, site_factor=3))   # set() too, as in slurmctld
    assert (out.ok, out.changed, out.factor) == (False, False, 3)
    assert out.log[0] == daemon_line


SPIN_POLICY = """\
from slurmpy_plugins import JobSubmitHandler
class P(JobSubmitHandler):
    def submit(self, job, uid):
        job.comment = "changed"
        while job.name == "spin":      # pure Python: the TimeoutError stops it
            pass
    def modify(self, job, current, uid):
        job.comment = "changed"
        while True:
            pass
"""


@pytest.mark.parametrize("on_failure", ["reject", "accept"])
def test_job_submit_timeout_and_on_failure_in_the_kit_match_the_c_host(
        make_host, handlers, on_failure):
    """The same handler, timeout=0.5 and on_failure=, in the real plugin
    (C host) and in the kit: the same answer, message and log line."""
    from .test_job_submit_host import JS_SO
    path = handlers.write("kit_spin", SPIN_POLICY)
    conf = handlers.path.parent / "job_submit_python.conf"
    conf.write_text(f"handler=kit_spin:P\npath={handlers.path}\ntimeout=0.5\n"
                    f"on_failure={on_failure}\n")
    slurm_conf = handlers.path.parent / "slurm.conf"
    slurm_conf.write_text("# not read by the host\n")
    h = make_host(so=JS_SO)
    h.conf(slurm_conf=str(slurm_conf))
    h.load()
    host_sub = h.js_submit(name="spin", comment="orig")
    # the interrupted worker returns before the next call (not what is tested here)
    wait_for(lambda: "overran its time limit has returned" in h.log(), 30,
             what="the timed-out submit() to return")
    host_mod = h.js_modify(dict(job_id=7), comment="orig")
    cls = _import_file(path, "kit_spin").P
    kw = dict(timeout=0.5, on_failure=on_failure)
    kit_sub = kit.run_submit(cls, kit.make_job_desc(name="spin", comment="orig"), **kw)
    kit_mod = kit.run_modify(cls, kit.make_job_desc(bare=True, comment="orig"),
                             kit.make_job(job_id=7), **kw)
    for host, out, name in ((host_sub, kit_sub, "submit"), (host_mod, kit_mod, "modify")):
        assert host["desc"]["comment"] == "orig"
        assert out.changes == {}
        assert out.accepted is (host["rc"] == 0) is (on_failure == "accept")
        if name == "submit" or hostdriver.slurm_at_least(23, 2):   # 22.05: modify has no err_msg
            assert out.message == (host["err_msg"] or None)
        if on_failure == "reject":
            assert "did not answer within its time limit of 500 ms" in out.message
        (line,) = [x for x in out.log if "time limit" in x]
        assert _log_lines(h, line.removeprefix("error: ")) == [line], (line, h.log())
    # a request that does not hang is answered (the TimeoutError stopped the loop)
    assert kit.run_submit(cls, kit.make_job_desc(name="ok"), **kw).changes == {"comment": "changed"}


FAIL_POLICY = """\
from slurmpy_plugins import JobSubmitHandler, Reject
class P(JobSubmitHandler):
    def submit(self, job, uid):
        job.comment = "changed"
        self.log_user("looked")
        if job.name == "reject":
            raise Reject("no budget", code="ESLURM_INVALID_ACCOUNT")
        {}["ledger"]
    def modify(self, job, current, uid):
        job.comment = "changed"
        self.log_user("looked")
        {}["ledger"]
"""


@pytest.mark.parametrize("on_failure", ["reject", "accept"])
def test_job_submit_refusal_and_failure_in_the_kit_match_the_c_host(
        make_host, handlers, on_failure):
    """A Reject (always refused, with its code) and a raise (refused, or
    accepted unchanged with on_failure=accept), in the real plugin and in
    the kit: the same answer, code, message and dispatch_job_submit.c's log
    line; a failure is never logged as the handler's refusal."""
    from .test_job_submit_host import JS_SO
    path = handlers.write("kit_fail", FAIL_POLICY)
    (handlers.path.parent / "job_submit_python.conf").write_text(
        f"handler=kit_fail:P\npath={handlers.path}\non_failure={on_failure}\n")
    slurm_conf = handlers.path.parent / "slurm.conf"
    slurm_conf.write_text("# not read by the host\n")
    h = make_host(so=JS_SO)
    h.conf(slurm_conf=str(slurm_conf))
    h.load()
    host = [h.js_submit(name="reject", comment="orig"), h.js_submit(name="x", comment="orig"),
            h.js_modify(dict(job_id=7), comment="orig")]
    cls = _import_file(path, "kit_fail").P
    kit_out = [kit.run_submit(cls, kit.make_job_desc(name="reject", comment="orig"),
                              submit_uid=0, on_failure=on_failure),
               kit.run_submit(cls, kit.make_job_desc(name="x", comment="orig"), submit_uid=0,
                              on_failure=on_failure),
               kit.run_modify(cls, kit.make_job_desc(bare=True, comment="orig"),
                              kit.make_job(job_id=7), submit_uid=0, on_failure=on_failure)]
    accept = on_failure == "accept"
    assert [o.accepted for o in kit_out] == [False, accept, accept]
    assert kit_out[0].code == 2045 and kit_out[0].message == "looked\nno budget"
    assert kit_out[1].message == ("looked" if accept else "looked\n" + GENERIC)
    for i, (res, out) in enumerate(zip(host, kit_out)):
        assert res["rc"] == out.code and res["desc"]["comment"] == "orig"
        assert out.changes == {}
        if i < 2 or hostdriver.slurm_at_least(23, 2):   # 22.05: modify has no err_msg
            assert out.message == (res["err_msg"] or None)
    for out in kit_out[1:]:
        end = ("failed (KeyError: 'ledger'); on_failure=accept: the request is accepted unchanged"
               if accept else "refused: KeyError: 'ledger'")
        (line,) = [x for x in out.log if x.endswith(end)]
        assert _log_lines(h, line.removeprefix("error: ")) == [line], (line, h.log())
    assert not any("refused the update" in x for x in kit_out[2].log)
    assert "refused the update" not in h.log()
