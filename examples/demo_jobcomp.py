"""Example jobcomp/python handler: one line per finished job.

slurm.conf:
    JobCompType=jobcomp/python
jobcomp_python.conf (beside slurm.conf):
    handler=demo_jobcomp:DemoLedger
    path=/etc/slurm/handlers
"""
import json
import os

from slurmpy_plugins import JobCompHandler

LEDGER = os.environ.get("DEMO_LEDGER", "/tmp/slurmpy-demo-ledger.jsonl")


class DemoLedger(JobCompHandler):
    def job_end(self, job):
        # delivered at least once: a real ledger de-duplicates on job.key
        with open(LEDGER, "a", encoding="utf-8") as f:
            f.write(json.dumps({"key": job.key, "job_id": job.job_id, "name": job.name,
                                "state": job.state, "elapsed": job.elapsed,
                                "cpus": job.cpus}, ensure_ascii=False) + "\n")
