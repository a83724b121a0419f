"""An installed plugin depends on nothing in the build tree (trust issue:
the daemons ran the build checkout's virtualenv as root).

The checkout is copied to a temporary directory, built there with its own
venv and `make install`ed into a temporary PluginDir.  A real cluster then
loads the plugins from that PluginDir twice: with the copy (and its .venv)
still there, and after the copy is deleted.  Each time the handler records,
in slurmctld and slurmd, what the embedded interpreter is: it must be the
base interpreter (sys.prefix == sys.base_prefix, an executable that exists),
and no sys.path entry may point into the copy, the original checkout or any
venv.
"""
from __future__ import annotations

import json
import os
import pathlib
import shutil
import stat
import subprocess
import sys
import time

import pytest

from .conftest import ROOT, read_calls, write_handler

pytestmark = pytest.mark.integration

# Not copied: build products, venvs and caches (the copy builds its own).
IGNORE = shutil.ignore_patterns(".git", ".venv", "build", "__pycache__", "*.pyc",
                                ".hypothesis", ".pytest_cache", "results")

HANDLER = '''
import json, os, sys
import _cffi_backend
import slurmpy_plugins
from slurmpy_plugins import PrEpHandler

OUT = {out!r}

def record(hook):
    rec = dict(hook=hook, pid=os.getpid(), executable=sys.executable,
               base_executable=getattr(sys, "_base_executable", None),
               version=sys.version, prefix=sys.prefix, base_prefix=sys.base_prefix,
               exec_prefix=sys.exec_prefix, base_exec_prefix=sys.base_exec_prefix,
               path=list(sys.path), isolated=sys.flags.isolated,
               package=slurmpy_plugins.__file__, cffi_backend=_cffi_backend.__file__)
    fd = os.open(OUT, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps(rec) + "\\n").encode())
    finally:
        os.close(fd)

class Handler(PrEpHandler):
    def prolog_slurmctld(self, job):
        record("prolog_slurmctld")
    def prolog(self, env):
        record("prolog")
'''


def _slurm_src() -> str:
    src = os.environ.get("SLURM_SRC")
    if not src:
        src = subprocess.run(["scripts/slurm-src.sh", str(ROOT / "build" / "slurm-src")],
                             cwd=ROOT, check=True, capture_output=True, text=True).stdout.strip()
    if not (pathlib.Path(src) / "config.h").is_file():
        pytest.fail(f"SLURM_SRC={src} is not a configured Slurm tree: run `make deps`")
    return src


def _make(copy: pathlib.Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items()
           if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "VIRTUAL_ENV", "PYTHONPATH")}
    # The copy's venv must not be found through this one's bin dir.
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep)
                                  if not p.startswith(sys.prefix))
    argv = ["make", "-C", str(copy), *args]
    # Build with the interpreter this checkout's venv was made from
    # (the Makefile's default otherwise).
    base = pathlib.Path(sys.prefix, ".base-python")
    if base.is_file():
        argv.append(f"PYTHON={base.read_text().strip()}")
    r = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, f"{' '.join(argv)} failed:\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}"
    return r.stdout


def _tree(d: pathlib.Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(d)): (p.lstat().st_ino, p.lstat().st_mtime_ns)
            for p in sorted(d.rglob("*"))}


def _in_venv(path: str) -> str | None:
    """The venv (a directory with pyvenv.cfg) that path is inside, if any."""
    p = pathlib.Path(path)
    for d in [p, *p.parents]:
        if (d / "pyvenv.cfg").is_file():
            return str(d)
    return None


def _under(path: str, root: pathlib.Path) -> bool:
    path = os.path.normpath(path)
    return path == str(root) or path.startswith(str(root) + os.sep)


def _run_job(cluster_factory, plugindir: pathlib.Path, tmp_path: pathlib.Path,
             name: str) -> tuple[dict[str, dict], pathlib.Path]:
    """Start a cluster on plugindir, run one job, stop; return what the
    handler recorded in each daemon, keyed by hook, and its handler dir."""
    out = tmp_path / f"{name}.jsonl"
    hdir = tmp_path / f"{name}-handlers"
    write_handler(hdir, "standalone_prep", HANDLER.format(out=str(out)))
    c = cluster_factory(name=name, plugin_dirs=[str(plugindir)], conf_extra=[
        "PrEpPlugins=prep/python",
        f"PrEpParameters=handler=standalone_prep:Handler,path={hdir}"])
    c.start()
    jid = c.sbatch("-o", "/dev/null", "--chdir", "/tmp", wrap="true")
    deadline = time.monotonic() + 60
    while {r["hook"] for r in read_calls(out)} < {"prolog_slurmctld", "prolog"}:
        if time.monotonic() > deadline:
            pytest.fail(f"the handler never ran in both daemons: {read_calls(out)}\n"
                        + c.log_tails())
        time.sleep(0.2)
    c.wait_job(jid, timeout=60)
    recs = {r["hook"]: r for r in read_calls(out)}
    assert recs["prolog_slurmctld"]["pid"] == c.ctld_pid
    assert recs["prolog"]["pid"] != c.ctld_pid
    c.stop()
    return recs, hdir


def _check(recs: dict[str, dict], *, phase: str, copy: pathlib.Path,
           core: pathlib.Path, built: dict) -> None:
    for hook, r in recs.items():
        where = f"{phase}, {hook}: {json.dumps(r, indent=1)}"
        assert r["prefix"] == r["base_prefix"], where
        assert r["exec_prefix"] == r["base_exec_prefix"], where
        assert r["prefix"] == built["base_prefix"], where
        assert r["version"] == built["version"], where
        assert r["isolated"] == 1, where
        # The program name is a real base interpreter that exists whatever
        # happens to the checkout, and reports the same Python and prefix.
        for exe in (r["executable"], r["base_executable"]):
            assert exe and os.path.isabs(exe), where
            assert not _under(exe, copy) and not _under(exe, ROOT), where
            assert _in_venv(exe) is None, where
            assert os.access(exe, os.X_OK), where
        same = json.loads(subprocess.run(
            [r["executable"], "-I", "-c", "import json, sys; print(json.dumps("
             "[sys.version, sys.prefix, sys.base_prefix]))"],
            check=True, capture_output=True, text=True).stdout)
        assert same == [r["version"], r["prefix"], r["prefix"]], (same, where)
        # Our code comes from the PluginDir, and nothing from a checkout or a venv.
        assert _under(r["package"], core / "python"), where
        assert _under(r["cffi_backend"], core / "python"), where
        assert str(core / "python") in r["path"], where
        for entry in r["path"]:
            assert not _under(entry, copy), f"sys.path entry {entry} is in the copy; {where}"
            assert not _under(entry, ROOT), f"sys.path entry {entry} is in the checkout; {where}"
            assert _in_venv(entry) is None, f"sys.path entry {entry} is in a venv; {where}"


def test_installed_plugin_runs_without_the_checkout(cluster_factory, tmp_path):
    if os.geteuid() != 0:
        pytest.fail("needs root (real slurmctld/slurmd, a root-owned install)")
    copy = tmp_path / "checkout-copy"
    plugindir = tmp_path / "plugindir"
    core = plugindir / "slurmpy"
    t0 = time.monotonic()
    shutil.copytree(ROOT, copy, ignore=IGNORE, symlinks=True)
    _make(copy, "install", f"PLUGINDIR={plugindir}", f"SLURM_SRC={_slurm_src()}")

    # The interpreter the copy built against, asked before the copy goes.
    # (VENV= reaches make through the environment when this suite runs
    # under `make VENV=...`, as `make test-24.11` does in the trixie root)
    copy_py = copy / os.environ.get("VENV", ".venv") / "bin" / "python"
    built = json.loads(subprocess.run(
        [str(copy_py), "-c", "import json, sys; print(json.dumps(dict("
         "base_prefix=sys.base_prefix, version=sys.version)))"],
        check=True, capture_output=True, text=True).stdout)

    # Idempotent: a second install rewrites nothing.
    before = _tree(plugindir)
    _make(copy, "install", f"PLUGINDIR={plugindir}", f"SLURM_SRC={_slurm_src()}")
    assert _tree(plugindir) == before, "a second `make install` changed the PluginDir"
    build_seconds = time.monotonic() - t0

    # The installed tree: real files, root-owned, not group/other-writable.
    installed = [plugindir / "prep_python.so", plugindir / "site_factor_python.so",
                 core / "libslurmpy.so", core / "python" / "slurmpy_plugins" / "__init__.py"]
    assert all(p.is_file() for p in installed), sorted(map(str, plugindir.rglob("*")))
    assert list((core / "python").glob("_cffi_backend*.so")), sorted(map(str, core.rglob("*")))
    bad = []
    for p in [plugindir, *plugindir.rglob("*")]:
        st = p.lstat()
        if stat.S_ISLNK(st.st_mode):
            bad.append(f"{p} -> {os.readlink(p)}")
        elif st.st_uid != 0 or st.st_gid != 0 or st.st_mode & 0o022:
            bad.append(f"{p}: {st.st_uid}:{st.st_gid} {stat.S_IMODE(st.st_mode):04o}")
    assert not bad, "installed tree is not self-contained/root-owned:\n" + "\n".join(bad)

    # With the build tree still there (its .venv included), the daemons
    # must already ignore it: this is where a venv's site-packages and .pth
    # files would run as root.
    with_copy, _ = _run_job(cluster_factory, plugindir, tmp_path, "with-copy")
    _check(with_copy, phase="build tree present", copy=copy, core=core, built=built)

    shutil.rmtree(copy)
    assert not copy.exists()
    without, _ = _run_job(cluster_factory, plugindir, tmp_path, "copy-deleted")
    _check(without, phase="build tree deleted", copy=copy, core=core, built=built)
    print(f"built and installed from a copy in {build_seconds:.1f}s; "
          f"daemons embed {without['prolog_slurmctld']['executable']} "
          f"(prefix {without['prolog_slurmctld']['prefix']})")
