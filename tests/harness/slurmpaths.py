"""Where the Slurm the tests run against lives.

By default that is Debian's packages (``/usr/sbin/slurmctld``, PluginDir
``/usr/lib/x86_64-linux-gnu/slurm-wlm``, client commands in ``/usr/bin``):
``make test`` on Debian 12 (22.05.8) and ``make test-24.11`` in the Debian 13
root.  ``SLURM_PREFIX`` names a Slurm installed from source into a prefix
instead (``make test-25.11`` / ``make test-26.05`` set it to the prefix that
``scripts/slurm-build.sh`` made): daemons from ``$SLURM_PREFIX/sbin``, client
commands from ``$SLURM_PREFIX/bin`` (put first on the PATH the harness gives
them), plugins and libslurmfull from ``$SLURM_PREFIX/lib/slurm``.
"""

from __future__ import annotations

import os

#: The Slurm install prefix, or "" for Debian's packages.
SLURM_PREFIX = os.environ.get("SLURM_PREFIX", "").rstrip("/")

if SLURM_PREFIX:
    SBIN = f"{SLURM_PREFIX}/sbin"
    BIN = f"{SLURM_PREFIX}/bin"
    SLURM_PLUGIN_DIR = f"{SLURM_PREFIX}/lib/slurm"
    #: PATH for daemons and client commands: the prefix's first
    SLURM_PATH = f"{SBIN}:{BIN}:/usr/sbin:/usr/bin:/sbin:/bin"
else:
    SBIN = "/usr/sbin"
    BIN = "/usr/bin"
    SLURM_PLUGIN_DIR = "/usr/lib/x86_64-linux-gnu/slurm-wlm"
    SLURM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"

SLURMCTLD = f"{SBIN}/slurmctld"
SLURMD = f"{SBIN}/slurmd"
SLURMDBD = f"{SBIN}/slurmdbd"
SACCTMGR = f"{BIN}/sacctmgr"


def client_path(inherited: str | None) -> str:
    """The PATH for client commands: with a prefix, its bin/ and sbin/ in
    front of ``inherited`` (so ``sbatch`` is the prefix's, never Debian's);
    without one, ``inherited`` as it is."""
    if not SLURM_PREFIX:
        return inherited if inherited is not None else SLURM_PATH
    rest = [p for p in (inherited or "/usr/sbin:/usr/bin:/sbin:/bin").split(":")
            if p and p not in (BIN, SBIN)]
    return ":".join([BIN, SBIN, *rest])
