"""Fidelity of the test kit (slurmpy_plugins.testing): for the same handler
file and the same jobs, the outcome the kit predicts is what the real
daemons did -- job state, node state and reason, sprio's SITE column, the
refusal message sbatch printed.  The jobs given to the kit are read back
from the live cluster with `squeue --json` (so this also covers the JSON of
the release under test: 22.05 here, 24.11 in `make test-24.11`)."""
from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from slurmpy_plugins import testing as kit

from .conftest import BUILD_PLUGINS, ROOT, write_handler

pytestmark = pytest.mark.integration

HANDLERS = '''
from slurmpy_plugins import JobSubmitHandler, PrEpHandler, Reject, SiteFactorHandler

class Prep(PrEpHandler):
    def prolog_slurmctld(self, job):
        if job.comment == "refuse-ctld":
            raise RuntimeError("prolog_slurmctld refused by policy")

    def prolog(self, env):
        if env.work_dir and env.work_dir.endswith("/drainme"):
            raise OSError("node unfit: marker-7731")

class Factor(SiteFactorHandler):
    def set(self, job):
        table = {"sf-big": 10**12, "sf-neg": -12345, "sf-small": 77}
        return table.get(job.name)

class Policy(JobSubmitHandler):
    def submit(self, job, submit_uid):
        if job.name == "refuse-me":
            self.log_user("policy: checked your request")
            raise Reject("jobs named refuse-me are not accepted here")
        if job.comment is None:
            job.comment = "stamped"
'''


def _handlers(tmp_path):
    hdir = tmp_path / "handlers"
    write_handler(hdir, "kitfid", HANDLERS)
    return hdir


def _squeue(c, jid: int) -> dict:
    data = json.loads(c.run("squeue", "--json", "-j", str(jid)).stdout)
    jobs = [j for j in data["jobs"] if j["job_id"] == jid]
    assert jobs, data
    return jobs[0]


def _submit_held(c, *args: str) -> tuple[int, dict]:
    """Submit held, read the job's JSON while squeue still lists it (24.11's
    squeue leaves finished jobs out), then release it."""
    jid = c.sbatch("-H", *args, wrap=None)
    obj = _squeue(c, jid)
    c.scontrol("release", str(jid))
    return jid, obj


def test_prep_outcomes_match_the_daemons(cluster_factory, tmp_path):
    hdir = _handlers(tmp_path)
    c = cluster_factory(plugin_dirs=[str(BUILD_PLUGINS)], conf_extra=[
        "PrEpPlugins=prep/python", f"PrEpParameters=handler=kitfid:Prep,path={hdir}"])
    c.start()
    handler = kit.load_handler("kitfid:Prep", path=str(hdir), kind="prep")

    # prolog_slurmctld raises, the job cannot be requeued: killed
    killed, obj = _submit_held(c, "--no-requeue", "--comment=refuse-ctld", "-o", "/dev/null",
                               "--wrap=true")
    rec = c.wait_job(killed, states=("CANCELLED", "FAILED"), timeout=60)
    out = kit.run_prep(handler, "prolog_slurmctld", kit.job_from_json(obj))
    assert (out.ok, out.action) == (False, "cancel")
    assert out.job_state == rec["JobState"]
    assert any("prolog_slurmctld refused by policy" in line for line in out.log)
    assert "prolog_slurmctld refused by policy" in c.ctld_log()

    # the same with a requeueable job: requeued (pending again, Restarts=1)
    requeued, obj = _submit_held(c, "--requeue", "--comment=refuse-ctld", "-o", "/dev/null",
                                 "--wrap=true")
    deadline = time.monotonic() + 60
    while True:
        rec = c.job(requeued)
        if int(rec.get("Restarts", 0)) >= 1 and rec["JobState"] == "PENDING":
            break
        assert time.monotonic() < deadline, rec
        time.sleep(0.2)
    out = kit.run_prep(handler, "prolog_slurmctld", kit.job_from_json(obj))
    assert (out.action, out.job_state) == ("requeue", rec["JobState"])
    c.run("scancel", str(requeued))

    # a job the handler accepts: success in both
    fine, obj = _submit_held(c, "-o", "/dev/null", "--wrap=true")
    job = kit.job_from_json(obj)
    c.wait_job(fine, timeout=60)
    assert kit.run_prep(handler, "prolog_slurmctld", job).action == "success"

    # slurmd prolog raises: the node is drained, with Slurm's reason
    drainme = tmp_path / "drainme"
    drainme.mkdir()
    jid, obj = _submit_held(c, "-D", str(drainme), "-o", "/dev/null", "--wrap=true")
    env = kit.env_from_json(obj)
    node = c.wait_node(predicate=lambda n: "DRAIN" in n.get("State", ""), timeout=60)
    out = kit.run_prep(handler, "prolog", env)
    assert out.action == "drain"
    # "prep/python: ValueError: node unfit: marker-7731 [root@...]"
    assert out.drain_reason == node["Reason"].split(" [")[0]
    assert "node unfit: marker-7731" in out.drain_reason
    assert any("node unfit: marker-7731" in line for line in out.log)
    assert "node unfit: marker-7731" in c.slurmd_log()


def test_site_factor_matches_sprio(cluster_factory, tmp_path):
    hdir = _handlers(tmp_path)
    c = cluster_factory(plugin_dirs=[str(BUILD_PLUGINS)], conf_extra=[
        "PrioritySiteFactorPlugin=site_factor/python",
        f"PrioritySiteFactorParameters=handler=kitfid:Factor,path={hdir}"])
    c.start()
    c.drain("kit fidelity: keep jobs pending")
    c.wait_node(predicate=lambda n: "DRAIN" in n["State"])
    handler = kit.load_handler("kitfid:Factor", path=str(hdir), kind="site_factor")
    ids = {name: c.sbatch("-J", name, "-o", "/dev/null", wrap="true")
           for name in ("sf-big", "sf-neg", "sf-small", "sf-none")}
    prio = c.sprio(fmt="%i|%S", jobs=ids.values())
    for name, jid in ids.items():
        job = kit.job_from_json(_squeue(c, jid))
        out = kit.run_set(handler, job)
        assert out.ok, out
        assert out.factor == int(prio[jid]["SITE"]), (name, out, prio[jid])
    # `preview site-factor` on the live cluster (squeue --json, the handler
    # slurm.conf names) prints the same factors
    cp = subprocess.run([sys.executable, "-m", "slurmpy_plugins", "preview", "site-factor",
                         str(c.conf_path), "--json"], capture_output=True, text=True,
                        env=dict(c.client_env(), PYTHONPATH=str(ROOT)), timeout=120)
    assert cp.returncode == 0, cp.stderr
    shown = {r["job_id"]: r["site"] for r in json.loads(cp.stdout)["jobs"]}
    assert set(shown) == set(ids.values())
    for name, jid in ids.items():
        want = int(prio[jid]["SITE"])
        assert shown[jid] == (None if name == "sf-none" else want), (name, shown, prio)
    big = kit.run_set(handler, kit.job_from_json(_squeue(c, ids["sf-big"])))
    assert big.factor == 2**31 - 1
    assert any("out of range" in line for line in big.log)
    assert "out of range" in c.ctld_log()


def test_job_submit_matches_sbatch(cluster_factory, tmp_path):
    hdir = _handlers(tmp_path)
    c = cluster_factory(plugin_dirs=[str(BUILD_PLUGINS)], conf_extra=["JobSubmitPlugins=python"])
    conf = c.conf_path.parent / "job_submit_python.conf"
    conf.write_text(f"handler=kitfid:Policy\npath={hdir}\n")
    conf.chmod(0o644)
    c.start()
    handler = kit.load_handler("kitfid:Policy", path=str(hdir), kind="job_submit")

    cp = c.run("sbatch", "-J", "refuse-me", "--wrap=true", check=False)
    out = kit.run_submit(handler, kit.make_job_desc(name="refuse-me"))
    assert cp.returncode != 0 and not out.accepted
    for line in out.message.splitlines():
        assert f"sbatch: error: {line}" in cp.stderr, (line, cp.stderr)

    cp = c.run("sbatch", "--parsable", "-H", "-J", "ok", "--wrap=true", check=False)
    out = kit.run_submit(handler, kit.make_job_desc(name="ok"))
    assert cp.returncode == 0 and out.accepted, cp.stderr
    jid = int(cp.stdout.strip().split(";")[0])
    assert out.changes == {"comment": "stamped"}
    assert c.job(jid)["Comment"] == out.changes["comment"]
