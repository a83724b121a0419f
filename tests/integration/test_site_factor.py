"""site_factor/python inside a real slurmctld that accounts to a real slurmdbd.

Why a slurmdbd: in Slurm 22.05 priority/multifactor only starts its decay
thread -- the only caller of site_factor_p_update() -- when accounting goes
to SlurmDBD and the cluster's root association exists.  slurmctld registers
the cluster (and its root association) itself on start-up, so pointing it at
the module's SlurmDBD is all it takes.

The decay thread skips update() on its first pass, then runs it every
PriorityCalcPeriod (1 minute at least).  test_set_then_periodic_update waits
for that real period.  The error tests get their update() call sooner, from
the same decay thread: a slurmctld restarted with its state runs a decay pass
(and so update()) at once, since its saved last-decay time
(StateSaveLocation/priority_last_decay_ran) is in the past.

Jobs stay pending (and so visible to sprio and update()) because the node is
drained before they are submitted.
"""
from __future__ import annotations

import ast
import re
import time

import pytest

from tests.harness.slurmcluster import slurm_at_least

from .conftest import BUILD_PLUGINS, write_handler

pytestmark = pytest.mark.integration

MODULE = "sftest"

HEADER = '''
import logging
from slurmpy_plugins import SiteFactorHandler

log = logging.getLogger("sftest")
'''


@pytest.fixture
def sf_cluster(cluster_factory, tmp_path, dbd):
    """make(body) -> cluster: a started cluster accounting to ``dbd`` with
    site_factor/python running a handler whose module is HEADER + body
    (class ``Factor``); the node is drained so jobs stay pending.
    ``cluster.handler_path`` is the handler file."""
    if not (BUILD_PLUGINS / "site_factor_python.so").exists():
        pytest.fail("build/plugins/site_factor_python.so is missing: "
                    "run `make build` first")

    def make(body: str):
        hdir = tmp_path / "handlers"
        path = write_handler(hdir, MODULE, HEADER + body)
        c = cluster_factory(plugin_dirs=[str(BUILD_PLUGINS)], conf_extra=[
            *dbd.accounting_conf(),
            "PrioritySiteFactorPlugin=site_factor/python",
            f"PrioritySiteFactorParameters=handler={MODULE}:Factor,path={hdir}",
            "PriorityCalcPeriod=1",
            "DebugFlags=Priority",
        ])
        c.handler_path = path
        c.start()
        c.started_at = time.time()
        c.drain("site_factor test: keep jobs pending")
        c.wait_node(predicate=lambda n: "DRAIN" in n["State"].split("+"))
        return c

    return make


def line_of(path, needle: str) -> int:
    """1-based number of the (only) line of ``path`` containing needle."""
    hits = [i for i, l in enumerate(path.read_text().splitlines(), 1)
            if needle in l]
    assert len(hits) == 1, (needle, hits)
    return hits[0]


def submit(c, *names: str) -> dict[str, int]:
    return {n: c.sbatch("-J", n, "-o", "/dev/null") for n in names}


def site_factors(c, ids) -> dict[int, int]:
    recs = c.sprio(fmt="%i|%S", jobs=ids)
    return {j: int(r["SITE"]) for j, r in recs.items()}


def wait_site(c, want: dict[int, int], timeout: float = 15.0) -> dict[int, int]:
    deadline = time.monotonic() + timeout
    while True:
        got = site_factors(c, want)
        if got == want:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"sprio SITE {got} != {want}\n" + c.log_tails())
        time.sleep(0.2)


def restart_ctld_for_decay_pass(c) -> int:
    """Restart slurmctld with its state: its decay thread's first pass runs
    update() at once (see the module docstring).  Returns the ctld-log
    offset from before the restart."""
    # the saved last-decay time must be at least a second in the past
    time.sleep(max(0.0, c.started_at + 2 - time.time()))
    since = c.log_offset()
    c.stop_ctld()
    c.start_ctld(clean=False)
    return since


SET_BODY = '''
SET = {"seven": 700, "minus": -500, "zero": 0}

class Factor(SiteFactorHandler):
    def set(self, job):
        return SET.get(job.name)

    def update(self, jobs):
        seen = sorted((j.job_id, j.name) for j in jobs)
        log.info("sftest update over %s", seen)
        return {j.job_id: 1000 + j.job_id for j in jobs if j.name == "plus"}
'''


def test_set_then_periodic_update(sf_cluster, dbd):
    c = sf_cluster(SET_BODY)
    assert c.name in dbd.clusters()
    ids = submit(c, "seven", "minus", "zero", "plus")
    for j in ids.values():
        assert c.job(j)["JobState"] == "PENDING"
    wait_site(c, {ids["seven"]: 700, ids["minus"]: -500, ids["zero"]: 0,
                  ids["plus"]: 0})

    # update() comes from the decay thread, one PriorityCalcPeriod after
    # slurmctld started (its first pass, at start-up, skips it)
    m = c.wait_for_log(r"site_factor/python: sftest: sftest update over (.*)$",
                       timeout=150)
    elapsed = time.time() - c.started_at
    assert ast.literal_eval(m.group(1)) == sorted((j, n) for n, j in ids.items())
    assert elapsed > 30, f"update() after {elapsed:.0f}s, not a decay period"
    wait_site(c, {ids["seven"]: 700, ids["minus"]: -500, ids["zero"]: 0,
                  ids["plus"]: 1000 + ids["plus"]})
    assert "site_factor/python: update()" not in c.ctld_log()   # no failure
    assert c.ping()


RECONFIG_BODY = '''
class Factor(SiteFactorHandler):
    calls = 0

    def reconfig(self):
        Factor.calls += 1
        log.info("sftest reconfig call %d", Factor.calls)
'''


# From 24.05 on slurmctld never calls site_factor_p_reconfig: `scontrol
# reconfigure` execs a new slurmctld (in place with -D), which loads the
# plugin and the handler from scratch.
EXECS_ON_RECONFIGURE = slurm_at_least(24, 5)


@pytest.mark.skipif(EXECS_ON_RECONFIGURE, reason="Slurm 24.05+ no longer calls "
                    "site_factor_p_reconfig (test_reconfigure_loads_handler_afresh)")
def test_reconfigure_calls_reconfig(sf_cluster):
    c = sf_cluster(RECONFIG_BODY)
    for n in (1, 2):
        since = c.log_offset()
        c.reconfigure()
        c.wait_for_log(rf"site_factor/python: sftest: sftest reconfig call {n}$",
                       since=since)
    assert c.ping()


@pytest.mark.skipif(not EXECS_ON_RECONFIGURE,
                    reason="22.05 calls reconfig() in the same process")
def test_reconfigure_loads_handler_afresh(sf_cluster):
    c = sf_cluster(RECONFIG_BODY + '''
    def set(self, job):
        return {"seven": 700, "minus": -500}.get(job.name)
''')
    pid = c.ctld_pid
    ids = submit(c, "seven", "minus")
    wait_site(c, {ids["seven"]: 700, ids["minus"]: -500})
    for n in (1, 2):
        since = c.log_offset()
        c.reconfigure()
        # a new slurmctld image: Python starts again and loads the handler
        c.wait_for_log(r"slurmpy: Python \S+ .* started", since=since)
        c.wait_for_log(r"site_factor/python: loaded handler sftest:Factor",
                       since=since)
        assert c.ping()
        assert c.ctld_pid == pid and c.ctld_running()
        more = submit(c, "seven")
        wait_site(c, {ids["seven"]: 700, ids["minus"]: -500,
                      more["seven"]: 700})
        assert "sftest reconfig call" not in c.ctld_log()


RAISING_BODY = '''
class Factor(SiteFactorHandler):
    def set(self, job):
        if job.name == "boom":
            raise ValueError(f"set refused {job.job_id} marker-set")
        return {"seven": 700, "minus": -500}.get(job.name)

    def update(self, jobs):
        log.info("sftest update over %d jobs", len(jobs))
        raise ValueError("update refused marker-update")

    def reconfig(self):
        log.info("sftest reconfig")
        raise ValueError("reconfig refused marker-reconfig")
'''


def test_handler_exceptions_are_logged_and_contained(sf_cluster):
    c = sf_cluster(RAISING_BODY)
    path = re.escape(str(c.handler_path))
    ids = submit(c, "seven", "minus", "boom")
    want = {ids["seven"]: 700, ids["minus"]: -500, ids["boom"]: 0}

    # set(): the job is still accepted, its factor stays 0
    line = line_of(c.handler_path, "marker-set")
    c.wait_for_log(
        rf"site_factor/python: set\(\) for JobId={ids['boom']} failed at "
        rf"{path}:{line}: ValueError: set refused {ids['boom']} marker-set$")
    assert c.job(ids["boom"])["JobState"] == "PENDING"
    wait_site(c, want)
    assert c.ping()

    # reconfig()
    since = c.log_offset()
    c.reconfigure()
    if EXECS_ON_RECONFIGURE:
        # never called from 24.05 on: the new slurmctld loads the handler
        c.wait_for_log(r"site_factor/python: loaded handler sftest:Factor",
                       since=since)
        assert "sftest reconfig" not in c.ctld_log()
    else:
        line = line_of(c.handler_path, "marker-reconfig")
        c.wait_for_log(
            rf"site_factor/python: reconfig\(\) failed at {path}:{line}: "
            r"ValueError: reconfig refused marker-reconfig$", since=since)
        c.wait_for_log(r"site_factor/python: sftest: sftest reconfig$",
                       since=since)
    assert c.ping()
    wait_site(c, want)

    # update()
    since = restart_ctld_for_decay_pass(c)
    line = line_of(c.handler_path, "marker-update")
    c.wait_for_log(r"site_factor/python: sftest: sftest update over 3 jobs$",
                   since=since)
    c.wait_for_log(
        rf"site_factor/python: update\(\) over 3 pending jobs failed at "
        rf"{path}:{line}: ValueError: update refused marker-update$",
        since=since)
    assert c.ping()
    wait_site(c, want)
    assert "Traceback (most recent call last)" in c.ctld_log()


WRONG_TYPE_BODY = '''
class Factor(SiteFactorHandler):
    def set(self, job):
        if job.name == "abc":
            return "abc"
        return {"seven": 700}.get(job.name)

    def update(self, jobs):
        log.info("sftest update over %d jobs", len(jobs))
        good = {j.job_id: 9000 for j in jobs if j.name == "seven"}
        bad = {j.job_id: "x" for j in jobs if j.name == "abc"}
        return {**good, **bad}
'''


def test_wrong_typed_returns_leave_factors_unchanged(sf_cluster):
    c = sf_cluster(WRONG_TYPE_BODY)
    path = re.escape(str(c.handler_path))
    ids = submit(c, "seven", "abc")
    want = {ids["seven"]: 700, ids["abc"]: 0}

    line = line_of(c.handler_path, "def set(")
    c.wait_for_log(
        rf"site_factor/python: set\(\) for JobId={ids['abc']}: {path}:{line}: "
        r"set\(\) returned 'abc' \(str\); expected an int or None; "
        r"factor left unchanged$")
    assert c.job(ids["abc"])["JobState"] == "PENDING"
    wait_site(c, want)

    # update() returns a good entry and a bad one: nothing is applied
    since = restart_ctld_for_decay_pass(c)
    line = line_of(c.handler_path, "def update(")
    c.wait_for_log(r"site_factor/python: sftest: sftest update over 2 jobs$",
                   since=since)
    c.wait_for_log(
        rf"site_factor/python: update\(\) over 2 pending jobs: {path}:{line}: "
        r"update\(\) must return a mapping of int job id to int factor; "
        rf"first bad entry {ids['abc']} \(int\): 'x' \(str\); "
        r"factors left unchanged$", since=since)
    assert c.ping()
    wait_site(c, want)
