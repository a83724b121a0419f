"""Fair share by account (site_factor/python): accounts that used less
than their share get a higher SITE factor.

slurm.conf:
    PriorityType=priority/multifactor
    PrioritySiteFactorPlugin=site_factor/python
    PrioritySiteFactorParameters=handler=fairshare:FairShare,path=/etc/slurm/handlers

SHARES: {account: share}; USAGE_FILE: a JSON {account: used core-hours}
written by the site's accounting job.  factor = SCALE * share / (share +
used fraction), so an account at its share gets SCALE/2; accounts not in
SHARES get 0.
"""
from __future__ import annotations

import json
from collections.abc import Mapping

from slurmpy_plugins import Job, JobList, SiteFactorHandler


class FairShare(SiteFactorHandler):
    SHARES: Mapping[str, float] = {}
    USAGE_FILE = "/etc/slurm/usage.json"
    SCALE = 100_000

    def usage(self) -> dict[str, float]:
        try:
            with open(self.USAGE_FILE, encoding="utf-8") as f:
                return {str(k): float(v) for k, v in json.load(f).items()}
        except FileNotFoundError:
            return {}

    def factor(self, account: str | None, usage: Mapping[str, float]) -> int:
        share = self.SHARES.get(account or "", 0.0)
        if share <= 0:
            return 0
        total = sum(usage.values()) or 1.0
        used = usage.get(account or "", 0.0) / total
        return int(self.SCALE * share / (share + used))

    def set(self, job: Job) -> int | None:
        return self.factor(job.account, self.usage())

    def update(self, jobs: JobList) -> dict[int, int]:
        usage = self.usage()
        return {j.job_id: self.factor(j.account, usage) for j in jobs}
