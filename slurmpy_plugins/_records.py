"""Read-only views of the shim's flat records (csrc/spm_types.h).

The attributes are generated from the C structs themselves, so the header is
the one list of fields: integer fields read as ``int``, ``char *`` fields as
``str`` (``None`` where Slurm has NULL; bytes that are not UTF-8 decode with
``surrogateescape``), string arrays as ``dict`` (``KEY=VALUE`` entries).
A misspelled attribute raises ``AttributeError``; setting one raises too.

Records are copies: they stay valid for as long as a handler keeps them.
One exception, for speed: the jobs given to ``SiteFactorHandler.update()``
copy their string fields on first access, during the call (slurmctld holds
its job lock until update() returns).  After update() has returned, a string
field of such a job that was never read raises :class:`SnapshotClosed`;
numbers and strings already read stay available.
"""
from __future__ import annotations

import functools
import operator
import pwd
from collections.abc import Sequence
from typing import Any, Iterator

from ._fields import JobEnvFields, JobFields

__all__ = ["Job", "JobEnv", "JobList", "JOB_STATES", "SnapshotClosed", "install"]

# enum job_states of slurm.h (22.05), indexed by job_state & JOB_STATE_BASE.
JOB_STATES = ("PENDING", "RUNNING", "SUSPENDED", "COMPLETED", "CANCELLED", "FAILED",
              "TIMEOUT", "NODE_FAIL", "PREEMPTED", "BOOT_FAIL", "DEADLINE",
              "OUT_OF_MEMORY")
_JOB_STATE_BASE = 0xFF
# State flags a handler may test (slurm.h: JOB_* SLURM_BIT(n)).
JOB_STATE_FLAGS = {
    "LAUNCH_FAILED": 1 << 8, "REQUEUE": 1 << 10, "REQUEUE_HOLD": 1 << 11,
    "SPECIAL_EXIT": 1 << 12, "RESIZING": 1 << 13, "CONFIGURING": 1 << 14,
    "COMPLETING": 1 << 15, "STOPPED": 1 << 16,
}

# Fields that only size an array or drive lazy copying: not attributes.
_INTERNAL_FIELDS = {"spank_job_env_size", "gres_job_env_size", "strings_loaded", "lazy"}


class SnapshotClosed(RuntimeError):
    """A string field of an update() job read after update() returned."""
# Array fields are exposed under friendlier names.
_RENAMED = {"spank_job_env": "spank_env", "gres_job_env": "gres_env"}


class _Record:
    __slots__ = ("_c", "_owner")
    _fields: tuple[str, ...] = ()

    # Fields are properties without setters and there is no __dict__, so
    # assigning to a field or to an unknown name raises AttributeError.
    def __init__(self, c: Any, owner: Any) -> None:
        self._c = c
        self._owner = owner  # keeps the C arena alive while we live

    def as_dict(self) -> dict[str, Any]:
        """All fields as a plain dict (a copy)."""
        return {name: getattr(self, name) for name in self._fields}

    @classmethod
    def fields(cls) -> tuple[str, ...]:
        return cls._fields


class Job(_Record, JobFields):
    """A copy of one slurmctld job record (job_record_t), taken while
    slurmctld held its locks.  See the README for the field list."""
    __slots__ = ()

    @property
    def state(self) -> str:
        """Base job state name, e.g. ``"PENDING"``, ``"RUNNING"``."""
        base = self._c.job_state & _JOB_STATE_BASE
        return JOB_STATES[base] if base < len(JOB_STATES) else f"UNKNOWN({base})"

    @property
    def state_flags(self) -> frozenset[str]:
        """Names of the job state flags that are set (e.g. ``"CONFIGURING"``)."""
        s = self._c.job_state
        return frozenset(n for n, bit in JOB_STATE_FLAGS.items() if s & bit)

    def __repr__(self) -> str:
        # never loads an update() job's strings: the name only once loaded
        if not self._c.strings_loaded:
            return f"<Job {self._c.job_id} {self.state}>"
        return f"<Job {self._c.job_id} {self.name!r} {self.state}>"


class JobEnv(_Record, JobEnvFields):
    """A copy of slurmd's job_env_t for one prolog or epilog call."""
    __slots__ = ()

    def __repr__(self) -> str:
        return f"<JobEnv job {self._c.job_id} step {self._c.step_id}>"


class JobList(Sequence[Job]):
    """The pending jobs given to ``SiteFactorHandler.update()``: a sequence
    of :class:`Job`, created lazily as they are indexed or iterated."""
    __slots__ = ("_arr", "_n", "_owner")

    def __init__(self, arr: Any, n: int, owner: Any) -> None:
        self._arr, self._n, self._owner = arr, n, owner

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [Job(self._arr + k, self._owner) for k in range(*i.indices(self._n))]
        if i < 0:
            i += self._n
        if not 0 <= i < self._n:
            raise IndexError("job index out of range")
        return Job(self._arr + i, self._owner)

    def __iter__(self) -> Iterator[Job]:
        arr, owner = self._arr, self._owner
        for k in range(self._n):
            yield Job(arr + k, owner)

    def __repr__(self) -> str:
        return f"<JobList of {self._n} pending jobs>"


def _int_prop(name: str) -> property:
    return property(operator.attrgetter(f"_c.{name}"), doc=f"{name} (int)")


_lib: Any = None


def _load_strings(c: Any) -> None:
    """Copy the string fields of a lazy (update()) record, once."""
    rc = _lib.spm_lazy_load(c.lazy, c)
    if rc == -1:
        raise SnapshotClosed(
            f"JobId={c.job_id}: string fields of a job given to update() can only be "
            "read during update() (slurmctld holds its job lock only until then); "
            "read them in update() to keep them")
    if rc:
        raise MemoryError(f"JobId={c.job_id}: cannot copy the job's string fields")


def _str_prop(ffi: Any, name: str, lazy: bool) -> property:
    string = ffi.string

    def get(self: Any) -> str | None:
        c = self._c
        if lazy and not c.strings_loaded:
            _load_strings(c)
        p = getattr(c, name)
        if not p:
            return None
        text: str = string(p).decode("utf-8", "surrogateescape")
        return text
    get.__name__ = name
    return property(get, doc=f"{name} (str or None)")


def _strv_prop(ffi: Any, name: str, size: str, lazy: bool) -> property:
    string = ffi.string

    def get(self: Any) -> dict[str, str]:
        if lazy and not self._c.strings_loaded:
            _load_strings(self._c)
        v = getattr(self._c, name)
        out: dict[str, str] = {}
        if not v:
            return out
        n = getattr(self._c, size)
        for i in range(n):
            p = v[i]
            if not p:
                continue
            key, _, value = string(p).decode("utf-8", "surrogateescape").partition("=")
            out[key] = value
        return out
    get.__name__ = name
    return property(get, doc=f"{name} (dict of KEY=VALUE entries)")


def _install_one(ffi: Any, cls: Any, ctype: str) -> None:
    names = []
    fields = ffi.typeof(ctype).fields
    lazy = any(name == "strings_loaded" for name, _ in fields)
    for name, field in fields:
        if name in _INTERNAL_FIELDS:
            continue
        kind = field.type.kind
        cname = field.type.cname
        public = _RENAMED.get(name, name)
        if kind == "primitive":
            prop = _int_prop(name)
        elif cname == "char *":
            prop = _str_prop(ffi, name, lazy)
        elif cname == "char * *":
            prop = _strv_prop(ffi, name, f"{name}_size", lazy)
        else:  # a new field kind in the header must be mapped here first
            raise TypeError(f"{ctype}.{name}: no Python mapping for {cname}")
        setattr(cls, public, prop)
        names.append(public)
    if cls is Job:
        names += ["state", "state_flags"]
        # slurmctld leaves job_record_t.user_name NULL until something needs
        # it; resolve it here, on the worker thread, not under its locks.
        raw = getattr(cls, "user_name").fget

        def user_name(self: Any) -> str | None:
            name = raw(self)   # "" is a name Slurm set: only NULL is looked up
            return name if name is not None else _user_name(self._c.user_id)
        setattr(cls, "user_name", property(user_name, doc="user_name (str or None): the "
                "job's user, looked up from user_id if Slurm has no name"))
    cls._fields = tuple(names)


@functools.lru_cache(maxsize=4096)
def _user_name(uid: int) -> str | None:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return None


_installed = False


def install(ffi: Any, lib: Any) -> None:
    """Generate the attributes from the cffi types (once)."""
    global _installed, _lib
    if _installed:
        return
    _lib = lib
    _install_one(ffi, Job, "spm_job_t")
    _install_one(ffi, JobEnv, "spm_env_t")
    _installed = True
