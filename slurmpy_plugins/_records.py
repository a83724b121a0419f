"""Read-only views of the shim's flat records (csrc/spm_types.h).

The attributes are generated from the C structs themselves, so the header is
the one list of fields: integer fields read as ``int``, ``char *`` fields as
``str`` (``None`` where Slurm has NULL; bytes that are not UTF-8 decode with
``surrogateescape``), string arrays as ``dict`` (``KEY=VALUE`` entries).
A misspelled attribute raises ``AttributeError``; setting one raises too.

Records are copies: they stay valid for as long as a handler keeps them.
One exception, for speed: the jobs given to ``SiteFactorHandler.update()``
(a :class:`JobList`) copy each field, for the whole batch, on its first
read during the call (slurmctld holds its job lock until update() returns).
After update() has returned, a string field never read raises
:class:`SnapshotClosed`; fields read in time stay available, and numbers
too when the handler kept the jobs (the bridge copies them as the call
returns).
"""
from __future__ import annotations

import array
import functools
import itertools
import operator
import pwd
import weakref
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
    slurmctld held its locks.  See docs/handlers.md for the field list."""
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
    of jobs in batch order, plus columnar access.

    Iterating or indexing gives one view per job: a :class:`Job` when the
    handler declares no ``fields``, else a light row with the declared
    fields (and ``job_id``).  ``column(name)`` gives one field of every job,
    aligned with the batch: numbers as a ``memoryview`` over the batch's C
    memory (no copy; ``numpy.frombuffer(jobs.column("num_cpus"))`` also
    copies nothing), strings as a list of ``str``/``None``.  Everything is
    copied from slurmctld's records on first use, and only during update().
    """
    __slots__ = ("_batch", "_n", "_owner", "_row_cls", "_cols", "_lists", "_view_cls",
                 "__weakref__")

    def __init__(self, batch: Any, owner: Any, fields: tuple[str, ...] | None = None) -> None:
        self._batch, self._n, self._owner = batch, batch.count, owner
        self._row_cls: Any = _row_class(fields) if fields is not None else None
        self._cols: dict[str, Any] = {}
        self._lists: dict[str, list[Any]] = {}
        self._view_cls: type | None = None

    @property
    def fields(self) -> tuple[str, ...] | None:
        """The fields the handler declared (``job_id`` first), or None."""
        return self._row_cls._names if self._row_cls else None

    def __len__(self) -> int:
        return int(self._n)

    # -- per job -----------------------------------------------------------
    def _list(self, name: str) -> list[Any]:
        """column(name) as a list of Python values (cached)."""
        got = self._lists.get(name)
        if got is None:
            col = self.column(name)
            got = self._lists[name] = col.tolist() if isinstance(col, memoryview) else col
        return got

    def _views(self) -> type:
        if self._view_cls is None:
            self._view_cls = _view_class(self)
        return self._view_cls

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(self._n))]
        if i < 0:
            i += self._n
        if not 0 <= i < self._n:
            raise IndexError("job index out of range")
        if self._row_cls is not None:
            return self._row_cls(self._list(f)[i] for f in self._row_cls._names)
        return self._views()(i, self)

    def __iter__(self) -> Iterator[Job]:
        n = self._n
        if not n:
            return iter(())
        if self._row_cls is not None:
            return map(self._row_cls, zip(*map(self._list, self._row_cls._names)))
        return map(self._views(), range(n), itertools.repeat(self, n))

    # -- columns -----------------------------------------------------------
    def column(self, name: str) -> Any:
        """One field of every job, in batch order: a read-only memoryview
        (format ``I``, ``q`` or ``Q``: the C type) for numbers, a list of
        str/None for strings.  Any Job field may be asked for, declared or
        not; each is copied once per update()."""
        col = self._cols.get(name)
        if col is not None:
            return col
        kind = _COLUMN_KIND.get(name)
        if kind is None:
            raise KeyError(_unknown_field(name))
        if name == "user_name":
            codes, values = self.categories(name)
            uids = self.column("user_id")
            col = [values[c] if c else _user_name(u) for c, u in zip(codes, uids)]
        elif kind == "str":
            codes, values = self.categories(name)
            col = list(map(values.__getitem__, codes)) if self._n else []
        elif self._batch.lazy == _ffi.NULL:   # rows given (the test kit)
            rows = self._batch.jobs
            col = memoryview(array.array(kind, [getattr(rows[i], name)
                                                for i in range(self._n)])).toreadonly()
        else:
            out = _ffi.new("void **")
            _check_rc(_lib.spm_batch_column(self._batch.lazy, _OFFSET[name], out), name)
            col = memoryview(_ffi.buffer(out[0], self._n * _SIZE[name])).cast(kind)  # type: ignore[call-overload]
            col = col.toreadonly()
        self._cols[name] = col
        return col

    def categories(self, name: str) -> Any:
        """A string field, dictionary-encoded: (codes, values), where
        ``values[codes[i]]`` is job i's value; ``codes`` is a memoryview of
        uint32 (``I``) over C memory and ``values[0]`` is None."""
        key = "\0" + name
        got = self._cols.get(key)
        if got is not None:
            return got
        if _COLUMN_KIND.get(name) != "str":
            raise KeyError(_unknown_field(name) if name not in _COLUMN_KIND else
                           f"{name!r} is not a string field")
        if self._batch.lazy == _ffi.NULL:     # rows given (the test kit)
            got = self._cols[key] = self._categories_from_rows(name)
            return got
        codes = _ffi.new("uint32_t **")
        values = _ffi.new("char ***")
        nvalues = _ffi.new("uint32_t *")
        _check_rc(_lib.spm_batch_strings(self._batch.lazy, _OFFSET[name], codes, values,
                                         nvalues), name)
        string, v = _ffi.string, values[0]
        vals = (None,) + tuple(string(v[k]).decode("utf-8", "surrogateescape")
                               for k in range(1, nvalues[0]))
        mv = memoryview(_ffi.buffer(codes[0], self._n * 4)).cast("I").toreadonly()
        got = self._cols[key] = (mv, vals)
        return got

    def _categories_from_rows(self, name: str) -> Any:
        """categories() of a batch whose rows own their strings (the test
        kit's): the same codes and values the C side would give."""
        rows, string = self._batch.jobs, _ffi.string
        index: dict[bytes, int] = {}
        codes = array.array("I")
        for i in range(self._n):
            p = getattr(rows[i], name)
            codes.append(0 if p == _ffi.NULL else index.setdefault(string(p), len(index) + 1))
        vals = (None,) + tuple(v.decode("utf-8", "surrogateescape") for v in index)
        return memoryview(codes).toreadonly(), vals

    def __repr__(self) -> str:
        return f"<JobList of {self._n} pending jobs>"


class _BatchJob(Job):
    """A Job of an update() batch: `_c` is its index in the batch and
    `_owner` the JobList; every field reads that JobList's column (copied
    from slurmctld, for the whole batch, on the first read of the field).
    Each JobList has its own subclass (see _view_class)."""
    __slots__ = ()

    @property
    def state(self) -> str:
        base = self.job_state & _JOB_STATE_BASE
        return JOB_STATES[base] if base < len(JOB_STATES) else f"UNKNOWN({base})"

    @property
    def state_flags(self) -> frozenset[str]:
        s = self.job_state
        return frozenset(n for n, bit in JOB_STATE_FLAGS.items() if s & bit)

    @property
    def spank_env(self) -> dict[str, str]:
        jl = self._owner
        b = jl._batch
        if b.jobs == _ffi.NULL:
            _check_rc(_lib.spm_batch_rows(b.lazy), "the jobs' fields")
        return Job(b.jobs + self._c, jl._owner).spank_env

    def __repr__(self) -> str:
        # never copies a string column: the name only if already copied
        names = self._owner._lists.get("name")
        if names is None:
            return f"<Job {self.job_id} {self.state}>"
        return f"<Job {self.job_id} {names[self._c]!r} {self.state}>"


def seal(jobs: "JobList") -> None:
    """update() returned and the handler kept `jobs` or one of its Job
    views: copy every job's numbers now (slurmctld still holds its lock),
    so that numbers stay readable afterwards, as docs/handlers.md promises."""
    b = jobs._batch
    if jobs._row_cls is None and b.count and b.jobs == _ffi.NULL:
        _check_rc(_lib.spm_batch_rows(b.lazy), "the jobs' fields")


def _view_class(jl: "JobList") -> type:
    """A _BatchJob subclass for one JobList.  Its field properties start
    as loaders: the first read of a field copies its column and replaces
    the property by a plain list lookup (no reference back to the JobList:
    the class and the jobs do not keep each other alive)."""
    ref = weakref.ref(jl)
    cls = type("Job", (_BatchJob,), {"__slots__": (), "__module__": __name__})

    def loader(name: str) -> property:
        def get(self: Any) -> Any:
            values = (ref() or self._owner)._list(name)

            def fast(self: Any, values: list[Any] = values) -> Any:
                return values[self._c]
            setattr(cls, name, property(fast, doc=f"{name} (batch column)"))
            return values[self._c]
        return property(get, doc=name)
    for name in _COLUMN_KIND:
        setattr(cls, name, loader(name))
    return cls


def _check_rc(rc: int, what: str) -> None:
    if rc == -1:
        raise SnapshotClosed(
            f"{what}: fields of the jobs given to update() that were not read during "
            "update() cannot be read afterwards (slurmctld holds its job lock only until "
            "then); read them in update() to keep them")
    if rc == -2:
        raise MemoryError(f"cannot copy {what} of the pending jobs")
    if rc:
        raise KeyError(f"{what}: not a field the shim can copy (rc {rc})")


# Job fields by kind, checked against the C struct at install(): what a
# handler may declare in SiteFactorHandler.fields and read with column().
JOB_NUMBER_FIELDS = (
    "job_id", "array_job_id", "array_task_id", "het_job_id", "het_job_offset", "user_id",
    "group_id", "job_state", "state_reason", "exit_code", "derived_ec", "priority",
    "time_limit", "time_min", "num_nodes", "num_cpus", "min_nodes", "max_nodes", "min_cpus",
    "restart_cnt", "qos_id", "assoc_id", "resv_id", "batch_flag", "requeue", "nice",
    "site_factor", "pn_min_memory", "bit_flags", "submit_time", "eligible_time",
    "start_time", "end_time", "deadline")
JOB_STRING_FIELDS = (
    "account", "admin_comment", "alloc_node", "batch_host", "burst_buffer", "comment",
    "features", "licenses", "mcs_label", "name", "nodes", "partition", "qos", "resv_name",
    "state_desc", "std_err", "std_in", "std_out", "system_comment", "tres_alloc_str",
    "tres_req_str", "tres_per_job", "tres_per_node", "tres_per_task", "user_name",
    "wckey", "work_dir")
# Not declarable: a dict per job (spank_env), derived (state, state_flags:
# declare job_state).
_NOT_COLUMNS = {"spank_env": "a dict per job", "state": "derived: declare job_state",
                "state_flags": "derived: declare job_state"}
_COLUMN_KIND: dict[str, str] = {}   # name -> memoryview format or "str"
_OFFSET: dict[str, int] = {}
_SIZE: dict[str, int] = {}


def _unknown_field(name: str) -> str:
    if name in _NOT_COLUMNS:
        return f"{name!r} cannot be a column ({_NOT_COLUMNS[name]})"
    import difflib
    close = difflib.get_close_matches(str(name), JOB_NUMBER_FIELDS + JOB_STRING_FIELDS, 1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"{name!r} is not a Job field{hint}"


def declared_fields(value: Any) -> tuple[str, ...] | None:
    """SiteFactorHandler.fields, checked: None, or a tuple of Job field
    names with job_id first.  Raises ValueError naming the bad entry."""
    if value is None:
        return None
    if isinstance(value, str) or not isinstance(value, (tuple, list, frozenset, set)):
        raise ValueError(f"must be a tuple of Job field names, not {type(value).__name__}")
    out = ["job_id"]
    for name in value:
        if not isinstance(name, str):
            raise ValueError(f"{name!r} is not a field name (a str)")
        if name not in JOB_NUMBER_FIELDS and name not in JOB_STRING_FIELDS:
            raise ValueError(_unknown_field(name))
        if name not in out:
            out.append(name)
    return tuple(out)


@functools.lru_cache(maxsize=64)
def _row_class(names: tuple[str, ...]) -> type:
    """The view of one job when a handler declares fields: a tuple of the
    declared values (job_id first) read by name."""
    ns: dict[str, Any] = {"__slots__": (), "_names": names}
    for i, name in enumerate(names):
        ns[name] = property(operator.itemgetter(i), doc=f"{name} (declared field)")
    if "job_state" in names:
        ns["state"] = Job.state
        ns["state_flags"] = Job.state_flags
        ns["_c"] = property(lambda self: self)   # Job.state reads self._c.job_state

    def __getattr__(self: Any, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        if name in JOB_NUMBER_FIELDS or name in JOB_STRING_FIELDS or name in _NOT_COLUMNS:
            raise AttributeError(
                f"JobId={self[0]}: {name!r} is not among the fields the handler declared "
                f"({', '.join(names)}): add it to the handler's `fields`")
        raise AttributeError(_unknown_field(name))

    def __repr__(self: Any) -> str:
        return "<Job " + " ".join(f"{n}={v!r}" for n, v in zip(names, self)) + ">"

    def as_dict(self: Any) -> dict[str, Any]:
        return dict(zip(names, self))
    ns.update(__getattr__=__getattr__, __repr__=__repr__, as_dict=as_dict,
              __module__=__name__, __doc__="A pending job's declared fields (read-only).")
    return type("JobRow", (tuple,), ns)


def _int_prop(name: str) -> property:
    return property(operator.attrgetter(f"_c.{name}"), doc=f"{name} (int)")


_lib: Any = None
_ffi: Any = None


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

_FORMATS = {("primitive", 4, False): "I", ("primitive", 8, True): "q",
            ("primitive", 8, False): "Q"}


def _install_columns(ffi: Any) -> None:
    """Column formats and offsets from spm_job_t; the two name lists above
    must match it (they let `slurmpy-plugins check` validate declared
    fields without the C library)."""
    nums, strs = [], []
    for name, field in ffi.typeof("spm_job_t").fields:
        if name in _INTERNAL_FIELDS or name in _RENAMED:
            continue
        t = field.type
        if t.cname == "char *":
            strs.append(name)
            _COLUMN_KIND[name] = "str"
        else:
            signed = t.cname.startswith("int")
            _COLUMN_KIND[name] = _FORMATS[(t.kind, ffi.sizeof(t), signed)]
            nums.append(name)
        _OFFSET[name], _SIZE[name] = field.offset, ffi.sizeof(t)
    if set(nums) != set(JOB_NUMBER_FIELDS) or set(strs) != set(JOB_STRING_FIELDS):
        raise RuntimeError("_records.JOB_*_FIELDS differ from spm_job_t: "
                           f"{sorted(set(nums) ^ set(JOB_NUMBER_FIELDS))} "
                           f"{sorted(set(strs) ^ set(JOB_STRING_FIELDS))}")


def install(ffi: Any, lib: Any) -> None:
    """Generate the attributes from the cffi types (once)."""
    global _installed, _lib, _ffi
    if _installed:
        return
    _lib, _ffi = lib, ffi
    _install_columns(ffi)
    _install_one(ffi, Job, "spm_job_t")
    _install_one(ffi, JobEnv, "spm_env_t")
    _installed = True
