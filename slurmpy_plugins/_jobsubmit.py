"""One job_submit call (submit() or modify()), on a pool worker.

The bridge routes spm_py_js_call here.  What the user sees:
- the handler accepted: its log_user() lines, if any;
- Reject("text"): its log_user() lines, then "text";
- any other exception: a generic message (the traceback goes to the log);
- no usable handler: a message naming the problem.
With on_failure=accept, the last two accept the request unchanged instead
(logged every time).  Reject always refuses.
"""
from __future__ import annotations

from typing import Any

from . import _context, _handlers, _jobdesc, _records
from ._context import say

ffi: Any = None
lib: Any = None
GENERIC = ("job_submit/python: request refused: the site's job submission policy "
           "failed (an administrator can find the error in slurmctld's log)")


def install(ffi_: Any, lib_: Any) -> None:
    global ffi, lib
    ffi, lib = ffi_, lib_


def _set_msg(arena: Any, msg_out: Any, lines: list[str]) -> None:
    if not lines:
        return
    text = "\n".join(lines).encode("utf-8", "backslashreplace").replace(b"\0", b"\\0")
    p = lib.spm_arena_strdup(arena, text)
    if p:
        msg_out[0] = p


def call(ctx: _context.Context, hook: int, arena: Any, c_in: Any, c_out: Any, current_arena: Any,
         c_current: Any, c_parts: Any, submit_uid: int, msg_out: Any, own: Any) -> int:
    """`own(arena)` returns an object that keeps a C arena alive while
    Python holds it: every record handed to the handler holds one, so a
    handler that keeps `job`, `current` or a partition never reads freed
    memory."""
    name = _context.HOOKS[lib.SPM_CTX_JOB_SUBMIT][hook]
    OK, FAILED = int(lib.SPM_PY_OK), int(lib.SPM_PY_FAILED)
    accept_on_failure = ctx.cfg is not None and ctx.cfg.on_failure == "accept"
    owner = own(arena) if own else None
    job = _jobdesc.JobDesc(c_in, owner)
    what = (f"{name}() for JobId={job.job_id}" if name == "modify"
            else f"{name}() for a job of uid {submit_uid}")

    h = ctx.loaded.instance if ctx.loaded is not None else None
    if h is None:
        if accept_on_failure:
            say(ctx.ctx, lib.SPM_LOG_ERROR, f"{what}: no usable handler ({ctx.error}); "
                "on_failure=accept: the request is accepted unchanged")
            return OK
        say(ctx.ctx, lib.SPM_LOG_ERROR, f"{what} refused: no usable handler ({ctx.error})")
        _set_msg(arena, msg_out, [f"job_submit/python: request refused: the site's job "
                                  f"submission policy is not loaded ({ctx.error})"])
        return FAILED

    parts = {}
    for i in range(c_parts.count):
        p = _jobdesc.Partition(c_parts.parts + i, owner)
        parts[p.name] = p
    messages: list[str] = []
    state = _handlers._call
    state.messages, state.partitions = messages, parts
    current = (_records.Job(c_current, own(current_arena) if own else None)
               if c_current else None)
    try:
        try:
            if current is None:
                h.submit(job, int(submit_uid))
            else:
                h.modify(job, current, int(submit_uid))
        finally:
            job._close()
            state.messages = state.partitions = None
    except _handlers.Reject as e:
        say(ctx.ctx, lib.SPM_LOG_INFO, f"{what} rejected by the handler: {e.message}")
        _set_msg(arena, msg_out, messages + [e.message])
        return FAILED
    except BaseException as e:  # even SystemExit must not leave the hook
        ctx.report(what, e)
        if accept_on_failure:
            say(ctx.ctx, lib.SPM_LOG_ERROR,
                f"{what}: on_failure=accept: the request is accepted unchanged")
            _set_msg(arena, msg_out, messages)
            return OK
        _set_msg(arena, msg_out, messages + [GENERIC])
        return FAILED
    try:
        job._commit(c_out, arena, lib, ffi)
    except _jobdesc.CommitError as e:
        say(ctx.ctx, lib.SPM_LOG_ERROR, f"{what}: {e}; refused")
        _set_msg(arena, msg_out, [f"job_submit/python: request refused: {e}"])
        return FAILED
    _set_msg(arena, msg_out, messages)
    return OK
