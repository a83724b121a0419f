"""prep/python on clusters of several nodes (several slurmd on this machine,
see tests/harness/slurmcluster.py ``nodes=``), on every release we test.

- A 4-node job calls prolog() and epilog() once on each node, in that
  node's daemon, and the handler knows which node it runs on
  (JobEnv.node_name).
- A prolog() that fails on one node does what a failing Prolog= script does
  on the same cluster: both are run on one cluster (PrEpPlugins=prep/script,
  prep/python) and their outcomes compared; the failing node alone is
  drained, with the reason, and the other nodes run later jobs.

Each runs with the default PrologFlags, with PrologFlags=Alloc (prolog at
allocation on every node) and, from 24.05 on, with PrologFlags=RunInJob
(prolog and epilog in the extern step's slurmstepd, where the handler then
loads on the first call).
"""
from __future__ import annotations

import pathlib
import re
import time

import pytest

from tests.harness.slurmcluster import TERMINAL_JOB_STATES, slurm_at_least

from .conftest import BUILD_PLUGINS, RECORDING_HANDLER, read_calls, wait_calls, write_handler

NODES = [f"node{i}" for i in range(1, 5)]
BAD = "node3"
EXTERN_STEP = 0xFFFFFFFC        # SLURM_EXTERN_CONT: JobEnv.step_id in the extern step

FLAGS = [
    pytest.param("", id="default"),
    pytest.param("Alloc", id="Alloc"),
    pytest.param("RunInJob", id="RunInJob", marks=pytest.mark.skipif(
        not slurm_at_least(24, 5),
        reason="PrologFlags=RunInJob exists from Slurm 24.05 on")),
]

# prolog()/epilog() record where they ran; prolog() fails on BAD while the
# file FAIL_PYTHON exists.
BODY = '''
    def prolog(self, env):
        record("prolog", env, pid=os.getpid(), comm=_comm())
        if env.node_name == {bad!r} and os.path.exists({fail!r}):
            raise RuntimeError("prolog refused on " + env.node_name)
    def epilog(self, env):
        record("epilog", env, pid=os.getpid(), comm=_comm())

def _comm():
    with open("/proc/self/comm") as f:
        return f.read().strip()
'''

# The same decision in a Prolog= script (prep/script gives it SLURMD_NODENAME).
PROLOG_SCRIPT = '''#!/bin/sh
if [ "$SLURMD_NODENAME" = {bad} ] && [ -e {fail} ]; then
    echo "prolog script refuses on $SLURMD_NODENAME" >&2
    exit 1
fi
exit 0
'''


def _cluster(cluster_factory, tmp_path: pathlib.Path, flags: str, *,
             script: bool):
    """A started 4-node cluster with prep/python (and prep/script running
    PROLOG_SCRIPT first when ``script``).  Returns (cluster, calls,
    fail_python, fail_script)."""
    if not (BUILD_PLUGINS / "prep_python.so").exists():
        pytest.fail("build/plugins/prep_python.so is missing: run `make build` first")
    hdir = tmp_path / "handlers"
    calls = tmp_path / "calls.jsonl"
    fail_python = tmp_path / "fail-python"
    fail_script = tmp_path / "fail-script"
    write_handler(hdir, "site_prep", RECORDING_HANDLER.format(
        calls=str(calls), body=BODY.format(bad=BAD, fail=str(fail_python))))
    conf = [f"PrEpParameters=handler=site_prep:Handler,path={hdir}",
            "Epilog=/bin/true"]
    if script:
        prolog = tmp_path / "prolog.sh"
        prolog.write_text(PROLOG_SCRIPT.format(bad=BAD, fail=fail_script))
        prolog.chmod(0o755)
        conf += ["PrEpPlugins=prep/script,prep/python", f"Prolog={prolog}"]
    else:
        conf += ["PrEpPlugins=prep/python"]
    if flags:
        conf.append(f"PrologFlags={flags}")
    c = cluster_factory(nodes=len(NODES), cpus=2,
                        plugin_dirs=[str(BUILD_PLUGINS)], conf_extra=conf)
    c.start()
    assert c.nodes == NODES
    return c, calls, fail_python, fail_script


def _of(recs, hook, jid):
    return [r for r in recs if r["hook"] == hook and r["job_id"] == jid]


@pytest.mark.parametrize("flags", FLAGS)
def test_four_node_job_runs_prolog_and_epilog_once_per_node(cluster_factory, tmp_path, flags):
    c, calls, _, _ = _cluster(cluster_factory, tmp_path, flags, script=False)
    slurmd = c.slurmd_pids()
    # srun on every node: without PrologFlags=Alloc a node runs the prolog
    # when the job first starts something there
    jid = c.sbatch("-N4", "-o", "/dev/null", wrap="srun true")
    c.wait_job(jid, timeout=90)
    recs = wait_calls(calls, lambda r: len(_of(r, "epilog", jid)) >= 4, 60.0,
                      what=f"4 epilogs of job {jid}", cluster=c)
    # every node has finished with the job (its epilog's completion is what
    # clears COMPLETING): no call for it is still to come
    for node in NODES:
        c.wait_node(predicate=lambda n: "COMPLETING" not in n["State"], node=node, timeout=60)
    recs = read_calls(calls)
    for hook in ("prolog", "epilog"):
        got = _of(recs, hook, jid)
        names = sorted(r["fields"]["node_name"] for r in got)
        assert names == NODES, f"{hook}: one call per node expected, got {names}"
        for r in got:
            node = r["fields"]["node_name"]
            assert r["fields"]["node_list"] == "node[1-4]"
            if flags == "RunInJob":
                # in the job's extern step on that node, not in its slurmd
                assert r["comm"] == "slurmstepd", r
                assert r["pid"] not in slurmd.values(), r
                assert r["fields"]["step_id"] == EXTERN_STEP, r
            else:
                assert r["comm"] == "slurmd", r
                assert r["pid"] == slurmd[node], (
                    f"{hook} for {node} ran in pid {r['pid']}, its slurmd is "
                    f"{slurmd[node]}")
    if flags == "RunInJob":
        # each node's extern step ran both hooks in one process
        for node in NODES:
            pids = {r["pid"] for r in _of(recs, "prolog", jid) + _of(recs, "epilog", jid)
                    if r["fields"]["node_name"] == node}
            assert len(pids) == 1, (node, pids)
    # Python started in each slurmd and, with RunInJob, in the job's extern
    # step on each node; never in the batch step or the srun steps
    for node in NODES:
        started = re.findall(r"slurmpy: Python \S+ .* started", c.slurmd_log(node))
        assert len(started) == (2 if flags == "RunInJob" else 1), (node, started)
        assert c.node_states(node) == {"IDLE"}, c.node(node)


def _outcome(c, jid, timeout=60.0) -> dict:
    """Wait until job ``jid`` settled after a failed prolog (ended, or back
    to PENDING after a requeue) and the failing node is drained; return what
    a user and an admin see of it."""
    deadline = time.monotonic() + timeout
    while True:
        rec = c.job(jid)
        st = rec["JobState"]
        settled = st in TERMINAL_JOB_STATES or (
            st == "PENDING" and rec.get("Restarts", "0") != "0")
        if settled and "DRAIN" in c.node_states(BAD):
            break
        if time.monotonic() > deadline:
            raise AssertionError(f"job {jid} did not settle: {rec}\n"
                                 f"{c.node(BAD)}\n" + c.log_tails())
        time.sleep(0.3)
    # the nodes that did not fail are released (not COMPLETING)
    for node in NODES:
        if node != BAD:
            c.wait_node(predicate=lambda n: "COMPLETING" not in n["State"],
                        node=node, timeout=60)
    drained = {n: c.node(n) for n in NODES}
    return {
        "JobState": rec["JobState"],
        # a requeued job's Reason says why it waits (held or not); an ended
        # job's is whatever it waited for when killed, "Prolog" or "None"
        # depending on whether the other nodes' prologs had answered yet
        # (a race between nodes: a failing Prolog= script alone gave both
        # in 4 runs here)
        "Reason": rec.get("Reason") if st == "PENDING" else None,
        "Restarts": rec.get("Restarts"),
        # ExitCode is not compared: it is whichever failure reached
        # slurmctld first (the batch step's launch error, the kill), and
        # varies run to run: 0:15, 182:0 and 1:0 were seen here with the
        # script, those and once 0:0 with prolog() under Alloc.  What
        # slurmctld hears from the failing node does not depend on who
        # failed: slurmd turns any prolog failure into ESLURMD_PROLOG_FAILED
        # (src/slurmd/slurmd/req.c, _rpc_prolog and the launch path).
        "drained": sorted(n for n, r in drained.items() if "DRAIN" in r["State"]),
        "node_reason": drained[BAD].get("Reason", "").split(" [")[0],
    }


def _reset(c, jid):
    """Cancel what is left of the job and put the failing node back."""
    c.run("scancel", str(jid), check=False)
    c.wait_job(jid, states=TERMINAL_JOB_STATES, timeout=60)
    c.resume(BAD)
    c.wait_node(("IDLE",), node=BAD, timeout=60)


@pytest.mark.parametrize("flags", FLAGS)
def test_prolog_failing_on_one_node_does_what_a_failing_prolog_script_does(
        cluster_factory, tmp_path, flags):
    c, calls, fail_python, fail_script = _cluster(cluster_factory, tmp_path, flags,
                                                  script=True)
    outcomes = {}
    for requeue in ("--requeue", "--no-requeue"):
        for who, marker in (("script", fail_script), ("python", fail_python)):
            marker.touch()
            try:
                jid = c.sbatch("-N4", requeue, "-o", "/dev/null", wrap="srun true")
                outcomes[requeue, who] = _outcome(c, jid)
                if who == "python":
                    recs = _of(read_calls(calls), "prolog", jid)
                    assert BAD in {r["fields"]["node_name"] for r in recs}, recs
                    log = c.slurmd_log(BAD)
                    assert "prolog refused on node3" in log
            finally:
                marker.unlink()
            _reset(c, jid)
        script, python = outcomes[requeue, "script"], outcomes[requeue, "python"]
        print(f"{flags or 'default'} {requeue}: script {script}\n  python {python}")
        # the one difference, by design: the reason names the failure
        # (prep/python drains the node first, with the handler's message)
        assert script["node_reason"] == "Prolog error", script
        assert python["node_reason"] == "prep/python: RuntimeError: prolog refused on node3", \
            python
        script, python = ({k: v for k, v in o.items() if k != "node_reason"}
                          for o in (script, python))
        assert python == script, (
            f"{requeue}: prep/python's failing prolog() did not do what a failing "
            f"Prolog= script does on this cluster:\n script: {script}\n python: {python}")
        # what both do, as Slurm documents it: only the failing node is
        # drained, with a reason, and the job does not run
        assert script["drained"] == [BAD], script
        assert script["JobState"] != "COMPLETED", script
        if requeue == "--requeue":
            assert script["JobState"] == "PENDING" and script["Restarts"] != "0", script

    # the other nodes keep running jobs, prolog() included, while BAD is drained
    c.drain("kept out", node=BAD)
    before = len(read_calls(calls))
    jid = c.sbatch("-N3", "-o", "/dev/null", wrap="srun true")
    rec = c.wait_job(jid, timeout=90)
    assert rec["NodeList"] == "node[1-2,4]", rec
    recs = wait_calls(calls, lambda r: len(_of(r[before:], "epilog", jid)) >= 3, 60.0,
                      what=f"3 epilogs of job {jid}", cluster=c)
    assert sorted(r["fields"]["node_name"] for r in _of(recs, "prolog", jid)) == \
        ["node1", "node2", "node4"]
