"""slurmpy_plugins: Slurm PrEp, site_factor and job_submit plugins written
in Python.

Sites subclass :class:`PrEpHandler` (``PrEpPlugins=prep/python``),
:class:`SiteFactorHandler` (``PrioritySiteFactorPlugin=site_factor/python``)
or :class:`JobSubmitHandler` (``JobSubmitPlugins=python``).
"""
from ._config import ConfigError
from ._handlers import JobSubmitHandler, PrEpHandler, Reject, SiteFactorHandler
from ._jobdesc import JobDesc, Partition
from ._records import JOB_STATES, Job, JobEnv, JobList, SnapshotClosed

__all__ = ["PrEpHandler", "SiteFactorHandler", "JobSubmitHandler", "Reject", "JobDesc",
           "Partition", "Job", "JobEnv", "JobList",
           "JOB_STATES", "ConfigError", "SnapshotClosed"]
__version__ = "0.1.0"
