"""spank/python's C side without Slurm: spank_python.c's reading of a
handler module (its options and hooks, no Python in srun/sbatch) is the
reading the kit and check use (_spank.scan_source); a remote hook's boot
through libslurmpy.so (bench/spank_boot.c).  The kit's run_spank and
check's plugstack line are tests/python/test_spank.py."""
from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys
import textwrap

import pytest

from slurmpy_plugins import SpankOption, _spank
from tests.harness.hostdriver import SLURM_LIBDIR

from .conftest import ASAN

ROOT = pathlib.Path(__file__).resolve().parents[2]
SLURM_SRC = os.environ.get("SLURM_SRC") or ""


@pytest.fixture(scope="module")
def c_reader(tmp_path_factory):
    """Run spank_python.c's slurm_spank_init over a module file (stubbed
    SPANK, tests/host/spank_scan_host.c): (options, hooks) as registered."""
    if not SLURM_SRC:
        pytest.fail("SLURM_SRC is not set (run through make unit)")
    exe = tmp_path_factory.mktemp("scan") / "spank_scan_host"
    subprocess.run(["gcc", "-Wall", "-Werror", "-I", str(ROOT / "csrc"), "-I", SLURM_SRC,
                    "-o", str(exe), str(ROOT / "tests/host/spank_scan_host.c")], check=True)

    def read(directory: pathlib.Path, module: str | None = "m"
             ) -> tuple[list[SpankOption], set[str]]:
        """module None: the line is handlers=<directory>."""
        args = ([f"handler={module}:H", f"path={directory}"] if module
                else [f"handlers={directory}"])
        out = subprocess.run([str(exe), *args],
                             check=True, capture_output=True, text=True).stdout
        opts, hooks = [], set()
        for line in out.splitlines():
            tag, *f = line.split("\t")
            if tag == "OPT":
                name, arginfo, usage, has_arg = f
                assert (arginfo != "-") == (has_arg == "1")
                usage = re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1),
                               usage)
                opts.append(SpankOption(name, arg=None if arginfo == "-" else arginfo,
                                        help=usage))
            else:
                hooks.add(f[0])
        return opts, hooks
    return read


CASES = {
    "plain": '''
        class H(SpankHandler):
            options = [SpankOption("tag", arg="TAG", help="a tag"),
                       SpankOption("flag", arg=None, help="a flag")]
            def user_init(self, spank):
                pass
    ''',
    "quotes, escapes, order, trailing comma, module prefix": r'''
        import slurmpy_plugins
        class H(SpankHandler):
            options = [
                SpankOption('a_b', help='it\'s "quoted"', arg='X',),
                slurmpy_plugins.SpankOption("c-d", help="two\nlines"),
                SpankOption(  "e"  ,  arg = None  ) ,
            ]
            def task_init(self, spank): ...
            def  exit(self, spank): ...
    ''',
    "not literals: not registered": '''
        NAME = "x"
        class H(SpankHandler):
            options = [SpankOption(NAME, arg="V"), SpankOption("y", arg=V),
                       SpankOption("z", help=None), SpankOption("w", metavar="M"),
                       SpankOption("bad name"), SpankOption("ok")]
            def xdef_user_init(self, spank): ...
            def task_exit (self, spank): ...
            def init_post_opt(self, spank): ...
    ''',
    "first declaration wins": '''
        class H(SpankHandler):
            options = [SpankOption("t", arg="A", help="first"),
                       SpankOption("t", arg=None, help="second")]
            def user_initialize(self, spank): ...
    ''',
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_c_and_python_read_a_module_alike(c_reader, tmp_path, case):
    (tmp_path / "m.py").write_text(textwrap.dedent(CASES[case]))
    py_opts, py_hooks = _spank.scan_source((tmp_path / "m.py").read_text())
    c_opts, c_hooks = c_reader(tmp_path)
    assert c_opts == py_opts
    assert c_hooks == py_hooks


def test_what_the_c_reader_sees(c_reader, tmp_path):
    # pinned, so that a reader that finds nothing cannot agree with the other
    (tmp_path / "m.py").write_text(textwrap.dedent(CASES["plain"]))
    assert c_reader(tmp_path) == ([SpankOption("tag", "TAG", "a tag"),
                                   SpankOption("flag", None, "a flag")], {"user_init"})
    (tmp_path / "m.py").write_text(textwrap.dedent(CASES["not literals: not registered"]))
    assert c_reader(tmp_path) == ([SpankOption("ok")], {"task_exit", "init_post_opt"})
    # a module it cannot find: every hook runs (Python's loader says why)
    opts, hooks = c_reader(tmp_path, module="missing")
    assert opts == [] and hooks == set(_spank.HOOKS)


# Every plugin's modules but spank's: a SPANK hook imports none of them.
OTHER_PLUGINS = {"_records", "_jobdesc", "_fields", "_comprecord", "_calls", "_factors",
                 "_jobsubmit", "_jobcomp", "testing", "_check", "_abi"}


@pytest.fixture(scope="module")
def spank_boot(tmp_path_factory):
    """bench/spank_boot.c built: spank_python.c with SPANK stubbed (remote
    context) running slurm_spank_init and user_init twice; Python starts
    through libslurmpy.so as in a slurmstepd."""
    if not SLURM_SRC:
        pytest.fail("SLURM_SRC is not set (run through make unit)")
    plugin_dir = pathlib.Path(os.environ.get("SPM_PLUGIN_DIR", ROOT / "build" / "plugins"))
    d = tmp_path_factory.mktemp("boot")
    # beside slurmpy/, as spank_python.so is: it finds slurmpy/libslurmpy.so from its own path
    (d / "slurmpy").symlink_to(plugin_dir.resolve() / "slurmpy")
    exe = d / "spank_boot"
    # under make asan the plugins are instrumented: so is the program that
    # loads them (the ASan runtime must come first, as in spm_host.asan)
    san = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer"] if ASAN else []
    subprocess.run(["gcc", "-Wall", "-Werror", *san, "-I", str(ROOT / "csrc"), "-I", SLURM_SRC,
                    "-o", str(exe), str(ROOT / "bench/spank_boot.c"), f"-L{SLURM_LIBDIR}",
                    "-lslurmfull", f"-Wl,-rpath,{SLURM_LIBDIR}", "-ldl", "-lpthread"],
                   check=True)
    return exe


# under make asan: errors stop the program; leaks are not what these tests
# look at (the interpreter is never finalized: spm_host.asan's lsan.supp)
BOOT_ENV = ({**os.environ, "ASAN_OPTIONS": "detect_leaks=0:halt_on_error=1:exitcode=23",
             "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1"} if ASAN else None)


def test_boot_imports_only_spank(spank_boot, handlers, tmp_path):
    """A remote hook imports spank's modules, none of the other plugins'
    records or dispatch."""
    handlers.write("boot_h", '''
        from slurmpy_plugins import SpankHandler

        class H(SpankHandler):
            def user_init(self, spank):
                with open("{out}/ran", "a") as f:
                    f.write("user_init\\n")
                spank.setenv("X", "1")
    ''')
    modules = tmp_path / "modules"
    r = subprocess.run([str(spank_boot), "--modules", str(modules), "handler=boot_h:H",
                        f"path={handlers.path}"], capture_output=True, text=True, timeout=120,
                       env=BOOT_ENV)
    assert r.returncode == 0, r.stderr
    assert (handlers.out / "ran").read_text() == "user_init\nuser_init\n"
    loaded = {m.split(".", 1)[1] for m in modules.read_text().split()
              if m.startswith("slurmpy_plugins.")}
    assert {"_bridge", "_spank", "_handlers", "_loader"} <= loaded
    assert not loaded & OTHER_PLUGINS, sorted(loaded)


@pytest.mark.parametrize("timeout", [None, "5"])
def test_a_hooks_subprocess_gets_an_empty_signal_mask(spank_boot, handlers, timeout):
    """With timeout= the hook runs on a thread of its own that blocks every
    signal; a program it starts must not inherit that mask (it would
    ignore SIGTERM)."""
    handlers.write("sig_h", '''
        import subprocess
        from slurmpy_plugins import SpankHandler

        class H(SpankHandler):
            def user_init(self, spank):
                status = subprocess.run(["cat", "/proc/self/status"], capture_output=True,
                                        text=True, check=True).stdout
                with open("{out}/sigblk", "a") as f:
                    f.write([l for l in status.splitlines() if l.startswith("SigBlk:")][0] + "\\n")
    ''')
    r = subprocess.run([str(spank_boot), "handler=sig_h:H", f"path={handlers.path}"]
                       + ([f"timeout={timeout}"] if timeout else []),
                       capture_output=True, text=True, timeout=120, env=BOOT_ENV)
    assert r.returncode == 0, r.stderr
    masks = (handlers.out / "sigblk").read_text().split("\n")[:-1]
    assert masks == ["SigBlk:\t0000000000000000"] * 2, masks


def test_package_names_are_imported_on_first_use():
    """slurmpy_plugins imports no submodule until a name is used; every
    public name is then the defining module's object."""
    code = f"import sys; sys.path.insert(0, {str(ROOT)!r})\n" + textwrap.dedent('''
        import importlib
        import slurmpy_plugins as p
        assert not [m for m in sys.modules if m.startswith("slurmpy_plugins.")], sorted(sys.modules)
        from slurmpy_plugins import SpankHandler
        assert {m for m in sys.modules if m.startswith("slurmpy_plugins.")} == \\
            {"slurmpy_plugins._handlers"}, sorted(sys.modules)
        assert set(p._WHERE) == set(p.__all__)
        for name in p.__all__:
            assert getattr(p, name) is getattr(importlib.import_module("slurmpy_plugins." + p._WHERE[name]), name), name
        ns = {}
        exec("from slurmpy_plugins import *", ns)
        assert set(ns) - {"__builtins__"} == set(p.__all__)
        assert set(p.__all__) <= set(dir(p))
        try:
            p.NoSuchName
        except AttributeError as e:
            assert "NoSuchName" in str(e)
        else:
            raise AssertionError("no AttributeError")
        print("ok")
    ''')
    r = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout == "ok\n", r.stderr


def test_handlers_dir_every_files_options_and_hooks_without_python(c_reader, tmp_path):
    """handlers=DIR: spank_python.so reads every *.py of the directory (not
    dot files), as Python's loader will load them."""
    d = tmp_path / "spank.d"
    d.mkdir()
    (d / "10-a.py").write_text("class A(SpankHandler):\n"
                               "    options = [SpankOption('alpha', arg='A')]\n"
                               "    def user_init(self, spank): ...\n")
    (d / "20-b.py").write_text("class B(SpankHandler):\n"
                               "    options = [SpankOption('beta')]\n"
                               "    def task_exit(self, spank): ...\n")
    (d / ".30-c.py").write_text("class C(SpankHandler):\n"
                                "    options = [SpankOption('hidden')]\n"
                                "    def exit(self, spank): ...\n")
    (d / "notes.txt").write_text("SpankOption('txt')\n")
    opts, hooks = c_reader(d, module=None)
    assert sorted(o.name for o in opts) == ["alpha", "beta"]
    assert hooks == {"user_init", "task_exit"}
