"""The classes a site subclasses."""
from __future__ import annotations

from collections.abc import Mapping

from ._records import Job, JobEnv, JobList

__all__ = ["PrEpHandler", "SiteFactorHandler"]


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
        Slurm 22.05 (see the README)."""

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

    def set(self, job: Job) -> int | None:
        """A job was submitted or its priority is being recalculated:
        return its factor, or None to leave it unchanged."""
        return None

    def update(self, jobs: JobList) -> Mapping[int, int] | None:
        """Every PriorityCalcPeriod, with all pending jobs: return
        {job_id: factor}; jobs left out keep their factor."""
        return None

    def reconfig(self) -> None:
        """``scontrol reconfigure`` happened."""
