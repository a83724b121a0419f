"""prep/python inside real slurmctld and slurmd (issue: PrEp end to end)."""
from __future__ import annotations

import collections
import re
import pwd
import time

import pytest

from tests.harness.slurmcluster import slurm_at_least

from .conftest import read_calls, wait_calls, write_handler

pytestmark = pytest.mark.integration

HOOKS = ("prolog_slurmctld", "prolog", "epilog", "epilog_slurmctld")


def test_all_four_hooks_once_with_fields(prep_cluster, tmp_path):
    # The job runs as nobody: it must be able to reach its spool directory.
    for d in [tmp_path, *tmp_path.parents]:
        if d == d.parent or str(d) == "/tmp":
            break
        d.chmod(0o755)
    c, calls = prep_cluster()
    nobody = pwd.getpwnam("nobody")
    name = "jöb-ñame-✓"
    jid = c.sbatch("-J", name, "--uid", str(nobody.pw_uid), "--chdir", "/tmp",
                   "-o", "/dev/null", wrap="true")
    c.wait_job(jid, timeout=60)
    recs = wait_calls(calls, lambda r: {x["hook"] for x in r if x["job_id"] == jid} >= set(HOOKS))
    mine = [r for r in recs if r["job_id"] == jid]
    counts = collections.Counter(r["hook"] for r in mine)
    assert counts == {h: 1 for h in HOOKS}, counts
    by = {r["hook"]: r["fields"] for r in mine}
    for hook in ("prolog_slurmctld", "epilog_slurmctld"):
        f = by[hook]
        assert f["name"] == name
        assert f["user_id"] == nobody.pw_uid
        assert f["partition"] == "debug"
        assert f["user_name"] == "nobody"
        assert f["work_dir"] == "/tmp"
        assert f["num_cpus"] >= 1 and f["num_nodes"] == 1
    assert by["prolog_slurmctld"]["state"] == "PENDING" or by["prolog_slurmctld"]["state"] == "RUNNING"
    assert by["epilog_slurmctld"]["state"] == "COMPLETED"
    for hook in ("prolog", "epilog"):
        assert by[hook]["uid"] == nobody.pw_uid
        assert by[hook]["node_list"] == c.NODE
    assert by["prolog"]["partition"] == "debug"
    assert by["prolog"]["user_name"] == "nobody"


def test_async_prolog_delays_job_while_slurmctld_answers(prep_cluster, tmp_path):
    # Ordering, not timing: the prolog lasts until the test opens its gate
    # (60 s at most), so pings answered before that were answered while it
    # ran, and the batch script must start after it finished.
    gate = tmp_path / "prolog.go"
    body = f'''
    def prolog_slurmctld(self, job):
        record("prolog_slurmctld", job)
        for _ in range(6000):
            if os.path.exists({str(gate)!r}):
                break
            time.sleep(0.01)
        record("prolog_slurmctld_done", job)
'''
    c, calls = prep_cluster(body)
    ran = tmp_path / "ran_at"
    jid = c.sbatch("-o", "/dev/null", wrap=f"date +%s.%N > {ran}")
    wait_calls(calls, lambda r: any(x["hook"] == "prolog_slurmctld" for x in r))
    for _ in range(3):
        c.ping_seconds()            # raises unless slurmctld answers UP
    assert not any(x["hook"] == "prolog_slurmctld_done" for x in read_calls(calls)), \
        "the gate was never opened: the prolog cannot have finished"
    assert not ran.exists(), "the batch script ran while prolog_slurmctld was running"
    gate.touch()
    c.wait_job(jid, timeout=60)
    done = next(x["t"] for x in read_calls(calls) if x["hook"] == "prolog_slurmctld_done")
    assert float(ran.read_text()) >= done, "the batch script ran before the prolog ended"


def test_raising_prolog_slurmctld_stops_no_requeue_job(prep_cluster, tmp_path):
    body = '''
    def prolog_slurmctld(self, job):
        record("prolog_slurmctld", job)
        raise RuntimeError("site check refused job " + str(job.job_id) + " marker-7731")
'''
    c, calls = prep_cluster(body)
    ran = tmp_path / "script_ran"
    jid = c.sbatch("--no-requeue", "-o", "/dev/null", wrap=f"touch {ran}")
    rec = c.wait_job(jid, states=("FAILED", "CANCELLED", "NODE_FAIL"), timeout=60)
    c.wait_for_log(f"site check refused job {jid} marker-7731", timeout=30)
    assert not ran.exists(), "the batch script ran although prolog_slurmctld failed"
    log = c.ctld_log()
    assert f"site check refused job {jid} marker-7731" in log
    assert "Traceback (most recent call last)" in log
    assert "RuntimeError" in log
    assert rec["JobState"] in ("FAILED", "CANCELLED", "NODE_FAIL")


def test_raising_prolog_slurmctld_requeues_requeueable_job(prep_cluster, tmp_path):
    body = '''
    def prolog_slurmctld(self, job):
        record("prolog_slurmctld", job)
        if job.restart_cnt == 0:
            raise RuntimeError("first attempt refused")
'''
    c, calls = prep_cluster(body)
    ran = tmp_path / "script_ran"
    jid = c.sbatch("--requeue", "-o", "/dev/null", wrap=f"touch {ran}")
    # As for a failing PrologSlurmctld script: requeued, eligible again
    # about two minutes later (Slurm's own delay), not held.
    deadline = time.monotonic() + 60
    while True:
        rec = c.job(jid)
        if int(rec.get("Restarts", 0)) >= 1 and rec["JobState"] == "PENDING":
            break
        assert time.monotonic() < deadline, rec
        time.sleep(0.2)
    assert not ran.exists()
    assert f"Requeuing JobId={jid}" in c.ctld_log()


def test_raising_slurmd_prolog_drains_node(prep_cluster, tmp_path):
    body = '''
    def prolog(self, env):
        record("prolog", env)
        raise OSError("scratch filesystem missing marker-4410")
'''
    c, calls = prep_cluster(body)
    ran = tmp_path / "script_ran"
    c.sbatch("-o", "/dev/null", wrap=f"touch {ran}")
    node = c.wait_node(predicate=lambda n: "DRAIN" in n.get("State", ""), timeout=60)
    # the reason sinfo -R shows names the failure, not Slurm's bare
    # "Prolog error"; set by slurmd (root), as `scontrol update` would
    assert re.fullmatch(r"prep/python: OSError: scratch filesystem missing marker-4410 "
                        r"\[root@[-\d:T]+\]", node.get("Reason", "")), node
    reasons = c.run("sinfo", "-R", "-h", "-o", "%E|%N").stdout.split("\n")
    assert f"prep/python: OSError: scratch filesystem missing marker-4410|{c.NODE}" in reasons
    assert not ran.exists()
    assert "scratch filesystem missing marker-4410" in c.slurmd_log()
    c.wait_for_log(rf'node {c.NODE} drained: "prep/python: OSError: scratch filesystem '
                   r'missing marker-4410"', "slurmd")


def test_raising_slurmd_epilog_drains_node_with_its_reason(prep_cluster):
    body = """
    def epilog(self, env):
        record("epilog", env)
        raise RuntimeError("gpu reset failed marker-5521")
"""
    c, calls = prep_cluster(body)
    jid = c.sbatch("-o", "/dev/null", wrap="true")
    c.wait_job(jid)
    node = c.wait_node(predicate=lambda n: "DRAIN" in n.get("State", ""), timeout=60)
    assert node.get("Reason", "").startswith(
        "prep/python: RuntimeError: gpu reset failed marker-5521 [root@"), node

    # a node the admin drained keeps the admin's reason
    c.resume()
    c.wait_node(("IDLE",))
    jid = c.sbatch("-o", "/dev/null", wrap="sleep 2")
    c.wait_job(jid, ("RUNNING",))
    c.drain("disk swap, ticket 4711")
    c.wait_job(jid)
    c.wait_for_log(r"is already draining \(reason: disk swap, ticket 4711\): its reason is "
                   r"kept", "slurmd")
    assert c.node()["Reason"].startswith("disk swap, ticket 4711 [")


def test_200_jobs_exactly_one_prolog_each(prep_cluster):
    c, calls = prep_cluster()
    ids = [c.sbatch("-o", "/dev/null", wrap="true") for _ in range(200)]
    c.wait_jobs(ids, timeout=600)
    recs = wait_calls(calls, lambda r: len({x["job_id"] for x in r if x["hook"] == "epilog_slurmctld"} & set(ids)) == len(ids),
                      timeout=120)
    counts = collections.Counter(x["job_id"] for x in recs if x["hook"] == "prolog_slurmctld")
    assert {j: counts[j] for j in ids} == {j: 1 for j in ids}
    assert c.ctld_running() and c.slurmd_running()
    assert c.ping()


def test_unoverridden_hooks_are_not_required(prep_cluster):
    body = '''
    def epilog_slurmctld(self, job):
        record("epilog_slurmctld", job)
'''
    c, calls = prep_cluster(body)
    jid = c.sbatch("-o", "/dev/null", wrap="true")
    c.wait_job(jid, timeout=60)
    recs = wait_calls(calls, lambda r: any(x["hook"] == "epilog_slurmctld" for x in r))
    assert {x["hook"] for x in recs} == {"epilog_slurmctld"}
    assert "hooks: epilog_slurmctld)" in c.ctld_log()


def test_epilog_without_Epilog_setting_warns(prep_cluster):
    c, calls = prep_cluster(epilog=False)
    c.wait_for_log(r"prep/python: warning: the handler defines epilog\(\), but slurm.conf has no Epilog=",
                   which="slurmd", timeout=30)


def test_async_hooks_survive_prep_plugins_change(prep_cluster):
    c, calls = prep_cluster()
    j1 = c.sbatch("-o", "/dev/null", wrap="true")
    c.wait_job(j1, timeout=60)
    # 22.05 unloads and re-inits PrEp plugins when PrEpPlugins changes, and
    # passes no callbacks the second time.
    conf = [l.replace("PrEpPlugins=prep/python", "PrEpPlugins=prep/script,prep/python")
            for l in c.conf_extra]
    since = c.log_offset()
    c.rewrite_conf(conf)
    if slurm_at_least(23, 11):
        # reconfigure execs a new slurmctld, which loads both from scratch
        c.wait_for_log(r"prep/python: loaded handler", since=since, timeout=30)
    else:
        c.wait_for_log("PrEpPlugins changed", since=since, timeout=30)
    j2 = c.sbatch("-o", "/dev/null", wrap="true")
    c.wait_job(j2, timeout=60)
    recs = wait_calls(calls, lambda r: any(x["hook"] == "epilog_slurmctld" and x["job_id"] == j2 for x in r))
    assert sum(1 for x in recs if x["job_id"] == j2 and x["hook"] == "prolog_slurmctld") == 1
    assert c.ctld_running()


def test_broken_handler_fails_closed(prep_cluster, tmp_path):
    c, calls = prep_cluster(start=False)
    write_handler(c.handler_dir, "site_prep", "import nonexistent_module_xyz\n")
    c.start()
    ran = tmp_path / "script_ran"
    jid = c.sbatch("--no-requeue", "-o", "/dev/null", wrap=f"touch {ran}")
    c.wait_job(jid, states=("FAILED", "CANCELLED", "NODE_FAIL"), timeout=60)
    assert not ran.exists()
    log = c.ctld_log()
    assert "site_prep.py:1: importing site_prep failed: ModuleNotFoundError" in log
