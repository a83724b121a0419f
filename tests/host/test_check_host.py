"""`slurmpy-plugins check` against the daemon: the same handler loaded in the
C host (the real plugin .so) and by check; check's message must be the line
the daemon logs.  check's own tests are tests/python/test_check.py."""
from __future__ import annotations

import json
import os

import pytest

from tests.python.test_check import run_check, slurm_conf

from .test_jobcomp_host import JC_SO


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


def test_check_jobcomp_reports_the_daemons_own_message(make_host, handlers, tmp_path):
    handlers.write("ledger", "from slurmpy_plugins import JobCompHandler\n"
                             "class Ledger(JobCompHandler):\n    pass\n")
    conf = slurm_conf(handlers.path.parent, ["JobCompType=jobcomp/python"])
    (handlers.path.parent / "jobcomp_python.conf").write_text(
        f"handler=ledger:Ledger\npath={handlers.path}\nworkers=2\n")
    h = make_host(so=JC_SO)
    h.conf(slurm_conf=str(conf), state_save_location=str(tmp_path))
    h.load()
    h.wait_booted()
    cp = run_check(str(conf), "--json")
    assert cp.returncode == 1, cp
    (p,) = json.loads(cp.stdout)["plugins"]
    assert p["plugin"] == "jobcomp/python" and p["loaded"] is False
    assert "unknown key 'workers'" in p["error"]
    assert "jobcomp/python: " + p["error"] in h.log(), (p["error"], h.log())
