"""`slurmpy-plugins stats` for what runs beside the job on a real cluster:
slurmd's prep/python prolog and epilog (calls, successes, a failing
prolog's file:line), jobcomp/python's deliveries and spool in slurmctld,
and spank/python's hooks in the node's root processes (the one shared
spank file; a failure's file:line, a timeout; srun's and a non-root task's
hooks not counted).  The
command is run as an admin runs it: `python -m slurmpy_plugins stats`
(the console script's own entry point, slurmpy_plugins.__main__:main) with SLURM_CONF naming the test
cluster's slurm.conf; every wait is for the figures, with a deadline."""
from __future__ import annotations

import json
import os
import pathlib
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
import time

import pytest

from tests.harness.slurmcluster import Cluster

from .conftest import BUILD_PLUGINS, write_handler
from .test_jobcomp import HANDLER as LEDGER, jc_cluster  # noqa: F401  (the fixture)
from .test_stats import parse_openmetrics

pytestmark = pytest.mark.integration


def stats(c, *args: str) -> str:
    env = dict(os.environ, SLURM_CONF=str(c.conf_path))
    cp = subprocess.run([sys.executable, "-m", "slurmpy_plugins", "stats", *args], env=env,
                        capture_output=True, text=True, timeout=60)
    assert cp.returncode == 0, cp.stderr
    return cp.stdout


def wait_stats(c, pick, what: str, timeout: float = 60.0):
    """pick(daemons of `stats --json`) once it is truthy."""
    deadline = time.monotonic() + timeout
    while True:
        daemons = json.loads(stats(c, "--json"))["daemons"]
        got = pick(daemons)
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"stats never showed {what}: {json.dumps(daemons, indent=1)}\n"
                                 + c.log_tails())
        time.sleep(0.2)


def hooks_of(d) -> dict[str, dict]:
    return {h["hook"]: h for h in d["hooks"]}


def only_file(d) -> None:
    st = os.stat(d["path"])
    assert stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == 0, oct(st.st_mode)


# ---- slurmd's prep/python ----

PREP_BODY = '''
    def prolog(self, env):
        record("prolog", env)
        if os.path.exists(CALLS + ".fail"):
            raise OSError("scratch filesystem missing marker-8812")
    def epilog(self, env):
        record("epilog", env)
'''
PREP_RAISE = 'raise OSError("scratch filesystem missing marker-8812")'


def test_slurmd_prolog_and_epilog_calls_and_a_failing_prologs_line(prep_cluster, tmp_path):
    c, calls = prep_cluster(PREP_BODY)
    c.wait_job(c.sbatch("-o", "/dev/null", wrap="true"))

    def slurmd(daemons):
        mine = [d for d in daemons if d["daemon"] == "slurmd" and d["pid"] == c.slurmd_pid
                and d["state"] == "running"]
        return mine[0] if mine else None

    d = wait_stats(c, lambda ds: (lambda d: d if d and "epilog" in hooks_of(d) else None)(
        slurmd(ds)), "slurmd's epilog of the first job")
    h = hooks_of(d)
    assert (h["prolog"]["calls"], h["prolog"]["ok"], h["prolog"]["failed"]) == (1, 1, 0)
    assert (h["epilog"]["calls"], h["epilog"]["ok"], h["epilog"]["failed"]) == (1, 1, 0)
    assert h["prolog"]["last_error"] is None and 0 < h["prolog"]["p50_us"] <= h["prolog"]["max_us"]
    assert d["plugins"]["prep/python"]["loads"] >= 1
    assert d["path"].startswith(str(c.spool_dir_of(c.NODE)) + "/slurmpy-stats/slurmd.")
    only_file(d)

    (tmp_path / "calls.jsonl.fail").write_text("")
    c.sbatch("-o", "/dev/null", wrap="true")
    d = wait_stats(c, lambda ds: (lambda d: d if d and hooks_of(d)["prolog"]["failed"] else None)(
        slurmd(ds)), "the failed prolog")
    p = hooks_of(d)["prolog"]
    assert (p["calls"], p["ok"], p["failed"], p["timeouts"]) == (2, 1, 1, 0), p
    src = (c.handler_dir / "site_prep.py").read_text().splitlines()
    line = next(i for i, s in enumerate(src, 1) if PREP_RAISE in s)
    err = p["last_error"]
    assert err["where"] == f"{c.handler_dir}/site_prep.py:{line}", err
    assert err["text"] == "OSError: scratch filesystem missing marker-8812"
    assert abs(err["time"] - time.time()) < 300

    table = stats(c)
    assert f"{c.handler_dir}/site_prep.py:{line}: OSError: scratch filesystem" in table
    fams = parse_openmetrics(stats(c, "--openmetrics"))
    assert (("slurmpy_hook_failed_total",
             f'{{daemon="slurmd",pid="{d["pid"]}",plugin="prep/python",hook="prolog"}}', 1.0)
            in fams["slurmpy_hook_failed"])


# ---- jobcomp/python in slurmctld ----

def test_jobcomp_deliveries_retries_and_spool(jc_cluster):  # noqa: F811
    c = jc_cluster(first_fails=True)      # every record's first attempt raises
    jobs = [c.sbatch("-o", "/dev/null", wrap="true") for _ in range(2)]
    for j in jobs:
        c.wait_job(j)

    def ctld(daemons):
        mine = [d for d in daemons if d["daemon"] == "slurmctld" and d["pid"] == c.ctld_pid
                and d["state"] == "running"]
        return mine[0] if mine and (mine[0]["jobcomp"] or {}).get("delivered", 0) >= 2 \
            else None

    d = wait_stats(c, ctld, "two records delivered")
    jc = d["jobcomp"]
    assert (jc["spooled"], jc["delivered"], jc["retried"], jc["dropped"]) == (2, 2, 2, 0), jc
    assert (jc["backlog_bytes"], jc["head_failures"], jc["head_failing_since"]) == (0, 0, 0)
    end = hooks_of(d)["job_end"]
    assert (end["plugin"], end["calls"], end["ok"], end["failed"]) == ("jobcomp/python", 4, 2, 2)
    assert 0 < end["p50_us"] <= end["p99_us"] <= end["max_us"]
    src = LEDGER.splitlines()
    line = next(i for i, s in enumerate(src, 1) if 'raise ConnectionError("the ledger' in s)
    hdir = c.conf_path.parent.parent / "handlers"
    assert end["last_error"]["where"] == f"{hdir}/ledger.py:{line}", end["last_error"]
    assert end["last_error"]["text"] == "ConnectionError: the ledger is down"
    only_file(d)
    assert "jobcomp/python spool: 2 spooled, 2 delivered, 2 failed attempt(s) retried" in stats(c)
    fams = parse_openmetrics(stats(c, "--openmetrics"))
    lab = f'{{daemon="slurmctld",pid="{d["pid"]}"}}'
    assert ("slurmpy_jobcomp_delivered_total", lab, 2.0) in fams["slurmpy_jobcomp_delivered"]
    assert ("slurmpy_jobcomp_backlog_bytes", lab, 0.0) in fams["slurmpy_jobcomp_backlog_bytes"]


# ---- spank/python in the node's root processes ----

SPANK = '''
import os, time
from slurmpy_plugins import SpankHandler

RAISE, HANG = {raise_!r}, {hang!r}


class Probe(SpankHandler):
    def user_init(self, spank):
        if os.path.exists(RAISE):
            raise RuntimeError("the tag service says no")

    def task_init(self, spank):
        pass

    def task_exit(self, spank):
        while os.path.exists(HANG):     # cut off at timeout=
            time.sleep(0.05)

    def exit(self, spank):
        pass

    def local_user_init(self, spank):    # srun's: never counted
        pass

    def job_prolog(self, spank):
        pass

    def job_epilog(self, spank):
        pass
'''
SPANK_RAISE = 'raise RuntimeError("the tag service says no")'


def test_spank_hooks_of_the_nodes_root_processes_in_one_shared_file():
    so = BUILD_PLUGINS / "spank_python.so"
    if not so.exists():
        pytest.fail(f"{so} is missing: run `make build` first")
    nobody = pwd.getpwnam("nobody")
    # a directory nobody can reach (slurm.conf for its srun, the handler
    # for its step's user_init, which starts Python as nobody)
    base = pathlib.Path(tempfile.mkdtemp(prefix="spm-stats-spank-"))
    os.chmod(base, 0o755)
    hdir, raise_, hang = base / "handlers", base / "raise.flag", base / "hang.flag"
    write_handler(hdir, "probe", SPANK.format(raise_=str(raise_), hang=str(hang)))
    c = Cluster(base / "cluster", plugin_dirs=[str(BUILD_PLUGINS)])
    try:
        (c.workdir / "plugstack.conf").write_text(
            f"required {so} handler=probe:Probe path={hdir} timeout=2\n")
        c.start()
        _spank_steps(c, hdir, raise_, hang, nobody)
    finally:
        hang.unlink(missing_ok=True)     # the cut-off task_exit's thread returns
        c.stop()
        shutil.rmtree(base, ignore_errors=True)


def _spank_steps(c, hdir, raise_, hang, nobody) -> None:
    for _ in range(2):      # root's steps of 2 tasks
        c.run("srun", "-n", "2", "true")
    # a step of a job of nobody's: its task_init runs as nobody (not counted)
    cp = subprocess.run(["srun", "true"], env=dict(c.client_env(), USER="nobody"), cwd="/tmp",
                        user=nobody.pw_uid, group=nobody.pw_gid, extra_groups=[],
                        capture_output=True, text=True, timeout=120)
    assert cp.returncode == 0, cp
    raise_.write_text("")
    cp = c.run("srun", "true", check=False)
    assert "user_init failed" in cp.stderr, cp.stderr
    raise_.unlink()
    hang.write_text("")          # a task_exit cut off at timeout=2
    c.run("srun", "true", check=False)

    def spank(daemons):
        mine = [d for d in daemons if d["daemon"] == "spank"]
        assert len(mine) <= 1, mine
        h = hooks_of(mine[0]) if mine else {}
        # slurmstepd's task_exit and exit, the job's job_epilog, run after
        # srun has returned
        done = h.get("task_exit", {}).get("calls", 0) >= 6 and \
            h.get("exit", {}).get("calls", 0) >= 4 and \
            h.get("job_epilog", {}).get("calls", 0) >= 5
        return mine[0] if done else None

    d = wait_stats(c, spank, "the steps' task_exit, exit and job_epilog hooks")
    assert (d["pid"], d["state"]) == (0, "running")
    assert d["path"] == f"{c.spool_dir_of(c.NODE)}/slurmpy-stats/spank.{c.hostname}.shared"
    only_file(d)
    # one file for every step: slurmd's own (prep, none here) and this one
    assert [n for n in os.listdir(os.path.dirname(d["path"])) if n.startswith("spank")] == \
        [os.path.basename(d["path"])]
    h = hooks_of(d)
    ui = h["user_init"]
    assert (ui["calls"], ui["ok"], ui["failed"], ui["timeouts"]) == (5, 4, 1, 0), ui
    src = (hdir / "probe.py").read_text().splitlines()
    line = next(i for i, s in enumerate(src, 1) if SPANK_RAISE in s)
    assert ui["last_error"]["where"] == f"{hdir}/probe.py:{line}", ui["last_error"]
    assert "RuntimeError: the tag service says no" in ui["last_error"]["text"]
    assert 0 < ui["p50_us"] <= ui["max_us"]
    # root's 5 tasks; nobody's task_init ran as nobody: not counted
    assert (h["task_init"]["calls"], h["task_init"]["ok"]) == (5, 5), h["task_init"]
    te = h["task_exit"]
    assert (te["calls"], te["ok"], te["timeouts"], te["written_off"]) == (6, 5, 1, 1), te
    assert te["last_error"]["text"] == "task_exit did not return within timeout=2000 ms", te
    assert te["max_us"] >= 2_000_000 - 10_000
    # exit runs in srun too: only slurmstepd's calls (one a step) are counted
    assert 4 <= h["exit"]["calls"] <= 5, h["exit"]
    # one job a srun, nobody's too: its job_prolog and job_epilog, run as
    # root in `slurmstepd spank prolog|epilog`
    assert (h["job_prolog"]["calls"], h["job_prolog"]["ok"]) == (5, 5), h["job_prolog"]
    assert (h["job_epilog"]["calls"], h["job_epilog"]["ok"]) == (5, 5), h["job_epilog"]
    assert "local_user_init" not in h and "init" not in h
    assert d["notes"] and "not counted" in d["notes"][0]
    assert "not counted" in stats(c)
    fams = parse_openmetrics(stats(c, "--openmetrics"))
    assert any('daemon="spank",pid="0",plugin="spank/python",hook="user_init"' in lab
               and v == 1 for _, lab, v in fams["slurmpy_hook_failed"])
