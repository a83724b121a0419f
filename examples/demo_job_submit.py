"""Example job_submit/python handler: a default, a refusal, a change.

slurm.conf:
    JobSubmitPlugins=python
job_submit_python.conf (beside slurm.conf):
    handler=demo_job_submit:DemoSubmit
    path=/etc/slurm/handlers
"""
from slurmpy_plugins import JobSubmitHandler, Reject

DEFAULT_MINUTES = 60


class DemoSubmit(JobSubmitHandler):
    def submit(self, job, submit_uid):
        if job.name == "forbidden":
            raise Reject("job names may not be 'forbidden' on this cluster",
                         code="ESLURM_ACCESS_DENIED")
        if job.time_limit is None:              # no --time: the site's default
            job.time_limit = DEFAULT_MINUTES
            self.log_user("no --time given: the limit is %d minutes", DEFAULT_MINUTES)
