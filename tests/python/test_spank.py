"""spank/python without Slurm: the kit's run_spank and check's plugstack
line.  spank_python.c's own reading of a handler module and a remote
hook's boot are tests/host/test_spank_host.py."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from slurmpy_plugins import SpankOption, _loader, _spank, testing

from .conftest import USER


# -- the kit ------------------------------------------------------------------

KIT_HANDLER = '''
from slurmpy_plugins import SpankHandler, SpankOption

class Tag(SpankHandler):
    options = [SpankOption("tag", arg="TAG", help="a tag"), SpankOption("flag")]

    def user_init(self, spank):
        if spank.option("tag") == "boom":
            raise ValueError("no such tag")
        spank.setenv("TAG", "%s/%s/%s" % (spank.option("tag"), spank.option("flag"), spank.job_id))
        spank.unsetenv("GONE")
        spank.setenv("KEEP", "new", overwrite=False)

class Mismatch(SpankHandler):
    options = [SpankOption("computed" + "name")]
'''


@pytest.fixture
def kit_module(tmp_path):
    d = tmp_path / "h"
    d.mkdir(mode=0o755)
    os.chmod(d, 0o755)
    (d / "kit_tag.py").write_text(KIT_HANDLER)
    os.chmod(d / "kit_tag.py", 0o644)
    sys.path.insert(0, str(d))
    try:
        import kit_tag
        yield kit_tag
    finally:
        sys.path.remove(str(d))
        sys.modules.pop("kit_tag", None)


def test_run_spank_options_env_and_items(kit_module):
    out = testing.run_spank(kit_module.Tag, "user_init", options={"tag": "x", "flag": True},
                            env={"GONE": "1", "KEEP": "old"}, job_id=42)
    assert out.ok and out.message is None
    assert out.env == {"TAG": "x/True/42", "KEEP": "old"}
    out = testing.run_spank(kit_module.Tag(), "user_init")
    assert out.env["TAG"] == "None/None/None"


def test_run_spank_a_raising_hook_fails_with_its_message(kit_module):
    out = testing.run_spank(kit_module.Tag, "user_init", options={"tag": "boom"})
    assert not out.ok
    assert out.message.startswith("user_init: ValueError: no such tag (")
    assert "kit_tag.py:" in out.message
    assert any("Traceback" in line for line in out.log)
    assert out.log[-1] == f"spank/python: user_init failed: {out.message}"


def test_run_spank_refuses_what_the_plugin_would_not_do(kit_module):
    with pytest.raises(ValueError, match="not in the handler's options"):
        testing.run_spank(kit_module.Tag, "user_init", options={"tga": "x"})
    with pytest.raises(ValueError, match="True for a flag"):
        testing.run_spank(kit_module.Tag, "user_init", options={"flag": "x"})
    with pytest.raises(ValueError, match="not a spank/python hook"):
        testing.run_spank(kit_module.Tag, "user_int")
    # options spank_python.so would not read from the file: refused
    with pytest.raises(_loader.HandlerError, match="spank_python.so reads"):
        testing.run_spank(kit_module.Mismatch, "user_init")


def test_plugstack_arguments():
    a = _spank.parse_args(["handler=m:C", "path=/etc/slurm/spank", "site=x", "timeout=2.5"])
    assert (a.cfg.module, a.cfg.cls, a.cfg.path, dict(a.extra), a.cfg.timeout) == \
        ("m", "C", ("/etc/slurm/spank",), {"site": "x"}, 2.5)
    for bad, msg in ((["handler=m:C"], "path=DIR is required"),
                     (["handler=m:C", "path=/x", "venv=/v"], "not supported"),
                     (["handler=m:C", "path=/x", "timeout=0"], "positive number"),
                     (["handler=m:C", "path=rel"], "absolute"),
                     (["handler=m:C", "path=/x", "junk"], "not key=value")):
        with pytest.raises(Exception, match=msg):
            _spank.parse_args(bad)


# -- slurmpy-plugins check: the plugstack.conf line --------------------------

def _check(tmp_path, plugstack: str, module: str = KIT_HANDLER) -> tuple[int, dict]:
    d = tmp_path / "h"
    d.mkdir(mode=0o755, exist_ok=True)
    os.chmod(d, 0o755)
    (d / "site_spank.py").write_text(module)
    os.chmod(d / "site_spank.py", 0o644)
    (tmp_path / "plugstack.conf").write_text(plugstack.format(d=d))
    conf = tmp_path / "slurm.conf"
    conf.write_text(f"ClusterName=test\nSlurmUser={USER}\n"
                    f"PlugStackConfig={tmp_path / 'plugstack.conf'}\n"
                    "NodeName=node1 CPUs=2\nPartitionName=debug Nodes=node1 Default=YES\n")
    cp = subprocess.run([sys.executable, "-m", "slurmpy_plugins", "check", str(conf), "--json"],
                        capture_output=True, text=True, timeout=60, cwd="/",
                        env=dict(os.environ))
    return cp.returncode, json.loads(cp.stdout)


def test_check_reads_the_plugstack_line(tmp_path):
    rc, report = _check(tmp_path, "# site\nrequired /x/spank_python.so handler=site_spank:Tag "
                                  "path={d} site=1\n")
    assert rc == 0, report
    [p] = report["plugins"]
    assert p["plugin"] == "spank/python" and p["loaded"] and p["conf_key"].endswith(":2")
    assert set(p["hooks"]) == {"user_init"}


def test_check_refuses_what_spank_python_would_read_otherwise(tmp_path):
    rc, report = _check(tmp_path, "optional spank_python.so handler=site_spank:Mismatch "
                                  "path={d}\n")
    assert rc == 1
    [p] = report["plugins"]
    assert not p["loaded"] and "spank_python.so reads" in p["error"], p


def test_check_refuses_a_second_line_and_bad_arguments(tmp_path):
    rc, report = _check(tmp_path, "required spank_python.so handler=site_spank:Tag path={d}\n"
                                  "required spank_python.so handler=other:H path={d}\n")
    assert rc == 1 and any("listed again" in e for e in report["errors"]), report
    rc, report = _check(tmp_path, "required spank_python.so handler=site_spank:Tag "
                                  "path={d} venv=/v\n")
    assert rc == 1 and "not supported" in report["plugins"][0]["error"], report


ARGV_HANDLER = '''
from slurmpy_plugins import SpankHandler

class Wrap(SpankHandler):
    def task_init(self, spank):
        if spank.argv and spank.argv[0] == "python3":
            spank.prepend_argv(["nice", "-n", 5])

    def user_init(self, spank):
        spank.prepend_argv(["nice"])
'''


def test_run_spank_argv_and_prepend_argv(tmp_path):
    d = tmp_path / "h"
    d.mkdir()
    (d / "kit_wrap.py").write_text(ARGV_HANDLER)
    sys.path.insert(0, str(d))
    try:
        import kit_wrap
        out = testing.run_spank(kit_wrap.Wrap, "task_init", argv=["python3", "x.py"],
                                task_id=0, array_id=3)
        assert out.ok and out.prepended_argv == ["nice", "-n", "5"]
        out = testing.run_spank(kit_wrap.Wrap, "task_init", argv=["bash"])
        assert out.ok and out.prepended_argv == []
        # only task_init may prepend: elsewhere it raises, and the hook fails
        out = testing.run_spank(kit_wrap.Wrap, "user_init")
        assert not out.ok and "only task_init may prepend" in out.message
    finally:
        sys.path.remove(str(d))
        sys.modules.pop("kit_wrap", None)


SECOND = '''
from slurmpy_plugins import SpankHandler, SpankOption

class Other(SpankHandler):
    options = [SpankOption("tag", arg="T", help="the same name as site_spank's")]

    def task_exit(self, spank):
        pass
'''


def test_check_reports_each_handler_of_the_line_and_refuses_a_shared_option(tmp_path):
    d = tmp_path / "h"
    d.mkdir(mode=0o755)
    os.chmod(d, 0o755)
    (d / "other.py").write_text(SECOND)
    os.chmod(d / "other.py", 0o644)
    rc, report = _check(tmp_path, "required spank_python.so handler=site_spank:Tag "
                                  "handler=other:Other path={d}\n")
    assert rc == 1
    first, second = report["plugins"]
    assert first["loaded"] and first["handler"] == "site_spank:Tag"
    assert not second["loaded"] and "--tag is declared by site_spank:Tag" in second["error"]
    a = _spank.parse_args(["handler=a:A", "handler=b:B", "path=/x"])
    assert [c.handler for c in a.cfgs] == ["a:A", "b:B"]
    with pytest.raises(Exception, match="given twice"):
        _spank.parse_args(["handler=a:A", "handler=a:A", "path=/x"])


# ---- what a slurmstepd imports to run a hook ----
