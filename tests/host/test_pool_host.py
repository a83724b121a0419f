"""The pool's ownership and write-off rules, driven through prep_python.so in
the C host: what happens when Slurm's callback blocks (it waits for the job
write lock) while the handler it answers for returns, and when more workers
are written off than the pool replaces.  Run under `make asan` too: there a
task freed too early is a heap-use-after-free report."""
from __future__ import annotations

import pytest

from .conftest import wait_for
from .test_prep_host import WAIT_KILLED, assert_async_ok, start

# Each call starts, then overruns its 2 s limit inside one C call
# (time.sleep: the TimeoutError sent to its thread is raised only once the
# sleep returns), then leaves the handler.
OVERRUN_THEN_RETURN = """\
import time
import spmtest_rec as R
from slurmpy_plugins import PrEpHandler

class H(PrEpHandler):
    def prolog_slurmctld(self, job):
        R.append("{out}/calls.jsonl", ["start", job.job_id])
        time.sleep(4.0)
"""


@pytest.mark.parametrize("jobs", [[1], [1, 2]], ids=["one", "two"])
def test_blocked_callback_outlives_the_worker_that_returns(make_host, handlers, jobs):
    """issue 18.1: the reaper answers timed-out running tasks, and they are
    delivered with no lock held; the first callback waits for the job write
    lock (held here by the host, as by a long scheduling pass) while the
    handlers return and their workers let go of the tasks.  Every job must
    still get exactly one callback, and nothing may be read after free.
    With two jobs the second one's deadline comes while the first one's
    callback is blocked: it must still be answered at its deadline (its
    worker written off), not once the lock is free."""
    handlers.write("hh", OVERRUN_THEN_RETURN)
    # the lock is held on purpose: no deadlock report for a long wait
    h = make_host("prep", deadlock_ms=120000)
    h.conf(prep_params=handlers.params("hh:H", timeout="2", workers=len(jobs)))
    h.load()
    h.wait_booted()
    h.callbacks()
    for j in jobs:
        assert_async_ok(h.prolog_slurmctld(job_id=j))
    # (the hook itself takes the lock, so it is taken after the calls,
    # well before their 2 s deadline; the callbacks block behind it until
    # lock_release: checked below, none may have come)
    h.lock_hold()
    # each call was running (not answered in the queue), was answered at
    # its deadline (its worker written off), and its worker has returned
    # from the handler and let go of the task
    wait_for(lambda: h.log().count("its result was discarded") >= len(jobs), 30,
             what="the overrunning handlers to return")
    assert sorted(x[1] for x in handlers.lines("calls.jsonl")) == jobs
    assert h.callback_events == []          # still blocked on the lock
    h.lock_release()
    cbs = h.wait_callbacks(len(jobs), timeout=30)
    assert sorted((c["job_id"], c["rc"], c["timed_out"]) for c in cbs) == [
        (j, WAIT_KILLED, 1) for j in jobs]
    assert all(c["expected"] == 1 and c["thread"] == "other" for c in cbs)
    st = h.stats()
    assert st["pending"] == 0 and st["unexpected"] == 0 and st["deadlocks"] == 0


STUCK_THEN_SPIN = """\
import time
import spmtest_rec as R
from slurmpy_plugins import PrEpHandler

class H(PrEpHandler):
    def prolog_slurmctld(self, job):
        R.append("{out}/calls.jsonl", ["start", job.job_id])
        if job.job_id <= {stuck}:
            time.sleep(600)          # stuck in C: no TimeoutError reaches it
        try:
            while True:              # pure Python: a TimeoutError stops it
                pass
        except BaseException as e:
            R.append("{out}/calls.jsonl", ["interrupted", job.job_id, type(e).__name__])
            raise
"""


def test_workers_written_off_past_the_bound_are_still_interrupted(make_host, handlers):
    """issue 18.7: once SPM_POOL_MAX_STUCK (128) workers are written off the
    pool stops replacing them, but a worker written off after that must
    still get its TimeoutError (it used to be left spinning for good)."""
    bound = 128
    h = start(make_host, handlers, source=STUCK_THEN_SPIN.replace("{stuck}", str(bound)),
              timeout="0.05", workers=2)
    # one at a time, so that each runs (and is written off) rather than
    # expiring in the queue: jobs 1..128 stick in time.sleep
    for j in range(1, bound + 1):
        assert_async_ok(h.prolog_slurmctld(job_id=j))
        cb = h.wait_callbacks(j, timeout=30)[-1]
        assert (cb["job_id"], cb["timed_out"]) == (j, 1), cb
    # 128 written off, one worker left: job 129 runs there, spins, is
    # written off past the bound, and must be interrupted
    spinner = bound + 1
    assert_async_ok(h.prolog_slurmctld(job_id=spinner))
    cb = h.wait_callbacks(spinner, timeout=30)[-1]
    assert (cb["job_id"], cb["timed_out"]) == (spinner, 1), cb
    wait_for(lambda: ["interrupted", spinner, "TimeoutError"] in handlers.lines("calls.jsonl"),
             30, what="the worker written off past the bound to be interrupted")
    assert "all worker threads are stuck in handlers (129 written off, the limit)" in h.log()
    # the interrupted worker rejoins: the pool runs calls again.  (The
    # handler records "interrupted" before its worker leaves it: a call
    # made before the worker rejoined finds every worker stuck and fails at
    # once, as it should; seen on a loaded machine.)
    wait_for(lambda: "its thread rejoins the pool" in h.log(), 30,
             what="the interrupted worker to rejoin the pool")
    assert_async_ok(h.prolog_slurmctld(job_id=spinner + 1))
    wait_for(lambda: ["start", spinner + 1] in handlers.lines("calls.jsonl"), 30,
             what="a call to run on the worker that rejoined")
    cb = h.wait_callbacks(spinner + 1, timeout=30)[-1]
    assert (cb["job_id"], cb["timed_out"]) == (spinner + 1, 1), cb
