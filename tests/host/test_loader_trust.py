"""What the loader trusts: every file that runs as root inside the daemon
must be writable only by root/SlurmUser, down the whole directory chain,
and be checked BEFORE any of its code runs.

Each test builds a small tree under tmp_path (root-owned, as the tests run
as root; /tmp above it is sticky and world-writable, which is allowed), makes
one entry loose, and checks that the plugin fails closed naming that entry
and that the loose code never ran (a module that runs writes a marker file).
"""
from __future__ import annotations

import importlib.util
import os
import pathlib
import sys
import textwrap

import pytest


GOOD = """\
from slurmpy_plugins import PrEpHandler
class H(PrEpHandler):
    def prolog_slurmctld(self, job):
        pass
"""

# a module that leaves a trace when its code runs
RAN = """\
open({marker!r}, "a").close()
"""


def put(path: pathlib.Path, text: str, mode: int = 0o644) -> pathlib.Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    os.chmod(path, mode)
    return path


def mkdir(path: pathlib.Path, mode: int = 0o755) -> pathlib.Path:
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, mode)
    return path


def load(make_host, params: str):
    h = make_host("prep")
    h.conf(prep_params=params)
    h.load()
    h.wait_booted()          # the handler loads on init()'s boot thread
    h.req = h.required()
    return h


def assert_refused(h, *fragments):
    log = h.log()
    assert "error: prep/python: handler not loaded: refusing " in log, log
    assert "loaded handler" not in log, log
    for frag in fragments:
        assert frag in log, (frag, log)
    # fail closed: every hook is required
    assert h.req["epilog_slurmctld"] is True


def assert_loaded(h):
    log = h.log()
    assert "prep/python: loaded handler" in log, log
    assert "handler not loaded" not in log, log
    assert h.req["epilog_slurmctld"] is False


# ---------------------------------------------------------------------------
# packages: pkg/__init__.py and the directories below path=
# ---------------------------------------------------------------------------

def _package_tree(tmp_path):
    root = mkdir(tmp_path / "handlers")
    marker = tmp_path / "init_ran"
    pkg = mkdir(root / "pkg")
    init = put(pkg / "__init__.py", RAN.format(marker=str(marker)))
    sub = mkdir(pkg / "sub")
    put(sub / "__init__.py", "")
    mod = put(sub / "mod.py", GOOD)
    return root, marker, {"pkg": pkg, "init": init, "sub": sub, "mod": mod}


@pytest.mark.parametrize("loose,mode,what", [
    ("pkg", 0o777, "directory {p} is writable by group or others (mode 0777)"),
    ("init", 0o666, "refusing module file {p}: writable by group or others "
                    "(mode 0666); run chmod go-w {p}"),
    ("sub", 0o775, "directory {p} is writable by group or others (mode 0775)"),
    ("mod", 0o664, "refusing handler file {p}: writable by group or others "
                   "(mode 0664); run chmod go-w {p}"),
])
def test_package_chain_is_checked_before_any_of_it_runs(make_host, tmp_path,
                                                        loose, mode, what):
    root, marker, entries = _package_tree(tmp_path)
    os.chmod(entries[loose], mode)
    h = load(make_host, "handler=pkg.sub.mod:H,path=%s" % root)
    assert_refused(h, what.format(p=entries[loose]))
    if loose in ("pkg", "init"):
        assert not marker.exists(), "pkg/__init__.py ran before it was checked"


def test_package_owned_by_someone_else_is_refused(make_host, tmp_path):
    root, marker, entries = _package_tree(tmp_path)
    os.chown(entries["init"], 4242, 4242)
    h = load(make_host, "handler=pkg.sub.mod:H,path=%s" % root)
    assert_refused(h, "refusing module file %s: owned by uid 4242; it must be "
                      "owned by root or SlurmUser (uid 0)" % entries["init"])
    assert not marker.exists()


def test_good_package_loads(make_host, tmp_path):
    root, marker, _ = _package_tree(tmp_path)
    h = load(make_host, "handler=pkg.sub.mod:H,path=%s" % root)
    assert_loaded(h)
    assert marker.exists()


# ---------------------------------------------------------------------------
# the directories above path=, and sticky /tmp-like directories
# ---------------------------------------------------------------------------

def test_directory_above_the_handler_directory_is_checked(make_host, tmp_path):
    loose = mkdir(tmp_path / "shared", 0o777)
    root = mkdir(loose / "handlers")
    put(root / "hh.py", GOOD)
    h = load(make_host, "handler=hh:H,path=%s" % root)
    assert_refused(h, "refusing handler directory %s: directory %s is writable "
                      "by group or others (mode 0777); run chmod go-w %s"
                      % (root, loose, loose))


def test_directory_above_owned_by_someone_else_is_refused(make_host, tmp_path):
    foreign = mkdir(tmp_path / "home")
    root = mkdir(foreign / "handlers")
    put(root / "hh.py", GOOD)
    os.chown(foreign, 4242, 4242)
    h = load(make_host, "handler=hh:H,path=%s" % root)
    assert_refused(h, "refusing handler directory %s: directory %s is owned by "
                      "uid 4242" % (root, foreign))


def test_sticky_world_writable_ancestor_is_accepted(make_host, tmp_path):
    """Like /tmp: others may create entries there but not replace ours."""
    sticky = mkdir(tmp_path / "scratch", 0o1777)
    root = mkdir(sticky / "handlers")
    put(root / "hh.py", GOOD)
    h = load(make_host, "handler=hh:H,path=%s" % root)
    assert_loaded(h)


def test_below_a_sticky_directory_the_entry_must_be_trusted(make_host, tmp_path):
    sticky = mkdir(tmp_path / "scratch", 0o1777)
    theirs = mkdir(sticky / "theirs")
    root = mkdir(theirs / "handlers")
    put(root / "hh.py", GOOD)
    os.chown(theirs, 4242, 4242)
    h = load(make_host, "handler=hh:H,path=%s" % root)
    assert_refused(h, "directory %s is owned by uid 4242" % theirs)


# ---------------------------------------------------------------------------
# modules the handler imports, symlinks, bytecode
# ---------------------------------------------------------------------------

def test_module_imported_by_the_handler_is_checked(make_host, tmp_path):
    root = mkdir(tmp_path / "handlers")
    marker = tmp_path / "helper_ran"
    helper = put(root / "helper.py", RAN.format(marker=str(marker)), 0o666)
    put(root / "hh.py", "import helper\n" + GOOD)
    h = load(make_host, "handler=hh:H,path=%s" % root)
    log = h.log()
    assert "handler not loaded: %s:1: importing hh failed: HandlerError: " \
           "refusing module file %s: writable by group or others (mode 0666)" \
           % (root / "hh.py", helper) in log, log
    assert not marker.exists()


@pytest.mark.parametrize("mode", [0o644, 0o666])
def test_extension_module_is_checked(make_host, tmp_path, mode):
    """A .so under path= gets the file and directory checks too (xxlimited:
    CPython's example extension, which nothing else imports)."""
    import sysconfig
    name = "xxlimited" + sysconfig.get_config_var("EXT_SUFFIX")
    src = pathlib.Path(sysconfig.get_config_var("DESTSHARED")) / name
    root = mkdir(tmp_path / "handlers")
    ext = root / name
    ext.write_bytes(src.read_bytes())
    os.chmod(ext, mode)
    put(root / "hh.py", "import xxlimited\n" + GOOD)
    h = load(make_host, "handler=hh:H,path=%s" % root)
    if mode == 0o644:
        assert_loaded(h)
    else:
        assert ("refusing module file %s: writable by group or others (mode 0666)"
                % ext) in h.log()


def test_symlinked_handler_checks_the_real_directory(make_host, tmp_path):
    root = mkdir(tmp_path / "handlers")
    elsewhere = mkdir(tmp_path / "elsewhere", 0o777)
    real = put(elsewhere / "real.py", GOOD)
    os.symlink(real, root / "hh.py")
    h = load(make_host, "handler=hh:H,path=%s" % root)
    assert_refused(h, "refusing handler file %s: directory %s is writable by "
                      "group or others (mode 0777)" % (root / "hh.py", elsewhere))


def test_symlinked_handler_into_a_safe_directory_loads(make_host, tmp_path):
    root = mkdir(tmp_path / "handlers")
    real = put(mkdir(tmp_path / "elsewhere") / "real.py", GOOD)
    os.symlink(real, root / "hh.py")
    assert_loaded(load(make_host, "handler=hh:H,path=%s" % root))


def test_planted_bytecode_is_never_run(make_host, handlers):
    """A .pyc in __pycache__ whose header matches the source would be used
    by Python's own loader instead of the source; ours only runs source."""
    recording = """\
import spmtest_rec as R
from slurmpy_plugins import PrEpHandler
VERSION = %r
class H(PrEpHandler):
    def prolog_slurmctld(self, job):
        R.append("{out}/calls.jsonl", VERSION)
"""
    src = handlers.write("hh", recording % "source")
    st = src.stat()
    planted = compile((recording % "planted").replace("{out}", str(handlers.out)),
                      str(src), "exec")
    pyc = pathlib.Path(importlib.util.cache_from_source(str(src)))
    mkdir(pyc.parent)
    from importlib._bootstrap_external import _code_to_timestamp_pyc
    pyc.write_bytes(_code_to_timestamp_pyc(planted, int(st.st_mtime), st.st_size))
    os.chmod(pyc, 0o644)
    h = make_host("prep")
    h.conf(prep_params=handlers.params("hh:H"))
    h.load()
    h.callbacks()
    res = h.prolog_slurmctld(job_id=1)
    assert res["rc"] == 0 and res["async"] == 1, res
    assert h.wait_callbacks(1)[0]["rc"] == 0
    assert handlers.lines("calls.jsonl") == ["source"]


def test_bytecode_without_source_is_refused(make_host, tmp_path):
    """A helper.pyc with no helper.py beside it (Python would run it)."""
    import py_compile
    root = mkdir(tmp_path / "handlers")
    marker = tmp_path / "pyc_ran"
    src = put(tmp_path / "helper.py", RAN.format(marker=str(marker)))
    pyc = pathlib.Path(py_compile.compile(str(src), cfile=str(root / "helper.pyc")))
    os.chmod(pyc, 0o644)
    put(root / "hh.py", "import helper\n" + GOOD)
    h = load(make_host, "handler=hh:H,path=%s" % root)
    assert ("refusing module file %s: not Python source" % pyc) in h.log()
    assert not marker.exists()


# ---------------------------------------------------------------------------
# venv=: the venv, its site-packages and its .pth files
# ---------------------------------------------------------------------------

def _venv(tmp_path):
    venv = mkdir(tmp_path / "venv")
    site = venv / "lib" / ("python%d.%d" % sys.version_info[:2]) / "site-packages"
    for d in (venv / "lib", site.parent, site):
        mkdir(d)
    return venv, site


def test_venv_pth_file_is_checked_before_it_runs(make_host, handlers, tmp_path):
    venv, site = _venv(tmp_path)
    marker = tmp_path / "pth_ran"
    pth = put(site / "evil.pth", "import os; open(%r, 'a').close()\n" % str(marker),
              0o666)
    handlers.write("hh", GOOD)
    h = load(make_host, handlers.params("hh:H", venv=str(venv)))
    assert_refused(h, "refusing venv .pth file %s: writable by group or others "
                      "(mode 0666); run chmod go-w %s" % (pth, pth))
    assert not marker.exists()


def test_venv_site_packages_is_checked(make_host, handlers, tmp_path):
    venv, site = _venv(tmp_path)
    os.chmod(site, 0o777)
    handlers.write("hh", GOOD)
    h = load(make_host, handlers.params("hh:H", venv=str(venv)))
    assert_refused(h, "refusing venv site-packages %s: writable by group or "
                      "others (mode 0777)" % site)


def test_venv_module_is_checked(make_host, handlers, tmp_path):
    venv, site = _venv(tmp_path)
    marker = tmp_path / "venv_module_ran"
    mod = put(site / "venvmod.py", RAN.format(marker=str(marker)), 0o646)
    handlers.write("hh", "import venvmod\n" + GOOD)
    h = load(make_host, handlers.params("hh:H", venv=str(venv)))
    assert ("refusing module file %s: writable by group or others (mode 0646)"
            % mod) in h.log()
    assert not marker.exists()


def test_venv_pth_files_work_as_with_site(make_host, handlers, tmp_path):
    """.pth lines: `import` lines run, other lines add existing directories
    (which are then checked like the rest), comments and blanks are skipped."""
    venv, site = _venv(tmp_path)
    extra = mkdir(tmp_path / "extra")
    put(extra / "extramod.py", "VALUE = 'from extra'\n")
    put(site / "setflag.py", "import builtins\nbuiltins.SPM_PTH_FLAG = 'set'\n")
    # old setuptools -nspkg.pth lines read `sitedir` from site's frame
    put(site / "a.pth", "# comment\n\n%s\n%s/missing\nimport setflag\n"
        "import builtins, sys; builtins.SPM_SITEDIR = sys._getframe(1).f_locals['sitedir']\n"
        % (extra, tmp_path))
    handlers.write("hh", """\
        import builtins, json, extramod
        from slurmpy_plugins import PrEpHandler
        with open("{out}/pth.json", "w") as f:
            json.dump([extramod.VALUE, builtins.SPM_PTH_FLAG, builtins.SPM_SITEDIR], f)
        class H(PrEpHandler):
            def prolog_slurmctld(self, job):
                pass
        """)
    h = load(make_host, handlers.params("hh:H", venv=str(venv)))
    assert_loaded(h)
    assert handlers.read("pth.json") == ["from extra", "set", str(site)]


def test_directory_added_by_a_pth_file_is_checked(make_host, handlers, tmp_path):
    venv, site = _venv(tmp_path)
    extra = mkdir(tmp_path / "extra", 0o777)
    marker = tmp_path / "extra_ran"
    put(extra / "extramod.py", RAN.format(marker=str(marker)))
    pth = put(site / "a.pth", "%s\n" % extra)
    handlers.write("hh", "import extramod\n" + GOOD)
    h = load(make_host, handlers.params("hh:H", venv=str(venv)))
    assert_refused(h, "refusing directory %s (line 1 of %s): writable by group "
                      "or others (mode 0777)" % (extra, pth))
    assert not marker.exists()
