"""Build libslurmpy.so: the C shim with CPython embedded through cffi.

    SLURM_SRC=/path/to/configured/slurm-source python build_ffi.py OUTDIR

Run it with a virtualenv's python if you like (the Makefile uses .venv), but
the library embeds the *base* interpreter: its program name and home are the
interpreter the venv was made from (SPM_BASE_PYTHON, e.g. /usr/bin/python3,
home /usr) and its rpath is that interpreter's LIBDIR, so nothing in the
build tree or in any virtualenv is used by the daemons.

The C interface lives in real headers (csrc/spm_types.h: records and C
services, csrc/spm_bridge.h: the Python entry points), read both here and
by the C compiler.  The plugins (one thin C file per row of
csrc/spm_plugins.h: prep_python.so, site_factor_python.so,
job_submit_python.so, jobcomp_python.so) are linked against this library by
the Makefile.
"""
import json
import os
import pathlib
import subprocess
import sys
import sysconfig

import cffi

HERE = pathlib.Path(__file__).resolve().parent
CSRC = HERE / "csrc"

# libslurmpy.so: one concern per file (see csrc/spm.h): every csrc/*.c but
# the thin plugin files (*_python.c, one .so each, linked by the Makefile).
SOURCES = tuple(sorted(p.name for p in CSRC.glob("*.c") if not p.name.endswith("_python.c")))

INIT_CODE = """
from _slurmpy import ffi, lib
try:
    from slurmpy_plugins import _bridge  # defines the entry points
except BaseException:
    import traceback
    lib.spm_boot_failure(traceback.format_exc().encode("utf-8", "backslashreplace"))
"""


def base_interpreter() -> dict:
    """The interpreter to embed: SPM_BASE_PYTHON, or the one this (venv)
    python was made from.  It must be a base interpreter (not a venv) of the
    same version and prefix as the one building, since its headers and
    libpython are the ones we compile and link against."""
    exe = os.environ.get("SPM_BASE_PYTHON") or getattr(sys, "_base_executable", "") or sys.executable
    if not os.path.isabs(exe) or not os.access(exe, os.X_OK):
        sys.exit(f"build_ffi.py: base interpreter {exe!r} is not an absolute path to an executable")
    probe = ("import json, sys, sysconfig; print(json.dumps(dict("
             "executable=sys.executable, prefix=sys.prefix, base_prefix=sys.base_prefix, "
             "exec_prefix=sys.exec_prefix, version=list(sys.version_info[:3]), "
             "libdir=sysconfig.get_config_var('LIBDIR'))))")
    info = json.loads(subprocess.run([exe, "-I", "-c", probe], check=True,
                                     capture_output=True, text=True).stdout)
    if info["prefix"] != info["base_prefix"]:
        sys.exit(f"build_ffi.py: {exe} is a virtualenv (sys.prefix {info['prefix']}); "
                 "the daemons must embed a base interpreter")
    if info["prefix"] != sys.base_prefix or info["version"] != list(sys.version_info[:3]):
        sys.exit(f"build_ffi.py: {exe} is Python {info['version']} in {info['prefix']}, but this "
                 f"build runs on Python {list(sys.version_info[:3])} from {sys.base_prefix}: "
                 "make the build venv from the interpreter you embed")
    if info["libdir"] != sysconfig.get_config_var("LIBDIR"):
        sys.exit(f"build_ffi.py: LIBDIR differs: {info['libdir']} vs {sysconfig.get_config_var('LIBDIR')}")
    # sys.executable is what the embedded interpreter's getpath starts from;
    # keep the name the site uses (/usr/bin/python3), not a symlink target.
    info["executable"] = exe
    return info


def c_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def main(outdir: str) -> None:
    src = pathlib.Path(os.environ["SLURM_SRC"]).resolve()
    if not (src / "config.h").is_file():
        sys.exit(f"build_ffi.py: {src} is not a configured Slurm source tree (no config.h)")
    base = base_interpreter()
    libdir = base["libdir"]
    home = base["prefix"]
    if base["exec_prefix"] != base["prefix"]:
        home += ":" + base["exec_prefix"]     # PYTHONHOME's prefix:exec_prefix form
    cflags = ["-Wall", "-O2", "-g", "-fno-strict-aliasing"] + os.environ.get("SPM_CFLAGS", "").split()
    ldflags = os.environ.get("SPM_LDFLAGS", "").split()

    ffi = cffi.FFI()
    ffi.cdef((CSRC / "spm_types.h").read_text())
    ffi.embedding_api((CSRC / "spm_bridge.h").read_text())
    ffi.embedding_init_code(INIT_CODE)
    ffi.set_source(
        "_slurmpy", '#include "spm.h"',
        sources=[str(CSRC / f) for f in SOURCES],
        include_dirs=[str(CSRC), str(src)],
        define_macros=[("SPM_PYTHON_HOME", c_string(home)),
                       ("SPM_PYTHON_EXECUTABLE", c_string(base["executable"]))],
        library_dirs=[libdir],
        libraries=["dl", "pthread"],
        extra_compile_args=cflags,
        extra_link_args=ldflags + [
            "-Wl,-z,nodelete", "-Wl,-soname,libslurmpy.so",
            f"-Wl,--version-script={CSRC / 'libslurmpy.map'}",
            f"-Wl,--disable-new-dtags,-rpath,{libdir}"],
    )
    out = pathlib.Path(outdir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    built = ffi.compile(tmpdir=str(out / "cffi"), target="libslurmpy.so", verbose=False)
    os.replace(built, out / "libslurmpy.so")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "build/plugins/slurmpy")
