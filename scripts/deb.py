"""Build a Debian package of what `make install` installs (`make deb`).

    python scripts/deb.py BUILD_PLUGINS_DIR PLUGINDIR OUTDIR --slurm-version X.Y.Z

The package, `slurmpy-plugins_<ours>+slurm<X.Y.Z>_<arch>.deb`, holds the
plugin .so files and PLUGINDIR/slurmpy/ exactly as scripts/install.py lays
them out (it is run into a staging root), owned by root.  A plugin loads only
into the Slurm release it was built for, so the package Depends on the Debian
package that owns PLUGINDIR/libslurmfull.so at exactly its installed version
(`slurm-wlm-basic-plugins (= 22.05.8-4+deb12u3)` on Debian 12): Debian's
Slurm packages depend on each other at one version, so slurmctld, slurmd and
that package cannot move without this one.  It also Depends on the packages
of the shared libraries its ELF files need (libpython3.X, libffi), found as
dpkg-shlibdeps would: NEEDED entry -> ldconfig's path -> dpkg -S.

Refused, saying why, when no Debian package owns that Slurm (an upstream
release built into a prefix: use `make install`), or when the installed
package is another release than the one the plugins were built for.

The package has no maintainer scripts and no conffiles: `dpkg -r` removes
every file it installed (the embedded interpreter never writes bytecode,
runtime.c, so nothing is left beside them).
"""
from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PACKAGE = "slurmpy-plugins"


class DebError(Exception):
    pass


def _run(*argv: str) -> str:
    cp = subprocess.run(argv, capture_output=True, text=True)
    if cp.returncode:
        raise DebError(f"{' '.join(argv)}: {cp.stderr.strip() or cp.stdout.strip()}")
    return cp.stdout


def owner(path: str) -> str | None:
    """The Debian package that owns path, or None."""
    cp = subprocess.run(["dpkg-query", "-S", path], capture_output=True, text=True)
    if cp.returncode:
        return None
    # "pkg1, pkg2: /path" (a diversion line starts with "diversion by")
    for line in cp.stdout.splitlines():
        if line.startswith("diversion by"):
            continue
        pkgs, _, p = line.partition(": ")
        if p.strip() == path:
            return pkgs.split(",")[0].strip()
    return None


def version_of(pkg: str) -> str:
    return _run("dpkg-query", "-W", "-f=${Version}", pkg).strip()


def upstream(deb_version: str) -> str:
    """22.05.8-4+deb12u3 -> 22.05.8 (epoch and Debian revision dropped)."""
    v = deb_version.split(":", 1)[-1]
    return v.rsplit("-", 1)[0] if "-" in v else v


def slurm_dependency(plugindir: str, slurm_version: str) -> str:
    full = os.path.join(plugindir, "libslurmfull.so")
    if not os.path.exists(full):
        raise DebError(f"{full} does not exist: PLUGINDIR={plugindir} is not the plugin "
                       "directory of an installed Slurm")
    pkg = owner(os.path.realpath(full)) or owner(full)
    if pkg is None:
        raise DebError(f"no Debian package owns {full}: this Slurm was not installed from a "
                       "package, so there is no package version to pin; use `make install`")
    ver = version_of(pkg)
    if upstream(ver) != slurm_version:
        raise DebError(f"{pkg} {ver} is installed (Slurm {upstream(ver)}), but the plugins "
                       f"were built for Slurm {slurm_version}: build against the installed "
                       "release's source (make deb SLURM_SRC=...)")
    return f"{pkg} (= {ver})"


def _needed(path: str) -> list[str]:
    with open(path, "rb") as f:
        if f.read(4) != b"\x7fELF":
            return []
    out = _run("readelf", "-d", path)
    return re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", out)


def _ldconfig() -> dict[str, str]:
    """soname -> path, for this machine's architecture (x86-64 here)."""
    m: dict[str, str] = {}
    for line in _run("/sbin/ldconfig", "-p").splitlines()[1:]:
        mm = re.match(r"\s*(\S+) \(([^)]*)\) => (\S+)", line)
        if mm and ("x86-64" in mm.group(2) or "64bit" in mm.group(2)
                   or os.uname().machine not in ("x86_64", "aarch64")):
            m.setdefault(mm.group(1), mm.group(3))
    return m


def library_dependencies(stage: str, ours: set[str]) -> list[str]:
    """Packages of the shared libraries the staged ELF files need, except
    those the package itself carries (libslurmpy.so) and Slurm's (pinned
    apart)."""
    libs = _ldconfig()
    deps: set[str] = set()
    for d, _, files in os.walk(stage):
        for name in files:
            for so in _needed(os.path.join(d, name)):
                if so in ours or so.startswith("libslurm"):
                    continue
                path = libs.get(so)
                if path is None:
                    raise DebError(f"{os.path.join(d, name)} needs {so}, which ldconfig "
                                   "does not know")
                pkg = owner(path) or owner(os.path.realpath(path))
                if pkg is None:
                    raise DebError(f"{so} ({path}) belongs to no Debian package")
                if pkg.startswith("libc6"):
                    continue           # essential
                deps.add(pkg.split(":")[0])
    return sorted(deps)


def our_version() -> str:
    text = open(os.path.join(ROOT, "slurmpy_plugins", "__init__.py")).read()
    m = re.search(r'^__version__ = "([^"]+)"', text, re.M)
    if not m:
        raise DebError("slurmpy_plugins/__init__.py has no __version__")
    return m.group(1)


def build(build_plugins: str, plugindir: str, outdir: str, slurm_version: str) -> str:
    if not os.path.isabs(plugindir):
        raise DebError(f"PLUGINDIR must be absolute, not {plugindir!r}")
    if not re.fullmatch(r"\d+\.\d+\.\d+", slurm_version or ""):
        raise DebError(f"--slurm-version must be X.Y.Z, not {slurm_version!r}")
    depends = [slurm_dependency(plugindir, slurm_version)]
    arch = _run("dpkg", "--print-architecture").strip()
    version = f"{our_version()}+slurm{slurm_version}"
    with tempfile.TemporaryDirectory(prefix="slurmpy-deb.") as tmp:
        stage = os.path.join(tmp, "root")
        # exactly what `make install` installs (same script, same checks),
        # into the staging root, its bytecode naming the installed paths
        cp = subprocess.run([sys.executable, os.path.join(HERE, "install.py"),
                             "--destdir", stage, build_plugins, plugindir],
                            capture_output=True, text=True)
        if cp.returncode:
            raise DebError(f"install.py into the staging root failed:\n{cp.stdout}{cp.stderr}")
        ours = {n for _, _, fs in os.walk(stage) for n in fs if n.endswith(".so")}
        depends += library_dependencies(stage, ours)
        size_kb = 0
        sums = []
        for d, _, files in os.walk(stage):
            for name in sorted(files):
                p = os.path.join(d, name)
                size_kb += (os.lstat(p).st_size + 1023) // 1024
                with open(p, "rb") as f:
                    sums.append(f"{hashlib.md5(f.read()).hexdigest()}  "
                                f"{os.path.relpath(p, stage)}\n")
        ctl = os.path.join(stage, "DEBIAN")
        os.makedirs(ctl, mode=0o755)
        with open(os.path.join(ctl, "control"), "w") as f:
            f.write(f"Package: {PACKAGE}\n"
                    f"Version: {version}\n"
                    f"Architecture: {arch}\n"
                    "Maintainer: slurmpy_plugins developers <root@localhost>\n"
                    f"Installed-Size: {size_kb}\n"
                    f"Depends: {', '.join(depends)}\n"
                    "Section: admin\n"
                    "Priority: optional\n"
                    f"Description: Slurm plugins in Python, for Slurm {slurm_version}\n"
                    " prep/python, site_factor/python, job_submit/python, jobcomp/python\n"
                    " and spank/python: the C plugins, libslurmpy and the slurmpy_plugins\n"
                    f" package, installed into {plugindir}.\n")
        with open(os.path.join(ctl, "md5sums"), "w") as f:
            f.writelines(sorted(sums, key=lambda s: s.split("  ", 1)[1]))
        for p in (ctl, os.path.join(ctl, "control"), os.path.join(ctl, "md5sums")):
            os.chmod(p, 0o755 if os.path.isdir(p) else 0o644)
        os.makedirs(outdir, exist_ok=True)
        out = os.path.join(outdir, f"{PACKAGE}_{version}_{arch}.deb")
        _run("dpkg-deb", "--root-owner-group", "-Zxz", "--build", stage, out + ".tmp")
        os.replace(out + ".tmp", out)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("build_plugins")
    ap.add_argument("plugindir")
    ap.add_argument("outdir")
    ap.add_argument("--slurm-version", required=True,
                    help="the Slurm release the plugins were built for (X.Y.Z)")
    a = ap.parse_args()
    if shutil.which("dpkg-deb") is None:
        print("deb: dpkg-deb not found (this builds Debian packages on Debian)", file=sys.stderr)
        return 2
    try:
        out = build(a.build_plugins, a.plugindir, a.outdir, a.slurm_version)
    except DebError as e:
        print(f"deb: {e}", file=sys.stderr)
        return 2
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
