"""Smoke tests for the tests/harness/slurmcluster.py harness against a real Slurm.

No slurmpy_plugins code is involved: these pin down how stock Slurm 22.05
(Debian 12 packages) behaves in this environment, which is what the Python
PrEp plugin has to reproduce.
"""

from __future__ import annotations

import os
import pathlib
import re
import time

import pytest

from tests.harness.slurmcluster import (SLURM_PLUGIN_DIR, Cluster, JobStateError, job_re,
                          parse_kv_line, slurm_at_least)

# No skips: without root or the Slurm packages these tests must fail loudly.
pytestmark = pytest.mark.integration

# "[2026-11-21T07:26:08.224] " -- LogTimeFormat=iso8601_ms
TS = r"\[\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\]"


def _script(path: pathlib.Path, body: str) -> str:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return str(path)


# --------------------------------------------------------------- unit-ish

def test_parse_kv_line_spaces_and_free_text():
    line = ("JobId=7 JobName=my job x=1 UserId=root(0) JobState=PENDING "
            "Reason=None AllocNode:Sid=vm:1 CPUs/Task=1 "
            "Comment=a b Foo=bar WorkDir=/tmp/a b StdOut=/x Power= ")
    d = parse_kv_line(line)
    assert d["JobId"] == "7"
    assert d["JobName"] == "my job x=1"
    assert d["Comment"] == "a b Foo=bar"
    assert d["WorkDir"] == "/tmp/a b"
    assert d["AllocNode:Sid"] == "vm:1"
    assert d["CPUs/Task"] == "1"
    assert d["Power"] == ""
    node = parse_kv_line("NodeName=n1 CoresPerSocket=1  CPUAlloc=0 "
                         "OS=Linux 6.1 #1 SMP PREEMPT_DYNAMIC @0  "
                         "RealMemory=1 State=IDLE+DRAIN "
                         "Reason=Prolog error [root@2026-11-21T07:26:29]")
    assert node["OS"] == "Linux 6.1 #1 SMP PREEMPT_DYNAMIC @0"
    assert node["CPUAlloc"] == "0"
    assert node["Reason"] == "Prolog error [root@2026-11-21T07:26:29]"


def test_conf_extra_overrides_defaults(tmp_path):
    c = Cluster(tmp_path / "c", conf_extra=["schedulertype=sched/builtin",
                                            "KillWait=5"],
                plugin_dirs=["/opt/x"])
    text = c.conf_path.read_text()
    assert "SchedulerType=sched/backfill" not in text
    assert "schedulertype=sched/builtin" in text
    assert text.count("KillWait=") == 1 and "KillWait=5" in text
    assert f"PluginDir=/opt/x:{SLURM_PLUGIN_DIR}" in text
    assert c.ctld_port != c.slurmd_port


# ------------------------------------------------------------- real cluster

def test_single_job_and_output(cluster_factory):
    t0 = time.monotonic()
    c = cluster_factory().start()
    t1 = time.monotonic()
    jid = c.sbatch("-o", "out.%j", wrap="echo hi")
    rec = c.wait_job(jid)
    t2 = time.monotonic()
    assert rec["ExitCode"] == "0:0"
    assert rec["StdOut"] == str(c.workdir / f"out.{jid}")
    assert c.job_output(jid) == "hi\n"
    print(f"\ncluster start {t1 - t0:.2f}s, one job {t2 - t1:.2f}s, "
          f"scontrol ping {c.ping_seconds() * 1000:.1f}ms")
    node = c.node()
    assert node["State"] == "IDLE"
    assert node["CPUTot"] == "64"


def test_twenty_jobs_run_concurrently(cluster_factory):
    c = cluster_factory().start()
    ids = [c.sbatch(wrap=f"sleep 1; echo job{i}") for i in range(20)]
    recs = c.wait_jobs(ids, timeout=60)
    assert set(recs) == set(ids)
    for i, jid in enumerate(ids):
        assert c.job_output(jid) == f"job{i}\n"
    # 20 x 1-cpu jobs fit on the 64-cpu node at once: run times overlap
    starts = {recs[j]["StartTime"] for j in ids}
    assert len(starts) <= 3, starts


def test_failed_job_raises(cluster_factory):
    c = cluster_factory().start()
    jid = c.sbatch(wrap="exit 3")
    with pytest.raises(JobStateError) as ei:
        c.wait_job(jid, timeout=30)
    assert ei.value.job["JobState"] == "FAILED"
    assert ei.value.job["ExitCode"] == "3:0"


def test_stop_kills_running_job_processes(cluster_factory, tmp_path):
    c = cluster_factory().start()
    jid = c.sbatch(wrap="sleep 300")
    c.wait_job(jid, ("RUNNING",))
    # wait for the job's processes (slurmstepd + sleep) to exist
    deadline = time.monotonic() + 10
    while not c.leftover_pids() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert c.leftover_pids()
    ctld, slurmd = c.ctld_pid, c.slurmd_pid
    c.stop()
    c.stop()  # idempotent
    assert not c.ctld_running() and not c.slurmd_running()
    assert c.leftover_pids() == []
    for pid in (ctld, slurmd):
        assert not os.path.exists(f"/proc/{pid}") or \
            open(f"/proc/{pid}/stat").read().split(") ")[1][0] == "Z"


def test_sprio_site_column(cluster_factory):
    c = cluster_factory().start()
    # sprio lists only pending jobs that are eligible (not held, no future
    # --begin): drain the node.  (Asking for more CPUs than the node has
    # pends on 22.05, but 24.11 refuses it at submission.)
    c.drain("keep jobs pending")
    jid = c.sbatch(wrap="true")
    c.wait_job(jid, ("PENDING",))
    prio = c.sprio()
    assert jid in prio
    assert prio[jid]["SITE"] == "0"
    assert "PRIORITY" in prio[jid]


def test_restart_ctld_keeps_jobs(cluster_factory):
    c = cluster_factory().start()
    jid = c.sbatch(wrap="echo hi")
    c.wait_job(jid)
    c.stop_ctld()
    c.start_ctld()            # not clean on restart: state is recovered
    assert c.job(jid)["JobState"] == "COMPLETED"
    jid2 = c.sbatch(wrap="echo again")
    c.wait_job(jid2)


def test_epilog_runs_for_every_job(cluster_factory, tmp_path):
    marker = tmp_path / "epilog.marker"
    c = cluster_factory(epilog=f'#!/bin/sh\necho "$SLURM_JOB_ID" >> {marker}\n')
    c.start()
    jid = c.sbatch(wrap="true")
    c.wait_job(jid)
    c.wait_for_log(rf"{job_re(jid)}: sent epilog complete msg", "slurmd")
    assert marker.read_text().split() == [str(jid)]


# ----------------------------------------------------- stock prep/script

def test_prolog_slurmctld_success(cluster_factory, tmp_path):
    marker = tmp_path / "pctld.marker"
    script = _script(tmp_path / "pctld.sh",
                     f'echo "$SLURM_JOB_ID" >> {marker}\nexit 0\n')
    c = cluster_factory(conf_extra=["PrEpPlugins=prep/script",
                                    f"PrologSlurmctld={script}"]).start()
    jid = c.sbatch(wrap="echo ran")
    c.wait_job(jid)
    assert marker.read_text().split() == [str(jid)]
    assert c.job_output(jid) == "ran\n"
    # the line the team keys on; millisecond timestamps (iso8601_ms)
    m = c.wait_for_log(
        rf"^{TS} prolog_running_decr: Configuration for {job_re(jid)} "
        r"is complete$")
    print("\n" + m.group(0))


def test_prolog_slurmctld_failure_no_requeue(cluster_factory, tmp_path):
    script = _script(tmp_path / "pctld.sh", "exit 1\n")
    c = cluster_factory(conf_extra=["PrEpPlugins=prep/script",
                                    f"PrologSlurmctld={script}"]).start()
    jid = c.sbatch("--no-requeue", "-o", "out.%j", wrap="echo ran")
    rec = c.wait_job(jid, ("CANCELLED",))
    assert rec["Reason"] == "None"
    assert rec["ExitCode"] == "0:0"
    assert rec["Requeue"] == "0" and rec["Restarts"] == "0"
    assert rec["NodeList"] == c.NODE
    assert not (c.workdir / f"out.{jid}").exists()   # never launched
    c.wait_for_log(rf"error: prolog_slurmctld {job_re(jid)} prolog exit "
                   r"status 1:0")
    c.wait_for_log(rf"unable to requeue {job_re(jid)}: Requested operation "
                   r"is presently disabled")
    c.wait_for_log(rf"job_signal: 9 of configuring {job_re(jid)} successful")
    assert c.node()["State"] == "IDLE"      # node is not drained


def test_prolog_slurmctld_failure_requeue(cluster_factory, tmp_path):
    script = _script(tmp_path / "pctld.sh", "exit 1\n")
    c = cluster_factory(conf_extra=["PrEpPlugins=prep/script",
                                    f"PrologSlurmctld={script}"]).start()
    jid = c.sbatch(wrap="echo ran")
    c.wait_for_log(rf"Requeuing {job_re(jid)}")
    deadline = time.monotonic() + 10
    while c.job(jid)["Restarts"] != "1":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    rec = c.wait_job(jid, ("PENDING",), reason="^BeginTime$")
    # requeued, not held; eligible again ~121 s later
    assert rec["Priority"] != "0"
    assert c.node()["State"] == "IDLE"


def test_slurmd_prolog_failure_drains_node(cluster_factory, tmp_path):
    script = _script(tmp_path / "prolog.sh", "exit 1\n")
    c = cluster_factory(conf_extra=[f"Prolog={script}"]).start()
    jid = c.sbatch("--no-requeue", "-o", "out.%j", wrap="echo ran")
    rec = c.wait_job(jid, ("CANCELLED",))
    assert rec["Reason"] == "None" and rec["ExitCode"] == "0:0"
    out = c.workdir / f"out.{jid}"
    if slurm_at_least(24, 11):
        # 24.11 writes nothing into the job's stdout file
        assert not out.exists()
    else:
        # slurmd 22.05 writes this into the job's stdout file instead of
        # running it
        assert out.read_text() == "Error running slurm prolog: 1\n"
    node = c.wait_node(("IDLE+DRAIN",))
    assert re.fullmatch(r"Prolog error \[root@[-\d:T]+\]", node["Reason"]), \
        node["Reason"]
    # "[job 1]" up to 24.11; Slurm's %pJ ("JobId=1 SLUID=...") on 26.05
    c.wait_for_log(rf"error: (?:\[job {jid}\]|{job_re(jid)}) prolog failed status=1:0",
                   "slurmd")
    c.wait_for_log(rf"Could not launch (?:job {jid}|{job_re(jid)}) and not able "
                   r"to requeue it, cancelling job", "slurmd")
    c.wait_for_log(r"error: validate_node_specs: Prolog or job env setup "
                   rf"failure on node {c.NODE}, draining the node")

    # a requeueable job instead ends up held
    c.resume()
    c.wait_node(("IDLE",))
    jid2 = c.sbatch(wrap="echo ran")
    rec = c.wait_job(jid2, ("PENDING",),
                     reason="^launch_failed_requeued_held$")
    assert rec["Priority"] == "0" and rec["Restarts"] == "1"
    c.wait_node(("IDLE+DRAIN",))
