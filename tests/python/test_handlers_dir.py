"""handlers=<dir> (issue 23 item 1) through the daemons' loader and the kit:
parsing, the per-file checks, and how each plugin combines the files.
On real daemons: tests/integration/test_handlers_dir.py."""
from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import textwrap

import pytest

from slurmpy_plugins import _chain, _config, _loader
from slurmpy_plugins import testing as kit

from .conftest import USER


class HandlersDir(pathlib.PosixPath):
    def put(self, name: str, source: str, mode: int = 0o644) -> pathlib.Path:
        """A handler file as an admin writes it (0644 unless told)."""
        p = self / name
        p.write_text(textwrap.dedent(source))
        os.chmod(p, mode)
        return p


@pytest.fixture
def hdir(tmp_path):
    """A handlers directory as an admin makes it (0755, files 0644)."""
    d = HandlersDir(tmp_path / "handlers.d")
    d.mkdir(mode=0o755)
    for p in (tmp_path, *tmp_path.parents):
        if p == p.parent or str(p) in ("/tmp", "/var/tmp"):
            break
        os.chmod(p, os.stat(p).st_mode & ~0o022)
    return d


def prep_file(cls: str, body: str) -> str:
    return ("from slurmpy_plugins import PrEpHandler\n"
            f"class {cls}(PrEpHandler):\n" + textwrap.indent(textwrap.dedent(body), "    "))


# -- parameters ----------------------------------------------------------------

@pytest.mark.parametrize("params, msg", [
    ("handler=a:B,handlers=/x", "handler= and handlers= are both given"),
    ("handlers=relative/dir", "handlers='relative/dir' must be an absolute directory"),
    ("handlers=", "handlers='' must be an absolute directory"),
    ("path=/x", "handler=<module>:<Class> (or handlers=<directory>) is required"),
])
def test_bad_handlers_parameters_name_the_key(params, msg):
    with pytest.raises(_config.ConfigError, match="PrEpParameters: .*" if "path" in params
                       else "PrEpParameters") as e:
        _config.parse(params, conf_key="PrEpParameters", conf_path="/etc/slurm/slurm.conf")
    assert msg in str(e.value)


def test_handlers_parameters_parse_without_a_default_path():
    cfg = _config.parse("handlers=/etc/slurm/prep.d/,timeout=5", conf_key="PrEpParameters",
                        conf_path="/etc/slurm/slurm.conf")
    assert cfg.handlers == "/etc/slurm/prep.d" and cfg.path == ()
    assert cfg.handler == "handlers=/etc/slurm/prep.d"
    assert cfg.roots == ("/etc/slurm/prep.d",)
    cfg = _config.parse_file("/etc/slurm/job_submit_python.conf",
                             "handlers=/etc/slurm/submit.d\npath=/opt/lib\n", conf_path=None)
    assert cfg.roots == ("/opt/lib", "/etc/slurm/submit.d")


# -- loading: each file on its own ------------------------------------------------

def test_files_run_in_file_name_order_skipping_dot_and_other_files(hdir):
    hdir.put("20-b.py", prep_file("B", "def prolog(self, env): ORDER.append('b')\n"))
    hdir.put("10-a.py", prep_file("A", "def prolog(self, env): ORDER.append('a')\n"))
    hdir.put("100-c.py", prep_file("C", "def prolog(self, env): ORDER.append('c')\n"))
    hdir.put(".20-b.py.swp.py", "this is not python")
    hdir.put("README", "not a handler")
    h = kit.load_handlers(str(hdir), kind="prep")
    assert [m.name for m in _chain.members_of(h)] == ["10-a.py", "100-c.py", "20-b.py"]
    order: list[str] = []
    for m in _chain.members_of(h):
        vars(sys.modules[type(m.instance).__module__])["ORDER"] = order
    assert kit.run_prep(h, "prolog", kit.make_env(job_id=1)).ok
    assert order == ["a", "c", "b"]


@pytest.mark.parametrize("source, msg", [
    ("from slurmpy_plugins import PrEpHandler\n", r"found none"),
    ("from slurmpy_plugins import PrEpHandler\nclass A(PrEpHandler): pass\n"
     "class B(PrEpHandler): pass\n", r"found 2: A, B"),
    ("from slurmpy_plugins import PrEpHandler\n\nclass A(PrEpHandler:\n    pass\n",
     r"20-bad\.py:3: syntax error"),
    ("import no_such_module_x\n", r"20-bad\.py:1: loading \S+20-bad\.py failed: "
     r"ModuleNotFoundError"),
    ("from slurmpy_plugins import PrEpHandler\nclass A(PrEpHandler):\n"
     "    def __init__(self):\n        raise ValueError('no config')\n",
     r"20-bad\.py:4: \S+20-bad\.py: A\(\) failed: ValueError: no config"),
])
def test_a_file_that_does_not_load_is_named_with_its_line(hdir, source, msg):
    hdir.put("10-ok.py", prep_file("Ok", "def prolog(self, env): pass\n"))
    hdir.put("20-bad.py", source)
    with pytest.raises(_loader.HandlerError, match=msg):
        kit.load_handlers(str(hdir), kind="prep")


def test_every_failing_file_is_named_at_boot(hdir):
    hdir.put("10-x.py", "raise RuntimeError('x down')\n")
    hdir.put("20-y.py", "raise RuntimeError('y down')\n")
    with pytest.raises(_loader.HandlerError) as e:
        kit.load_handlers(str(hdir), kind="prep")
    assert "10-x.py:1" in str(e.value) and "20-y.py:1" in str(e.value)


def test_a_file_writable_by_others_is_refused(hdir):
    hdir.put("10-ok.py", prep_file("Ok", "def prolog(self, env): pass\n"), mode=0o664)
    with pytest.raises(_loader.HandlerError, match=r"refusing handler file \S+10-ok\.py: "
                       r"writable by group or others"):
        kit.load_handlers(str(hdir), kind="prep")


def test_an_empty_or_missing_directory_is_refused(hdir, tmp_path):
    with pytest.raises(_loader.HandlerError, match="has no handler files"):
        kit.load_handlers(str(hdir), kind="prep")
    with pytest.raises(_loader.HandlerError, match="No such file or directory"):
        kit.load_handlers(str(tmp_path / "nope"), kind="prep")


def test_reload_keeps_unchanged_files_and_the_last_good_version(hdir):
    a = hdir.put("10-a.py", prep_file("A", "def prolog(self, env): pass\n"))
    hdir.put("20-b.py", prep_file("B", "def prolog(self, env): raise OSError('v1')\n"))
    cfg = _config.parse(f"handlers={hdir}", conf_key="PrEpParameters", conf_path=None)
    hooks = ("prolog", "epilog", "prolog_slurmctld", "epilog_slurmctld")
    base = kit._BASES["prep"]
    first = _loader.load_dir(cfg, base, {0, os.getuid()}, hooks, None)
    assert first.notes == ()
    a_member = first.members[0]
    # 20-b changes for the worse, 30-c is new and broken, 10-a is unchanged
    hdir.put("20-b.py", "def broken(:\n")
    hdir.put("30-c.py", "x = 1\n")
    second = _loader.load_dir(cfg, base, {0, os.getuid()}, hooks, first)
    notes = second.notes
    assert second.members[0] is a_member
    assert second.members[1] is first.members[1]
    assert [m.name for m in second.members] == ["10-a.py", "20-b.py"]
    assert notes[0].startswith("changed handler file 20-b.py refused, its previous version "
                               "keeps running: ") and "20-b.py:1: syntax error" in notes[0]
    assert notes[1].startswith("new handler file 30-c.py refused, not run until it loads")
    # the previous 20-b still runs
    out = kit.run_prep(second.instance, "prolog", kit.make_env(job_id=2))
    assert out.drain_reason == "prep/python: OSError: v1"
    # a removed file's handler is dropped; an emptied directory is refused
    os.unlink(a)
    os.unlink(hdir / "30-c.py")
    hdir.put("20-b.py", prep_file("B", "def prolog(self, env): pass\n"))
    third = _loader.load_dir(cfg, base, {0, os.getuid()}, hooks, second)
    assert [m.name for m in third.members] == ["20-b.py"]
    assert third.notes == (f"handler file 10-a.py removed from {hdir}: its handler no longer "
                           "runs",)
    os.unlink(hdir / "20-b.py")
    with pytest.raises(_loader.HandlerError, match="previous handlers keep running"):
        _loader.load_dir(cfg, base, {0, os.getuid()}, hooks, third)


# -- how each plugin combines the files ------------------------------------------

def test_prep_first_failure_fails_the_hook_and_later_files_do_not_run(hdir, tmp_path):
    ran = tmp_path / "ran"
    hdir.put("10-a.py", prep_file("A", "def prolog(self, env):\n"
                                       f"    open({str(ran)!r}, 'a').write('a')\n"))
    hdir.put("20-b.py", prep_file("B", "def prolog(self, env):\n"
                                       "    raise ValueError('/scratch is full')\n"
                                       "def epilog(self, env):\n    return 'ok'\n"))
    hdir.put("30-c.py", prep_file("C", "def prolog(self, env):\n"
                                       f"    open({str(ran)!r}, 'a').write('c')\n"))
    h = kit.load_handlers(str(hdir), kind="prep")
    out = kit.run_prep(h, "prolog", kit.make_env(job_id=7))
    assert not out.ok and out.action == "drain"
    assert out.drain_reason == "prep/python: ValueError: /scratch is full"
    assert ran.read_text() == "a"
    assert any(line.startswith("error: prep/python[20-b]: prolog for JobId=7 failed at "
                               f"{hdir}/20-b.py:4: ValueError: /scratch is full")
               for line in out.log), out.log
    # a hook that returns a value fails, at that file's method
    out = kit.run_prep(h, "epilog", kit.make_env(job_id=7))
    assert not out.ok
    assert any(f"{hdir}/20-b.py:5: TypeError: epilog() returned 'ok' (str)" in line
               for line in out.log), out.log
    # only the hooks some file defines are asked of Slurm
    assert sorted(n for n in ("prolog", "epilog", "prolog_slurmctld", "epilog_slurmctld")
                  if getattr(type(h), n) is not getattr(kit._BASES["prep"], n)) == \
        ["epilog", "prolog"]


def test_job_submit_each_sees_the_previous_changes_and_the_first_reject_stops(hdir):
    hdir.put("10-defaults.py", """\
        import logging
        from slurmpy_plugins import JobSubmitHandler
        class Defaults(JobSubmitHandler):
            def submit(self, job, uid):
                logging.getLogger("defaults").info("partition was %s", job.partition)
                if not job.partition:
                    job.partition = "debug"
        """)
    hdir.put("20-limit.py", """\
        from slurmpy_plugins import JobSubmitHandler, Reject
        class Limit(JobSubmitHandler):
            def submit(self, job, uid):
                if job.partition == "debug" and job.time_limit and job.time_limit > 60:
                    raise Reject("debug jobs run 60 minutes at most")
                self.log_user("partition %s", job.partition)
        """)
    hdir.put("30-never.py", """\
        from slurmpy_plugins import JobSubmitHandler
        class Never(JobSubmitHandler):
            def submit(self, job, uid):
                job.comment = "30 ran"
        """)
    h = kit.load_handlers(str(hdir), kind="job_submit")
    out = kit.run_submit(h, kit.make_job_desc(time_limit=30))
    assert out.accepted and out.changes == {"partition": "debug", "comment": "30 ran"}
    assert out.message == "partition debug"
    assert "job_submit/python[10-defaults]: defaults: partition was None" in out.log
    out = kit.run_submit(h, kit.make_job_desc(time_limit=90))
    assert not out.accepted and out.message == "debug jobs run 60 minutes at most"
    assert out.changes == {}
    assert any(line.startswith("job_submit/python[20-limit]: submit() for a job of uid")
               for line in out.log), out.log


def test_site_factor_adds_up_then_clamps_once(hdir):
    hdir.put("10-a.py", """\
        from slurmpy_plugins import SiteFactorHandler
        class A(SiteFactorHandler):
            fields = ("account",)
            def set(self, job): return 2**31 - 10
            def update(self, jobs): return {j.job_id: 10 for j in jobs}
        """)
    hdir.put("20-b.py", """\
        from slurmpy_plugins import SiteFactorHandler
        class B(SiteFactorHandler):
            fields = ("user_id",)
            def set(self, job): return 100
            def update(self, jobs): return [-3, None, 2**31]
        """)
    hdir.put("30-none.py", """\
        from slurmpy_plugins import SiteFactorHandler
        class C(SiteFactorHandler):
            def set(self, job): return None
        """)
    h = kit.load_handlers(str(hdir), kind="site_factor")
    # C declares no fields: every field is read
    assert type(h).fields is None
    out = kit.run_set(h, kit.make_job(job_id=1))
    assert out.factor == 2**31 - 1       # (2**31 - 10) + 100, clamped once
    assert any("site factor 2147483738 is out of range" in line for line in out.log), out.log
    jobs = [kit.make_job(job_id=i) for i in (4, 5, 6)]
    out = kit.run_update(h, jobs)
    assert out.ok and out.factors == {4: 7, 5: 10, 6: 2**31 - 1}


def test_site_factor_a_wrong_answer_names_its_file(hdir):
    hdir.put("10-a.py", """\
        from slurmpy_plugins import SiteFactorHandler
        class A(SiteFactorHandler):
            def set(self, job): return 1.5
        """)
    h = kit.load_handlers(str(hdir), kind="site_factor")
    out = kit.run_set(h, kit.make_job(job_id=3))
    assert not out.ok
    assert any(f"{hdir}/10-a.py:3: TypeError: 10-a.py: set() returned 1.5 (float)" in line
               for line in out.log), out.log


def test_jobcomp_in_order_and_a_failure_fails_the_delivery(hdir, tmp_path):
    got = tmp_path / "got"
    for n, fail in (("10-a", False), ("20-b", True), ("30-c", False)):
        hdir.put(f"{n}.py", f"""\
            from slurmpy_plugins import JobCompHandler
            class H(JobCompHandler):
                def job_end(self, job):
                    open({str(got)!r}, "a").write("{n} ")
                    if {fail} and job.job_id == 2:
                        raise ConnectionError("ledger down")
            """)
    h = kit.load_handlers(str(hdir), kind="jobcomp")
    assert kit.run_job_end(h, kit.make_completed_job(job_id=1)).delivered
    out = kit.run_job_end(h, kit.make_completed_job(job_id=2))
    assert not out.delivered
    assert got.read_text() == "10-a 20-b 30-c 10-a 20-b "


def test_spank_in_order_with_every_files_options(hdir):
    hdir.put("10-a.py", """\
        from slurmpy_plugins import SpankHandler, SpankOption
        class A(SpankHandler):
            options = [SpankOption("alpha", help="a")]
            def task_init(self, spank):
                spank.setenv("SEEN", "a")
        """)
    hdir.put("20-b.py", """\
        from slurmpy_plugins import SpankHandler, SpankOption
        class B(SpankHandler):
            options = [SpankOption("beta", arg="n")]
            def task_init(self, spank):
                spank.setenv("SEEN", spank.getenv("SEEN") + "b")
                raise RuntimeError("beta failed")
        """)
    h = kit.load_handlers(str(hdir), kind="spank")
    assert [o.name for o in type(h).options] == ["alpha", "beta"]
    out = kit.run_spank(h, "task_init", context="remote")
    assert not out.ok and out.env["SEEN"] == "ab"
    assert "beta failed" in out.message and "20-b.py:6" in out.message


def test_figures_per_file(hdir):
    hdir.put("10-a.py", prep_file("A", "def prolog(self, env): pass\n"))
    hdir.put("20-b.py", prep_file("B", "def prolog(self, env): raise OSError('x')\n"))
    h = kit.load_handlers(str(hdir), kind="prep")
    for _ in range(3):
        kit.run_prep(h, "prolog", kit.make_env(job_id=1))
    fig = _chain.figures(h)
    assert fig["10-a.py"]["hooks"]["prolog"]["calls"] == 3
    assert fig["10-a.py"]["hooks"]["prolog"]["failures"] == 0
    assert fig["20-b.py"]["hooks"]["prolog"]["failures"] == 3
    assert fig["20-b.py"]["last_error"] == "prolog: OSError: x"


# -- check -----------------------------------------------------------------------

def test_check_lists_the_files_in_order(hdir, tmp_path):
    hdir.put("10-a.py", prep_file("A", "def prolog(self, env): pass\n"))
    hdir.put("20-b.py", prep_file("B", "def epilog_slurmctld(self, job): pass\n"))
    conf = tmp_path / "slurm.conf"
    conf.write_text(f"ClusterName=test\nSlurmUser={USER}\nPrEpPlugins=prep/python\n"
                    f"PrEpParameters=handlers={hdir}\nEpilog=/bin/true\n"
                    "NodeName=node1 CPUs=2\nPartitionName=debug Nodes=node1 Default=YES\n")
    env = dict(os.environ)
    cp = subprocess.run([sys.executable, "-m", "slurmpy_plugins", "check", str(conf), "--json"],
                        capture_output=True, text=True, env=env, timeout=60, cwd="/")
    assert cp.returncode == 0, cp
    (p,) = json.loads(cp.stdout)["plugins"]
    assert p["files"] == ["10-a.py", "20-b.py"] and p["module_file"] == str(hdir)
    assert sorted(p["hooks"]) == ["epilog_slurmctld", "prolog"]
    cp = subprocess.run([sys.executable, "-m", "slurmpy_plugins", "check", str(conf)],
                        capture_output=True, text=True, env=env, timeout=60, cwd="/")
    assert f"OK: handlers from {hdir}, in this order: 10-a.py, 20-b.py" in cp.stdout
    hdir.put("20-b.py", "raise RuntimeError('nope')\n")
    cp = subprocess.run([sys.executable, "-m", "slurmpy_plugins", "check", str(conf), "--json"],
                        capture_output=True, text=True, env=env, timeout=60, cwd="/")
    assert cp.returncode == 1
    (p,) = json.loads(cp.stdout)["plugins"]
    assert "20-b.py:1: loading" in p["error"] and "RuntimeError: nope" in p["error"]
