"""slurmpy_plugins: Slurm PrEp, site_factor, job_submit and jobcomp plugins
written in Python.

Sites subclass :class:`PrEpHandler` (``PrEpPlugins=prep/python``),
:class:`SiteFactorHandler` (``PrioritySiteFactorPlugin=site_factor/python``)
:class:`JobSubmitHandler` (``JobSubmitPlugins=python``) or
:class:`JobCompHandler` (``JobCompType=jobcomp/python``) or
:class:`SpankHandler` (plugstack.conf ``spank_python.so``).

The names below are imported on first use (PEP 562): a process that
starts Python for one plugin (a slurmstepd for a SPANK hook) imports that
plugin's modules only, not every plugin's records.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._comprecord import CompletedJob
    from ._config import ConfigError
    from ._handlers import (JobCompHandler, JobSubmitHandler, PrEpHandler, Reject,
                            SiteFactorHandler, SpankHandler, SpankOption)
    from ._jobdesc import UNLIMITED, Environment, JobDesc, Partition, Unlimited
    from ._records import JOB_STATES, Job, JobEnv, JobList, SnapshotClosed
    from ._spank import Spank

__all__ = ["PrEpHandler", "SiteFactorHandler", "JobSubmitHandler", "JobCompHandler", "Reject",
           "SpankHandler", "SpankOption", "Spank",
           "CompletedJob", "JobDesc", "Environment",
           "Partition", "Job", "JobEnv", "JobList",
           "JOB_STATES", "ConfigError", "SnapshotClosed", "UNLIMITED", "Unlimited"]
__version__ = "0.1.0"

# public name -> the module that defines it
_WHERE = {
    "ConfigError": "_config",
    "PrEpHandler": "_handlers", "SiteFactorHandler": "_handlers",
    "JobSubmitHandler": "_handlers", "JobCompHandler": "_handlers", "Reject": "_handlers",
    "SpankHandler": "_handlers", "SpankOption": "_handlers",
    "Spank": "_spank",
    "CompletedJob": "_comprecord",
    "JobDesc": "_jobdesc", "Environment": "_jobdesc", "Partition": "_jobdesc",
    "UNLIMITED": "_jobdesc", "Unlimited": "_jobdesc",
    "JOB_STATES": "_records", "Job": "_records", "JobEnv": "_records", "JobList": "_records",
    "SnapshotClosed": "_records",
}


def __getattr__(name: str) -> Any:
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib
    value = getattr(importlib.import_module(f".{where}", __name__), name)
    globals()[name] = value      # once: later lookups do not come here
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
