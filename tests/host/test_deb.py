"""`make deb` (scripts/deb.py): a Debian package holding exactly what
`make install` installs, Depends pinned to the installed Slurm package's
exact version, installed and removed cleanly by dpkg (into a scratch
--root: the machine's PluginDir is left alone), and refused, saying why,
for a Slurm no package installed or another release than the build's."""
from __future__ import annotations

import filecmp
import marshal
import os
import pathlib
import re
import subprocess
import sys

import pytest

from tests.harness import hostdriver
from tests.harness.slurmpaths import SLURM_PLUGIN_DIR

from .conftest import PLUGIN_DIR, REPO

DEB = REPO / "scripts" / "deb.py"
INSTALL = REPO / "scripts" / "install.py"
V = hostdriver.SLURM_VERSION_NUMBER
BUILT = f"{V >> 16:02d}.{(V >> 8) & 0xff:02d}.{V & 0xff}"


def deb(tmp_path, plugindir=SLURM_PLUGIN_DIR, version=BUILT):
    return subprocess.run([sys.executable, str(DEB), str(PLUGIN_DIR), str(plugindir),
                           str(tmp_path / "dist"), "--slurm-version", version],
                          capture_output=True, text=True, timeout=300)


def _deb_module():
    """scripts/deb.py, for the lookups a skip decides on (which package owns
    the Slurm, and its upstream version): what the tests assert is read
    from dpkg itself."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("deb_script", DEB)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


debpy = _deb_module()


def installed_slurm() -> tuple[str, str] | None:
    """(package, version) owning the tests' Slurm's libslurmfull.so."""
    pkg = debpy.owner(f"{SLURM_PLUGIN_DIR}/libslurmfull.so")
    return None if pkg is None else (pkg, debpy.version_of(pkg))


def files_under(root: pathlib.Path) -> dict[str, pathlib.Path]:
    return {str(p.relative_to(root)): p for p in root.rglob("*") if not p.is_dir()}


def test_the_package_holds_what_install_installs_pinned_to_the_installed_slurm(tmp_path):
    owner = installed_slurm()
    if owner is None:
        pytest.skip(f"no Debian package owns {SLURM_PLUGIN_DIR}/libslurmfull.so (a Slurm "
                    "built into a prefix): deb.py refuses it, see the test below")
    pkg, ver = owner
    if debpy.upstream(ver) != BUILT:
        pytest.skip(f"the plugins are built for Slurm {BUILT}, the installed {pkg} is {ver}")
    cp = deb(tmp_path)
    assert cp.returncode == 0, cp.stderr
    out = pathlib.Path(cp.stdout.strip())
    arch = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True,
                          check=True).stdout.strip()
    assert out.name == f"slurmpy-plugins_0.1.0+slurm{BUILT}_{arch}.deb"

    def field(name):
        return subprocess.run(["dpkg-deb", "-f", str(out), name], capture_output=True,
                              text=True, check=True).stdout.strip()
    depends = [d.strip() for d in field("Depends").split(",")]
    assert f"{pkg} (= {ver})" in depends
    assert any(re.fullmatch(r"libpython3\.\d+", d) for d in depends), depends
    # every dependency is satisfied on this machine
    for d in depends:
        name, _, pin = d.partition(" ")
        got = subprocess.run(["dpkg-query", "-W", "-f=${Status} ${Version}", name],
                             capture_output=True, text=True)
        assert got.stdout.startswith("install ok installed"), (d, got.stdout, got.stderr)
        if pin:
            assert got.stdout.split()[-1] == pin.strip("(= )"), (d, got.stdout)

    # the files, owners and modes: what install.py puts into a PLUGINDIR
    ref = tmp_path / "ref"
    subprocess.run([sys.executable, str(INSTALL), str(PLUGIN_DIR), str(ref)], check=True,
                   capture_output=True)
    unpacked = tmp_path / "x"
    subprocess.run(["dpkg-deb", "-x", str(out), str(unpacked)], check=True)
    got = files_under(unpacked / SLURM_PLUGIN_DIR.lstrip("/"))
    want = files_under(ref)
    assert sorted(got) == sorted(want)
    for rel, p in got.items():
        if rel.endswith(".pyc"):
            # the same hash-checked bytecode of the same source (the code
            # names another path: the reference was installed elsewhere)
            a, b = p.read_bytes(), want[rel].read_bytes()
            assert a[:16] == b[:16], rel
            assert marshal.loads(a[16:]) == marshal.loads(b[16:]), rel
            assert marshal.loads(a[16:]).co_filename == f"{SLURM_PLUGIN_DIR}/{rel}".replace(
                "__pycache__/", "").replace(f".{sys.implementation.cache_tag}.pyc", ".py")
            continue
        assert filecmp.cmp(p, want[rel], shallow=False), rel
        assert os.stat(p).st_mode & 0o7777 == os.stat(want[rel]).st_mode & 0o7777, rel
    listing = subprocess.run(["dpkg-deb", "-c", str(out)], capture_output=True, text=True,
                             check=True).stdout.splitlines()
    assert listing and all(line.split()[1] == "root/root" for line in listing)
    assert not [line for line in listing if line.startswith("l")]   # no symlinks

    # installed and removed by dpkg, into a scratch root: nothing is left
    root = tmp_path / "root"
    for d in ("info", "updates", "triggers"):
        (root / "var/lib/dpkg" / d).mkdir(parents=True)
    for f in ("status", "available"):
        (root / "var/lib/dpkg" / f).touch()
    dpkg = ["dpkg", f"--root={root}", "--log=/dev/null"]
    subprocess.run([*dpkg, "--force-depends", "-i", str(out)], check=True, capture_output=True)
    assert sorted(files_under(root / SLURM_PLUGIN_DIR.lstrip("/"))) == sorted(want)
    rm = subprocess.run([*dpkg, "-r", "slurmpy-plugins"], capture_output=True, text=True)
    assert rm.returncode == 0 and "not empty" not in rm.stderr, rm.stderr
    assert [p.name for p in root.iterdir()] == ["var"]       # usr/ and all below it went


def test_another_release_than_the_build_is_refused(tmp_path):
    owner = installed_slurm()
    if owner is None:
        pytest.skip(f"no Debian package owns {SLURM_PLUGIN_DIR}/libslurmfull.so")
    cp = deb(tmp_path, version="99.11.1")
    assert cp.returncode == 2
    assert f"{owner[0]} {owner[1]} is installed" in cp.stderr, cp.stderr
    assert "built for Slurm 99.11.1" in cp.stderr, cp.stderr
    assert not (tmp_path / "dist").exists()


def test_a_slurm_no_package_installed_is_refused(tmp_path):
    plugindir = tmp_path / "prefix" / "lib" / "slurm"
    plugindir.mkdir(parents=True)
    (plugindir / "libslurmfull.so").write_bytes(b"")
    cp = deb(tmp_path, plugindir=plugindir)
    assert cp.returncode == 2
    assert f"no Debian package owns {plugindir}/libslurmfull.so" in cp.stderr, cp.stderr
    assert "use `make install`" in cp.stderr
    cp = deb(tmp_path, plugindir=tmp_path / "nowhere")
    assert cp.returncode == 2 and "is not the plugin directory of an installed Slurm" in cp.stderr
    cp = deb(tmp_path, version="22.05")
    assert cp.returncode == 2 and "--slurm-version must be X.Y.Z, not '22.05'" in cp.stderr
