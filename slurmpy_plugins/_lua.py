"""Slurm's job_submit/lua names and their slurmpy counterparts: the one
table both ``slurmpy-plugins check`` (and the records' AttributeError)
hint from when a handler uses a Lua name, and docs/lua.md is generated
from (scripts/gen_lua_doc.py reads the Lua names from Slurm's C source).

A Lua field whose name is also a field of the Python record (the field
table, slurmpy_plugins/_fields.py, generated from csrc/spm_types.h) maps
to that field: only the names that differ are listed here.  So a field
added to the record later (e.g. job_submit's user_name) takes over from
its entry here by itself.
"""
from __future__ import annotations

import functools
import os
from typing import Iterable

__all__ = ["SECTIONS", "counterpart", "hint", "record_fields"]

# (section, title in docs/lua.md, Lua prefix), and the _fields.py class of each
SECTIONS = (
    ("slurm", "`slurm` functions and constants", "slurm."),
    ("job_desc", "`job_desc` (submit: `job`; modify: `job`)", "job_desc."),
    ("job_rec", "`job_rec` (modify's job, also `slurm.jobs[id]`: `current`)", "job_rec."),
    ("part_list", "`part_list` entries (`self.partitions[name]`)", "part."),
    ("reservations", "`slurm.reservations[name]` fields", "resv."),
)
_CLASS = {"job_desc": "JobDescFields", "job_rec": "JobFields", "part_list": "PartitionFields"}
_VAR = {"job_desc": "job", "job_rec": "current", "part_list": "self.partitions[name]"}

_MEM = ("min_mem_per_node (--mem) or min_mem_per_cpu (--mem-per-cpu), in MB; "
        "Lua's pn_min_memory is whichever is set, with slurm.MEM_PER_CPU added for per CPU")
_NOT_YET = "not a field (yet)"

# name -> (Python counterpart or None, note)
TABLE: dict[str, dict[str, tuple[str | None, str]]] = {
    "slurm": {
        "ERROR": ("raise Reject(\"text\")", "refuses; returning any value (-1 too) accepts"),
        "FAILURE": ("raise Reject(\"text\")", "refuses; returning any value accepts"),
        "SUCCESS": ("return", "return None, or nothing: any value returned is ignored"),
        "<slurm_errtab>": ("raise Reject(\"text\", code=\"ESLURM_...\")",
                           "any name of slurm_errno.h"),
        "ALLOC_SID_ADMIN_HOLD": (None, ""),
        "ALLOC_SID_USER_HOLD": (None, ""),
        "CLUSTER_NAME": (None, "read ClusterName from slurm.conf if needed"),
        "CONSOLIDATE_SEGMENTS": (None, "a job_desc.bitflags bit; bitflags is not a field"),
        "EXPEDITED_REQUEUE": (None, "a job_desc.bitflags bit; bitflags is not a field"),
        "GRES_ALLOW_TASK_SHARING": (None, "a job_desc.bitflags bit; bitflags is not a field"),
        "GRES_DISABLE_BIND": (None, "a job_desc.bitflags bit; bitflags is not a field"),
        "GRES_ENFORCE_BIND": (None, "a job_desc.bitflags bit; bitflags is not a field"),
        "GRES_MULT_TASKS_PER_SHARING": (None, "a job_desc.bitflags bit; bitflags is not a field"),
        "GRES_ONE_TASK_PER_SHARING": (None, "a job_desc.bitflags bit; bitflags is not a field"),
        "KILL_INV_DEP": (None, "a job_desc.bitflags bit; bitflags is not a field"),
        "NO_KILL_INV_DEP": (None, "a job_desc.bitflags bit; bitflags is not a field"),
        "SPREAD_JOB": (None, "a job_desc.bitflags bit; bitflags is not a field"),
        "SPREAD_SEGMENTS": (None, "a job_desc.bitflags bit; bitflags is not a field"),
        "STEPMGR_ENABLED": (None, "a job_desc.bitflags bit; bitflags is not a field"),
        "USE_MIN_NODES": (None, "a job_desc.bitflags bit; bitflags is not a field"),
        "INFINITE": ("UNLIMITED", "from slurmpy_plugins import UNLIMITED"),
        "INFINITE64": ("UNLIMITED", "from slurmpy_plugins import UNLIMITED"),
        "NO_VAL": ("None", "an unset field reads None; assign None to unset"),
        "NO_VAL16": ("None", "an unset field reads None; assign None to unset"),
        "NO_VAL64": ("None", "an unset field reads None; assign None to unset"),
        "NO_VAL8": ("None", "an unset field reads None; assign None to unset"),
        "MEM_PER_CPU": ("job.min_mem_per_cpu", "memory per CPU has its own field"),
        "NICE_OFFSET": (None, "job records' nice is already signed"),
        "JOB_SHARED_NONE": ("job.shared = 0", ""),
        "JOB_SHARED_OK": ("job.shared = 1", ""),
        "JOB_SHARED_USER": ("job.shared = 2", ""),
        "JOB_SHARED_MCS": ("job.shared = 3", ""),
        "SHARED_FORCE": (None, "a partition's max_share flag; not in Partition"),
        "MAIL_INVALID_DEPEND": (None, "a job.mail_type bit; use the number"),
        "MAIL_JOB_BEGIN": (None, "a job.mail_type bit; use the number"),
        "MAIL_JOB_END": (None, "a job.mail_type bit; use the number"),
        "MAIL_JOB_FAIL": (None, "a job.mail_type bit; use the number"),
        "MAIL_JOB_REQUEUE": (None, "a job.mail_type bit; use the number"),
        "MAIL_JOB_STAGE_OUT": (None, "a job.mail_type bit; use the number"),
        "MAIL_JOB_TIME100": (None, "a job.mail_type bit; use the number"),
        "MAIL_JOB_TIME50": (None, "a job.mail_type bit; use the number"),
        "MAIL_JOB_TIME80": (None, "a job.mail_type bit; use the number"),
        "MAIL_JOB_TIME890": (None, "a job.mail_type bit; use the number"),
        "ESLURM_ACCESS_DENIED": ("raise Reject(\"text\", code=\"ESLURM_ACCESS_DENIED\")", ""),
        "ESLURM_ACCOUNTING_POLICY": ("raise Reject(\"text\", code=\"ESLURM_ACCOUNTING_POLICY\")", ""),
        "ESLURM_INVALID_ACCOUNT": ("raise Reject(\"text\", code=\"ESLURM_INVALID_ACCOUNT\")", ""),
        "ESLURM_INVALID_LICENSES": ("raise Reject(\"text\", code=\"ESLURM_INVALID_LICENSES\")", ""),
        "ESLURM_INVALID_NODE_COUNT": ("raise Reject(\"text\", code=\"ESLURM_INVALID_NODE_COUNT\")", ""),
        "ESLURM_INVALID_TIME_LIMIT": ("raise Reject(\"text\", code=\"ESLURM_INVALID_TIME_LIMIT\")", ""),
        "ESLURM_JOB_MISSING_SIZE_SPECIFICATION": (
            "raise Reject(\"text\", code=\"ESLURM_JOB_MISSING_SIZE_SPECIFICATION\")", ""),
        "ESLURM_MISSING_TIME_LIMIT": ("raise Reject(\"text\", code=\"ESLURM_MISSING_TIME_LIMIT\")", ""),
        "log_user": ("self.log_user(fmt, *args)", "the user sees it"),
        "user_msg": ("self.log_user(text)", "the user sees it"),
        "log": ("logging", "Python logging goes to slurmctld's log"),
        "error": ("logging.error", "Python logging goes to slurmctld's log"),
        "log_error": ("logging.error", "Python logging goes to slurmctld's log"),
        "log_info": ("logging.info", "Python logging goes to slurmctld's log"),
        "log_verbose": ("logging.info", "Python logging goes to slurmctld's log"),
        "log_debug": ("logging.debug", "Python logging goes to slurmctld's log"),
        "log_debug2": ("logging.debug", "Python logging goes to slurmctld's log"),
        "log_debug3": ("logging.debug", "Python logging goes to slurmctld's log"),
        "log_debug4": ("logging.debug", "Python logging goes to slurmctld's log"),
        "time_str2mins": (None, "time limits arrive in minutes already"),
        "jobs": (None, "only modify()'s current job; ask squeue/the REST API for others"),
        "reservations": (None, ""),
        "get_qos_priority": (None, ""),
        "to_json": ("json.dumps", ""),
        "from_json": ("json.loads", ""),
        "to_yaml": (None, "a YAML library, if the venv has one"),
        "from_yaml": (None, "a YAML library, if the venv has one"),
    },
    "job_desc": {
        "gres": ("tres_per_node", "--gres arrives there (Lua's gres reads tres_per_node too)"),
        "pn_min_memory": (None, _MEM),
        "spank_job_env": ("spank_env", "a dict, read-only"),
        "spank_job_env_size": ("len(job.spank_env)", ""),
        "oversubscribe": ("shared", ""),
        "user_name": (None, _NOT_YET + ": pwd.getpwuid(job.user_id).pw_name gives it"),
        "default_account": (None, _NOT_YET),
        "default_qos": (None, _NOT_YET),
        "argv": (None, _NOT_YET),
        "argc": (None, "not a field"),
        "pack_job_offset": (None, "not a field"),
        "het_job_offset": (None, "not a field"),
        "bitflags": (None, "not a field"),
        "nice": (None, "not a field"),
        "site_factor": (None, "not a field: site_factor/python sets the SITE factor"),
        "end_time": (None, "not a field (deadline is --deadline)"),
    },
    "job_rec": {
        "gres": ("tres_per_node", "Lua's gres reads tres_per_node"),
        "gres_req": (None, "tres_req_str has the requested TRES"),
        "min_mem_per_node": ("pn_min_memory", "per node unless bit 63 (MEM_PER_CPU) is set"),
        "min_mem_per_cpu": ("pn_min_memory", "per CPU when bit 63 (MEM_PER_CPU) is set"),
        "pack_job_id": ("het_job_id", ""),
        "pack_job_offset": ("het_job_offset", ""),
        "spank_job_env": ("spank_env", "a dict"),
        "spank_job_env_size": ("len(current.spank_env)", ""),
        "total_cpus": ("num_cpus", ""),
        "total_nodes": ("num_nodes", ""),
    },
    "part_list": {
        "flag_default": ("default", "a bool"),
        "state_up": ("state", "\"UP\", \"DOWN\", \"DRAIN\" or \"INACTIVE\""),
    },
    "reservations": {},
}


@functools.lru_cache(maxsize=None)
def record_fields(section: str) -> frozenset[str]:
    """The Python record's fields for a section (none for slurm and
    reservations), read from the field table _fields.py."""
    import ast    # on the error path only: the daemons import this module
    cls = _CLASS.get(section)
    if cls is None:
        return frozenset()
    path = os.path.join(os.path.dirname(__file__), "_fields.py")
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    out: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == cls:
            for sub in ast.walk(node):
                if isinstance(sub, ast.FunctionDef):
                    out.add(sub.name)
                elif isinstance(sub, ast.AnnAssign) and isinstance(sub.target, ast.Name):
                    out.add(sub.target.id)
    return frozenset(out)


def counterpart(section: str, name: str) -> tuple[str | None, str]:
    """(Python counterpart, note) of Lua name `name` of `section`; (None,
    note) when slurmpy has none."""
    if name in record_fields(section):
        return name, ""
    return TABLE[section].get(name, (None, ""))


def hint(section: str, name: str, fields: Iterable[str] | None = None) -> str:
    """What to say about `name`, a name the record `section` does not have:
    " (...)" or ""."""
    fields = record_fields(section) if fields is None else frozenset(fields)
    if name in TABLE.get(section, {}) and name not in fields:
        py, note = TABLE[section][name]
        if py is not None and py in fields:
            var = _VAR.get(section, "job")
            return f" (Lua's {name}: here it is {var}.{py}{': ' + note if note else ''})"
        if py is not None:
            return f" (Lua's {name}: here {py}{': ' + note if note else ''})"
        return f" (Lua's {name}: {note or 'no counterpart'})"
    import difflib
    close = difflib.get_close_matches(name, sorted(fields), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
