"""Example site_factor/python handler: a per-account boost.

slurm.conf:
    PriorityType=priority/multifactor
    PrioritySiteFactorPlugin=site_factor/python
    PrioritySiteFactorParameters=handler=demo_site_factor:DemoFactor,path=/etc/slurm/handlers
"""
import logging

from slurmpy_plugins import SiteFactorHandler

log = logging.getLogger("demo_site_factor")

BOOST = {"urgent": 700, "background": -500}


class DemoFactor(SiteFactorHandler):
    def set(self, job):
        return BOOST.get(job.name, 0)

    def update(self, jobs):
        return {job.job_id: BOOST.get(job.name, 0) for job in jobs}

    def reconfig(self):
        log.info("reconfigured")
