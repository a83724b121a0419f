"""`slurmpy-plugins check`: the daemons' own loader and checks, run before a
handler reaches a cluster.  The fidelity tests load the same handler in the
C host (the real plugin .so) and require check's message to be the line the
daemon logs."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from .conftest import REPO

BAD_HANDLERS = {
    # cause: (module source or None for "no file", params extra, file mode)
    "syntax error": ("def broken(:\n", {}, 0o644),
    "import raises": ("import json\nCONF = json.loads('{')\n", {}, 0o644),
    "class missing": ("X = 1\n", {}, 0o644),
    "not a subclass": ("class H:\n    pass\n", {}, 0o644),
    "constructor raises": ("from slurmpy_plugins import PrEpHandler\n"
                           "class H(PrEpHandler):\n"
                           "    def __init__(self):\n"
                           "        raise RuntimeError('no config')\n", {}, 0o644),
    "world-writable file": ("from slurmpy_plugins import PrEpHandler\n"
                            "class H(PrEpHandler):\n    pass\n", {}, 0o666),
    "module not found": (None, {}, 0o644),
    # zero-filled blocks, as a crash while the file was written leaves them
    "NUL bytes": ("from slurmpy_plugins import PrEpHandler\n"
                  "class H(PrEpHandler):\n    pass\n" + "\0" * 4096, {}, 0o644),
    "unknown key": ("from slurmpy_plugins import PrEpHandler\n"
                    "class H(PrEpHandler):\n    pass\n", {"bogus": "1"}, 0o644),
    "timeout out of range": ("from slurmpy_plugins import PrEpHandler\n"
                             "class H(PrEpHandler):\n    pass\n", {"timeout": "1e10"}, 0o644),
}


def run_check(*args) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "slurmpy_plugins", "check", *args],
                          capture_output=True, text=True, env=env, timeout=60, cwd="/")


def slurm_conf(tmp_path, lines: list[str]):
    p = tmp_path / "slurm.conf"
    p.write_text("ClusterName=test  # a comment\nSlurmUser=root\n" + "\n".join(lines) + "\n"
                 "NodeName=node1 CPUs=2\nPartitionName=debug Nodes=node1 Default=YES\n")
    return p


@pytest.mark.parametrize("cause", sorted(BAD_HANDLERS))
def test_check_reports_the_daemons_own_message(make_host, handlers, tmp_path, cause):
    source, extra, mode = BAD_HANDLERS[cause]
    if source is not None:
        handlers.write("hh", source, mode=mode)
    params = handlers.params("hh:H", **extra)
    # the daemon: the real plugin in the C host
    h = make_host("prep")
    h.conf(prep_params=params)
    h.load()
    h.wait_booted()
    log = h.log()
    # check, on a slurm.conf with the same parameters
    conf = slurm_conf(tmp_path, ["PrEpPlugins=prep/python", f"PrEpParameters={params}"])
    cp = run_check(str(conf), "--json")
    assert cp.returncode == 1, cp
    report = json.loads(cp.stdout)
    (p,) = report["plugins"]
    assert p["loaded"] is False and report["ok"] is False
    assert p["error"].startswith("handler not loaded: ")
    assert "prep/python: " + p["error"] in log, (p["error"], log)
    assert "Traceback" not in cp.stderr, cp.stderr


def test_check_lists_hooks_and_traps(handlers, tmp_path):
    handlers.write("site", """\
        from slurmpy_plugins import PrEpHandler, SiteFactorHandler
        class P(PrEpHandler):
            def prolog_slurmctld(self, job): pass
            def epilog(self, env): pass
        class F(SiteFactorHandler):
            def update(self, jobs): return {}
        """)
    conf = slurm_conf(tmp_path, [
        "PrEpPlugins=prep/script,prep/python",
        f"PrEpParameters={handlers.params('site:P')}",
        "PriorityType=priority/multifactor",
        "PrioritySiteFactorPlugin=site_factor/python",
        f"PrioritySiteFactorParameters={handlers.params('site:F')}",
    ])
    cp = run_check(str(conf), "--json")
    assert cp.returncode == 0, cp
    report = json.loads(cp.stdout)
    prep, sf = report["plugins"]
    assert prep["loaded"] and sorted(prep["hooks"]) == ["epilog", "prolog_slurmctld"]
    assert "requeues the job" in prep["hooks"]["prolog_slurmctld"]
    assert sf["loaded"] and list(sf["hooks"]) == ["update"]
    traps = "\n".join(report["traps"])
    assert "no Epilog=" in traps
    assert "every compute node" in traps
    assert "AccountingStorageType is not set" in traps
    # --strict makes the warnings fail; the text output says the same
    assert run_check(str(conf), "--strict").returncode == 1
    text = run_check(str(conf)).stdout
    assert "OK: handler site:P" in text and "warnings:" in text and text.rstrip().endswith("OK")


def test_check_without_a_slurmpy_plugin_or_slurm_conf(tmp_path):
    conf = slurm_conf(tmp_path, ["PrEpPlugins=prep/script"])
    cp = run_check(str(conf))
    assert cp.returncode == 1 and "configures no slurmpy plugin" in cp.stdout
    cp = run_check(str(tmp_path / "missing.conf"))
    assert cp.returncode == 2 and "cannot read" in cp.stderr
    bad = tmp_path / "bad.conf"
    bad.write_text("PrEpPlugins=prep/python\nthis is not key value\n")
    cp = run_check(str(bad))
    assert cp.returncode == 2 and f"{bad}:2" in cp.stderr


def test_check_follows_include_and_default_path(handlers, tmp_path):
    handlers.write("hh", "from slurmpy_plugins import PrEpHandler\n"
                         "class H(PrEpHandler):\n    def prolog(self, env): pass\n")
    (tmp_path / "prep.conf").write_text(
        f"PrEpPlugins=prep/python\nPrEpParameters={handlers.params('hh:H')}\n")
    conf = slurm_conf(tmp_path, ["Include prep.conf"])
    env_conf = dict(os.environ, SLURM_CONF=str(conf), PYTHONPATH=str(REPO))
    cp = subprocess.run([sys.executable, "-m", "slurmpy_plugins", "check", "--json"],
                        capture_output=True, text=True, env=env_conf, timeout=60, cwd="/")
    assert cp.returncode == 0, cp
    assert json.loads(cp.stdout)["plugins"][0]["hooks"].keys() == {"prolog"}


JS_BAD = {
    "unknown key": (["handler=policy:Policy", "bogus=1"], "class Policy(JobSubmitHandler):\n    pass\n"),
    "class missing": (["handler=policy:Policy"], "X = 1\n"),
    "no conf file": (None, "class Policy(JobSubmitHandler):\n    pass\n"),
    "conf writable by others": (["handler=policy:Policy", "mode=0666"],
                                "class Policy(JobSubmitHandler):\n    pass\n"),
}


@pytest.mark.parametrize("cause", sorted(JS_BAD))
def test_check_job_submit_reports_the_daemons_own_message(make_host, handlers, tmp_path, cause):
    from .test_job_submit_host import JS_SO
    lines, body = JS_BAD[cause]
    handlers.write("policy", "from slurmpy_plugins import JobSubmitHandler\n" + body)
    conf = slurm_conf(handlers.path.parent, ["JobSubmitPlugins=lua,python"])
    js_conf = handlers.path.parent / "job_submit_python.conf"
    if lines is not None:
        mode = 0o666 if "mode=0666" in lines else 0o644
        lines = [x for x in lines if x != "mode=0666"]
        js_conf.write_text("\n".join(lines + [f"path={handlers.path}"]) + "\n")
        os.chmod(js_conf, mode)
    h = make_host(so=JS_SO)
    h.conf(slurm_conf=str(conf))
    h.load()
    h.wait_booted()
    log = h.log()
    cp = run_check(str(conf), "--json")
    assert cp.returncode == 1, cp
    (p,) = json.loads(cp.stdout)["plugins"]
    assert p["plugin"] == "job_submit/python" and p["loaded"] is False
    assert "job_submit/python: " + p["error"] in log, (p["error"], log)


def test_check_job_submit_lists_its_hooks(handlers, tmp_path):
    handlers.write("policy", "from slurmpy_plugins import JobSubmitHandler\n"
                             "class Policy(JobSubmitHandler):\n"
                             "    def submit(self, job, submit_uid): pass\n")
    conf = slurm_conf(tmp_path, ["JobSubmitPlugins=job_submit/python"])
    (tmp_path / "job_submit_python.conf").write_text(
        f"# the site policy\nhandler=policy:Policy\npath={handlers.path}\n")
    cp = run_check(str(conf), "--json")
    assert cp.returncode == 0, cp
    (p,) = json.loads(cp.stdout)["plugins"]
    assert list(p["hooks"]) == ["submit"] and "Reject" in p["hooks"]["submit"]
    assert p["conf_key"] == str(tmp_path / "job_submit_python.conf")
