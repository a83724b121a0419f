"""The classes a site subclasses."""
from __future__ import annotations

import dataclasses
import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:   # annotations only: a SpankHandler's module imports no records
    from ._comprecord import CompletedJob
    from ._jobdesc import JobDesc, Partition
    from ._records import Job, JobEnv, JobList
    from ._spank import Spank

__all__ = ["PrEpHandler", "SiteFactorHandler", "JobSubmitHandler", "JobCompHandler", "Reject",
           "SpankHandler", "SpankOption"]


class PrEpHandler:
    """Base class for prep/python handlers.

    Override any of the four hooks.  A hook succeeds by returning None and
    fails by raising (any exception); a hook that is not overridden is not
    called at all (prep_p_required reports it as not required).

    The class is instantiated once per daemon, with no arguments.  slurmctld
    calls ``prolog_slurmctld``/``epilog_slurmctld`` on worker threads, several
    at a time: keep shared state thread-safe.
    """

    def prolog(self, env: JobEnv) -> None:
        """slurmd, as root, before the job's first step on this node.
        Failure drains the node (as a failing Prolog= script does)."""

    def epilog(self, env: JobEnv) -> None:
        """slurmd, as root, after the job's last step on this node.
        Failure drains the node.  Needs ``Epilog=`` set in slurm.conf on
        Slurm 22.05 (see docs/admin.md, "Slurm releases")."""

    def prolog_slurmctld(self, job: Job) -> None:
        """slurmctld, on a worker thread, before the job launches.  Failure
        requeues the job, or kills it if it cannot be requeued."""

    def epilog_slurmctld(self, job: Job) -> None:
        """slurmctld, on a worker thread, after the job ends.  Failure is
        logged (Slurm does nothing else for a failed EpilogSlurmctld)."""


class SiteFactorHandler:
    """Base class for site_factor/python handlers (PriorityType=
    priority/multifactor).  Factors are signed ints as ``sprio`` shows them
    in its SITE column."""

    #: The Job fields update() reads, e.g. ``("account", "num_cpus",
    #: "submit_time")``: then iterating ``jobs`` gives light rows holding
    #: only those fields (and ``job_id``), copied from slurmctld in one pass
    #: per field.  None (the default): full :class:`Job` views.  Checked
    #: when the handler loads: an unknown name fails the load, naming it.
    fields: tuple[str, ...] | None = None

    def set(self, job: Job) -> int | None:
        """A job was submitted or its priority is being recalculated:
        return its factor, or None to leave it unchanged."""
        return None

    def update(self, jobs: JobList) -> Mapping[int, int] | Sequence[int | None] | None:
        """Every PriorityCalcPeriod, with all pending jobs (a
        :class:`JobList`).  Return {job_id: factor} (jobs left out keep
        their factor), or one factor per job in the order of ``jobs`` (a
        list/tuple of int or None for "unchanged", or an integer buffer:
        ``array.array``, a numpy array), or None to change nothing."""
        return None

    def reconfig(self) -> None:
        """``scontrol reconfigure`` happened."""


class Reject(Exception):
    """Raise from submit()/modify() to refuse the request; the message is
    what the user sees (sbatch/srun/salloc print it and exit non-zero).

    ``code``: the error code job_submit returns to Slurm, by name as in
    Slurm's slurm_errno.h (``"ESLURM_INVALID_ACCOUNT"``) or by number
    (2045); sbatch then prints Slurm's own message for it after the text
    ("Batch job submission failed: Invalid account or account/partition
    combination specified").  None (the default): SLURM_ERROR, which
    sbatch prints as "Unspecified error".  A name or number that is not a
    code of Slurm's slurm_errno.h raises ValueError here."""

    def __init__(self, message: str, code: str | int | None = None) -> None:
        if not isinstance(message, str):
            raise TypeError(f"Reject() takes a str message, not {type(message).__name__}")
        from . import _errno        # here: a SpankHandler's module needs no error table
        number = None if code is None else _errno.resolve(code)
        super().__init__(message)
        self.message = message
        #: the code's number (None: no code given, Slurm gets SLURM_ERROR)
        self.code: int | None = number
        #: the code's name in slurm_errno.h (None without a code)
        self.code_name: str | None = (code if isinstance(code, str)
                                      else None if number is None else _errno.name_of(number))


# The call in progress on this worker thread (set by the bridge).
_call = threading.local()


class JobSubmitHandler:
    """Base class for job_submit/python handlers (JobSubmitPlugins=python).

    ``submit()`` and ``modify()`` accept by returning (None) and refuse by
    raising :class:`Reject` (its message reaches the user) or any other
    exception (the user gets a generic message, the traceback goes to
    slurmctld's log).  Changes made to ``job`` reach Slurm only if the hook
    returns normally.  The class is instantiated once per slurmctld; calls
    come one at a time (Slurm serializes job_submit plugins).
    """

    def submit(self, job: JobDesc, submit_uid: int) -> None:
        """sbatch/srun/salloc (and ``sbatch --test-only``): ``job`` is the
        request (a :class:`JobDesc`), ``submit_uid`` the submitting uid."""

    def modify(self, job: JobDesc, current: Job, submit_uid: int) -> None:
        """``scontrol update job``: ``job`` holds the fields being changed
        (others unset), ``current`` is a copy of the job as it is."""

    def log_user(self, message: str, *args: object) -> None:
        """Send the user a message (shown by sbatch/srun/salloc, also when
        the request is accepted; several calls make several lines).  Only
        during a submit()/modify() call.  With ``args`` the message is a
        %-format, as ``logging`` takes it (``self.log_user("%d SU left",
        n)``; one dict argument fills ``%(name)s``); without, it is sent as
        it is, ``%`` included.  Arguments that do not fit the format raise
        ValueError naming both."""
        msgs = getattr(_call, "messages", None)
        if msgs is None:
            raise RuntimeError("log_user() only works during a submit() or modify() call")
        if not isinstance(message, str):
            raise TypeError(f"log_user() takes a str, not {type(message).__name__}")
        if args:
            # logging.LogRecord.getMessage(): one non-empty mapping is the mapping
            fill: object = args
            if len(args) == 1 and isinstance(args[0], Mapping) and args[0]:
                fill = args[0]
            try:
                message = message % fill
            except (TypeError, ValueError, KeyError) as e:
                detail = f"no key {e}" if isinstance(e, KeyError) else str(e)
                raise ValueError(f"log_user({message!r}, "
                                 f"{', '.join(repr(a) for a in args)}): the arguments do not "
                                 f"fit the format: {detail}") from None
        msgs.append(message)

    @property
    def partitions(self) -> dict[str, Partition]:
        """The partitions as slurmctld had them when this call began:
        {name: Partition}.  Only during a submit()/modify() call."""
        parts = getattr(_call, "partitions", None)
        if parts is None:
            raise RuntimeError("partitions can only be read during a submit() or modify() call")
        if callable(parts):   # built on first use (most calls never read them)
            parts = _call.partitions = parts()
        return cast("dict[str, Partition]", parts)

    @property
    def usable_partitions(self) -> dict[str, Partition]:
        """The partitions of :attr:`partitions` that job_submit/lua's
        ``part_list`` holds for this call: those the request's user
        (``job.user_id``; for modify() the job's owner) may use by Lua's
        rule (its _user_can_use_part(): root sees all but NoRoot
        ones; others not RootOnly ones unless root submits, and only
        AllowGroups= partitions whose groups include them).  AllowAccounts,
        AllowQos, DenyAccounts and DenyQos are not applied, as in Lua.
        Only during a submit()/modify() call."""
        from ._jobdesc import usable
        parts = self.partitions
        user_id, submit_uid = cast("tuple[int, int]", _call.user)
        return {n: p for n, p in parts.items() if usable(p, user_id, submit_uid)}


class JobCompHandler:
    """Base class for jobcomp/python handlers (JobCompType=jobcomp/python).

    slurmctld appends each finished job's record to a spool on disk under
    its locks and hands the records over from a thread of its own, one at
    a time, in order.  A hook takes a record by returning; if it raises,
    runs past ``timeout=`` or no handler can be loaded, the record is kept
    and offered again (with backoff), and no later record comes first.
    Delivery is at least once: a record may come again after a crash of
    slurmctld, so de-duplicate on ``job.key``.  The class is instantiated
    once per slurmctld.
    """

    def job_end(self, job: CompletedJob) -> None:
        """A job finished (any end state: ``job.state``)."""

    def job_start(self, job: CompletedJob) -> None:
        """A job started: Slurm 25.05 and later, with
        ``JobCompParams=enable_job_start`` in slurm.conf."""


@dataclasses.dataclass(frozen=True)
class SpankOption:
    """An option of srun, sbatch and salloc (``--name=VALUE``, or ``--name``
    for ``arg=None``), listed in their ``--help`` with ``help``.

    spank_python.so registers options without starting Python: it reads
    them from the handler's module file as text, so declare each one in
    the class's ``options`` list as a call written with string literals,
    ``SpankOption("name", arg="VALUE", help="text")``.  ``slurmpy-plugins
    check`` and the test kit refuse a class whose options differ from that
    reading."""
    name: str
    arg: str | None = None
    help: str = ""


class SpankHandler:
    """Base class for spank/python handlers (plugstack.conf:
    ``required spank_python.so handler=module:Class path=DIR``).

    Each hook is named after SPANK's callback without ``slurm_spank_`` and
    gets a :class:`slurmpy_plugins.Spank` object.  A hook that raises fails
    as a non-zero SPANK return does (for a ``required`` plugin, the step
    fails), with its message in the log.  Python starts in a process only
    when the module defines (``def <hook>(``) a hook SPANK calls there:
    ``init`` in every process, ``init_post_opt`` and ``exit`` in srun,
    sbatch and slurmstepd, ``local_user_init`` in srun, the ``task_*``
    hooks and ``user_init`` in slurmstepd, ``job_prolog``/``job_epilog``
    in slurmd's job_script process, ``slurmd_exit`` in slurmd.
    """

    options: Sequence[SpankOption] = ()

    def init(self, spank: "Spank") -> None:
        """Every process that loads the plugin, before the options are
        parsed (Python then starts in every srun, sbatch, slurmstepd and
        slurmd)."""

    def init_post_opt(self, spank: "Spank") -> None:
        """After the options are known (local, allocator, remote)."""

    def local_user_init(self, spank: "Spank") -> None:
        """srun, as the user, before the step is launched."""

    def user_init(self, spank: "Spank") -> None:
        """slurmstepd, as the user, before the tasks start."""

    def task_init_privileged(self, spank: "Spank") -> None:
        """slurmstepd's task child, as root, before it becomes the user."""

    def task_init(self, spank: "Spank") -> None:
        """slurmstepd's task child, as the user, just before exec."""

    def task_post_fork(self, spank: "Spank") -> None:
        """slurmstepd, as root, for each task once it is forked."""

    def task_exit(self, spank: "Spank") -> None:
        """slurmstepd, as root, for each task that exited."""

    def exit(self, spank: "Spank") -> None:
        """At the end (local, allocator, remote; slurmstepd: as root)."""

    def job_prolog(self, spank: "Spank") -> None:
        """The job_script process slurmd runs beside the job's prolog, as
        root, on each node (context "job_script")."""

    def job_epilog(self, spank: "Spank") -> None:
        """The same beside the job's epilog."""

    def slurmd_exit(self, spank: "Spank") -> None:
        """slurmd, as it shuts down (context "slurmd")."""
