"""One job_submit call (submit() or modify()), on a pool worker.

The bridge routes spm_py_js_call here.  This reports what the handler did,
as a status and the texts of the call's spm_js_call_t (csrc/spm_types.h):
- SPM_PY_OK: it accepted; msg: its log_user() lines, if any;
- SPM_PY_REFUSED: Reject("text"); msg: its log_user() lines, then "text"
  (none for ""), code: Reject's code= (0: none, SLURM_ERROR);
- SPM_PY_FAILED: any other exception (traceback logged here), or its
  changes could not be stored; msg: its log_user() lines, why: the error;
- SPM_PY_UNLOADED: no usable handler; why: the load error.
What slurmctld gets (on_failure=, the refusal's text and log line) is
decided in one place, csrc/dispatch_job_submit.c, which also answers the
failures no Python code sees (timeout, pool).
"""
from __future__ import annotations

from typing import Any, Callable, cast

from . import _chain, _context, _handlers, _jobdesc, _records
from ._context import say

ffi: Any = None
lib: Any = None
OK = FAILED = REFUSED = UNLOADED = MODIFY = 0


def install(ffi_: Any, lib_: Any) -> None:
    global ffi, lib, OK, FAILED, REFUSED, UNLOADED, MODIFY
    ffi, lib = ffi_, lib_
    OK, FAILED = int(lib.SPM_PY_OK), int(lib.SPM_PY_FAILED)
    REFUSED, UNLOADED = int(lib.SPM_PY_REFUSED), int(lib.SPM_PY_UNLOADED)
    MODIFY = int(lib.SPM_HOOK_JS_MODIFY)


def _text(arena: Any, lines: list[str]) -> Any:
    """`lines`, one a line, as a C string in the arena (NULL: no lines, or
    out of memory)."""
    if not lines:
        return ffi.NULL
    text = "\n".join(lines).encode("utf-8", "backslashreplace").replace(b"\0", b"\\0")
    return lib.spm_arena_strdup(arena, text)


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


def call(ctx: _context.Context, call: Any, own: Any) -> int:
    """`call` is the spm_js_call_t: read its in fields, fill msg, why and
    code (strings in call.arena).  `own(arena)` returns an object that keeps
    a C arena alive while Python holds it: every record handed to the
    handler holds one, so a handler that keeps `job`, `current` or a
    partition never reads freed memory.  The success path formats nothing
    and builds the partitions only if the handler reads them: this runs on
    every submission, under slurmctld's locks."""
    modify = call.hook == MODIFY
    arena = call.arena
    owner = own(arena) if own else None

    loaded = ctx.loaded
    h = loaded.instance if loaded is not None else None
    if h is None:
        ctx.call_failed("", f"no usable handler: {ctx.error}")
        call.why = _text(arena, [str(ctx.error)])
        return UNLOADED

    job = _jobdesc.JobDesc(call.desc_in, owner)
    submit_uid = int(call.submit_uid)
    current = (_records.Job(call.current, own(call.current_arena) if own else None)
               if modify and call.current else None)
    messages: list[str] = []
    state = _handlers._call
    state.messages, state.partitions = messages, _partitions(call.parts, owner)
    # the user part_list is filtered for, as job_submit/lua takes it: the
    # request's user_id (slurmctld sets the job's owner there for modify)
    state.user = (int(call.desc_in.user_id), submit_uid)
    try:
        try:
            if modify:
                h.modify(job, current, submit_uid)
            else:
                h.submit(job, submit_uid)
        finally:
            job._close()
            state.messages = state.partitions = state.user = None
    except _handlers.Reject as e:
        code = f" ({e.code_name or e.code})" if e.code is not None else ""
        say(ctx.ctx, lib.SPM_LOG_INFO, f"{_what(job, modify, submit_uid)} rejected by the "
            f"handler{code}" + (f": {e.message}" if e.message else " (no message)"),
            _chain.prefix_of(e))
        call.msg = _text(arena, messages + ([e.message] if e.message else []))
        if e.code is not None:
            call.code = e.code
        return REFUSED
    except BaseException as e:  # even SystemExit must not leave the hook
        ctx.report(_what(job, modify, submit_uid), e)
        call.msg = _text(arena, messages)
        call.why = _text(arena, [f"{type(e).__name__}: {e}" if str(e) else type(e).__name__])
        return FAILED
    try:
        job._commit(call.desc_out, arena, lib, ffi)
    except _jobdesc.CommitError as e:
        ctx.call_failed("", str(e))
        call.msg = _text(arena, messages)
        call.why = _text(arena, [str(e)])
        return FAILED
    call.msg = _text(arena, messages)
    return OK
