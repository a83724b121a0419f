"""`slurmpy-plugins check`: Lua and shell habits in a handler, found by
reading its hooks and by running the decision hooks once on sample
records (the test kit's, or jobs from ``squeue --json`` output).

- a hook whose signature cannot take the arguments slurmpy passes (Lua's
  ``slurm_job_submit(job_desc, part_list, submit_uid)``): every call fails;
- a hook that returns a value where the value means something else than
  the author thinks (``return slurm.ERROR`` / ``return -1`` in submit():
  ignored, the job is accepted; ``return 0`` in epilog(): a failure, the
  node is drained);
- a record field the records do not have, with what it is called here
  (slurmpy_plugins._lua, the one table of Lua names).

Only job_submit's and site_factor's hooks are run: they decide, under
slurmctld's locks, and are meant to have no side effects.  prep and
jobcomp hooks act (as root, on this machine, here), so they are only read.
"""
from __future__ import annotations

import ast
import inspect
import os
import textwrap
import traceback
from dataclasses import dataclass, field
from typing import Any

from . import _lua

__all__ = ["Findings", "read_hooks", "run_samples"]

# hook -> the arguments slurmpy passes after self
CALLS = {
    "submit": ("job", "submit_uid"), "modify": ("job", "current", "submit_uid"),
    "prolog": ("env",), "epilog": ("env",), "prolog_slurmctld": ("job",),
    "epilog_slurmctld": ("job",), "set": ("job",), "update": ("jobs",), "reconfig": (),
    "job_end": ("job",), "job_start": ("job",),
}
LUA_NAMES = {"slurm_job_submit": "submit(self, job, submit_uid)",
             "slurm_job_modify": "modify(self, job, current, submit_uid)"}
LUA_SIGS = {"submit": "slurm_job_submit(job_desc, part_list, submit_uid)",
            "modify": "slurm_job_modify(job_desc, job_rec, part_list, modify_uid)"}
_IGNORED = ("the value is ignored, so the request is ACCEPTED (Lua's `return slurm.ERROR`); "
            "refuse with raise Reject(\"text\")")
_FAILS = ("any value returned fails the hook (`return 0` is a shell habit): {what}; "
          "return nothing to succeed, raise to fail")
RETURNS = {
    "submit": _IGNORED, "modify": _IGNORED,
    "prolog": _FAILS.format(what="slurmd drains the node, for every job on every node"),
    "epilog": _FAILS.format(what="slurmd drains the node, for every job on every node"),
    "prolog_slurmctld": _FAILS.format(what="every job is requeued, or killed"),
    "epilog_slurmctld": _FAILS.format(what="logged as a failure for every job"),
}
_RECORDS = {"JobDesc": "job_desc", "Partition": "part_list", "Job": "job_rec"}


@dataclass
class Findings:
    problems: list[str] = field(default_factory=list)   # certain failures: exit 1
    notes: list[str] = field(default_factory=list)      # what the sample run showed
    returned: set[str] = field(default_factory=set)     # hooks seen returning a value
    bad_sig: set[str] = field(default_factory=set)      # hooks that cannot be called


def _site(fn: Any) -> str:
    code = getattr(fn, "__code__", None)
    return f"{code.co_filename}:{code.co_firstlineno}" if code else repr(fn)


def _returns(fn: Any) -> list[tuple[int, str]]:
    """(line, source) of each `return <value>` in fn's own body (not in
    nested functions), value not None."""
    try:
        lines, first = inspect.getsourcelines(fn)
    except (OSError, TypeError):
        return []
    try:
        tree = ast.parse(textwrap.dedent("".join(lines)))
    except SyntaxError:
        return []
    out: list[tuple[int, str]] = []

    def walk(node: ast.AST, top: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda,
                                  ast.ClassDef)) and not top:
                continue
            if isinstance(child, ast.Return) and child.value is not None and not (
                    isinstance(child.value, ast.Constant) and child.value.value is None):
                out.append((first + child.lineno - 1, ast.unparse(child)))
            walk(child, False)

    walk(tree, True)
    return out


def read_hooks(instance: Any, hooks: list[str], plugin: str) -> Findings:
    """Signatures, Lua function names and returned values, from the code
    (f.returned: the hooks found returning a value)."""
    f = Findings()
    cls = type(instance)
    for lua, ours in LUA_NAMES.items():
        fn = getattr(cls, lua, None)
        if callable(fn):
            f.problems.append(f"{plugin}: {_site(fn)}: {cls.__name__}.{lua}() is job_submit/lua's "
                              f"name: slurmpy never calls it; define {ours}")
    for hook in hooks:
        fn = getattr(instance, hook, None)
        args = CALLS.get(hook)
        if fn is None or args is None:
            continue
        try:
            sig = inspect.signature(fn)
        except (TypeError, ValueError):
            continue
        try:
            sig.bind(*args)
        except TypeError:
            f.bad_sig.add(hook)
            lua = f" (job_submit/lua's {LUA_SIGS[hook]})" if hook in LUA_SIGS else ""
            f.problems.append(
                f"{plugin}: {_site(getattr(fn, '__func__', fn))}: {hook}{sig} cannot take what "
                f"slurmpy passes, {hook}({', '.join(args)}){lua}: every call fails")
        if hook in RETURNS:
            for line, src in _returns(getattr(fn, "__func__", fn)):
                path = getattr(getattr(fn, "__func__", fn), "__code__").co_filename
                f.problems.append(f"{plugin}: {path}:{line}: {hook}() `{src}`: {RETURNS[hook]}")
                f.returned.add(hook)
    return f


def _handler_line(exc: BaseException, module_file: str | None) -> str:
    """"file:line: " of the handler's innermost frame in the traceback
    (module_file: the handler's file, or a handlers= directory: any file
    in it)."""
    where = ""
    if module_file:
        real = os.path.realpath(module_file)
        is_dir = os.path.isdir(real)
        for fr in traceback.extract_tb(exc.__traceback__):
            found = os.path.realpath(fr.filename)
            if found == real or (is_dir and os.path.dirname(found) == real):
                where = f"{fr.filename}:{fr.lineno}: "
    return where


def _field_error(exc: BaseException) -> str | None:
    """The message for a misspelled record field, or None if exc is not one."""
    if not isinstance(exc, AttributeError):
        return None
    msg = str(exc)
    if " has no field " in msg:          # JobDesc, Partition (with the _lua hint)
        return msg
    obj, name = getattr(exc, "obj", None), getattr(exc, "name", None)
    section = _RECORDS.get(type(obj).__name__) if obj is not None else None
    if section and name:
        return f"{type(obj).__name__} has no field {name!r}{_lua.hint(section, name)}"
    return None


class _Spy:
    """Wraps a hook: what it returned, or raised."""
    def __init__(self, fn: Any) -> None:
        self.fn = fn
        self.result: Any = None
        self.exc: BaseException | None = None
        self.called = False

    def __call__(self, *a: Any) -> Any:
        self.called = True
        try:
            self.result = self.fn(*a)
        except BaseException as e:
            self.exc = e
            raise
        return self.result


def _run_one(instance: Any, hook: str, call: Any, plugin: str, what: str,
             module_file: str | None, f: Findings, returned: set[str]) -> None:
    orig = getattr(instance, hook)
    spy: _Spy | None = _Spy(orig)
    try:
        setattr(instance, hook, spy)
    except AttributeError:        # __slots__: run unwatched
        spy = None
    try:
        call()
    finally:
        if spy is not None:
            try:
                delattr(instance, hook)
            except AttributeError:
                pass
    if spy is None or not spy.called:
        return
    exc = spy.exc
    if exc is None:
        if spy.result is not None and hook in RETURNS and hook not in returned:
            returned.add(hook)     # once, not per sample
            f.problems.append(f"{plugin}: {hook}() on {what} returned {spy.result!r}: "
                              f"{RETURNS[hook]}")
        else:
            f.notes.append(f"{plugin}: {hook}() on {what}: returned normally")
        return
    from ._handlers import Reject
    if isinstance(exc, Reject):
        f.notes.append(f"{plugin}: {hook}() on {what}: refused: {exc.message!r}")
        return
    where = _handler_line(exc, module_file)
    msg = _field_error(exc)
    if msg is not None:
        f.problems.append(f"{plugin}: {where}{hook}() on {what}: AttributeError: {msg}")
    else:
        f.notes.append(f"{plugin}: {where}{hook}() on {what} raised {type(exc).__name__}: "
                       f"{exc} (it may be the sample's: give real jobs with --jobs)")


def run_samples(kind: str, instance: Any, hooks: list[str], plugin: str,
                module_file: str | None, jobs: list[Any] | None,
                partitions: list[str], returned: set[str] | None = None) -> Findings:
    """Run job_submit's submit()/modify() or site_factor's set()/update()
    once per sample (`jobs`: Job records from squeue --json; None: the
    kit's sbatch --wrap=true request and a pending job)."""
    from . import testing as kit
    f = Findings()
    returned = set() if returned is None else set(returned)
    parts = [kit.make_partition(p, default=i == 0) for i, p in enumerate(partitions)]
    uid = os.getuid()
    if jobs is None:
        current = [kit.make_job(job_id=1, user_id=uid, group_id=os.getgid(), state="PENDING",
                                name="wrap", time_limit=60, priority=1,
                                partition=partitions[0] if partitions else None)]
        label = {1: "the kit's sample job (sbatch --wrap=true)"}
    else:
        current = jobs
        label = {j.job_id: f"JobId={j.job_id}" for j in jobs}
    if kind == "job_submit":
        from ._preview import _request_of
        for j in current:
            what = label[j.job_id]
            if "submit" in hooks:
                desc = kit.make_job_desc() if jobs is None else _request_of(j)
                _run_one(instance, "submit", lambda: kit.run_submit(
                    instance, desc, partitions=parts), plugin, what, module_file, f, returned)
            if "modify" in hooks:
                upd = kit.make_job_desc(bare=True, time_limit=30)
                _run_one(instance, "modify", lambda: kit.run_modify(
                    instance, upd, j, partitions=parts),
                    plugin, what + " (scontrol update TimeLimit=30)", module_file, f, returned)
    elif kind == "site_factor":
        if "set" in hooks:
            for j in current:
                _run_one(instance, "set", lambda: kit.run_set(instance, j),
                         plugin, label[j.job_id], module_file, f, returned)
        if "update" in hooks:
            _run_one(instance, "update", lambda: kit.run_update(instance, current),
                     plugin, f"{len(current)} job(s)", module_file, f, returned)
    return f
