"""What one PrEp or site_factor call decides: the code between the C
dispatcher and the handler.  The daemon's entry points (_bridge) and the
test kit (slurmpy_plugins.testing) both run these functions, with the
embedded library or with the kit's stand-in (_abi.lib) bound by install().

`own(arena)` returns an object keeping a C arena alive while Python holds
it (None in the kit, whose records own their memory).
"""
from __future__ import annotations

import sys
from typing import Any, Callable

from . import _factors, _records
from ._context import HOOKS, PREFIX, Context, say

__all__ = ["install", "prep", "sf_set", "sf_update", "sf_reconfig", "method_site"]

ffi: Any = None
lib: Any = None


def install(ffi_: Any, lib_: Any) -> None:
    global ffi, lib
    ffi, lib = ffi_, lib_


def _keep_if_escaped(rec: Any, arena: Any, own: Callable[[Any], Any] | None) -> None:
    """A record reads its arena, which C releases after the call.  If the
    handler kept the record (stored it, or a traceback holds it), give it a
    reference of its own; if not, skip the ref + ffi.gc (most calls).
    References here: `rec` in the caller, the argument, getrefcount's own."""
    if own is not None and sys.getrefcount(rec) > 3:
        rec._owner = own(arena)


def method_site(method: Any) -> str:
    import inspect
    try:
        code = inspect.unwrap(method).__code__
        return f"{code.co_filename}:{code.co_firstlineno}"
    except (AttributeError, TypeError):
        return "?"


def one_line(text: str, size: int) -> bytes:
    """text on one line (whitespace runs, newlines included, made one
    space), UTF-8, cut at a character boundary to fit size - 1 bytes
    ("..." marks a cut)."""
    b = " ".join(text.split()).encode("utf-8", "replace")
    if len(b) <= size - 1:
        return b
    return b[:size - 4].decode("utf-8", "ignore").encode() + b"..."


def _failed(why: Any, text: str, status: int | None = None) -> int:
    """status (SPM_PY_FAILED by default), with text in the caller's
    why[SPM_WHY_SIZE], cut so that the drain reason "prep/python: <text>"
    (drain.c) fits slurmdbd's 255 bytes."""
    if why is not None and why != ffi.NULL:
        b = one_line(text, lib.SPM_WHY_SIZE - len(f"{PREFIX[lib.SPM_CTX_PREP]}: "))
        ffi.memmove(why, b + b"\0", len(b) + 1)
    return int(lib.SPM_PY_FAILED if status is None else status)


def prep(c: Context, hook: int, arena: Any, job: Any, env: Any, why: Any,
         own: Callable[[Any], Any] | None) -> int:
    """spm_py_prep: SPM_PY_OK (the hook succeeded), or SPM_PY_FAILED (it
    failed) or SPM_PY_UNLOADED (no usable handler) with the failure in one
    line in why (slurmd drains the node with it)."""
    PREP, ERROR = lib.SPM_CTX_PREP, lib.SPM_LOG_ERROR
    name = HOOKS[PREP][hook]
    loaded = c.loaded
    if loaded is None:
        jid = job.job_id if job else env.job_id
        say(PREP, ERROR, f"{name} for JobId={jid} failed: no usable handler ({c.error})")
        c.call_failed("", f"no usable handler: {c.error}")
        return _failed(why, f"no usable handler: {c.error}", lib.SPM_PY_UNLOADED)
    rec = _records.Job(job, None) if job else _records.JobEnv(env, None)
    method = getattr(loaded.instance, name)
    try:
        result = method(rec)
    except BaseException as e:  # even SystemExit must not leave the hook
        _keep_if_escaped(rec, arena, own)
        c.report(f"{name} for JobId={rec.job_id}", e)
        return _failed(why, f"{type(e).__name__}: {e}" if str(e) else type(e).__name__)
    _keep_if_escaped(rec, arena, own)
    if result is not None:
        say(PREP, ERROR,
            f"{name} for JobId={rec.job_id} failed: {method_site(method)}: {name}() "
            f"returned {_factors.describe(result)}; a hook returns None to succeed and raises to fail")
        c.call_failed(method_site(method), f"{name}() returned {_factors.describe(result)}")
        return _failed(why, f"{name}() returned {_factors.describe(result)}")
    return int(lib.SPM_PY_OK)


def sf_set(c: Context, arena: Any, job: Any, factor: Any, have: Any,
           own: Callable[[Any], Any] | None) -> int:
    """spm_py_sf_set: on SPM_PY_OK, *have says whether *factor holds the
    (clamped, signed) factor."""
    SITE_FACTOR, ERROR = lib.SPM_CTX_SITE_FACTOR, lib.SPM_LOG_ERROR
    have[0] = 0
    rec = _records.Job(job, None)
    what = f"set() for JobId={rec.job_id}"
    h = c.handler(what)
    if h is None:
        return int(lib.SPM_PY_UNLOADED)
    try:
        value = h.set(rec)
    except BaseException as e:
        _keep_if_escaped(rec, arena, own)
        c.report(what, e)
        return int(lib.SPM_PY_FAILED)
    _keep_if_escaped(rec, arena, own)
    try:
        value, note = _factors.check_set(value, rec.job_id)
    except _factors.FactorError as e:
        say(SITE_FACTOR, ERROR, f"{what}: {method_site(h.set)}: {e}; factor left unchanged")
        c.call_failed(method_site(h.set), str(e))
        return int(lib.SPM_PY_FAILED)
    if note:
        say(SITE_FACTOR, lib.SPM_LOG_INFO, note)
    if value is not None:
        factor[0] = value
        have[0] = 1
    return int(lib.SPM_PY_OK)


def _seal_if_kept(jobs: _records.JobList) -> None:
    """Kept jobs (by the handler, a traceback, or their views, which
    reference the JobList) get every number copied before C closes the
    batch.  References when nothing kept them: `jobs` in the caller, the
    argument, getrefcount's own."""
    if sys.getrefcount(jobs) > 3:
        _records.seal(jobs)


def sf_update(c: Context, batch: Any, owner: Any, job_ids: Any, factors: Any, cap: int,
              n: Any, by_index: Any) -> int:
    """spm_py_sf_update: `batch` is the spm_batch_t (rows copied on
    demand, or given: the kit's), `owner` keeps its arena alive.  On
    SPM_PY_OK either the first *n entries of job_ids/factors hold (job id,
    clamped signed factor) pairs, or, with *by_index set, factors[i] is
    job i's (SPM_FACTOR_KEEP: unchanged) and *n the batch's count."""
    SITE_FACTOR, ERROR = lib.SPM_CTX_SITE_FACTOR, lib.SPM_LOG_ERROR
    n[0] = 0
    by_index[0] = 0
    what = f"update() over {batch.count} pending jobs"
    h = c.handler(what)
    if h is None:
        return int(lib.SPM_PY_UNLOADED)
    assert c.loaded is not None
    jobs = _records.JobList(batch, owner, c.loaded.fields)
    try:
        result = h.update(jobs)
    except BaseException as e:
        _seal_if_kept(jobs)   # the traceback holds them
        c.report(what, e)
        return int(lib.SPM_PY_FAILED)
    _seal_if_kept(jobs)
    if result is None:
        return int(lib.SPM_PY_OK)
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
            f"{what}: {method_site(h.update)}: update() must return {shape} of int job id "
            f"to int factor; {e}; factors left unchanged")
        c.call_failed(method_site(h.update), f"update() must return {shape}: {e}")
        return int(lib.SPM_PY_FAILED)
    if note:
        say(SITE_FACTOR, lib.SPM_LOG_INFO, f"update(): {note}")
    k = len(vals)
    if not k <= cap:   # never past C's arrays
        say(SITE_FACTOR, ERROR, f"{what}: {k} factors for room of {cap}; factors left unchanged")
        c.call_failed(method_site(h.update), f"{k} factors for room of {cap}")
        return int(lib.SPM_PY_FAILED)
    if k:
        if not aligned:
            ffi.memmove(job_ids, ids, k * ids.itemsize)
        ffi.memmove(factors, vals, k * 8)
    by_index[0] = int(aligned)
    n[0] = k
    return int(lib.SPM_PY_OK)


def sf_reconfig(c: Context) -> int:
    if c.loaded is None:
        return int(lib.SPM_PY_UNLOADED)
    try:
        c.loaded.instance.reconfig()
    except BaseException as e:
        c.report("reconfig()", e)
        return int(lib.SPM_PY_FAILED)
    return int(lib.SPM_PY_OK)
