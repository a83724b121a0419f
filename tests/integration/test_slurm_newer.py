"""Behaviour of Slurm releases after 22.05 that a handler can see, on real
daemons (they skip, with the reason, on a release without it).

- 24.05+: every slurmstepd loads the PrEp plugins and calls init(): the shim
  must not start Python there.
- 23.11+: ``scontrol reconfigure`` execs a new slurmctld (in place under
  -D); fini() is never called, and the new process re-runs
  prolog_slurmctld for jobs still configuring.
- 25.11+: job_env_t carries the request's whole slurm_step_id_t, so
  ``JobEnv.step_id`` of an epilog and of a PrologFlags=Alloc prolog is the
  step id of slurmd's request (NO_VAL, the extern step) where older
  releases left it 0.
"""
from __future__ import annotations

import os
import re
import time

import pytest

from tests.harness.slurmcluster import slurm_at_least

from .conftest import read_calls, wait_calls

SLEEPER = "sleep 6"


def _stepds(c) -> dict[int, str]:
    """{pid: /proc/pid/maps text} of this cluster's slurmstepd processes."""
    out = {}
    for pid in c.slurmstepd_pids():
        try:
            with open(f"/proc/{pid}/maps") as f:
                out[pid] = f.read()
        except OSError:
            continue
    return out


def _rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        m = re.search(r"^VmRSS:\s+(\d+) kB", f.read(), re.M)
    return int(m.group(1)) if m else 0


@pytest.mark.skipif(not slurm_at_least(24, 5),
                    reason="slurmstepd loads PrEp plugins from 24.05 on")
def test_slurmstepd_loads_prep_python_but_never_starts_python(prep_cluster, cluster_factory):
    c, calls = prep_cluster()
    # a batch step and an srun step
    jid = c.sbatch("-o", "/dev/null", wrap=f"srun {SLEEPER} & {SLEEPER}; wait")
    c.wait_job(jid, ("RUNNING",), timeout=30)
    deadline = time.monotonic() + 20
    while True:
        steps = _stepds(c)
        loaded = {p: m for p, m in steps.items() if "prep_python.so" in m}
        if len(loaded) >= 2 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert len(loaded) >= 2, (
        f"expected the batch and srun slurmstepd to load prep_python.so: "
        f"{ {p: 'prep_python.so' in m for p, m in steps.items()} }")
    # Python starting would import the cffi backend (and log that it started)
    started = [p for p, m in loaded.items() if "_cffi_backend" in m]
    assert not started, f"slurmstepd {started} started Python"
    rss_with = max(_rss_kb(p) for p in loaded)
    c.wait_job(jid, timeout=60)
    py_lines = re.findall(r"slurmpy: Python \S+ .* started", c.slurmd_log())
    assert len(py_lines) == 1, py_lines          # slurmd's own, nothing else
    assert any(r["hook"] == "prolog" and r["job_id"] == jid for r in read_calls(calls))

    # the same job without prep/python, for the figures
    plain = cluster_factory("plain")
    plain.start()
    jid2 = plain.sbatch("-o", "/dev/null", wrap=f"srun {SLEEPER} & {SLEEPER}; wait")
    plain.wait_job(jid2, ("RUNNING",), timeout=30)
    deadline = time.monotonic() + 20
    while len(_stepds(plain)) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    rss_without = max(_rss_kb(p) for p in _stepds(plain))
    print(f"slurmstepd VmRSS: {rss_with} kB with prep/python, {rss_without} kB without")
    # libslurmpy.so and libpython are mapped, nothing runs: measured 2 MB
    # here (24.11.5); a started interpreter alone adds more than 6 MB
    assert rss_with - rss_without < 6 * 1024, (rss_with, rss_without)


RERUN_BODY = '''
    def prolog_slurmctld(self, job):
        record("prolog_slurmctld", job)
        time.sleep(4)
    def epilog_slurmctld(self, job):
        record("epilog_slurmctld", job)
'''


@pytest.mark.skipif(not slurm_at_least(23, 11),
                    reason="22.05 reconfigures in the same process")
def test_reconfigure_while_configuring_runs_prolog_slurmctld_again(prep_cluster, tmp_path):
    """The new slurmctld re-runs prolog_slurmctld for a job whose
    prolog_slurmctld was running: the handler sees the job twice, the job
    still runs once and completes."""
    c, calls = prep_cluster(RERUN_BODY)
    ran = tmp_path / "ran"
    jid = c.sbatch("-o", "/dev/null", wrap=f"echo x >> {ran}")
    deadline = time.monotonic() + 30
    while not any(r["job_id"] == jid for r in read_calls(calls)):
        assert time.monotonic() < deadline, "prolog_slurmctld never called"
        time.sleep(0.1)
    since = c.log_offset()
    c.reconfigure()
    c.wait_for_log(r"prep/python: loaded handler", since=since, timeout=30)
    rec = c.wait_job(jid, timeout=60)
    assert rec["JobState"] == "COMPLETED", rec
    assert ran.read_text() == "x\n", "the batch script ran other than once"
    deadline = time.monotonic() + 15
    while True:
        recs = [r for r in read_calls(calls) if r["job_id"] == jid]
        if any(r["hook"] == "epilog_slurmctld" for r in recs) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    hooks = [r["hook"] for r in recs]
    assert hooks.count("prolog_slurmctld") == 2, hooks
    assert hooks.count("epilog_slurmctld") == 1, hooks
    assert c.ctld_running()


# Slurm's step id sentinels (slurm.h)
SLURM_BATCH_SCRIPT = 0xFFFFFFFB
SLURM_EXTERN_CONT = 0xFFFFFFFC
NO_VAL = 0xFFFFFFFE

IDS_BODY = """
    def prolog(self, env):
        record("prolog", env)
    def epilog(self, env):
        record("epilog", env)
"""


@pytest.mark.parametrize("flags", ["", "Alloc"])
def test_jobenv_step_id_of_prolog_and_epilog(prep_cluster, flags):
    """What ``env.step_id`` is in slurmd's prolog and epilog of a batch job.

    Up to 25.05 slurmd fills job_env_t's uint32 step_id itself: the batch
    script's id for the prolog of a batch launch, 0 ("not available") for
    the PrologFlags=Alloc prolog, and nothing (0) for the epilog
    (src/slurmd/slurmd/req.c).  From 25.11 job_env_t.step_id is the
    request's slurm_step_id_t: the Alloc prolog's request names the extern
    step, the epilog's (terminate job) names no step, NO_VAL.  ``job_id``
    is the job's everywhere."""
    conf = [f"PrologFlags={flags}"] if flags else []
    c, calls = prep_cluster(IDS_BODY, conf_extra=conf)
    jid = c.sbatch("-o", "/dev/null", wrap="true")
    c.wait_job(jid, timeout=60)
    recs = wait_calls(calls, lambda rs: {"prolog", "epilog"} <= {r["hook"] for r in rs},
                      timeout=60, what="prolog and epilog", cluster=c)
    seen = {r["hook"]: r["fields"] for r in recs}
    assert [r["hook"] for r in recs].count("prolog") == 1, recs
    assert seen["prolog"]["job_id"] == seen["epilog"]["job_id"] == jid
    new = slurm_at_least(25, 11)
    if flags == "Alloc":
        want_prolog = SLURM_EXTERN_CONT if new else 0
    else:
        want_prolog = SLURM_BATCH_SCRIPT
    assert seen["prolog"]["step_id"] == want_prolog, seen
    assert seen["epilog"]["step_id"] == (NO_VAL if new else 0), seen


@pytest.mark.skipif(not slurm_at_least(25, 5),
                    reason="PrologTimeout and EpilogTimeout are separate from 25.05 on")
def test_split_prolog_epilog_timeouts_limit_hooks_without_timeout_param(prep_cluster):
    """25.05 splits PrologEpilogTimeout into PrologTimeout and
    EpilogTimeout: with no ``timeout=`` in PrEpParameters they are the
    per-call limit of the handler's hooks, as they are of prep/script's
    scripts.  A hung prolog is cut at the limit and drains the node."""
    body = '''
    def prolog(self, env):
        record("prolog", env)
        time.sleep(3600)
'''
    c, calls = prep_cluster(body, conf_extra=["PrologTimeout=2", "EpilogTimeout=2"])
    jid = c.sbatch("-o", "/dev/null", wrap="true")
    node = c.wait_node(predicate=lambda n: "DRAIN" in n.get("State", ""), timeout=90)
    assert node.get("Reason", "").startswith("prep/python: prolog timed out after 2000 ms"), node
    c.wait_for_log(rf"prolog for JobId={jid} timed out: the handler exceeded its "
                   r"time limit of 2000 ms", "slurmd", timeout=30)
