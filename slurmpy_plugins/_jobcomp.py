"""jobcomp/python: one delivery, on the pool worker (shared by the
daemon's bridge and the test kit).

:func:`call` reads a spool record (_comprecord) and :func:`deliver` calls the
handler's ``job_end`` or ``job_start``.  A delivery succeeds only when the
hook returns; anything else (it raised, no usable handler, a record that
cannot be read) fails it, and slurmctld keeps the record and retries it
with backoff, before any later one.
"""
from __future__ import annotations

from typing import Any

from . import _comprecord, _context
from ._comprecord import CompletedJob, RecordError, parse
from ._context import say

lib: Any = None
OK = FAILED = UNLOADED = 0


def install(lib_: Any) -> None:
    global lib, OK, FAILED, UNLOADED
    lib = lib_
    OK, FAILED, UNLOADED = int(lib.SPM_PY_OK), int(lib.SPM_PY_FAILED), int(lib.SPM_PY_UNLOADED)
    _comprecord.NO_VAL, _comprecord.INFINITE = int(lib.SPM_NO_VAL), int(lib.SPM_INFINITE)


def _what(job: CompletedJob) -> str:
    return f"job_{job.event}() for JobId={job.job_id} ({job.state}, key {job.key})"


def deliver(ctx: _context.Context, job: CompletedJob) -> int:
    """Call the hook of `job.event`.  OK: delivered; FAILED (it raised) or
    UNLOADED (no usable handler): kept and retried (logged here, with the
    traceback)."""
    h = ctx.handler(_what(job))
    if h is None:
        return UNLOADED
    try:
        if job.event == "start":
            h.job_start(job)
        else:
            h.job_end(job)
    except BaseException as e:  # even SystemExit must not leave the worker
        ctx.report(_what(job), e)
        return FAILED
    return OK


def call(ctx: _context.Context, rec: bytes) -> int:
    """spm_py_jc_call: one spool record."""
    try:
        job = parse(rec)
    except RecordError as e:
        # written by this shim: a record it cannot read is a bug, kept
        # (never silently acknowledged) for whoever fixes it
        say(ctx.ctx, lib.SPM_LOG_ERROR, f"spool record unreadable ({e}): kept: {rec[:200]!r}")
        return FAILED
    return deliver(ctx, job)
