"""The Python entry points of the C shim (csrc/spm_bridge.h).

Imported once per daemon by the embedding init code (build_ffi.py), inside
libslurmpy.so: the entry points are defined at import, at module level, as
in cffi's embedding demo.  This module only routes: handler loading lives
in _context, the decisions of each call in _calls and _jobsubmit (shared with
the test kit, slurmpy_plugins.testing), records in _records.

A plugin's modules are imported (and bound to the library) when the
plugin first boots or is called (_need), not here: a slurmstepd that
starts Python for a SPANK hook imports _spank and what it needs, none of
the other plugins' records or dispatch.

Every entry point names ``error=-1`` (SPM_PY_EXCEPTION) so that an
exception escaping the bridge itself is a failure, never SLURM_SUCCESS;
handler exceptions are caught, logged with their traceback, and reported as
SPM_PY_FAILED (a refusal, job_submit's Reject, as SPM_PY_REFUSED; no usable
handler as SPM_PY_UNLOADED).
"""
from __future__ import annotations

import importlib
import sys
import threading
from typing import TYPE_CHECKING, Any, Callable, cast

from _slurmpy import ffi, lib  # type: ignore[import-not-found]  # the embedded module: only inside libslurmpy.so

from . import _context, _log, _process
from ._context import context

if TYPE_CHECKING:   # bound by _need() at run time
    from . import _calls, _errno, _jobcomp, _jobsubmit, _spank

PREP, SITE_FACTOR = lib.SPM_CTX_PREP, lib.SPM_CTX_SITE_FACTOR
JOB_SUBMIT, JOBCOMP, SPANK = lib.SPM_CTX_JOB_SUBMIT, lib.SPM_CTX_JOBCOMP, lib.SPM_CTX_SPANK

_log.install(ffi, lib)
_process.install()
_context.install(ffi, lib)
sys.argv = ["slurmpy"]

# What each plugin needs imported and bound, in order: (module, its
# install's arguments); modules shared by plugins are installed once.
_MODULES: dict[int, tuple[tuple[str, tuple[Any, ...] | None], ...]] = {
    PREP: (("_records", (ffi, lib)), ("_factors", (lib,)), ("_calls", (ffi, lib))),
    SITE_FACTOR: (("_records", (ffi, lib)), ("_factors", (lib,)), ("_calls", (ffi, lib))),
    JOB_SUBMIT: (("_records", (ffi, lib)), ("_jobdesc", (ffi, lib)),
                 ("_errno", (ffi, lib)), ("_jobsubmit", (ffi, lib))),
    JOBCOMP: (("_jobcomp", (lib,)),),
    SPANK: (("_spank", None),),
}
_ready: set[int] = set()
_installed: set[str] = set()
_need_lock = threading.Lock()


def _need(ctx: int) -> None:
    """Import and bind plugin ctx's modules, once (boots of several
    plugins may run at once)."""
    if ctx in _ready:
        return
    with _need_lock:
        if ctx in _ready:
            return
        for name, args in _MODULES[ctx]:
            module = importlib.import_module(f".{name}", __package__)
            if name not in _installed:
                if args is not None:
                    module.install(*args)
                _installed.add(name)
            globals()[name] = module
        _ready.add(ctx)


def _onerror(exc_type: Any, exc: Any, tb: Any) -> None:
    # The entry point then returns its error= value, -1: a failure.
    _context.internal_error(exc_type, exc, tb)


_Entry = Callable[..., int]
# cffi is untyped: give its decorator a type so the entry points keep theirs
_extern = cast(Callable[..., Callable[[_Entry], _Entry]], ffi.def_extern)


def _own(arena: Any) -> Any:
    """Take a reference on a C arena for as long as Python needs it."""
    lib.spm_arena_ref(arena)
    return ffi.gc(arena, lib.spm_arena_unref)


@_extern(error=lib.SPM_PY_EXCEPTION, onerror=_onerror)
def spm_py_boot(boot: Any) -> int:
    _log.set_prefix(_context.PREFIX.get(boot.ctx))
    _need(boot.ctx)
    return context(boot.ctx).boot(boot)


@_extern(error=lib.SPM_PY_EXCEPTION, onerror=_onerror)
def spm_py_prep(hook: int, arena: Any, job: Any, env: Any, why: Any) -> int:
    _log.set_prefix(_context.PREFIX[PREP])
    _need(PREP)
    return _calls.prep(context(PREP), hook, arena, job, env, why, _own)


@_extern(error=lib.SPM_PY_EXCEPTION, onerror=_onerror)
def spm_py_sf_set(arena: Any, job: Any, factor: Any, have: Any) -> int:
    _log.set_prefix(_context.PREFIX[SITE_FACTOR])
    _need(SITE_FACTOR)
    return _calls.sf_set(context(SITE_FACTOR), arena, job, factor, have, _own)


@_extern(error=lib.SPM_PY_EXCEPTION, onerror=_onerror)
def spm_py_sf_update(arena: Any, batch: Any, job_ids: Any, factors: Any, cap: int, n: Any,
                     by_index: Any) -> int:
    _log.set_prefix(_context.PREFIX[SITE_FACTOR])
    _need(SITE_FACTOR)
    return _calls.sf_update(context(SITE_FACTOR), batch, _own(arena), job_ids, factors, cap,
                            n, by_index)


@_extern(error=lib.SPM_PY_EXCEPTION, onerror=_onerror)
def spm_py_sf_reconfig() -> int:
    _log.set_prefix(_context.PREFIX[SITE_FACTOR])
    _need(SITE_FACTOR)
    c = context(SITE_FACTOR)
    c.maybe_reload(force=True)
    return _calls.sf_reconfig(c)


@_extern(error=lib.SPM_PY_EXCEPTION, onerror=_onerror)
def spm_py_js_call(call: Any) -> int:
    _log.set_prefix(_context.PREFIX[JOB_SUBMIT])
    _need(JOB_SUBMIT)
    return _jobsubmit.call(context(JOB_SUBMIT), call, _own)


@_extern(error=lib.SPM_PY_EXCEPTION, onerror=_onerror)
def spm_py_jc_call(rec: Any, length: int) -> int:
    _log.set_prefix(_context.PREFIX[JOBCOMP])
    _need(JOBCOMP)
    c = context(JOBCOMP)
    return _jobcomp.call(c, ffi.unpack(rec, length))


@_extern(error=lib.SPM_PY_EXCEPTION, onerror=_onerror)
def spm_py_spank(call: Any) -> int:
    _log.set_prefix(_context.PREFIX[SPANK])
    _need(SPANK)
    return _spank.call(ffi, lib, call)
