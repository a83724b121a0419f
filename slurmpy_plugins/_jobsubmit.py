"""One job_submit call (submit() or modify()), on a pool worker.

The bridge routes spm_py_js_call here.  What the user sees:
- the handler accepted: its log_user() lines, if any;
- Reject("text"): its log_user() lines, then "text" (none for ""), and
  Reject's code= for Slurm (SLURM_ERROR without one);
- any other exception: a generic message (the traceback goes to the log);
- no usable handler: a message naming the problem.
With on_failure=accept, the last two accept the request unchanged instead
(logged every time).  Reject always refuses.
"""
from __future__ import annotations

from typing import Any, Callable, cast

from . import _chain, _context, _handlers, _jobdesc, _records
from ._context import say

ffi: Any = None
lib: Any = None
OK = FAILED = MODIFY = 0
GENERIC = ("job_submit/python: request refused: the site's job submission policy "
           "failed (an administrator can find the error in slurmctld's log)")


def install(ffi_: Any, lib_: Any) -> None:
    global ffi, lib, OK, FAILED, MODIFY
    ffi, lib = ffi_, lib_
    OK, FAILED = int(lib.SPM_PY_OK), int(lib.SPM_PY_FAILED)
    MODIFY = int(lib.SPM_HOOK_JS_MODIFY)


def _set_msg(arena: Any, msg_out: Any, lines: list[str], always: bool = False) -> None:
    """The user's message: `lines`, one a line.  No lines: none (NULL), or
    with `always` an empty one, so that C still tells a refusal by the
    handler from a call that never ran."""
    if not lines and not always:
        return
    text = "\n".join(lines).encode("utf-8", "backslashreplace").replace(b"\0", b"\\0")
    p = lib.spm_arena_strdup(arena, text)
    if p:
        msg_out[0] = p


def _accepts_on_failure(ctx: _context.Context) -> bool:
    return ctx.cfg is not None and ctx.cfg.on_failure == "accept"


def _what(job: _jobdesc.JobDesc, modify: bool, submit_uid: int) -> str:
    """The call as log lines name it (built only when one is written)."""
    if modify:
        return f"modify() for JobId={job.job_id}"
    return f"submit() for a job of uid {submit_uid}"


def _partitions(c_parts: Any, owner: Any) -> Callable[[], dict[str, _jobdesc.Partition]]:
    """The call's partitions, built when the handler first reads them."""
    def build() -> dict[str, _jobdesc.Partition]:
        parts: dict[str, _jobdesc.Partition] = {}
        for i in range(c_parts.count):
            p = _jobdesc.Partition(c_parts.parts + i, owner)
            parts[cast(str, p.name)] = p     # slurmctld's partitions all have a name
        return parts
    return build


def call(ctx: _context.Context, hook: int, arena: Any, c_in: Any, c_out: Any, current_arena: Any,
         c_current: Any, c_parts: Any, submit_uid: int, msg_out: Any, code_out: Any,
         own: Any) -> int:
    """`code_out[0]` gets Reject's error code, if it gave one.  `own(arena)` returns an object that keeps a C arena alive while
    Python holds it: every record handed to the handler holds one, so a
    handler that keeps `job`, `current` or a partition never reads freed
    memory.  The success path formats nothing and builds the partitions
    only if the handler reads them: this runs on every submission, under
    slurmctld's locks."""
    modify = hook == MODIFY
    owner = own(arena) if own else None
    job = _jobdesc.JobDesc(c_in, owner)

    loaded = ctx.loaded
    h = loaded.instance if loaded is not None else None
    if h is None:
        what = _what(job, modify, submit_uid)
        if _accepts_on_failure(ctx):
            say(ctx.ctx, lib.SPM_LOG_ERROR, f"{what}: no usable handler ({ctx.error}); "
                "on_failure=accept: the request is accepted unchanged")
            ctx.call_failed("", f"no usable handler: {ctx.error}")
            return OK
        say(ctx.ctx, lib.SPM_LOG_ERROR, f"{what} refused: no usable handler ({ctx.error})")
        ctx.call_failed("", f"no usable handler: {ctx.error}")
        _set_msg(arena, msg_out, [f"job_submit/python: request refused: the site's job "
                                  f"submission policy is not loaded ({ctx.error})"])
        return FAILED

    current = (_records.Job(c_current, own(current_arena) if own else None)
               if modify and c_current else None)
    messages: list[str] = []
    state = _handlers._call
    state.messages, state.partitions = messages, _partitions(c_parts, owner)
    # the user part_list is filtered for, as job_submit/lua takes it: the
    # request's user_id (slurmctld sets the job's owner there for modify)
    state.user = (int(c_in.user_id), int(submit_uid))
    try:
        try:
            if modify:
                h.modify(job, current, int(submit_uid))
            else:
                h.submit(job, int(submit_uid))
        finally:
            job._close()
            state.messages = state.partitions = state.user = None
    except _handlers.Reject as e:
        code = f" ({e.code_name or e.code})" if e.code is not None else ""
        say(ctx.ctx, lib.SPM_LOG_INFO, f"{_what(job, modify, submit_uid)} rejected by the "
            f"handler{code}" + (f": {e.message}" if e.message else " (no message)"),
            _chain.prefix_of(e))
        _set_msg(arena, msg_out, messages + ([e.message] if e.message else []), always=True)
        if e.code is not None:
            code_out[0] = e.code
        return FAILED
    except BaseException as e:  # even SystemExit must not leave the hook
        what = _what(job, modify, submit_uid)
        ctx.report(what, e)
        if _accepts_on_failure(ctx):
            say(ctx.ctx, lib.SPM_LOG_ERROR,
                f"{what}: on_failure=accept: the request is accepted unchanged")
            _set_msg(arena, msg_out, messages)
            return OK
        _set_msg(arena, msg_out, messages + [GENERIC])
        return FAILED
    try:
        job._commit(c_out, arena, lib, ffi)
    except _jobdesc.CommitError as e:
        say(ctx.ctx, lib.SPM_LOG_ERROR, f"{_what(job, modify, submit_uid)}: {e}; refused")
        ctx.call_failed("", str(e))
        _set_msg(arena, msg_out, [f"job_submit/python: request refused: {e}"])
        return FAILED
    _set_msg(arena, msg_out, messages)
    return OK
