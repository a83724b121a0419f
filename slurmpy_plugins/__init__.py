"""slurmpy_plugins: Slurm PrEp, site_factor, job_submit and jobcomp plugins
written in Python.

Sites subclass :class:`PrEpHandler` (``PrEpPlugins=prep/python``),
:class:`SiteFactorHandler` (``PrioritySiteFactorPlugin=site_factor/python``)
:class:`JobSubmitHandler` (``JobSubmitPlugins=python``) or
:class:`JobCompHandler` (``JobCompType=jobcomp/python``) or
:class:`SpankHandler` (plugstack.conf ``spank_python.so``).
"""
from ._config import ConfigError
from ._handlers import (JobCompHandler, JobSubmitHandler, PrEpHandler, Reject, SiteFactorHandler,
                        SpankHandler, SpankOption)
from ._spank import Spank
from ._comprecord import CompletedJob
from ._jobdesc import UNLIMITED, JobDesc, Partition, Unlimited
from ._records import JOB_STATES, Job, JobEnv, JobList, SnapshotClosed

__all__ = ["PrEpHandler", "SiteFactorHandler", "JobSubmitHandler", "JobCompHandler", "Reject",
           "SpankHandler", "SpankOption", "Spank",
           "CompletedJob", "JobDesc",
           "Partition", "Job", "JobEnv", "JobList",
           "JOB_STATES", "ConfigError", "SnapshotClosed", "UNLIMITED", "Unlimited"]
__version__ = "0.1.0"
