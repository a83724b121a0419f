"""Child processes started by handlers inside the daemons.

Worker threads block every signal (signals belong to the daemon's own
threads), and a child inherits its parent thread's mask.  The C shim resets
the mask in the child of a fork() made by a worker (a pthread_atfork
handler).  Paths that do not run fork handlers (vfork, posix_spawn, glibc's
system()) are turned into fork or given an explicit empty mask here, so
every program a handler starts gets a clean signal mask.
"""
from __future__ import annotations

import os
import subprocess
from typing import Any

__all__ = ["install"]

_installed = False


def _system(command: str) -> int:
    """os.system(), through subprocess (fork): same wait status."""
    rc = subprocess.call(["/bin/sh", "-c", command])
    return (-rc) & 0x7F if rc < 0 else (rc & 0xFF) << 8


def _with_clean_mask(spawn: Any) -> Any:
    def wrapper(path: Any, argv: Any, env: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("setsigmask", ())
        return spawn(path, argv, env, **kwargs)
    wrapper.__name__ = spawn.__name__
    wrapper.__doc__ = spawn.__doc__
    return wrapper


def install() -> None:
    global _installed
    if _installed:
        return
    _installed = True
    # vfork and posix_spawn skip fork handlers: use fork.
    setattr(subprocess, "_USE_VFORK", False)
    setattr(subprocess, "_USE_POSIX_SPAWN", False)
    setattr(os, "system", _system)
    os.posix_spawn = _with_clean_mask(os.posix_spawn)
    os.posix_spawnp = _with_clean_mask(os.posix_spawnp)
