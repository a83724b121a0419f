"""The job_submit views: :class:`JobDesc` (a typed, writable view of
job_desc_msg_t) and :class:`Partition` (a read-only copy of a partition).

Attributes are generated from the C structs in csrc/spm_types.h
(spm_jobdesc_t, spm_part_t), so that header is the one field list.

JobDesc rules:
- A field Slurm leaves unset (NULL, NO_VAL16, NO_VAL, NO_VAL64; 0 for the
  times begin_time/deadline) reads as None; assigning None unsets it.
- A uint16/uint32/uint64 field holding Slurm's INFINITE16/INFINITE/
  INFINITE64 (``--time=UNLIMITED``) reads as :data:`UNLIMITED`, and
  assigning UNLIMITED stores the INFINITE of the field's width (not for
  the memory pair, whose bit 63 is Slurm's per-CPU flag, nor the times).
- Reading or assigning a misspelled attribute raises AttributeError.
- Assigning a wrong type raises TypeError, a value out of range (or a
  string with a NUL) raises ValueError; both name the field.
- ``job.environment`` (a batch job's environment) changes item by item:
  ``job.environment["FOO"] = "bar"``, ``del job.environment["X"]``; the
  field itself cannot be assigned.
- Changes are kept here, in Python, and handed to C only when the hook
  returns normally (:meth:`JobDesc._commit`); a hook that raises leaves
  the request as it came.  After the hook has returned the view is closed:
  assigning raises RuntimeError.
"""
from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from typing import Any, Callable

from . import _lua
from ._fields import JobDescFields, PartitionFields

__all__ = ["JobDesc", "Partition", "Environment", "install", "CommitError", "UNLIMITED",
           "Unlimited", "usable"]

# Set by Slurm, not by the handler: reading is fine, assigning raises.
# user_name, default_account and default_qos are looked up by slurmctld
# (csrc/snapshot.c, as job_submit/lua does).
READ_ONLY = frozenset({"job_id", "user_id", "group_id", "alloc_node", "script",
                       "submit_line", "spank_env", "argv", "user_name", "default_account",
                       "default_qos"})
_INTERNAL = {"environment_size", "spank_job_env_size", "argv_size"}
# char ** fields read as a list (the others are NAME=value arrays: dicts)
_LISTS = frozenset({"argv"})
_RENAMED = {"spank_job_env": "spank_env"}
# The times: 0 means unset.
_TIMES = frozenset({"begin_time", "deadline"})
# The memory pair: at most one of them is set (pn_min_memory in Slurm).
_MEM_PAIR = {"min_mem_per_node": "min_mem_per_cpu", "min_mem_per_cpu": "min_mem_per_node"}


class Unlimited:
    """The type of :data:`UNLIMITED` (one instance).  It compares greater
    than every number, so ``job.time_limit > 24 * 60`` holds for it, and
    equal only to itself; it is no int (no arithmetic)."""
    __slots__ = ()
    _instance: "Unlimited | None" = None

    def __new__(cls) -> "Unlimited":
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNLIMITED"

    __str__ = __repr__

    def __reduce__(self) -> str:
        return "UNLIMITED"

    def __hash__(self) -> int:
        return hash("slurmpy_plugins.UNLIMITED")

    def __eq__(self, other: object) -> bool:
        return other is self

    def __ne__(self, other: object) -> bool:
        return other is not self

    def __gt__(self, other: object) -> bool:
        if other is self:
            return False
        if isinstance(other, (int, float)):
            return True
        return NotImplemented

    def __ge__(self, other: object) -> bool:
        if isinstance(other, (int, float)) or other is self:
            return True
        return NotImplemented

    def __lt__(self, other: object) -> bool:
        if isinstance(other, (int, float)) or other is self:
            return False
        return NotImplemented

    def __le__(self, other: object) -> bool:
        if other is self:
            return True
        if isinstance(other, (int, float)):
            return False
        return NotImplemented


#: Slurm's INFINITE ("UNLIMITED"): what ``--time=UNLIMITED`` reads as, and
#: what a handler assigns for it (``job.time_limit = UNLIMITED``).
UNLIMITED = Unlimited()


class CommitError(RuntimeError):
    """The handler's changes could not be handed to C (out of memory)."""


def _near(name: str, names: Any, section: str = "job_desc") -> str:
    """" (did you mean ...?)", or what a Lua name is here (_lua.TABLE)."""
    return _lua.hint(section, name, names)


class JobDesc(JobDescFields):
    """A job request (job_desc_msg_t) as job_submit sees it; see the module
    docstring for the rules and docs/handlers.md for the fields."""
    __slots__ = ("_c", "_changes", "_closed", "_owner")
    _fields: tuple[str, ...] = ()
    _kinds: dict[str, tuple[Any, ...]] = {}

    def __init__(self, c: Any, owner: Any = None) -> None:
        object.__setattr__(self, "_c", c)
        object.__setattr__(self, "_changes", {})
        object.__setattr__(self, "_closed", False)
        object.__setattr__(self, "_owner", owner)

    def __getattr__(self, name: str) -> Any:
        # only called when the normal lookup failed: a misspelled name
        raise AttributeError(f"job has no field {name!r}{_near(name, self._fields)}")

    def __setattr__(self, name: str, value: Any) -> None:
        kind = self._kinds.get(name)
        if kind is None:
            raise AttributeError(f"job has no field {name!r}{_near(name, self._fields)}")
        if name in READ_ONLY:
            raise AttributeError(f"job.{name} is read-only (set by Slurm)")
        if kind[0] == "strv":
            raise AttributeError(f"job.{name} cannot be assigned: change it item by item "
                                 f"(job.{name}['NAME'] = 'value', del job.{name}['NAME'])")
        if self._closed:
            raise RuntimeError(f"job.{name}: the hook has returned; changes made now "
                               "would never reach Slurm")
        value = _check(name, kind, value)
        self._changes[name] = value
        if value is not None and name in _MEM_PAIR:
            self._changes[_MEM_PAIR[name]] = None   # one of the two, as Slurm stores it

    def __delattr__(self, name: str) -> None:
        self.__setattr__(name, None)

    def as_dict(self) -> dict[str, Any]:
        """All fields (with the handler's changes) as a plain dict."""
        return {n: (dict(v) if isinstance(v, Environment) else v)
                for n in self._fields for v in (getattr(self, n),)}

    def changes(self) -> dict[str, Any]:
        """The fields the handler changed so far: {name: new value}."""
        orig = {n: _read(self._c, n, self._kinds[n]) for n in self._changes}
        return {n: v for n, v in self._changes.items() if v != orig[n]}

    @classmethod
    def fields(cls) -> tuple[str, ...]:
        return cls._fields

    def __repr__(self) -> str:
        jid = self.job_id
        return f"<JobDesc{' ' + str(jid) if jid is not None else ''} {self.name!r}>"

    # -- C side ------------------------------------------------------------
    def _close(self) -> None:
        object.__setattr__(self, "_closed", True)

    def _commit(self, out: Any, arena: Any, lib: Any, ffi: Any) -> None:
        """Write the changes into the C record `out` (strings copied into
        the call's arena)."""
        for name, value in self._changes.items():
            kind = self._kinds[name]
            if kind[0] == "strv":      # the environment: a new array
                if value == _strv(self._c, name):
                    continue
                arr = lib.spm_arena_strv(arena, len(value))
                if not arr:
                    raise CommitError(f"out of memory storing job.{name}")
                for i, (k, v) in enumerate(value.items()):
                    p = lib.spm_arena_strdup(arena, f"{k}={v}".encode("utf-8",
                                                                       "surrogateescape"))
                    if not p:
                        raise CommitError(f"out of memory storing job.{name}")
                    arr[i] = p
                setattr(out, name, arr)
                setattr(out, f"{name}_size", len(value))
            elif kind[0] == "str":
                if value is None:
                    setattr(out, name, ffi.NULL)
                else:
                    p = lib.spm_arena_strdup(arena, value.encode("utf-8", "surrogateescape"))
                    if not p:
                        raise CommitError(f"out of memory storing job.{name}")
                    setattr(out, name, p)
            else:
                setattr(out, name, _c_int(kind, value))


def _c_int(kind: tuple[Any, ...], value: Any) -> int:
    """What C stores for a checked value of an int field."""
    if value is None:
        return int(kind[2])
    if value is UNLIMITED:
        return int(kind[3])
    return int(value)


def _read(c: Any, name: str, kind: tuple[Any, ...]) -> Any:
    raw = getattr(c, name)
    if kind[0] == "str":
        return _ffi.string(raw).decode("utf-8", "surrogateescape") if raw else None
    if kind[0] == "strv":
        return _strv(c, name)
    if kind[0] == "strl":
        return _strl(c, name)
    if raw == kind[2]:
        return None
    if raw == kind[3]:
        return UNLIMITED
    return raw


def _strv(c: Any, name: str) -> dict[str, str]:
    v = getattr(c, name)
    out: dict[str, str] = {}
    if not v:
        return out
    for i in range(getattr(c, f"{name}_size")):
        p = v[i]
        if p:
            key, _, value = _ffi.string(p).decode("utf-8", "surrogateescape").partition("=")
            out[key] = value
    return out


def _strl(c: Any, name: str) -> list[str]:
    v = getattr(c, name)
    if not v:
        return []
    return [_ffi.string(v[i]).decode("utf-8", "surrogateescape")
            for i in range(getattr(c, f"{name}_size")) if v[i]]


class Environment(MutableMapping[str, str]):
    """``job.environment``: the batch job's environment as sbatch sent it
    (NAME -> value), with the handler's changes.  Setting or deleting a
    variable changes the job's environment when the hook returns normally
    (as job_submit/lua's ``job_desc.environment[NAME] = value``).  Only a
    batch submission (sbatch: ``job.script`` set) carries an environment;
    changing it on any other request raises AttributeError.  Names must be
    non-empty str without ``=`` or NUL, values str without NUL."""
    __slots__ = ("_job", "_name")

    def __init__(self, job: "JobDesc", name: str = "environment") -> None:
        self._job = job
        self._name = name

    def _data(self) -> dict[str, str]:
        ch = self._job._changes
        if self._name in ch:
            return ch[self._name]   # type: ignore[no-any-return]
        return _strv(self._job._c, self._name)

    def _writable(self) -> dict[str, str]:
        job, name = self._job, self._name
        if job._closed:
            raise RuntimeError(f"job.{name}: the hook has returned; changes made now "
                               "would never reach Slurm")
        if not getattr(job._c, name):
            raise AttributeError(f"job.{name}: this request carries no environment to "
                                 "change (only a batch submission, sbatch, sends one)")
        ch = job._changes
        if name not in ch:
            ch[name] = _strv(job._c, name)
        return ch[name]   # type: ignore[no-any-return]

    def _key(self, key: Any) -> str:
        name = self._name
        if not isinstance(key, str):
            raise TypeError(f"job.{name}: a variable name must be a str, "
                            f"not {type(key).__name__}")
        if not key or "=" in key or "\0" in key:
            raise ValueError(f"job.{name}[{key!r}]: a variable name must be non-empty and "
                             "contain no '=' and no NUL character")
        return key

    def __getitem__(self, key: str) -> str:
        return self._data()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._data()))

    def __len__(self) -> int:
        return len(self._data())

    def __setitem__(self, key: str, value: str) -> None:
        key = self._key(key)
        if not isinstance(value, str):
            raise TypeError(f"job.{self._name}[{key!r}] must be a str, "
                            f"not {type(value).__name__}")
        if "\0" in value:
            raise ValueError(f"job.{self._name}[{key!r}] must not contain a NUL character")
        try:
            f"{key}={value}".encode("utf-8", "surrogateescape")
        except UnicodeEncodeError as e:
            raise ValueError(f"job.{self._name}[{key!r}]: cannot be encoded: {e}") from None
        self._writable()[key] = value

    def __delitem__(self, key: str) -> None:
        key = self._key(key)
        data = self._writable()
        if key not in data:
            raise KeyError(key)
        del data[key]

    def __repr__(self) -> str:
        return f"Environment({self._data()!r})"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Environment):
            return self._data() == other._data()
        if isinstance(other, dict):
            return self._data() == other
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]


def _check(name: str, kind: tuple[Any, ...], value: Any) -> Any:
    """A value for field `name`, checked; None unsets."""
    if value is None:
        return None
    if kind[0] == "str":
        if not isinstance(value, str):
            raise TypeError(f"job.{name} must be a str or None, not {type(value).__name__}")
        if "\0" in value:
            raise ValueError(f"job.{name} must not contain a NUL character")
        try:
            value.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError as e:
            raise ValueError(f"job.{name}: cannot be encoded: {e}") from None
        return value
    if value is UNLIMITED:
        if kind[3] is None:
            raise ValueError(f"job.{name} cannot be UNLIMITED (Slurm has no unlimited value "
                             "for it): give a number, or None to unset it")
        return UNLIMITED
    if not isinstance(value, int) or isinstance(value, bool):
        ok = "an int, UNLIMITED or None" if kind[3] is not None else "an int or None"
        raise TypeError(f"job.{name} must be {ok}, not {type(value).__name__}")
    lo, hi = kind[1]
    if not lo <= value <= hi:
        alt = "UNLIMITED, or None to unset it" if kind[3] is not None else "None to unset it"
        raise ValueError(f"job.{name}={value} is out of range: it must be from {lo} to {hi}"
                         f" (or {alt})")
    return int(value)


def _field_prop(name: str, kind: tuple[Any, ...]) -> property:
    def get(self: Any) -> Any:
        ch = self._changes
        if name in ch:
            return ch[name]
        return _read(self._c, name, kind)
    get.__name__ = name
    return property(get, doc=f"{name} ({kind[0]})")


class Partition(PartitionFields):
    """A copy of one partition, as slurmctld had it when the call began.
    Time limits are minutes; None means "not set" or "UNLIMITED"."""
    __slots__ = ("_c", "_owner")
    _fields: tuple[str, ...] = ()

    def __init__(self, c: Any, owner: Any = None) -> None:
        self._c = c
        self._owner = owner

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(f"partition has no field {name!r}"
                             f"{_near(name, self._fields, 'part_list')}")

    def as_dict(self) -> dict[str, Any]:
        return {n: getattr(self, n) for n in self._fields}

    def __repr__(self) -> str:
        return f"<Partition {self.name} {self.state}>"


def usable(part: Partition, user_id: int, submit_uid: int) -> bool:
    """Whether job_submit/lua puts `part` in its ``part_list`` for a
    request of `user_id` sent by `submit_uid` (its _user_can_use_part()):
    root (user_id 0) may use every partition without the NoRoot flag;
    others none with RootOnly unless root submits, and, where AllowGroups=
    gives a uid list (``allow_uids``), only if they are in it.  Nothing
    else (AllowAccounts, AllowQos, DenyAccounts, DenyQos, the state) is
    checked, as in Lua."""
    flags = part.flags
    if user_id == 0:
        return not flags & _lib.SPM_PART_FLAG_NO_ROOT
    if flags & _lib.SPM_PART_FLAG_ROOT_ONLY and submit_uid != 0:
        return False
    uids = part.allow_uids
    return uids is None or user_id in uids


_ffi: Any = None
_lib: Any = None
_installed = False


def install(ffi: Any, lib: Any) -> None:
    """Generate the attributes from the cffi types (once)."""
    global _ffi, _lib, _installed
    if _installed:
        return
    _ffi, _lib = ffi, lib
    sentinel = {"uint16_t": lib.SPM_NO_VAL16, "uint32_t": lib.SPM_NO_VAL,
                "uint64_t": lib.SPM_NO_VAL64, "int64_t": 0}
    # UNLIMITED by width: Slurm's INFINITE16/INFINITE/INFINITE64 (none for
    # the times, and none for the memory pair: bit 63 is MEM_PER_CPU)
    infinite = {"uint16_t": lib.SPM_INFINITE16, "uint32_t": lib.SPM_INFINITE,
                "uint64_t": lib.SPM_INFINITE64}
    names: list[str] = []
    kinds: dict[str, tuple[Any, ...]] = {}
    kind: tuple[Any, ...]
    for name, field in ffi.typeof("spm_jobdesc_t").fields:
        if name in _INTERNAL:
            continue
        cname = field.type.cname
        public = _RENAMED.get(name, name)
        if cname == "char *":
            kind = ("str", None, None, None)
        elif cname == "char * *" and name in _LISTS:
            kind = ("strl", None, None, None)
        elif cname == "char * *":
            kind = ("strv", None, None, None)
        elif cname in sentinel:
            unset = sentinel[cname]
            # the largest value a handler may set: below Slurm's unset
            # (and "unlimited") values
            hi = (1 << 63) - 1 if cname == "int64_t" else unset - 1
            if name == "min_mem_per_node":   # MEM_PER_CPU set means per CPU
                hi = lib.SPM_MEM_PER_CPU - 1
            elif name == "min_mem_per_cpu":  # flagged: below NO_VAL64, INFINITE64
                hi = (lib.SPM_NO_VAL64 & ~lib.SPM_MEM_PER_CPU) - 1
            lo = 1 if name in _TIMES else 0
            kind = ("int", (lo, hi), unset,
                    None if name in _MEM_PAIR else infinite.get(cname))
        else:  # a new field kind in the header must be mapped here first
            raise TypeError(f"spm_jobdesc_t.{name}: no Python mapping for {cname}")
        if kind[0] == "strl":
            def strl_get(self: Any, cn: str = name) -> list[str]:
                return _strl(self._c, cn)
            setattr(JobDesc, public, property(strl_get, doc=f"{public} (list, read-only)"))
        elif kind[0] == "strv" and public not in READ_ONLY:
            def env_get(self: Any, cn: str = name) -> Environment:
                return Environment(self, cn)
            setattr(JobDesc, public, property(env_get, doc=f"{public} (Environment)"))
        elif kind[0] == "strv":
            def strv_get(self: Any, cn: str = name) -> dict[str, str]:
                return _strv(self._c, cn)
            setattr(JobDesc, public, property(strv_get, doc=f"{public} (dict, read-only)"))
        else:
            setattr(JobDesc, public, _field_prop(name, kind))
        kinds[public] = kind
        names.append(public)
    JobDesc._fields = tuple(names)
    JobDesc._kinds = kinds

    pnames = []
    limit = {lib.SPM_NO_VAL, lib.SPM_INFINITE}
    for name, field in ffi.typeof("spm_part_t").fields:
        cname = field.type.cname
        get: Callable[..., Any]
        if name == "allow_uids_size":
            continue
        if name == "allow_uids":
            def get(self: Any) -> Any:
                v = self._c.allow_uids
                return None if not v else tuple(v[i] for i in range(self._c.allow_uids_size))
        elif cname == "char *":
            def get(self: Any, name: str = name) -> Any:
                p = getattr(self._c, name)
                return _ffi.string(p).decode("utf-8", "surrogateescape") if p else None
        elif name == "is_default":
            def get(self: Any, name: str = name) -> Any:
                return bool(self._c.is_default)
        elif name in ("max_time", "default_time", "max_nodes", "max_cpus_per_node"):
            def get(self: Any, name: str = name) -> Any:
                v = getattr(self._c, name)
                return None if v in limit else v
        else:
            def get(self: Any, name: str = name) -> Any:
                return getattr(self._c, name)
        public = "default" if name == "is_default" else name
        setattr(Partition, public, property(get, doc=f"{public}"))
        pnames.append(public)
    Partition._fields = tuple(pnames)
    _installed = True
