"""Example prep/python handler: logs and records what each hook sees.

slurm.conf:
    PrEpPlugins=prep/python
    PrEpParameters=handler=demo_prep:DemoPrEp,path=/etc/slurm/handlers
    Epilog=/bin/true          # Slurm 22.05's slurmd skips epilogs otherwise
"""
import json
import logging
import os

from slurmpy_plugins import PrEpHandler

log = logging.getLogger("demo_prep")
SEEN = os.environ.get("DEMO_SEEN", "/tmp/slurmpy-demo-seen.jsonl")


def _record(hook, rec, keys):
    entry = {"hook": hook, **{k: getattr(rec, k) for k in keys}}
    with open(SEEN, "a", encoding="utf-8") as f:
        f.write(json.dumps(entry, ensure_ascii=False, default=sorted) + "\n")


class DemoPrEp(PrEpHandler):
    def prolog_slurmctld(self, job):
        log.info("prolog_slurmctld: JobId=%s name=%r user=%s partition=%s cpus=%s",
                 job.job_id, job.name, job.user_name, job.partition, job.num_cpus)
        _record("prolog_slurmctld", job, ("job_id", "name", "user_name", "partition",
                                          "num_cpus", "time_limit", "state", "comment"))
        if job.comment == "please refuse me":
            raise PermissionError(f"JobId={job.job_id} refused by site policy")

    def prolog(self, env):
        _record("prolog", env, ("job_id", "uid", "user_name", "partition", "node_list"))

    def epilog(self, env):
        _record("epilog", env, ("job_id", "uid", "node_list", "work_dir"))

    def epilog_slurmctld(self, job):
        _record("epilog_slurmctld", job, ("job_id", "name", "state", "exit_code"))
