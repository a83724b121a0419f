"""Test a handler without a cluster, with the daemon's own semantics.

The records (:class:`~slurmpy_plugins.Job`, :class:`~slurmpy_plugins.JobEnv`,
:class:`~slurmpy_plugins.JobDesc`, :class:`~slurmpy_plugins.Partition`) are
the daemon's own classes over the same C structs (csrc/spm_types.h, read by
cffi in ABI mode: no compiler, no Slurm): the same fields, types, None and
sentinel rules, and the same AttributeError on a typo.  Make them from
keyword arguments (:func:`make_job`, :func:`make_env`, :func:`make_job_desc`,
:func:`make_partition`) or from a real cluster's ``squeue --json`` /
``scontrol show job --json`` output (:func:`jobs_from_json`).

Run a hook with :func:`run_prep`, :func:`run_set`, :func:`run_update`,
:func:`run_submit`, :func:`run_modify`, :func:`run_job_end` or
:func:`run_job_start` (on a :func:`make_completed_job` record): each goes
through the same decision code the daemons run (slurmpy_plugins._calls,
_jobsubmit and _jobcomp) and
returns the outcome Slurm acts on, with the log lines the daemon would
write.  The settings that change a call's outcome are keyword arguments
with the daemons' defaults (timeout=: prep none, site_factor, job_submit
and jobcomp 5 s; on_failure= for job_submit), and a timed-out call is
answered and interrupted as the daemon does it.  The pytest plugin (slurmpy_plugins.pytest_plugin) wraps these in
fixtures.
"""
from __future__ import annotations

import dataclasses
import difflib
import json
import logging
import os
import sys
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Callable

from . import _abi, _calls, _chain, _comprecord, _config, _context, _errno, _factors, _jobcomp, _jobdesc
from . import _jobsubmit, _loader, _log, _plugins, _records, _spank
from ._comprecord import CompletedJob
from ._handlers import JobSubmitHandler, PrEpHandler, SiteFactorHandler, SpankHandler
from ._jobdesc import JobDesc, Partition
from ._records import JOB_STATES, Job, JobEnv, JobList

__all__ = [
    "make_job", "make_env", "make_job_desc", "make_partition", "jobs_from_json",
    "job_from_json", "env_from_json", "load_handler", "load_handlers",
    "make_completed_job", "sbatch_defaults", "run_prep", "run_set", "run_update", "run_submit",
    "run_modify",
    "run_job_end", "run_job_start", "run_spank",
    "PrEpOutcome", "SpankOutcome", "FactorOutcome", "UpdateOutcome", "SubmitOutcome", "JobCompOutcome",
    "NICE_OFFSET", "PROLOG_DRAIN_REASON", "EPILOG_DRAIN_REASON",
]

ffi, lib = _abi.ffi, _abi.lib

if _context.lib is not None and _context.lib is not lib:
    raise ImportError("slurmpy_plugins.testing is for tests outside the daemons; "
                      "it cannot be imported inside slurmctld or slurmd")
_records.install(ffi, lib)
_jobdesc.install(ffi, lib)
_jobsubmit.install(ffi, lib)
_jobcomp.install(lib)
_factors.install(lib)
_context.bind(ffi, lib)
_calls.install(ffi, lib)

#: What slurmctld adds to a signed factor to store it (job_record_t.site_factor):
#: the factors.c static asserts tie it to SPM_FACTOR_MIN.
NICE_OFFSET: int = -lib.SPM_FACTOR_MIN
#: The node reason slurmctld itself sets when a slurmd prolog / epilog
#: fails (src/slurmctld/node_mgr.c and job_mgr.c, 22.05 to 26.05 alike).
#: prep/python drains the node first with the handler's reason
#: (PrEpOutcome.drain_reason), so a node shows these only when that drain
#: could not reach slurmctld.
PROLOG_DRAIN_REASON = "Prolog error"
EPILOG_DRAIN_REASON = "Epilog error"

_STATE_INDEX = {name: i for i, name in enumerate(JOB_STATES)}


# -- records from keyword arguments -------------------------------------------

def _near(name: str, names: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(names), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


class _Keep:
    """Owns the C memory of one kit record (the record's _owner)."""

    def __init__(self) -> None:
        self.objs: list[Any] = []

    def cstr(self, value: str) -> Any:
        p = ffi.new("char[]", value.encode("utf-8", "surrogateescape"))
        self.objs.append(p)
        return p

    def strv(self, entries: Mapping[str, str]) -> tuple[Any, int]:
        ps = [self.cstr(f"{k}={v}") for k, v in entries.items()]
        arr = ffi.new("char *[]", ps or 1)
        self.objs.append(arr)
        return arr, len(ps)


def _fill(what: str, c: Any, ctype: str, public: Mapping[str, str], values: Mapping[str, Any],
          keep: _Keep, sizes: Mapping[str, str]) -> None:
    """Store keyword values into a C struct, checked as the C types demand.
    `public` maps a public name to its C field."""
    ftypes = dict(ffi.typeof(ctype).fields)
    for name, value in values.items():
        field = public.get(name)
        if field is None:
            raise AttributeError(f"{what} has no field {name!r}{_near(name, public)}")
        cname = ftypes[field].type.cname
        if value is None:
            if cname in ("char *", "char * *"):
                continue
            raise TypeError(f"{what}.{name} is an int field: None is not a value for it")
        if cname == "char *":
            if not isinstance(value, str):
                raise TypeError(f"{what}.{name} must be a str or None, not {type(value).__name__}")
            if "\0" in value:
                raise ValueError(f"{what}.{name} must not contain a NUL character")
            setattr(c, field, keep.cstr(value))
        elif cname == "char * *":
            if not isinstance(value, Mapping):
                raise TypeError(f"{what}.{name} must be a dict of str, not {type(value).__name__}")
            arr, n = keep.strv({str(k): str(v) for k, v in value.items()})
            setattr(c, field, arr)
            setattr(c, sizes[field], n)
        else:
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"{what}.{name} must be an int, not {type(value).__name__}")
            try:
                setattr(c, field, value)
            except OverflowError:
                raise ValueError(f"{what}.{name}={value} does not fit its C type {cname}") from None


def _public_map(ctype: str, renamed: Mapping[str, str], internal: set[str]) -> dict[str, str]:
    return {renamed.get(n, n): n for n, _ in ffi.typeof(ctype).fields if n not in internal}


_JOB_PUBLIC = _public_map("spm_job_t", _records._RENAMED, _records._INTERNAL_FIELDS)
_ENV_PUBLIC = _public_map("spm_env_t", _records._RENAMED, _records._INTERNAL_FIELDS)


def make_job(*, state: str | None = None, **fields: Any) -> Job:
    """A :class:`Job` as slurmctld would copy it: ints default to 0, strings
    to None (Slurm's NULL).  ``state="RUNNING"`` sets ``job_state``; ``nice``
    and ``site_factor`` are signed, as a handler reads them (NICE_OFFSET
    removed).  A misspelled field raises AttributeError, a wrong type
    TypeError, a value the C field cannot hold ValueError."""
    keep = _Keep()
    c = ffi.new("spm_job_t *")
    keep.objs.append(c)
    c.strings_loaded = 1
    if state is not None:
        if state not in _STATE_INDEX:
            raise ValueError(f"job state {state!r} is not one of {', '.join(JOB_STATES)}")
        fields = {"job_state": _STATE_INDEX[state], **fields}
    _fill("job", c, "spm_job_t", _JOB_PUBLIC, fields, keep,
          {"spank_job_env": "spank_job_env_size"})
    return Job(c, keep)


def make_env(**fields: Any) -> JobEnv:
    """A :class:`JobEnv` as slurmd hands it to prolog()/epilog():
    ``spank_env`` and ``gres_env`` are dicts (``gres_env`` holds what the
    GRES plugins set for the job, e.g. ``{"CUDA_VISIBLE_DEVICES": "0,1"}``)."""
    keep = _Keep()
    c = ffi.new("spm_env_t *")
    keep.objs.append(c)
    _fill("env", c, "spm_env_t", _ENV_PUBLIC, fields, keep,
          {"spank_job_env": "spank_job_env_size", "gres_job_env": "gres_job_env_size"})
    return JobEnv(c, keep)


# Set by Slurm, so a test may give them (a handler may not change them).
_JD_SIZES = {"environment": "environment_size", "spank_job_env": "spank_job_env_size",
             "argv": "argv_size"}


_WRAP_SCRIPT = "#!/bin/sh\n# This script was created by sbatch --wrap.\n\ntrue\n"


def sbatch_defaults() -> dict[str, Any]:
    """What ``sbatch --wrap=true`` run by the calling user from the current
    directory sends, as a handler sees it (captured from Slurm 22.05's
    sbatch): the fields make_job_desc() fills unless told otherwise."""
    import pwd
    import socket
    uid, gid, cwd = os.getuid(), os.getgid(), os.getcwd()
    user_name: str | None
    try:
        pw = pwd.getpwuid(uid)
        user, home = pw.pw_name, pw.pw_dir
        user_name = user
    except KeyError:       # slurmctld finds no name either: user_name None
        user, home, user_name = str(uid), "/", None
    # default_account/default_qos: None (no accounting); argv: none for --wrap
    return {"user_id": uid, "group_id": gid, "user_name": user_name, "name": "wrap",
            "script": _WRAP_SCRIPT,
            "work_dir": cwd, "std_in": "/dev/null", "alloc_node": socket.gethostname().split(".")[0],
            "submit_line": "sbatch --wrap=true", "min_cpus": 1, "contiguous": 0, "immediate": 0,
            "mail_type": 0,
            "environment": {"HOME": home, "USER": user, "PWD": cwd,
                            "PATH": os.environ.get("PATH", "/usr/bin:/bin")}}


def make_job_desc(*, bare: bool = False, **fields: Any) -> JobDesc:
    """A job request as job_submit's submit() sees it: what ``sbatch
    --wrap=true`` sends (:func:`sbatch_defaults`: the caller's user_id and
    group_id, name "wrap", its script, work_dir the current directory...)
    with `fields` over it, every other field unset (None).  ``bare=True``:
    every field unset unless given, as in the request ``scontrol update``
    sends (run_modify()).  Values are checked with the daemon's own rules
    (the ones assignment in a handler uses).  ``environment`` and
    ``spank_env`` are dicts, ``argv`` a list of str; read-only fields
    (job_id, user_id, script, user_name, default_account, default_qos,
    argv...) may be given here since Slurm sets them (default_account and
    default_qos are None unless given, as without accounting)."""
    if not bare:
        fields = {**sbatch_defaults(), **fields}
    keep = _Keep()
    c = ffi.new("spm_jobdesc_t *")
    keep.objs.append(c)
    kinds = JobDesc._kinds
    for name, kind in kinds.items():       # start from "unset"
        field = {v: k for k, v in _jobdesc._RENAMED.items()}.get(name, name)
        if kind[0] == "int":
            setattr(c, field, kind[2])
    for name, value in fields.items():
        if name not in kinds:
            raise AttributeError(f"job has no field {name!r}{_jobdesc._near(name, JobDesc._fields)}")
        kind = kinds[name]
        field = {v: k for k, v in _jobdesc._RENAMED.items()}.get(name, name)
        if kind[0] == "strl":
            if value is None:
                continue
            if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or \
                    not all(isinstance(s, str) for s in value):
                raise TypeError(f"job.{name} must be a list of str, not {type(value).__name__}")
            ps = [keep.cstr(s) for s in value]
            arr = ffi.new("char *[]", ps or 1)
            keep.objs.append(arr)
            setattr(c, field, arr if ps else ffi.NULL)
            setattr(c, _JD_SIZES[field], len(ps))
            continue
        if kind[0] == "strv":
            if value is None:
                continue
            if not isinstance(value, Mapping):
                raise TypeError(f"job.{name} must be a dict of str, not {type(value).__name__}")
            arr, n = keep.strv({str(k): str(v) for k, v in value.items()})
            setattr(c, field, arr)
            setattr(c, _JD_SIZES[field], n)
            continue
        value = _jobdesc._check(name, kind, value)
        if value is None:
            continue
        if kind[0] == "str":
            setattr(c, field, keep.cstr(value))
        else:
            setattr(c, field, _jobdesc._c_int(kind, value))
    if fields.get("min_mem_per_node") is not None and fields.get("min_mem_per_cpu") is not None:
        raise ValueError("job: give at most one of min_mem_per_node and min_mem_per_cpu "
                         "(Slurm stores one pn_min_memory)")
    return JobDesc(c, keep)


def make_partition(name: str, *, default: bool = False, **fields: Any) -> Partition:
    """A :class:`Partition`: limits given as None (or left out) are
    "UNLIMITED" for max_time/max_nodes/max_cpus_per_node and "not set" for
    default_time, as slurmctld reports them.  ``allow_uids``: the uids
    the partition's AllowGroups= resolves to (None: no uid filter), which
    :attr:`JobSubmitHandler.usable_partitions` filters on."""
    keep = _Keep()
    c = ffi.new("spm_part_t *")
    keep.objs.append(c)
    c.name = keep.cstr(name)
    c.is_default = int(bool(default))
    c.state = keep.cstr("UP")
    unlimited = {"max_time": lib.SPM_INFINITE, "max_nodes": lib.SPM_INFINITE,
                 "max_cpus_per_node": lib.SPM_INFINITE, "default_time": lib.SPM_NO_VAL}
    for f, v in unlimited.items():
        setattr(c, f, v)
    given = {k: v for k, v in fields.items() if not (k in unlimited and v is None)}
    uids = given.pop("allow_uids", None)
    if uids is not None:      # the uids AllowGroups= resolves to
        if isinstance(uids, (str, bytes)) or not isinstance(uids, Iterable):
            raise TypeError(f"partition.allow_uids must be a list of int or None, "
                            f"not {type(uids).__name__}")
        uids = list(uids)
        if not all(isinstance(u, int) and not isinstance(u, bool) and 0 <= u < 2**32
                   for u in uids):
            raise ValueError(f"partition.allow_uids: {uids!r} holds something that is not "
                             "a uid")
        arr = ffi.new("uint32_t[]", uids or 1)
        keep.objs.append(arr)
        c.allow_uids, c.allow_uids_size = arr, len(uids)
    public = {n: n for n, _ in ffi.typeof("spm_part_t").fields
              if n not in ("name", "is_default", "allow_uids", "allow_uids_size")}
    _fill("partition", c, "spm_part_t", public, given, keep, {})
    return Partition(c, keep)


# -- records from a real cluster's JSON ----------------------------------------

# spm_job_t field -> the key(s) squeue --json / scontrol show job --json use
# (22.05 and 24.11 name them alike; 24.11 wraps numbers in {set, infinite,
# number} and job_state in a list).  Fields with no JSON counterpart keep
# make_job's default (spank_env, site_factor, qos_id, resv_id, bit_flags,
# state_reason: JSON gives the reason's name, the record holds Slurm's enum).
_JSON_KEYS = {
    "job_id": "job_id", "array_job_id": "array_job_id", "array_task_id": "array_task_id",
    "het_job_id": "het_job_id", "het_job_offset": "het_job_offset",
    "user_id": "user_id", "group_id": "group_id", "exit_code": "exit_code",
    "derived_ec": "derived_exit_code", "priority": "priority", "time_limit": "time_limit",
    "time_min": "time_minimum", "num_nodes": "node_count", "num_cpus": "cpus",
    "min_nodes": "node_count", "max_nodes": "max_nodes", "min_cpus": "cpus",
    "restart_cnt": "restart_cnt", "assoc_id": "association_id", "batch_flag": "batch_flag",
    "requeue": "requeue", "nice": "nice", "submit_time": "submit_time",
    "eligible_time": "eligible_time", "start_time": "start_time", "end_time": "end_time",
    "deadline": "deadline", "account": "account", "admin_comment": "admin_comment",
    "alloc_node": "allocating_node", "batch_host": "batch_host",
    "burst_buffer": "burst_buffer", "comment": "comment", "features": "features",
    "licenses": "licenses", "mcs_label": "mcs_label", "name": "name", "nodes": "nodes",
    "partition": "partition", "qos": "qos", "resv_name": "resv_name",
    "state_desc": "state_description", "std_err": "standard_error",
    "std_in": "standard_input", "std_out": "standard_output",
    "system_comment": "system_comment", "tres_alloc_str": "tres_alloc_str",
    "tres_req_str": "tres_req_str", "tres_per_job": "tres_per_job",
    "tres_per_node": "tres_per_node", "tres_per_task": "tres_per_task",
    "user_name": "user_name", "wckey": "wckey", "work_dir": "current_working_directory",
}
_unmapped = set(_JSON_KEYS) - set(_JOB_PUBLIC)
if _unmapped:   # the header lost a field: this table must follow
    raise ImportError(f"testing._JSON_KEYS names fields spm_job_t does not have: {_unmapped}")
_MEM_PER_CPU = 1 << 63      # slurm.h MEM_PER_CPU


class JSONError(ValueError):
    """Slurm JSON this kit cannot read; the message names the job and key."""


def _json_number(value: Any, where: str) -> int | None:
    """22.05: an int or null; 24.11: {"set", "infinite", "number"}.  None
    for "not set"; SPM_INFINITE for "infinite"."""
    if isinstance(value, dict):
        if value.get("infinite"):
            return int(lib.SPM_INFINITE)
        if not value.get("set", True):
            return None
        value = value.get("number")
    if value is None:
        return None
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (int, float)):
        return int(value)
    raise JSONError(f"{where}: expected a number, got {value!r}")


def _json_exit(value: Any, where: str) -> int | None:
    if isinstance(value, dict) and "return_code" in value:   # 24.11
        rc = _json_number(value["return_code"], where) or 0
        sig = _json_number(value.get("signal", {}).get("id"), where) or 0
        return ((rc & 0xFF) << 8) | (sig & 0x7F)
    return _json_number(value, where)


def job_from_json(obj: Mapping[str, Any]) -> Job:
    """One job object of ``squeue --json`` / ``scontrol show job --json``
    (Slurm 22.05 or 24.11) as slurmctld would copy it for a handler.
    Empty strings read as None (Slurm's JSON writes NULL strings as "")."""
    jid = obj.get("job_id", "?")
    fields: dict[str, Any] = {}
    for field, key in _JSON_KEYS.items():
        if key not in obj:
            continue
        where = f"job {jid}: {key!r}"
        raw = obj[key]
        cname = dict(ffi.typeof("spm_job_t").fields)[field].type.cname
        if cname == "char *":
            if raw in ("", None):
                continue
            if not isinstance(raw, str):
                raise JSONError(f"{where}: expected a string, got {raw!r}")
            fields[field] = raw
            continue
        value = _json_exit(raw, where) if field in ("exit_code", "derived_ec") else \
            _json_number(raw, where)
        if value is None:    # null: Slurm's unset (nice: none given, i.e. 0)
            value = 0 if field in ("nice", "exit_code", "derived_ec") else int(lib.SPM_NO_VAL)
        if field == "nice":
            value = value if value < 1 << 31 else value - NICE_OFFSET
        fields[field] = value
    state = obj.get("job_state")
    if isinstance(state, list):          # 24.11: ["PENDING", flags...]
        state = state[0] if state else None
    mem_cpu = _json_number(obj.get("memory_per_cpu"), f"job {jid}: memory_per_cpu")
    mem_node = _json_number(obj.get("memory_per_node"), f"job {jid}: memory_per_node")
    if mem_cpu is not None and mem_cpu != lib.SPM_INFINITE:
        fields["pn_min_memory"] = mem_cpu | _MEM_PER_CPU
    elif mem_node is not None and mem_node != lib.SPM_INFINITE:
        fields["pn_min_memory"] = mem_node
    if state is not None and state not in _STATE_INDEX:
        raise JSONError(f"job {jid}: job_state {state!r} is not one of {', '.join(JOB_STATES)}")
    return make_job(state=state, **fields)


def jobs_from_json(source: str | bytes | os.PathLike[str] | Mapping[str, Any],
                   *, states: Iterable[str] | None = None) -> list[Job]:
    """The jobs of ``squeue --json`` / ``scontrol show job --json`` output:
    a parsed dict, the JSON text, or a file path.  ``states`` keeps only
    jobs in those base states (e.g. ``("PENDING",)``)."""
    if isinstance(source, Mapping):
        data = source
    elif isinstance(source, (str, bytes)) and source.lstrip()[:1] in ("{", b"{"):
        data = json.loads(source)
    else:
        with open(source, encoding="utf-8") as f:
            data = json.load(f)
    if not isinstance(data, Mapping) or not isinstance(data.get("jobs"), list):
        raise JSONError("not squeue/scontrol JSON: no \"jobs\" list at the top level")
    jobs = [job_from_json(o) for o in data["jobs"]]
    if states is not None:
        wanted = set(states)
        jobs = [j for j in jobs if j.state in wanted]
    return jobs


def env_from_json(obj: Mapping[str, Any], **fields: Any) -> JobEnv:
    """A prolog/epilog :class:`JobEnv` for a job of squeue/scontrol JSON
    (job_id, uid, gid, user_name, partition, node_list, work_dir); keyword
    arguments add or override fields (gres_env, spank_env, step_id...)."""
    job = job_from_json(obj)
    base: dict[str, Any] = {"job_id": job.job_id, "uid": job.user_id, "gid": job.group_id,
                            "user_name": job.user_name, "partition": job.partition,
                            "node_list": job.nodes, "work_dir": job.work_dir}
    base.update(fields)
    return make_env(**base)


# -- handlers --------------------------------------------------------------------

_BASES = {r.kind: r.base for r in _context.PLUGIN.values()}   # the plugin table (_plugins.py)


def load_handler(spec: str, *, path: str | Sequence[str], kind: str,
                 venv: str | None = None) -> Any:
    """Load `module:Class` from `path` with the daemons' own loader and
    permission checks (files owned by root, the SlurmUser or you, not
    writable by others).  Raises _loader.HandlerError with the daemon's
    message."""
    base = _BASES[kind]
    paths = (path,) if isinstance(path, str) else tuple(path)
    params = f"handler={spec},path={':'.join(paths)}" + (f",venv={venv}" if venv else "")
    row = _context.PLUGIN[_ctx_of(kind)]
    cfg = _config.parse(params, conf_key=row.conf_source, conf_path=None)
    return _loader.load(cfg, base, {0, os.getuid()}).instance


def load_handlers(directory: str, *, kind: str, path: str | Sequence[str] = (),
                  venv: str | None = None) -> Any:
    """Load a ``handlers=<directory>`` set as the daemon does (every
    ``*.py`` file in file-name order, each defining one handler class,
    checked as the daemon checks it): one handler that runs them all, to
    pass to run_prep(), run_submit() & co.  Raises _loader.HandlerError
    with the daemon's message."""
    base = _BASES[kind]
    paths = (path,) if isinstance(path, str) else tuple(path)
    params = f"handlers={directory}" + (f",path={':'.join(paths)}" if paths else "") + \
        (f",venv={venv}" if venv else "")
    ctx = _ctx_of(kind)
    row = _context.PLUGIN[ctx]
    cfg = _config.parse(params, conf_key=row.conf_source, conf_path=None)
    return _loader.load(cfg, base, {0, os.getuid()}, tuple(_context.HOOKS[ctx].values())).instance


def _ctx_of(kind: str) -> int:
    return _plugins.by_kind(_context.PLUGIN, kind).ctx


def _context_for(handler: Any, kind: str, *, timeout: float | None = None,
                 on_failure: str = "reject") -> _context.Context:
    """The handler as the daemon holds it once loaded, with the settings
    given.  What the daemon's load checks beyond importing (a
    SiteFactorHandler's `fields`) is checked here too: a handler the daemon
    would refuse to load is held as the daemon holds it then, with no
    usable handler, so that every call fails closed."""
    base = _BASES[kind]
    if isinstance(handler, type):
        handler = handler()
    if not isinstance(handler, base):
        raise TypeError(f"{type(handler).__name__} is not a {base.__name__} subclass")
    ctx = _ctx_of(kind)
    c = _context.Context(ctx)
    module = sys.modules.get(type(handler).__module__)
    mfile = getattr(module, "__file__", None) or "?"
    members = _chain.members_of(handler)
    if members:      # load_handlers(): its directory is where errors point
        mfile = os.path.dirname(members[0].path)
    c.cfg = _config.Config(conf_key=_context.PLUGIN[ctx].conf_source, module=type(handler).__module__,
                           cls=type(handler).__name__,
                           path=(os.path.dirname(mfile),) if mfile != "?" else (),
                           timeout=timeout, on_failure=on_failure)
    try:
        fields = _loader._declared_fields(type(handler), mfile, c.cfg.handler)
    except _loader.HandlerError as e:
        c.loaded, c.error = None, _context.refusal(_context.PREFIX[ctx], e)
        return c
    c.loaded = _loader.Loaded(instance=handler, module_file=mfile, signature=(), fields=fields)
    c.error = None
    return c


def _limit_ms(ctx: int, timeout: float | None) -> int | None:
    """timeout= checked as the daemon checks it (more than 0, at most
    86400 s: a ValueError with the daemon's message otherwise), in ms as
    the daemon applies it; None: no limit."""
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(f"timeout must be a number of seconds, not {type(timeout).__name__}")
    seconds = _config._seconds(_context.PLUGIN[ctx].conf_source, "timeout", str(timeout), allow_zero=False)
    return max(1, int(seconds * 1000))    # _context.Context.settings()


def _check_on_failure(on_failure: str) -> str:
    if on_failure not in _config.ON_FAILURE:
        raise ValueError(f"{_context.PLUGIN[lib.SPM_CTX_JOB_SUBMIT].conf_source}: "
                         f"on_failure={on_failure!r} must be {' or '.join(_config.ON_FAILURE)}")
    return on_failure


# -- log capture -------------------------------------------------------------------
#
# A kit call runs on a thread of its own, and a call that timed out may go
# on running (as a stuck worker does in the daemon) while the next ones
# run.  So the capture is kit-wide, installed while any call's thread runs
# and removed when the last one ends, and it routes by thread: each call's
# logging records and print() output reach that call's sink only, and
# other threads keep their streams.

_capture_lock = threading.Lock()
_capturing: dict[int, _abi.LogSink] = {}     # thread ident -> its call's sink
_saved: list[Any] = []                       # [the root level before the first call]


class _ToCallSink(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return threading.get_ident() in _capturing


_log_handler = _log.SlurmLogHandler(ffi, lib)
_log_handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
_log_handler.addFilter(_ToCallSink())


class _Stream(_log._LogWriter):
    """sys.stdout/sys.stderr while kit calls run: a kit call's thread
    writes to its log, any other thread to the stream it had."""

    def __init__(self, level: int, fallback: Any) -> None:
        super().__init__(lib, level)
        self.fallback = fallback

    def write(self, s: str) -> int:
        if threading.get_ident() in _capturing:
            return super().write(s)
        return int(self.fallback.write(s))

    def flush(self) -> None:
        if threading.get_ident() in _capturing:
            super().flush()
        else:
            self.fallback.flush()


def _root_level() -> int:
    return min(_log.python_level(s.level) for s in _capturing.values())


def _capture_start(ctx: int, sink: _abi.LogSink) -> None:
    """On the call's thread: its log lines go to `sink`, as the daemon's
    log would show them."""
    lib.set_sink(sink)
    _log.set_prefix(_context.PREFIX[ctx])
    root = logging.getLogger()
    with _capture_lock:
        if not _capturing:
            _saved[:] = [root.level]
            root.addHandler(_log_handler)
        # (again if something, e.g. pytest's capture between tests, put its
        # own stream there while an earlier call still runs)
        if not isinstance(sys.stdout, _Stream):
            sys.stdout = _Stream(lib.SPM_LOG_INFO, sys.stdout)
        if not isinstance(sys.stderr, _Stream):
            sys.stderr = _Stream(lib.SPM_LOG_ERROR, sys.stderr)
        _capturing[threading.get_ident()] = sink
        root.setLevel(_root_level())


def _capture_end() -> None:
    """On the call's thread, when it ends (timed out or not); the last one
    puts back what was there before the first."""
    me = threading.get_ident()
    root = logging.getLogger()
    with _capture_lock:
        if me not in _capturing:
            return
        for stream in (sys.stdout, sys.stderr):
            if isinstance(stream, _Stream):
                stream.flush()
        del _capturing[me]
        if _capturing:
            root.setLevel(_root_level())
        else:
            root.removeHandler(_log_handler)
            root.setLevel(_saved[0])
            if isinstance(sys.stdout, _Stream):
                sys.stdout = sys.stdout.fallback
            if isinstance(sys.stderr, _Stream):
                sys.stderr = sys.stderr.fallback
    lib.set_sink(None)


class _CallState:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.done = False


def _interrupt(thread: threading.Thread, state: _CallState) -> None:
    """What the daemon's pool does to a call past its time limit: raise
    TimeoutError in its thread (csrc/pool.c, PyThreadState_SetAsyncExc).
    It takes effect at the thread's next Python bytecode: a pure-Python
    loop stops, a thread blocked in C (time.sleep, a socket) goes on until
    that call returns.  Only while the call is still in the handler."""
    import ctypes
    api = getattr(ctypes, "pythonapi", None)
    if api is None or thread.ident is None:   # not CPython
        return
    with state.lock:
        if not state.done:
            api.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread.ident),
                                          ctypes.py_object(TimeoutError))


def _run(kind: str, call: Callable[[_context.Context], Any], c: _context.Context,
         limit_ms: int | None, level: int) -> tuple[Any, bool, list[str]]:
    """Run `call(c)` on a thread of its own, as a daemon's worker does;
    returns (result, timed_out, log lines).  Past `limit_ms` the call is
    answered as timed out and interrupted as the daemon interrupts it."""
    box: dict[str, Any] = {}
    ctx = _ctx_of(kind)
    sink = _abi.LogSink(level)
    state = _CallState()

    def work() -> None:
        _capture_start(ctx, sink)
        try:
            try:
                try:
                    if c.loaded is None and c.error:    # what the daemon logged at load
                        _context.say(ctx, lib.SPM_LOG_ERROR, f"handler not loaded: {c.error}")
                    box["result"] = call(c)
                finally:
                    with state.lock:
                        state.done = True
            except BaseException as e:   # the bridge's own error=-1 path
                box["error"] = e
        finally:
            _capture_end()

    t = threading.Thread(target=work, name=f"slurmpy-kit-{kind}", daemon=True)
    t.start()
    t.join(None if limit_ms is None else limit_ms / 1000)
    if t.is_alive():
        lines = list(sink.lines)
        _interrupt(t, state)
        return None, True, lines
    if "error" in box:
        raise box["error"]
    return box.get("result"), False, list(sink.lines)


# -- outcomes --------------------------------------------------------------------

@dataclasses.dataclass
class PrEpOutcome:
    """What Slurm does after a PrEp hook.

    action: "success"; "requeue" / "cancel" (a failed prolog_slurmctld:
    requeued if the job can be, else killed); "drain" (a failed slurmd
    prolog/epilog: the node is drained, with drain_reason as `sinfo -R`
    shows it: "prep/python: <the failure>", e.g. "prep/python:
    ValueError: /scratch is full", at most 255 bytes); "logged"
    (a failed epilog_slurmctld: Slurm only logs it).  job_state: the state
    the job is put in for a failed prolog_slurmctld ("PENDING" when
    requeued, "CANCELLED" when killed), else None."""
    hook: str
    ok: bool
    timed_out: bool
    action: str
    drain_reason: str | None
    log: list[str]
    job_state: str | None = None


@dataclasses.dataclass
class FactorOutcome:
    """set(): the SITE factor sprio shows afterwards (``factor``, signed)
    and what slurmctld stores (``site_factor`` = factor + NICE_OFFSET);
    ``changed`` is False when the factor was left unchanged (None returned,
    or the call failed)."""
    ok: bool
    timed_out: bool
    changed: bool
    factor: int
    site_factor: int
    log: list[str]


@dataclasses.dataclass
class UpdateOutcome:
    """update(): ``factors`` maps each pending job given to its SITE factor
    afterwards (jobs left out keep theirs); ``ignored`` are the job ids the
    handler returned that are unknown or not pending (slurmctld skips them)."""
    ok: bool
    timed_out: bool
    factors: dict[int, int]
    ignored: list[int]
    log: list[str]


@dataclasses.dataclass
class SubmitOutcome:
    """submit()/modify(): ``accepted``; ``message``: the text the user sees
    (sbatch prints each line as "sbatch: error: <line>"), None if none;
    ``changes``: {field: new value} Slurm applies (only when accepted);
    ``code``: what job_submit returns to slurmctld (0, SLURM_SUCCESS, when
    accepted; a refusal: Reject's ``code=``, else -1, SLURM_ERROR, which
    sbatch prints as "Unspecified error"); ``code_name``: that code's name
    in slurm_errno.h ("ESLURM_INVALID_ACCOUNT"), None for 0 and -1."""
    accepted: bool
    message: str | None
    changes: dict[str, Any]
    log: list[str]
    code: int = 0
    code_name: str | None = None


def _prep_action(hook: str, ok: bool, rec: Any, why: str) -> tuple[str, str | None]:
    if ok:
        return "success", None
    if hook in ("prolog", "epilog"):
        # csrc/dispatch_prep.c + drain.c: "<plugin>: <why>"
        return "drain", f"{_context.PREFIX[lib.SPM_CTX_PREP]}: {why}"
    if hook == "prolog_slurmctld":
        # prep_prolog_slurmctld_callback(): job_requeue(), else the job is killed
        return ("requeue" if rec.requeue and rec.batch_flag else "cancel"), None
    return "logged", None


def run_prep(handler: Any, hook: str, record: Job | JobEnv, *, timeout: float | None = None,
             log_level: int = _log.INFO) -> PrEpOutcome:
    """Call PrEp hook `hook` ("prolog", "epilog", "prolog_slurmctld",
    "epilog_slurmctld") of `handler` (an instance or a class) on `record`
    (a JobEnv for prolog/epilog, a Job for the slurmctld hooks).
    ``timeout``: PrEpParameters' timeout= in seconds; the default None is
    the daemons' without it and without PrologEpilogTimeout: no limit."""
    hooks = {v: k for k, v in _context.HOOKS[lib.SPM_CTX_PREP].items()}
    if hook not in hooks:
        raise ValueError(f"no PrEp hook {hook!r}{_near(hook, hooks)}")
    slurmd = hook in ("prolog", "epilog")
    if slurmd and not isinstance(record, JobEnv):
        raise TypeError(f"{hook}() takes a JobEnv (make_env()), not {type(record).__name__}")
    if not slurmd and not isinstance(record, Job):
        raise TypeError(f"{hook}() takes a Job (make_job()), not {type(record).__name__}")
    limit = _limit_ms(lib.SPM_CTX_PREP, timeout)
    c = _context_for(handler, "prep", timeout=timeout)
    why_buf = ffi.new("char[]", lib.SPM_WHY_SIZE)
    rc, timed_out, log = _run("prep", lambda c: _calls.prep(
        c, hooks[hook], _abi.Arena(), None if slurmd else record._c,
        record._c if slurmd else None, why_buf, None), c, limit, log_level)
    if timed_out:
        log.append(_abi.log_line(lib.SPM_LOG_ERROR, "prep/python",
                                 f"{hook} for JobId={record.job_id} timed out: the handler "
                                 f"exceeded its time limit of {limit} ms"))
        why = f"{hook} timed out after {limit} ms"
    else:
        why = ffi.string(why_buf).decode("utf-8", "replace") or \
            f"{hook} failed (see slurmd's log)"
    ok = rc == lib.SPM_PY_OK and not timed_out
    action, reason = _prep_action(hook, ok, record, why)
    state = {"requeue": "PENDING", "cancel": "CANCELLED"}.get(action)
    return PrEpOutcome(hook, ok, timed_out, action, reason, log, state)


_SF_DEFAULT_TIMEOUT = lib.SPM_SF_DEFAULT_TIMEOUT_MS / 1000
_JS_DEFAULT_TIMEOUT = lib.SPM_JS_DEFAULT_TIMEOUT_MS / 1000


def run_set(handler: Any, job: Job, *, timeout: float | None = _SF_DEFAULT_TIMEOUT,
            log_level: int = _log.INFO) -> FactorOutcome:
    """Call ``set(job)``.  ``timeout``: PrioritySiteFactorParameters'
    timeout= in seconds, by default site_factor's 5 s (None: no limit,
    which only the kit has)."""
    limit = _limit_ms(lib.SPM_CTX_SITE_FACTOR, timeout)
    c = _context_for(handler, "site_factor", timeout=timeout)
    factor = ffi.new("int64_t *")
    have = ffi.new("int *")
    rc, timed_out, log = _run("site_factor", lambda c: _calls.sf_set(
        c, _abi.Arena(), job._c, factor, have, None), c, limit, log_level)
    if timed_out:
        log.append(_abi.log_line(lib.SPM_LOG_ERROR, "site_factor/python",
                                 "set(): the handler exceeded its time limit of "
                                 f"{limit} ms; factors left unchanged"))
    changed = bool(not timed_out and rc == lib.SPM_PY_OK and have[0])
    value = int(factor[0]) if changed else job.site_factor
    return FactorOutcome(rc == lib.SPM_PY_OK and not timed_out, timed_out, changed, value,
                         value + NICE_OFFSET, log)


def run_update(handler: Any, jobs: Sequence[Job], *, timeout: float | None = _SF_DEFAULT_TIMEOUT,
               log_level: int = _log.INFO) -> UpdateOutcome:
    """Call ``update(jobs)`` with the pending jobs (as slurmctld passes
    them: a JobList, with the rows the handler's `fields` declares);
    returns each job's factor afterwards.  ``timeout`` as for run_set()."""
    limit = _limit_ms(lib.SPM_CTX_SITE_FACTOR, timeout)
    c = _context_for(handler, "site_factor", timeout=timeout)
    n = len(jobs)
    arr = ffi.new("spm_job_t[]", max(n, 1))
    for i, j in enumerate(jobs):
        ffi.memmove(arr + i, j._c, ffi.sizeof("spm_job_t"))
    # the batch as the daemon's, with its rows given (no lazy part)
    batch = ffi.new("spm_batch_t *", {"count": n, "jobs": arr, "lazy": ffi.NULL})
    owner = [arr, batch, list(jobs)]       # the copies point at the jobs' strings
    ids = ffi.new("uint32_t[]", max(n, 1))
    vals = ffi.new("int64_t[]", max(n, 1))
    k = ffi.new("uint32_t *")
    by_index = ffi.new("int *")
    rc, timed_out, log = _run("site_factor",
                              lambda c: _calls.sf_update(c, batch, owner, ids, vals, n, k,
                                                         by_index),
                              c, limit, log_level)
    factors = {j.job_id: j.site_factor for j in jobs}
    ignored: list[int] = []
    if timed_out:
        log.append(_abi.log_line(lib.SPM_LOG_ERROR, "site_factor/python",
                                 "update(): the handler exceeded its time limit of "
                                 f"{limit} ms; factors left unchanged"))
    elif rc == lib.SPM_PY_OK:
        pending = {j.job_id for j in jobs if j.state == "PENDING"}
        if by_index[0]:       # factors[i] is job i's (csrc/factors.c)
            pairs = [(int(arr[i].job_id), int(vals[i])) for i in range(k[0])
                     if vals[i] != lib.SPM_FACTOR_KEEP]
        else:
            pairs = [(int(ids[i]), int(vals[i])) for i in range(k[0])]
        for jid, val in pairs:
            if jid in pending:
                factors[jid] = val
            else:
                ignored.append(jid)
        if ignored:   # spm_apply_factors() (csrc/factors.c) says so
            sample = ", ".join(map(str, ignored[:5])) + (", ..." if len(ignored) > 5 else "")
            log.append(_abi.log_line(
                lib.SPM_LOG_INFO, "site_factor/python",
                f"warning: update() returned factors for {len(ignored)} job(s) that are "
                f"unknown or no longer pending (JobId={sample}); ignored"))
    return UpdateOutcome(rc == lib.SPM_PY_OK and not timed_out, timed_out, factors,
                         ignored, log)


_JS_PREFIX = "job_submit/python"
_SLURM_SUCCESS, _SLURM_ERROR = 0, -1     # slurm_errno.h


_JS_REFUSED = "job_submit/python: request refused: the site's job submission policy"


def _js_answer(what: str, status: int, why: str | None, msg: str | None, code: int,
               modify_job_id: int | None, accept: bool,
               log: list[str]) -> tuple[bool, str | None, int]:
    """csrc/dispatch_job_submit.c _answer(), the one place the daemon
    decides: from the call's status (SPM_PY_*; SPM_PY_EXCEPTION for the
    timeout) apply on_failure= and build the refusal's text and log line.
    Returns (accepted, message for the user, code for slurmctld)."""
    def error(text: str) -> None:
        log.append(_abi.log_line(lib.SPM_LOG_ERROR, _JS_PREFIX, text))

    if status == lib.SPM_PY_OK:
        return True, msg, _SLURM_SUCCESS
    if status == lib.SPM_PY_REFUSED:
        if modify_job_id is not None:
            log.append(_abi.log_line(lib.SPM_LOG_INFO, _JS_PREFIX,
                                     f"modify() refused the update of JobId={modify_job_id}: "
                                     f"{msg or ''}"))
        return False, msg, code or _SLURM_ERROR
    why = why or ""
    logged = f"no usable handler ({why})" if status == lib.SPM_PY_UNLOADED else why
    if accept:
        error(f"{what} failed ({logged}); on_failure=accept: the request is accepted unchanged")
        return True, msg, _SLURM_SUCCESS
    error(f"{what} refused: {logged}")
    if status == lib.SPM_PY_UNLOADED:
        text = f"{_JS_REFUSED} is not loaded ({why})"
    elif status == lib.SPM_PY_FAILED:
        text = f"{_JS_REFUSED} failed (an administrator can find the error in slurmctld's log)"
    else:
        text = f"{_JS_REFUSED} failed ({why})"
    # jobdesc.c spm_set_err_msg(): the handler's lines first, each call a line
    return False, "\n".join(t for t in (msg, text) if t), _SLURM_ERROR


def _js_call(handler: Any, hook: str, desc: JobDesc, current: Job | None, submit_uid: int,
             partitions: Iterable[Partition], timeout: float | None, on_failure: str,
             log_level: int) -> SubmitOutcome:
    """What csrc/dispatch_job_submit.c and _jobsubmit.call() decide."""
    if not isinstance(desc, JobDesc):
        raise TypeError(f"{hook}() takes a JobDesc (make_job_desc()), not {type(desc).__name__}")
    limit = _limit_ms(lib.SPM_CTX_JOB_SUBMIT, timeout)
    c = _context_for(handler, "job_submit", timeout=timeout,
                     on_failure=_check_on_failure(on_failure))
    hooks = {v: k for k, v in _context.HOOKS[lib.SPM_CTX_JOB_SUBMIT].items()}
    c_in = ffi.new("spm_jobdesc_t *")      # the request as it came (yours is left alone)
    ffi.memmove(c_in, desc._c, ffi.sizeof("spm_jobdesc_t"))
    if current is not None and c_in.job_id == lib.SPM_NO_VAL:
        c_in.job_id = current.job_id       # scontrol update names the job (_js_new())
    if current is not None and c_in.user_id == lib.SPM_NO_VAL:
        c_in.user_id = current.user_id     # slurmctld's update_job: the job's owner
    c_out = ffi.new("spm_jobdesc_t *")     # the one the handler changes
    ffi.memmove(c_out, c_in, ffi.sizeof("spm_jobdesc_t"))
    parts = list(partitions)
    c_parts = ffi.new("spm_partlist_t *")
    arr = ffi.new("spm_part_t[]", max(len(parts), 1))
    for i, p in enumerate(parts):
        ffi.memmove(arr + i, p._c, ffi.sizeof("spm_part_t"))
    c_parts.count, c_parts.parts = len(parts), arr
    call = ffi.new("spm_js_call_t *")
    call.hook, call.submit_uid = hooks[hook], submit_uid
    arena, current_arena = _abi.Arena(), _abi.Arena()   # kept alive here, for the call
    call.arena, call.desc_in, call.desc_out, call.parts = arena.ptr, c_in, c_out, c_parts
    call.current_arena = current_arena.ptr
    call.current = current._c if current is not None else ffi.NULL
    # the arenas' handles live as long as the call, which may outlive this
    # function (timed out, it runs on until interrupted)
    keep = (arena, current_arena)

    def run(ctx: _context.Context) -> int:
        keep             # referenced: the closure holds the arenas while the call runs
        return int(_jobsubmit.call(ctx, call, None))
    rc, timed_out, log = _run("job_submit", run, c, limit, log_level)
    job_id = int(c_in.job_id)
    uid = int(submit_uid)

    def text(p: Any) -> str | None:
        return None if timed_out or p == ffi.NULL else ffi.string(p).decode(
            "utf-8", "backslashreplace")

    changes: dict[str, Any] = {}
    why: str | None
    if timed_out:
        rc, why = lib.SPM_PY_EXCEPTION, ("the handler did not answer within its time limit "
                                         f"of {limit} ms")
    else:
        why = text(call.why)
    if rc == lib.SPM_PY_OK:
        for name, kind in JobDesc._kinds.items():   # jobdesc.c writes back what differs
            if kind[0] in ("strv", "strl") and name in _jobdesc.READ_ONLY:
                continue                            # never written back
            before = _jobdesc._read(c_in, name, kind)
            after = _jobdesc._read(c_out, name, kind)
            if before != after:
                changes[name] = after
    what = (f"modify() for JobId={job_id}" if hook == "modify"
            else f"submit() for a job of uid {uid}")
    accepted, message, code = _js_answer(
        what, rc, why, text(call.msg), 0 if timed_out else int(call.code),
        job_id if hook == "modify" else None, on_failure == "accept", log)
    # an empty message never reaches the user (jobdesc.c spm_set_err_msg())
    return SubmitOutcome(accepted, message or None, changes if accepted else {}, log, code,
                         None if code in (_SLURM_SUCCESS, _SLURM_ERROR) else _errno.name_of(code))


def run_submit(handler: Any, job: JobDesc, *, submit_uid: int | None = None,
               partitions: Iterable[Partition] = (),
               timeout: float | None = _JS_DEFAULT_TIMEOUT, on_failure: str = "reject",
               log_level: int = _log.INFO) -> SubmitOutcome:
    """Call ``submit(job, submit_uid)`` as slurmctld does for sbatch; the
    handler sees a fresh view of `job` (yours is left as it was).
    ``submit_uid``: by default the request's user_id (the user submits her
    own job), else the caller's uid.  ``timeout`` and ``on_failure`` are
    job_submit_python.conf's, with its defaults (5 s, "reject"); None: no
    limit, which only the kit has."""
    uid = os.getuid() if submit_uid is None else submit_uid
    if submit_uid is None and isinstance(job, JobDesc) and isinstance(job.user_id, int):
        uid = job.user_id
    return _js_call(handler, "submit", job, None, uid, partitions, timeout, on_failure,
                    log_level)


def run_modify(handler: Any, job: JobDesc, current: Job, *, submit_uid: int | None = None,
               partitions: Iterable[Partition] = (),
               timeout: float | None = _JS_DEFAULT_TIMEOUT, on_failure: str = "reject",
               log_level: int = _log.INFO) -> SubmitOutcome:
    """Call ``modify(job, current, submit_uid)`` as for ``scontrol update``:
    `job` holds only the fields being changed (its job_id is the job's, as
    in slurmctld): make it with ``make_job_desc(bare=True, ...)``.
    ``submit_uid``: by default the job's owner (``current.user_id``).
    ``timeout``, ``on_failure``: as for run_submit()."""
    if isinstance(job, JobDesc) and job.script is not None:
        raise ValueError("run_modify(): the request has a script, which scontrol update "
                         "never sends: make it with make_job_desc(bare=True, <the fields "
                         "being changed>)")
    uid = current.user_id if submit_uid is None else submit_uid
    return _js_call(handler, "modify", job, current, uid, partitions, timeout,
                    on_failure, log_level)


# -- jobcomp ----------------------------------------------------------------------

_JC_DEFAULT_TIMEOUT = lib.SPM_JC_DEFAULT_TIMEOUT_MS / 1000
_JC_PREFIX = "jobcomp/python"


def make_completed_job(*, job_id: int = 1, state: str = "COMPLETED", event: str = "end",
                       cluster: str = "cluster", submit_time: int = 1700000000,
                       start_time: int | None = 1700000010, end_time: int | None = 1700000070,
                       exit_code: tuple[int, int] | None = (0, 0), **fields: Any) -> CompletedJob:
    """A completion record as slurmctld's spool gives it, from keyword
    arguments (any :class:`~slurmpy_plugins.CompletedJob` field); ``key``
    and ``elapsed`` follow from the others unless given."""
    if state not in JOB_STATES:
        raise ValueError(f"unknown job state {state!r}{_near(state, JOB_STATES)}")
    if event not in ("end", "start"):
        raise ValueError(f"event must be 'end' or 'start', not {event!r}")
    known = {f.name for f in dataclasses.fields(CompletedJob)}
    for name in fields:
        if name not in known:
            raise TypeError(f"CompletedJob has no field {name!r}{_near(name, known)}")
    elapsed = max(0, end_time - start_time) if start_time and end_time else 0
    values: dict[str, Any] = dict(
        key=f"{cluster}:{job_id}:{submit_time}:{start_time or 0}" + (":start" if event == "start" else ""),
        event=event, cluster=cluster, job_id=job_id, name="job", user_id=1000,
        user_name="user", group_id=1000, account=None, partition="debug", qos="normal",
        state=state, exit_code=exit_code, derived_exit_code=(0, 0), submit_time=submit_time,
        eligible_time=submit_time, start_time=start_time, end_time=end_time, elapsed=elapsed,
        suspended=0, time_limit=None, nodes="node1", node_count=1, cpus=1,
        tres_alloc="cpu=1,node=1", tres_req="cpu=1,node=1", work_dir="/tmp")
    values.update(fields)
    return CompletedJob(**values)


@dataclasses.dataclass
class JobCompOutcome:
    """job_end()/job_start(): ``delivered`` when the hook returned (the
    record is acknowledged); otherwise slurmctld keeps the record and offers
    it again after ``retry_in`` seconds (doubling on each failure up to
    30 s), before any later record."""
    delivered: bool
    timed_out: bool
    retry_in: float | None
    log: list[str]


def _jc_call(handler: Any, job: CompletedJob, event: str, timeout: float | None,
             log_level: int) -> JobCompOutcome:
    """What csrc/dispatch_jobcomp.c's deliverer and _jobcomp.deliver() decide."""
    if not isinstance(job, CompletedJob):
        raise TypeError(f"job_{event}() takes a CompletedJob (make_completed_job()), "
                        f"not {type(job).__name__}")
    if job.event != event:
        job = dataclasses.replace(job, event=event)
    limit = _limit_ms(lib.SPM_CTX_JOBCOMP, timeout)
    c = _context_for(handler, "jobcomp", timeout=timeout)
    rc, timed_out, log = _run("jobcomp", lambda c: _jobcomp.deliver(c, job), c, limit, log_level)
    delivered = rc == lib.SPM_PY_OK and not timed_out
    retry = None if delivered else lib.SPM_JC_RETRY_FIRST_MS / 1000
    if not delivered:
        why = (f"the handler did not return within its time limit of {limit} ms" if timed_out
               else "the handler is not loaded (see above)" if rc == lib.SPM_PY_UNLOADED
               else "the handler raised, or the record is unreadable (see above)")
        log.append(_abi.log_line(lib.SPM_LOG_ERROR, _JC_PREFIX,
                                 f"delivery of record {job.key} failed (attempt 1: {why}); it "
                                 "and the records after it are kept and retried in "
                                 f"{lib.SPM_JC_RETRY_FIRST_MS} ms"))
    return JobCompOutcome(delivered, timed_out, retry, log)


def run_job_end(handler: Any, job: CompletedJob, *, timeout: float | None = _JC_DEFAULT_TIMEOUT,
                log_level: int = _log.INFO) -> JobCompOutcome:
    """Deliver one completion record to ``job_end(job)`` as slurmctld's
    deliverer does.  ``timeout``: jobcomp_python.conf's timeout= (default
    5 s; None: no limit, which only the kit has)."""
    return _jc_call(handler, job, "end", timeout, log_level)


def run_job_start(handler: Any, job: CompletedJob, *, timeout: float | None = _JC_DEFAULT_TIMEOUT,
                  log_level: int = _log.INFO) -> JobCompOutcome:
    """The same for ``job_start(job)`` (Slurm 25.05+, enable_job_start)."""
    return _jc_call(handler, job, "start", timeout, log_level)


# -- spank/python ---------------------------------------------------------------

@dataclasses.dataclass
class SpankOutcome:
    """What SPANK gets back from one hook: ``ok`` (False: a non-zero
    return; for a ``required`` plugin the step fails), the ``message``
    slurm_error() writes, and the job's environment after the hook."""
    ok: bool
    message: str | None
    env: dict[str, str]
    log: list[str]
    prepended_argv: list[str] = dataclasses.field(default_factory=list)


class _KitSpank:
    def __init__(self, options: Mapping[str, str | bool | None], declared: Sequence[Any],
                 env: dict[str, str], items: Mapping[str, int | None]) -> None:
        self._declared = {o.name: o for o in declared}
        for name, value in options.items():
            if name not in self._declared:
                raise ValueError(f"option {name!r} is not in the handler's options"
                                 f"{_near(name, self._declared)}")
            if (self._declared[name].arg is None) != (value is True or value is None):
                raise ValueError(f"option {name!r}: give True for a flag, a string for an "
                                 "option with arg=")
        self._options = options
        self.env = env
        self._items = {_spank.ITEMS[k]: v for k, v in items.items()}
        self.hook = ""
        self.task_argv: list[str] | None = None
        self.prepended: list[str] = []

    def get_item(self, item: int) -> int | None:
        return self._items.get(item)

    def getenv(self, name: str) -> str | None:
        return self.env.get(name)

    def setenv(self, name: str, value: str, overwrite: bool) -> bool:
        if overwrite or name not in self.env:
            self.env[name] = value
        return True

    def unsetenv(self, name: str) -> bool:
        self.env.pop(name, None)
        return True

    def argv(self) -> list[str] | None:
        return None if self.task_argv is None else list(self.task_argv)

    def prepend_argv(self, args: Sequence[str]) -> int:
        if self.hook != "task_init":
            return -1
        self.prepended[:0] = list(args)
        return 0

    def option(self, name: str) -> tuple[int, str | None]:
        if name not in self._declared:
            return -1, None
        value = self._options.get(name)
        if value is None:
            return 0, None
        return 1, None if value is True else str(value)


def run_spank(handler: Any, hook: str, *, options: Mapping[str, str | bool | None] | None = None,
              env: Mapping[str, str] | None = None, context: str = "remote",
              args: Mapping[str, str] | None = None, argv: Sequence[str] | None = None,
              **items: int | None) -> SpankOutcome:
    """Run one spank/python hook as spank_python.so does: ``options`` by
    name (a string, or True for a flag; left out: not given), ``env`` the
    job's environment, ``items`` SPANK's items (job_id=, step_id=, uid=,
    gid=, task_id=, array_id=, ...; left out: None, as SPANK offers none),
    ``argv`` the step's command (spank.argv); what task_init prepends is
    ``prepended_argv`` (the kit models Slurm 23.11+).  The
    handler's class is first read as spank_python.so reads its module file
    (options written with literals, ``def <hook>(``): a class that reads
    otherwise is refused (HandlerError), since the daemons would register
    other options or never call the hook."""
    if hook not in _spank.HOOKS:
        raise ValueError(f"{hook!r} is not a spank/python hook{_near(hook, _spank.HOOKS)} "
                         f"(hooks: {', '.join(_spank.HOOKS)})")
    for k in items:
        if k not in _spank.ITEMS:
            raise TypeError(f"run_spank() got an unknown item {k!r}{_near(k, _spank.ITEMS)}")
    cls = handler if isinstance(handler, type) else type(handler)
    if not issubclass(cls, SpankHandler):
        raise TypeError(f"{cls.__name__} is not a SpankHandler")
    members = _chain.members_of(handler)
    if members:      # load_handlers(): each file as spank_python.so reads it
        for m in members:
            _spank.check_declared(type(m.instance), m.path)
    else:
        module_file = sys.modules[cls.__module__].__file__
        if module_file:
            _spank.check_declared(cls, module_file)
    instance = handler() if isinstance(handler, type) else handler
    backend = _KitSpank(options or {}, list(cls.options), dict(env or {}), items)
    backend.hook, backend.task_argv = hook, None if argv is None else list(argv)
    lines: list[str] = []

    class _Grab(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(f"{record.name}: {record.getMessage()}")

    grab = _Grab()
    _spank.log.addHandler(grab)
    try:
        # check_declared: a hook the class overrides is one the plugin calls
        message = _spank.run(instance, hook, _spank.Spank(backend, context, args or {}))
    finally:
        _spank.log.removeHandler(grab)
    if message is not None:
        lines.append(f"spank/python: {hook} failed: {message}")
    return SpankOutcome(message is None, message, backend.env, lines, backend.prepended)
