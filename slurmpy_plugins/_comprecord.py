"""jobcomp/python's completion record: what slurmctld's spool holds (one
JSON object per line, written by csrc/dispatch_jobcomp.c) as the handler
sees it."""
from __future__ import annotations

import dataclasses
import json
import pwd
from typing import Any

__all__ = ["CompletedJob", "RecordError", "parse", "from_record"]

# spm_types.h SPM_NO_VAL / SPM_INFINITE, set by _jobcomp.install()
NO_VAL: int = -1
INFINITE: int = -1


class RecordError(ValueError):
    """A spool record that is not a completion record."""


def _exit_pair(status: int | None) -> tuple[int, int] | None:
    """A wait() status as (exit code, signal), as sacct's ExitCode shows
    it ("2:0", "0:9"); None when unset."""
    if status is None:
        return None
    if status & 0x7F:                  # WIFSIGNALED
        return 0, status & 0x7F
    return (status >> 8) & 0xFF, 0


@dataclasses.dataclass(frozen=True)
class CompletedJob:
    """What a completion record has (the fields of jobcomp/filetxt's line).

    ``key`` is stable and unique per record ("<cluster>:<job_id>:
    <submit_time>:<start_time>", ":start" added for job_start): a record may be
    delivered more than once (after a crash between the delivery and its
    acknowledgement), so de-duplicate on it.  ``state`` is a word:
    "COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL",
    "OUT_OF_MEMORY", "PREEMPTED", "BOOT_FAIL", "DEADLINE" (a start record:
    "RUNNING").  Times are seconds since the epoch (None: not set);
    ``exit_code``/``derived_exit_code`` are (code, signal) pairs as sacct
    shows them; ``elapsed`` is end_time - start_time in seconds (scontrol's
    RunTime; it includes any time suspended); ``suspended`` is Slurm's
    tot_sus_time: time suspended *plus* the time the nodes took to boot or
    configure before the job ran (Slurm extends the job by it);
    ``time_limit`` in minutes (None: unlimited); ``tres_alloc``/``tres_req``
    as sacct's AllocTRES/ReqTRES ("cpu=2,mem=1000M,node=1")."""
    key: str
    event: str                        # "end" or "start"
    cluster: str | None
    job_id: int
    name: str | None
    user_id: int
    user_name: str | None
    group_id: int
    account: str | None
    partition: str | None
    qos: str | None
    state: str
    exit_code: tuple[int, int] | None
    derived_exit_code: tuple[int, int] | None
    submit_time: int | None
    eligible_time: int | None
    start_time: int | None
    end_time: int | None
    elapsed: int
    suspended: int
    time_limit: int | None
    nodes: str | None
    node_count: int
    cpus: int
    tres_alloc: str | None
    tres_req: str | None
    work_dir: str | None
    wckey: str | None = None
    reservation: str | None = None
    array_job_id: int | None = None
    array_task_id: int | None = None
    het_job_id: int | None = None
    het_job_offset: int | None = None
    requeues: int = 0

    @property
    def exit_status(self) -> int | None:
        """The job's exit code alone (0-255), None when unset."""
        return None if self.exit_code is None else self.exit_code[0]


_STR = ("key", "event", "cluster", "name", "user_name", "account", "partition", "qos", "state",
        "nodes", "tres_alloc", "tres_req", "work_dir", "wckey", "reservation")
_INT = ("job_id", "array_job_id", "array_task_id", "het_job_id", "het_job_offset", "user_id",
        "group_id", "exit_code", "derived_ec", "submit_time", "eligible_time", "start_time",
        "end_time", "suspended", "time_limit", "requeues", "node_count", "cpus")


def _time(v: int) -> int | None:
    return v if v > 0 else None


def _user_name(uid: int) -> str | None:
    try:
        return pwd.getpwuid(uid).pw_name
    except (KeyError, OverflowError):
        return None


def from_record(d: dict[str, Any]) -> CompletedJob:
    """A spool record's fields (as csrc/dispatch_jobcomp.c writes them)."""
    for k in _STR:
        if d.get(k) is not None and not isinstance(d[k], str):
            raise RecordError(f"field {k!r} is not a string: {d[k]!r}")
    for k in _INT:
        if not isinstance(d.get(k), int) or isinstance(d.get(k), bool):
            raise RecordError(f"field {k!r} is missing or not an integer")
    if d.get("event") not in ("end", "start") or not d.get("key") or not d.get("state"):
        raise RecordError("no event, key or state")
    start, end, sus = _time(d["start_time"]), _time(d["end_time"]), max(0, d["suspended"])
    elapsed = end - start if start and end and end >= start else 0
    ec, dec = d["exit_code"], d["derived_ec"]
    array = d["array_task_id"] not in (NO_VAL, INFINITE)
    return CompletedJob(
        key=d["key"], event=d["event"], cluster=d.get("cluster"), job_id=d["job_id"],
        name=d.get("name"), user_id=d["user_id"],
        # slurmctld's record often has no name (22.05 fills it lazily):
        # looked up here, on the deliverer, never under slurmctld's locks
        user_name=d.get("user_name") or _user_name(d["user_id"]),
        group_id=d["group_id"], account=d.get("account"), partition=d.get("partition"),
        qos=d.get("qos"), state=d["state"],
        exit_code=_exit_pair(None if ec == NO_VAL else ec),
        derived_exit_code=_exit_pair(None if dec == NO_VAL else dec),
        submit_time=_time(d["submit_time"]), eligible_time=_time(d["eligible_time"]),
        start_time=start, end_time=end, elapsed=elapsed, suspended=sus,
        time_limit=None if d["time_limit"] in (NO_VAL, INFINITE) else d["time_limit"],
        nodes=d.get("nodes") or None, node_count=d["node_count"], cpus=d["cpus"],
        tres_alloc=d.get("tres_alloc"), tres_req=d.get("tres_req"), work_dir=d.get("work_dir"),
        wckey=d.get("wckey") or None, reservation=d.get("reservation") or None,
        array_job_id=d["array_job_id"] if array else None,
        array_task_id=d["array_task_id"] if array else None,
        het_job_id=d["het_job_id"] or None,
        het_job_offset=d["het_job_offset"] if d["het_job_id"] else None,
        requeues=d["requeues"])


def parse(line: bytes | str) -> CompletedJob:
    """One spool line."""
    try:
        d = json.loads(line)
    except ValueError as e:
        raise RecordError(f"not a JSON record: {e}") from None
    if not isinstance(d, dict) or d.get("v") != 1:
        raise RecordError("not a version 1 record")
    return from_record(d)
