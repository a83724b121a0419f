"""Build libslurmpy.so: the C shim with CPython embedded through cffi.

    SLURM_SRC=/path/to/configured/slurm-source python build_ffi.py OUTDIR

The C interface lives in real headers (csrc/spm_types.h: records and C
services, csrc/spm_bridge.h: the Python entry points), read both here and
by the C compiler.  The two plugins (prep_python.so, site_factor_python.so)
are thin C files linked against this library by the Makefile.
"""
import os
import pathlib
import sys
import sysconfig

import cffi

HERE = pathlib.Path(__file__).resolve().parent
CSRC = HERE / "csrc"

# libslurmpy.so: one concern per file (see csrc/spm.h).
SOURCES = ("log.c", "arena.c", "runtime.c", "pool.c", "ctx.c", "dispatch_prep.c",
           "dispatch_site_factor.c", "conf.c", "snapshot.c", "factors.c")

INIT_CODE = """
from _slurmpy import ffi, lib
try:
    from slurmpy_plugins import _bridge  # defines the entry points
except BaseException:
    import traceback
    lib.spm_boot_failure(traceback.format_exc().encode("utf-8", "backslashreplace"))
"""


def main(outdir: str) -> None:
    src = pathlib.Path(os.environ["SLURM_SRC"]).resolve()
    if not (src / "config.h").is_file():
        sys.exit(f"build_ffi.py: {src} is not a configured Slurm source tree (no config.h)")
    libdir = sysconfig.get_config_var("LIBDIR")
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
        define_macros=[("SPM_PYTHON_HOME", f'"{sys.base_prefix}"'),
                       ("SPM_PYTHON_EXECUTABLE", f'"{sys.executable}"')],
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
