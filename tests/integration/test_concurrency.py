"""Concurrency: prep/python async hooks and site_factor/python update() in
one slurmctld, under load, watched for deadlock (issue: reliability, 4)."""
from __future__ import annotations

import collections
import threading
import time

import pytest

from .conftest import BUILD_PLUGINS, RECORDING_HANDLER, read_calls, write_handler

pytestmark = pytest.mark.integration

SF_HANDLER = '''
import json, os, time
from slurmpy_plugins import SiteFactorHandler

LOG = {log!r}

class Factor(SiteFactorHandler):
    def set(self, job):
        return job.job_id % 7
    def update(self, jobs):
        t0 = time.time()
        out = {{j.job_id: (j.job_id % 11) - 5 for j in jobs}}
        with open(LOG, "a") as f:
            f.write(json.dumps({{"t": t0, "n": len(jobs)}}) + "\\n")
        return out
'''

PREP_BODY = '''
    def prolog_slurmctld(self, job):
        record("prolog_slurmctld", job)
        time.sleep(0.02)
    def epilog_slurmctld(self, job):
        record("epilog_slurmctld", job)
'''


class Watchdog(threading.Thread):
    """Pings slurmctld every 0.5 s; a ping over `limit` seconds, or a daemon
    that died, is recorded and fails the test (a deadlock under the job
    lock shows up as a ping that never returns in time).  The limit is
    generous (a shared 2-vCPU machine busy with 500 jobs): it only tells a
    slurmctld that answers from one that does not."""

    def __init__(self, cluster, limit: float = 10.0):
        super().__init__(daemon=True)
        self.c, self.limit = cluster, limit
        self.stop = threading.Event()
        self.worst = 0.0
        self.problems: list[str] = []

    def run(self):
        while not self.stop.is_set():
            try:
                t = self.c.ping_seconds()
            except Exception as e:   # ping timed out or failed
                self.problems.append(f"ping failed: {e}"[:300])
                t = float("inf")
            self.worst = max(self.worst, t)
            if t > self.limit:
                self.problems.append(f"scontrol ping took {t:.1f} s")
            if not (self.c.ctld_running() and self.c.slurmd_running()):
                self.problems.append("a daemon died")
                return
            self.stop.wait(0.5)


def test_500_jobs_async_prep_and_site_factor_update(cluster_factory, tmp_path, dbd):
    hdir = tmp_path / "handlers"
    calls = tmp_path / "calls.jsonl"
    updates = tmp_path / "updates.jsonl"
    write_handler(hdir, "site_prep", RECORDING_HANDLER.format(calls=str(calls), body=PREP_BODY))
    write_handler(hdir, "site_sf", SF_HANDLER.format(log=str(updates)))
    c = cluster_factory(plugin_dirs=[str(BUILD_PLUGINS)], conf_extra=[
        *dbd.accounting_conf(),
        "PrEpPlugins=prep/python",
        f"PrEpParameters=handler=site_prep:Handler,path={hdir}",
        "PrioritySiteFactorPlugin=site_factor/python",
        f"PrioritySiteFactorParameters=handler=site_sf:Factor,path={hdir}",
        "PriorityCalcPeriod=1",
    ])
    c.start()
    dog = Watchdog(c)
    dog.start()
    try:
        # jobs long enough that the flow spans at least one PriorityCalcPeriod
        ids = [c.sbatch("-o", "/dev/null", wrap="sleep 10") for _ in range(500)]
        c.wait_jobs(ids, timeout=900)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            recs = read_calls(calls)
            ep = collections.Counter(r["job_id"] for r in recs if r["hook"] == "epilog_slurmctld")
            if all(ep[j] for j in ids):
                break
            time.sleep(0.5)
    finally:
        dog.stop.set()
        dog.join(timeout=30)
    assert not dog.problems, dog.problems
    pro = collections.Counter(r["job_id"] for r in recs if r["hook"] == "prolog_slurmctld")
    assert {j: pro[j] for j in ids} == {j: 1 for j in ids}
    assert {j: ep[j] for j in ids} == {j: 1 for j in ids}
    ups = read_calls(updates)
    during = [u for u in ups if u["n"] > 0]
    assert during, f"update() never ran while jobs were pending: {ups}"
    log = c.ctld_log()
    assert "Python" in log and "deadlock" not in log.lower()
    print(f"worst scontrol ping {dog.worst * 1000:.0f} ms; update() calls: {ups}")
