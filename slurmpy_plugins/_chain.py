"""``handlers=<dir>``: a directory of handler files run as one handler.

Each ``*.py`` file of the directory defines one subclass of the plugin's
base class (_loader.load_dir loads, checks and reloads each on its own).
:func:`build` makes the instance the daemon holds: a subclass of the same
base whose hooks call the files' handlers in file-name order, so that every
caller (the bridge, the test kit, ``check``) runs it as it runs a single
handler.  How their answers combine (the plugin table's rule, by base):

* site_factor ``set()``/``update()``: the factors of every handler that
  gave one add up; the sum is clamped once, by the caller (_factors).
  ``reconfig()`` reaches every handler, in order;
* every other hook (prep, job_submit, jobcomp, spank): in order, each sees
  what the previous ones did to the record (job_submit: the same request),
  and the first that fails (raises, job_submit's Reject included) ends the
  call with its failure: the hook fails, the later handlers do not run.

Each handler runs with a log prefix of its own, ``<plugin>[<file stem>]``,
and keeps its own figures (:class:`Figures`: calls, failures, time), which
``Member.figures`` exposes.  A prep hook that returns something other than
None fails with a TypeError whose file:line is that handler's method.
"""
from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Callable

# _factors is imported where a factor is checked, not here: _context imports
# this module, and a spank/python process must not import the other
# plugins' modules (tests/host/test_spank_host.py::test_boot_imports_only_spank).
from . import _log
from ._handlers import PrEpHandler, Reject, SiteFactorHandler

__all__ = ["Member", "Figures", "build", "members_of", "figures", "prefix_of", "publish",
           "SITE", "PREFIX", "FILES_SUFFIX"]

# <daemon's stats file><FILES_SUFFIX><plugin kind>: a handlers= set's
# figures, per file (publish(); read by _stats.read_file)
FILES_SUFFIX = ".files-"

# the attribute a failure's exception carries when its file:line is not
# in its traceback (a prep hook's wrong return value): _loader.where reads it
SITE = "_slurmpy_site"
# the attribute a failure's exception carries: the log prefix of the
# handler file it came from (the first, innermost, one that saw it)
PREFIX = "_slurmpy_prefix"


@dataclass
class Figures:
    """One handler file's figures, per hook: calls, failures, refusals
    (job_submit's Reject: an answer, not a failure), total and max time
    (ns), and the last failure's text.  Updated under the member's lock (hooks of one plugin
    run on several workers at once)."""
    calls: dict[str, int] = field(default_factory=dict)
    failures: dict[str, int] = field(default_factory=dict)
    refusals: dict[str, int] = field(default_factory=dict)   # job_submit's Reject
    total_ns: dict[str, int] = field(default_factory=dict)
    max_ns: dict[str, int] = field(default_factory=dict)
    last_error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {hook: {"calls": n, "failures": self.failures.get(hook, 0),
                       "refusals": self.refusals.get(hook, 0),
                       "total_us": self.total_ns.get(hook, 0) // 1000,
                       "max_us": self.max_ns.get(hook, 0) // 1000}
                for hook, n in sorted(self.calls.items())}


@dataclass(eq=False)
class Member:
    """One handler file of a handlers= directory, loaded."""
    name: str                      # the file's name, "20-gpu.py"
    path: str                      # its full path
    instance: Any                  # its handler (a subclass of the plugin's base)
    signature: tuple[Any, ...]     # _loader.file_signature() when it was read
    prefix: str                    # its log prefix, "prep/python[20-gpu]"
    figures: Figures = field(default_factory=Figures)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def overrides(self, hook: str, base: type) -> bool:
        return getattr(type(self.instance), hook, None) is not getattr(base, hook, None)

    def call(self, hook: str, *args: Any) -> Any:
        """instance.<hook>(*args) with this file's log prefix, counted."""
        before = _log.prefix()
        _log.set_prefix(self.prefix)
        t0 = time.perf_counter_ns()
        outcome = None     # None: returned; else the figure it counts in
        try:
            return getattr(self.instance, hook)(*args)
        except Reject as e:
            _tag(e, PREFIX, self.prefix)
            outcome = self.figures.refusals
            raise
        except BaseException as e:
            _tag(e, PREFIX, self.prefix)
            outcome = self.figures.failures
            with self.lock:
                self.figures.last_error = f"{hook}: {type(e).__name__}: {e}"
            raise
        finally:
            dt = time.perf_counter_ns() - t0
            _log.set_prefix(before)
            f = self.figures
            with self.lock:
                f.calls[hook] = f.calls.get(hook, 0) + 1
                if outcome is not None:
                    outcome[hook] = outcome.get(hook, 0) + 1
                f.total_ns[hook] = f.total_ns.get(hook, 0) + dt
                if dt > f.max_ns.get(hook, 0):
                    f.max_ns[hook] = dt


def _tag(e: BaseException, attr: str, value: str) -> None:
    if getattr(e, attr, None) is None:
        try:
            setattr(e, attr, value)
        except (AttributeError, TypeError):    # an exception type with __slots__
            pass


def prefix_of(e: BaseException) -> str | None:
    """The log prefix of the handler file `e` came from, if it came from one."""
    p = getattr(e, PREFIX, None)
    return p if isinstance(p, str) else None


def _site(method: Any) -> str:
    code = getattr(getattr(method, "__func__", method), "__code__", None)
    return f"{code.co_filename}:{code.co_firstlineno}" if code else "?"


def _in_order(hook: str, members: tuple[Member, ...], prep: bool) -> Callable[..., None]:
    """Each handler's hook in turn; the first failure ends the call."""
    def run(self: Any, *args: Any) -> None:
        for m in members:
            result = m.call(hook, *args)
            if prep and result is not None:
                from ._factors import describe
                e = TypeError(f"{hook}() returned {describe(result)}; a hook returns None "
                              "to succeed and raises to fail")
                _tag(e, SITE, _site(getattr(m.instance, hook)))
                _tag(e, PREFIX, m.prefix)
                raise e
    run.__name__ = run.__qualname__ = hook
    return run


def _to_int(value: Any, what: str, method: Any) -> int | None:
    from ._factors import _is_int, describe
    if value is None:
        return None
    if not _is_int(type(value)):
        e = TypeError(f"{what} returned {describe(value)}; expected an int or None")
        _tag(e, SITE, _site(method))
        raise e
    return int(value)


def _set(members: tuple[Member, ...]) -> Callable[..., int | None]:
    """set(): the sum of the factors given (None when none gave one)."""
    def set(self: Any, job: Any) -> int | None:     # noqa: A001 (the hook's name)
        total = None
        for m in members:
            v = _to_int(m.call("set", job), f"{m.name}: set()", m.instance.set)
            if v is not None:
                total = v if total is None else total + v
        return total
    return set


def _update(members: tuple[Member, ...]) -> Callable[..., list[int | None] | None]:
    """update(): per job, the sum of the factors given, by batch index
    (None: no handler gave one, the job keeps its factor)."""
    def update(self: Any, jobs: Any) -> list[int | None] | None:
        from . import _factors
        sums: list[int | None] | None = None
        index: dict[int, int] | None = None
        for m in members:
            result = m.call("update", jobs)
            if result is None:
                continue
            n = len(jobs)
            if sums is None:
                sums = [None] * n
            try:
                if _factors.is_aligned(result):
                    vals, _ = _factors.check_aligned(result, n, lambda: jobs.column("job_id"),
                                                     clamp=False)
                    pairs = ((i, v) for i, v in enumerate(vals) if v != _factors.KEEP)
                else:
                    ids, vals, _ = _factors.check_update(result, n, clamp=False)
                    if index is None:
                        index = {int(j): i for i, j in enumerate(jobs.column("job_id"))}
                    # a job id not in this batch is dropped, as C drops it
                    pairs = ((index[j], v) for j, v in zip(ids, vals) if j in index)
                for i, v in pairs:
                    s = sums[i]
                    sums[i] = v if s is None else s + v
            except _factors.FactorError as e:
                err = TypeError(f"{m.name}: update() must return one int factor (or None) per "
                                f"job, in the order of `jobs`, or a mapping of int job id to "
                                f"int factor; {e}")
                _tag(err, SITE, _site(m.instance.update))
                _tag(err, PREFIX, m.prefix)
                raise err from None
        return sums
    return update


def _fields(members: tuple[Member, ...]) -> tuple[str, ...] | None:
    """SiteFactorHandler.fields: the union of what each declares (None,
    every field, if any handler reads them all)."""
    out: list[str] = []
    for m in members:
        declared = type(m.instance).fields
        if declared is None:
            return None
        out.extend(f for f in declared if f not in out)
    return tuple(out)


def build(base: type, hooks: tuple[str, ...], members: tuple[Member, ...]) -> Any:
    """The instance that runs `members` (in this order) as one handler of
    `base`: it overrides a hook only if one of them does, so the daemon
    asks Slurm for just those calls."""
    ns: dict[str, Any] = {"__slots__": (), "_members": members,
                          "__module__": __name__, "__doc__": __doc__}
    for hook in hooks:
        mine = tuple(m for m in members if m.overrides(hook, base))
        if not mine:
            continue
        if issubclass(base, SiteFactorHandler) and hook == "set":
            ns[hook] = _set(mine)
        elif issubclass(base, SiteFactorHandler) and hook == "update":
            ns[hook] = _update(mine)
        else:
            ns[hook] = _in_order(hook, mine, prep=issubclass(base, PrEpHandler))
    if issubclass(base, SiteFactorHandler):
        ns["fields"] = _fields(members)
    if hasattr(base, "options"):         # SpankHandler: every file's options
        ns["options"] = tuple(o for m in members for o in type(m.instance).options)
    return type("Handlers", (base,), ns)()


def members_of(instance: Any) -> tuple[Member, ...]:
    """The members of a build() instance; () for a single handler."""
    members = getattr(type(instance), "_members", ())
    return members if isinstance(members, tuple) else ()


def figures(instance: Any) -> Mapping[str, dict[str, Any]]:
    """{file name: its figures as a dict}, for a build() instance."""
    out = {}
    for m in members_of(instance):
        with m.lock:
            out[m.name] = {"path": m.path, "hooks": m.figures.as_dict(),
                           "last_error": m.figures.last_error}
    return out


def publish(path: str, plugin: str, directory: str, instance: Any,
            previous: str | None) -> str:
    """Write the per-file figures of `instance` (a build() instance) to
    `path` (beside the daemon's stats file), as one JSON object, unless they
    are what `previous` (the text last written) holds.  Written as the
    stats file is: mode 0600, by the daemon, replaced whole (rename), never
    through a symlink.  Returns the text written (or `previous`)."""
    text = json.dumps({"plugin": plugin, "directory": directory,
                       "files": figures(instance)}, sort_keys=True)
    if text == previous:
        return text
    tmp = f"{path}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, text.encode())
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return text
