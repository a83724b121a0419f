"""slurmpy_plugins: Slurm PrEp and site_factor plugins written in Python.

Sites subclass :class:`PrEpHandler` (``PrEpPlugins=prep/python``) or
:class:`SiteFactorHandler` (``PrioritySiteFactorPlugin=site_factor/python``).
"""
from ._config import ConfigError
from ._handlers import PrEpHandler, SiteFactorHandler
from ._records import JOB_STATES, Job, JobEnv, JobList, SnapshotClosed

__all__ = ["PrEpHandler", "SiteFactorHandler", "Job", "JobEnv", "JobList",
           "JOB_STATES", "ConfigError", "SnapshotClosed"]
__version__ = "0.1.0"
