"""The Python entry points of the C shim (csrc/spm_bridge.h).

Imported once per daemon by the embedding init code (build_ffi.py), inside
libslurmpy.so: the entry points are defined at import, at module level, as
in cffi's embedding demo.  This module only routes: handler loading lives
in _context, result checks in _factors, records in _records.

Every entry point names ``error=-1`` (SPM_PY_EXCEPTION) so that an
exception escaping the bridge itself is a failure, never SLURM_SUCCESS;
handler exceptions are caught, logged with their traceback, and reported as
SPM_PY_FAILED.
"""
from __future__ import annotations

import sys

from _slurmpy import ffi, lib  # the embedded module: only inside libslurmpy.so

from . import _context, _factors, _jobdesc, _jobsubmit, _log, _process, _records
from ._context import context, say

OK, FAILED = lib.SPM_PY_OK, lib.SPM_PY_FAILED
PREP, SITE_FACTOR = lib.SPM_CTX_PREP, lib.SPM_CTX_SITE_FACTOR
ERROR, INFO = lib.SPM_LOG_ERROR, lib.SPM_LOG_INFO

_records.install(ffi, lib)
_jobdesc.install(ffi, lib)
_jobsubmit.install(ffi, lib)
_log.install(ffi, lib)
_factors.install(lib)
_process.install()
_context.install(ffi, lib)
sys.argv = ["slurmpy"]


def _onerror(exc_type, exc, tb):
    # The entry point then returns its error= value, -1: a failure.
    _context.internal_error(exc_type, exc, tb)


def _own(arena):
    """Take a reference on a C arena for as long as Python needs it."""
    lib.spm_arena_ref(arena)
    return ffi.gc(arena, lib.spm_arena_unref)


def _keep_if_escaped(rec, arena) -> None:
    """A record reads its arena, which C releases after the call.  If the
    handler kept the record (stored it, or a traceback holds it), give it a
    reference of its own; if not, skip the ref + ffi.gc (most calls).
    References here: `rec` in the caller, the argument, getrefcount's own."""
    if sys.getrefcount(rec) > 3:
        rec._owner = _own(arena)


def _seal_if_kept(jobs) -> None:
    """Kept jobs (by the handler, a traceback, or their views, which
    reference the JobList) get every number copied before C closes the
    batch.  References when nothing kept them: `jobs` in the caller, the
    argument, getrefcount's own."""
    if sys.getrefcount(jobs) > 3:
        _records.seal(jobs)


def _method_site(method) -> str:
    import inspect
    try:
        code = inspect.unwrap(method).__code__
        return f"{code.co_filename}:{code.co_firstlineno}"
    except (AttributeError, TypeError):
        return "?"


@ffi.def_extern(error=lib.SPM_PY_EXCEPTION, onerror=_onerror)
def spm_py_boot(boot):
    _log.set_prefix(_context.PREFIX.get(boot.ctx))
    return context(boot.ctx).boot(boot)


@ffi.def_extern(error=lib.SPM_PY_EXCEPTION, onerror=_onerror)
def spm_py_prep(hook, arena, job, env):
    _log.set_prefix(_context.PREFIX[PREP])
    c = context(PREP)
    name = _context.HOOKS[PREP][hook]
    loaded = c.loaded
    if loaded is None:
        jid = job.job_id if job else env.job_id
        say(PREP, ERROR, f"{name} for JobId={jid} failed: no usable handler ({c.error})")
        return FAILED
    rec = _records.Job(job, None) if job else _records.JobEnv(env, None)
    method = getattr(loaded.instance, name)
    try:
        result = method(rec)
    except BaseException as e:  # even SystemExit must not leave the hook
        _keep_if_escaped(rec, arena)
        c.report(f"{name} for JobId={rec.job_id}", e)
        return FAILED
    _keep_if_escaped(rec, arena)
    if result is not None:
        say(PREP, ERROR,
            f"{name} for JobId={rec.job_id} failed: {_method_site(method)}: {name}() "
            f"returned {_factors.describe(result)}; a hook returns None to succeed and raises to fail")
        return FAILED
    return OK


@ffi.def_extern(error=lib.SPM_PY_EXCEPTION, onerror=_onerror)
def spm_py_sf_set(arena, job, factor, have):
    _log.set_prefix(_context.PREFIX[SITE_FACTOR])
    c = context(SITE_FACTOR)
    have[0] = 0
    rec = _records.Job(job, None)
    what = f"set() for JobId={rec.job_id}"
    h = c.handler(what)
    if h is None:
        return FAILED
    try:
        value = h.set(rec)
    except BaseException as e:
        _keep_if_escaped(rec, arena)
        c.report(what, e)
        return FAILED
    _keep_if_escaped(rec, arena)
    try:
        value, note = _factors.check_set(value, rec.job_id)
    except _factors.FactorError as e:
        say(SITE_FACTOR, ERROR, f"{what}: {_method_site(h.set)}: {e}; factor left unchanged")
        return FAILED
    if note:
        say(SITE_FACTOR, INFO, note)
    if value is not None:
        factor[0] = value
        have[0] = 1
    return OK


@ffi.def_extern(error=lib.SPM_PY_EXCEPTION, onerror=_onerror)
def spm_py_sf_update(arena, batch, job_ids, factors, cap, n, by_index):
    _log.set_prefix(_context.PREFIX[SITE_FACTOR])
    c = context(SITE_FACTOR)
    n[0] = 0
    by_index[0] = 0
    what = f"update() over {batch.count} pending jobs"
    h = c.handler(what)
    if h is None:
        return FAILED
    jobs = _records.JobList(batch, _own(arena), c.loaded.fields)
    try:
        result = h.update(jobs)
    except BaseException as e:
        _seal_if_kept(jobs)   # the traceback holds them
        c.report(what, e)
        return FAILED
    _seal_if_kept(jobs)
    if result is None:
        return OK
    aligned = _factors.is_aligned(result)
    if not aligned:
        in_order = _factors.in_batch_order(result, batch.count, lambda: jobs._list("job_id"))
        if in_order is not None:
            result, aligned = in_order, True
    try:
        if aligned:
            vals, note = _factors.check_aligned(result, batch.count,
                                                lambda: jobs.column("job_id"))
        else:
            ids, vals, note = _factors.check_update(result, cap)
    except _factors.FactorError as e:
        shape = ("one int factor (or None) per job, in the order of `jobs`, or a mapping"
                 if aligned else "a mapping")
        say(SITE_FACTOR, ERROR,
            f"{what}: {_method_site(h.update)}: update() must return {shape} of int job id "
            f"to int factor; {e}; factors left unchanged")
        return FAILED
    if note:
        say(SITE_FACTOR, INFO, f"update(): {note}")
    k = len(vals)
    if not k <= cap:   # never past C's arrays
        say(SITE_FACTOR, ERROR, f"{what}: {k} factors for room of {cap}; factors left unchanged")
        return FAILED
    if k:
        if not aligned:
            ffi.memmove(job_ids, ids, k * ids.itemsize)
        ffi.memmove(factors, vals, k * 8)
    by_index[0] = int(aligned)
    n[0] = k
    return OK


@ffi.def_extern(error=lib.SPM_PY_EXCEPTION, onerror=_onerror)
def spm_py_sf_reconfig():
    _log.set_prefix(_context.PREFIX[SITE_FACTOR])
    c = context(SITE_FACTOR)
    c.maybe_reload(force=True)
    if c.loaded is None:
        return FAILED
    try:
        c.loaded.instance.reconfig()
    except BaseException as e:
        c.report("reconfig()", e)
        return FAILED
    return OK


@ffi.def_extern(error=lib.SPM_PY_EXCEPTION, onerror=_onerror)
def spm_py_js_call(hook, arena, c_in, c_out, current_arena, current, parts, submit_uid, msg):
    _log.set_prefix(_context.PREFIX[lib.SPM_CTX_JOB_SUBMIT])
    return _jobsubmit.call(hook, arena, c_in, c_out, current_arena, current, parts,
                           submit_uid, msg, _own)
