"""The shim's promises that no job slips through or waits for ever, through
the C host (tests/host/spm_host.c): deadlines counted from submission, a pool
whose workers are all stuck, the boot outside every lock, ownership at the
timeout boundary, forked children, update()'s answer read once."""
from __future__ import annotations

import os
import time

import pytest

from .conftest import ASAN, NICE_OFFSET, WAIT_FAILED, WAIT_KILLED, wait_for
from .test_prep_host import assert_async_ok, start

# ---------------------------------------------------------------------------
# deadlines count from submission (no job waits longer than its timeout)
# ---------------------------------------------------------------------------

SLOW = """\
import time
from slurmpy_plugins import PrEpHandler
class H(PrEpHandler):
    def prolog_slurmctld(self, job):
        time.sleep(job.time_limit / 1000.0)    # ms, not overrunning alone
"""


def test_queued_call_is_answered_within_its_timeout_from_submission(
        make_host, handlers):
    """workers=1, timeout=1 s: a call that runs 0.7 s, then one that runs
    0.5 s.  The second waits 0.7 s in the queue; counted from its
    submission it overruns at 1 s, so it is answered "timed out" then, not
    at 1.2 s with a success."""
    h = start(make_host, handlers, source=SLOW, timeout="1", workers=1)
    assert_async_ok(h.prolog_slurmctld(job_id=1, time_limit=700))
    assert_async_ok(h.prolog_slurmctld(job_id=2, time_limit=500))
    h.wait_callbacks(2, timeout=10)
    at = {}
    for c in h.callback_events:
        at[c["job_id"]] = c
    assert (at[1]["rc"], at[1]["timed_out"]) == (0, 0)
    assert (at[2]["rc"], at[2]["timed_out"]) == (WAIT_KILLED, 1)
    # (job 2 alone would finish at 1.2 s, with success: its timed_out
    # answer above is the evidence, no wall-clock bound needed)
    assert ("prolog_slurmctld for JobId=2 timed out: the handler exceeded its "
            "time limit of 1000 ms") in h.log()


# ---------------------------------------------------------------------------
# every worker stuck in C: calls fail at once, then the pool recovers
# ---------------------------------------------------------------------------

STUCK = """\
import os
from slurmpy_plugins import PrEpHandler
class H(PrEpHandler):
    def prolog_slurmctld(self, job):
        if job.name == "hang":
            # blocked in C (TimeoutError cannot stop it) until the test
            # opens out/release, a FIFO, for writing
            os.close(os.open("{out}/release", os.O_RDONLY))
"""


def _release(handlers):
    """Let every handler blocked on out/release return, and any that has
    not reached its open() yet (a loaded machine): the FIFO is opened
    O_RDWR (on Linux that never blocks and counts as a writer) and that fd
    stays open for the test's life, so every later open(O_RDONLY) returns
    at once."""
    handlers.release_fd = os.open(handlers.out / "release", os.O_RDWR)


def test_all_workers_stuck_every_call_is_still_answered(make_host, handlers):
    os.mkfifo(handlers.out / "release", 0o600)
    h = start(make_host, handlers, source=STUCK, timeout="0.05", workers=4)
    h.strict_callbacks = True
    try:
        # each hung call is submitted once the previous one was answered (a
        # worker written off and replaced), until the pool has none left:
        # more than the 128 cap, however long a replacement takes to start
        j = 0
        while "all worker threads are stuck in handlers" not in h.log():
            assert j < 400, "the pool never ran out of workers"
            j += 1
            assert_async_ok(h.prolog_slurmctld(job_id=j, name="hang"))
            h.wait_callbacks(j, timeout=30)
        n_hang = j
        assert n_hang > 128
        # nothing can run a call now: it fails at once, logged with the
        # reason (a failure, not a timeout: that is the evidence)
        assert_async_ok(h.prolog_slurmctld(job_id=1000, name="quick"))
        cbs = h.wait_callbacks(n_hang + 1, timeout=30)
        quick = [c for c in cbs if c["job_id"] == 1000]
        assert len(quick) == 1 and (quick[0]["rc"], quick[0]["timed_out"]) == (WAIT_FAILED, 0)
        assert "no worker thread can run it: all are stuck in handlers" in h.log()
        # every hung call answered exactly once, as timed out or failed
        assert sorted(c["job_id"] for c in cbs) == list(range(1, n_hang + 1)) + [1000]
        assert all(c["rc"] in (WAIT_KILLED, WAIT_FAILED) for c in cbs)
    finally:
        _release(handlers)
    # the stuck threads return, rejoin the pool, and calls run again.  All
    # of them first: the next call has 50 ms, and the n_hang threads that
    # wake together take turns at the GIL meanwhile (seen in CI on a loaded
    # machine: the call was answered timed out while they did)
    wait_for(lambda: h.log().count("a handler that overran its time limit has returned")
             >= n_hang, 60, what="every stuck worker to return")
    assert "its thread rejoins the pool" in h.log()
    assert_async_ok(h.prolog_slurmctld(job_id=2000, name="quick"))
    assert h.wait_callbacks(n_hang + 2, timeout=30)[-1]["rc"] == 0
    os.close(handlers.release_fd)


# ---------------------------------------------------------------------------
# a slow handler import never runs inside a hook (slurmctld's locks)
# ---------------------------------------------------------------------------

# A slow import (a big library, a network FS) that lasts until the test
# opens out/import.go: ordering, not timing (60 s at most: catches a hang).
GATE = """\
import os, time
def wait_gate(path):
    for _ in range(6000):
        if os.path.exists(path):
            return
        time.sleep(0.01)
    raise RuntimeError("gate %s never opened" % path)
"""
SLOW_IMPORT = GATE + """\
import spmtest_rec as R
from slurmpy_plugins import PrEpHandler
wait_gate("{out}/import.go")
class H(PrEpHandler):
    def prolog_slurmctld(self, job):
        if job.time_limit:         # this call lasts until out/call.go opens
            wait_gate("{out}/call.go")
        R.append("{out}/calls.jsonl", job.job_id)
"""


def test_handler_loads_on_its_own_thread_not_inside_the_first_hook(
        make_host, handlers):
    handlers.write("hh", SLOW_IMPORT)
    h = make_host("prep")
    h.conf(prep_params=handlers.params("hh:H"))
    # the import cannot finish before the test opens its gate: each call
    # below returning at all shows that it did not wait for the import
    h.load()                                  # init(): cheap
    h.callbacks()
    req = h.required()                        # never waits for the import
    res = h.prolog_slurmctld(job_id=1, time_limit=0)   # under the job/node locks
    assert res["rc"] == 0 and res["async"] == 1
    # while it loads, Slurm must still call the slurmctld hooks
    assert req["prolog_slurmctld"] and req["epilog_slurmctld"]
    assert h.boots_done() == 0 and h.callback_events == []   # still importing
    (handlers.out / "import.go").touch()
    cb = h.wait_callbacks(1, timeout=60)[0]
    assert (cb["job_id"], cb["rc"]) == (1, 0)     # queued behind the load, then run
    assert handlers.lines("calls.jsonl") == [1]


def test_boot_timeout_keeps_every_limit_and_the_late_load_is_taken(
        make_host, handlers):
    """A handler that loads past the boot limit: calls meanwhile fail at
    once (never unbounded), and once the import finishes the handler runs,
    with its own timeout= applied."""
    handlers.write("hh", SLOW_IMPORT)
    h = make_host("prep", env={"SPM_BOOT_TIMEOUT_MS": "500"})
    h.conf(prep_params=handlers.params("hh:H", timeout="0.3"))
    h.load()
    h.callbacks()
    wait_for(lambda: "loading the handler takes more than 500 ms" in h.log(), 30,
             what="the boot limit to pass")
    # the import is held at its gate: an answer now came without waiting for it
    assert_async_ok(h.prolog_slurmctld(job_id=1, time_limit=0))
    cb = h.wait_callbacks(1, timeout=30)[0]
    assert (cb["rc"], cb["timed_out"]) == (WAIT_FAILED, 0)
    assert h.boots_done() == 0
    assert "the handler is still loading" in h.log()
    (handlers.out / "import.go").touch()
    h.wait_booted(timeout=60)
    assert "the handler load finished after" in h.log()
    assert_async_ok(h.prolog_slurmctld(job_id=2, time_limit=0))
    assert h.wait_callbacks(2)[-1]["rc"] == 0
    # the handler's timeout= holds: a call that lasts until the test opens
    # its gate is answered "timed out" while the gate is still closed
    assert_async_ok(h.prolog_slurmctld(job_id=3, time_limit=1))
    cb = h.wait_callbacks(3, timeout=30)[-1]
    assert (cb["rc"], cb["timed_out"]) == (WAIT_KILLED, 1)
    assert "time limit of 300 ms" in h.log()
    (handlers.out / "call.go").touch()


def test_site_factor_calls_never_wait_for_a_slow_boot(make_host, handlers):
    handlers.write("sf", GATE + """\
from slurmpy_plugins import SiteFactorHandler
wait_gate("{out}/import.go")          # the import lasts until the test opens it
class H(SiteFactorHandler):
    def set(self, job):
        return 3
""")
    h = make_host("sf", env={"SPM_BOOT_TIMEOUT_MS": "300"})
    h.conf(site_factor_params=handlers.params("sf:H"))
    h.load()                          # init() waits at most the boot limit
    # answered while the import is held at its gate: it did not wait for it
    res = h.site_set(job_id=1, site_factor=NICE_OFFSET + 9)
    assert res["site_factor"] == NICE_OFFSET + 9     # left unchanged
    assert h.boots_done() == 0
    assert "the handler is still loading" in h.log()
    (handlers.out / "import.go").touch()
    h.wait_booted(timeout=60)
    assert h.site_set(job_id=2)["site_factor"] == NICE_OFFSET + 3


# ---------------------------------------------------------------------------
# ownership at the timeout boundary (ASan: no use after free)
# ---------------------------------------------------------------------------

BOUNDARY = """\
import time
from slurmpy_plugins import PrEpHandler, SiteFactorHandler
class H(PrEpHandler):
    def prolog(self, env):
        time.sleep(env.job_id % 7 * 0.002 + 0.044)     # around 50 ms
class F(SiteFactorHandler):
    def set(self, job):
        time.sleep(job.job_id % 7 * 0.002 + 0.044)
        return 1
"""


def test_slurmd_calls_ending_at_their_deadline(make_host, handlers):
    """Handlers that return right around their deadline: whichever side
    wins, the caller reads only what it owns (under ASan this loop found
    heap-use-after-free in the old dispatch)."""
    h = start(make_host, handlers, daemon="slurmd", source=BOUNDARY,
              timeout="0.05", workers=2)
    for j in range(1, 61):
        assert h.prolog(jobid=j)["rc"] in (0, -1)
    assert h.sanitizer_report() == ""
    assert h.ping() == {}


def test_site_factor_set_ending_at_its_deadline(make_host, handlers):
    handlers.write("sb", BOUNDARY)
    h = make_host("sf")
    h.conf(site_factor_params=handlers.params("sb:F", timeout="0.05"))
    h.load()
    def settled():     # every call that overran has returned (no fail-fast run next)
        log = h.log()
        return (log.count("overran its time limit has returned")
                >= log.count("set(): the handler exceeded its time limit"))
    for j in range(1, 61):
        got = h.site_set(job_id=j, site_factor=NICE_OFFSET)["site_factor"]
        assert got in (NICE_OFFSET, NICE_OFFSET + 1)
        wait_for(settled, 30, what="the overrunning set() to return")
    assert h.sanitizer_report() == ""


# ---------------------------------------------------------------------------
# processes a handler starts
# ---------------------------------------------------------------------------

CHILDREN = """\
import os, signal, subprocess
import spmtest_rec as R
from slurmpy_plugins import PrEpHandler

def blocked(text):
    for line in text.splitlines():
        if line.startswith("SigBlk:"):
            return int(line.split()[1], 16)

class H(PrEpHandler):
    def prolog(self, env):
        out = {}
        out["subprocess"] = blocked(subprocess.run(
            ["cat", "/proc/self/status"], capture_output=True, text=True).stdout)
        rfd, wfd = os.pipe()
        os.system("cat /proc/self/status > /proc/%d/fd/%d" % (os.getpid(), wfd))
        os.close(wfd)
        out["system"] = blocked(os.read(rfd, 65536).decode())
        os.close(rfd)
        rfd, wfd = os.pipe()
        pid = os.posix_spawnp("sh", ["sh", "-c", "cat /proc/self/status > /proc/%d/fd/%d" % (os.getpid(), wfd)],
                              dict(os.environ), file_actions=[])
        os.waitpid(pid, 0)
        os.close(wfd)
        out["posix_spawn"] = blocked(os.read(rfd, 65536).decode())
        os.close(rfd)
        R.dump("{out}/masks.json", out)

    def prolog_slurmctld(self, job):
        pid = os.fork()
        if pid == 0:
            return          # the child returns into the worker: must _exit
        _, status = os.waitpid(pid, 0)
        R.dump("{out}/child.json", {"status": status})
"""


def test_children_start_with_an_empty_signal_mask(make_host, handlers):
    h = start(make_host, handlers, daemon="slurmd", source=CHILDREN)
    assert h.prolog(jobid=1)["rc"] == 0
    masks = handlers.read("masks.json")
    assert masks == {"subprocess": 0, "system": 0, "posix_spawn": 0}, masks


def test_a_forked_child_that_returns_never_answers_slurm(make_host, handlers):
    h = start(make_host, handlers, source=CHILDREN)
    h.strict_callbacks = True
    assert_async_ok(h.prolog_slurmctld(job_id=1))
    cb = h.wait_callbacks(1)[0]
    assert (cb["job_id"], cb["rc"]) == (1, 0)
    child = handlers.read("child.json")
    assert child["status"] == 1 << 8          # the child did _exit(1)
    # the child has exited (waited for above): it can answer nothing more
    assert len(h.callback_events) == 1
    assert h.stats()["unexpected"] == 0


# ---------------------------------------------------------------------------
# update()'s answer is read once and never written past C's arrays
# ---------------------------------------------------------------------------

GROWING = """\
from collections.abc import Mapping
from slurmpy_plugins import SiteFactorHandler

class Growing(Mapping):
    # every keys() call yields more ids than the one before
    def __init__(self):
        self.calls = 0
    def keys(self):
        self.calls += 1
        return list(range(1, 1 + 2 * self.calls ** 4))
    def __iter__(self):
        return iter(self.keys())
    def __len__(self):
        return 2
    def __getitem__(self, k):
        return 7

class H(SiteFactorHandler):
    def update(self, jobs):
        return Growing()
"""


def test_update_mapping_is_read_once_and_bounded(make_host, handlers):
    handlers.write("gr", GROWING)
    h = make_host("sf")
    h.conf(site_factor_params=handlers.params("gr:H"))
    h.load()
    h.jobs_add(job_id=1)
    h.jobs_add(job_id=2)
    got = h.site_update()
    # the first reading (2 ids) is the answer; later readings never reach C
    assert got == {1: NICE_OFFSET + 7, 2: NICE_OFFSET + 7}
    assert h.sanitizer_report() == ""
    assert h.ping() == {}


# ---------------------------------------------------------------------------
# errors inside cffi's own embedding init reach the daemon log
# ---------------------------------------------------------------------------

def test_cffi_init_failure_is_logged_not_lost_on_stderr(make_host, handlers,
                                                        tmp_path):
    """With a _cffi_backend that cannot be imported, cffi's embedding init
    fails before any of our Python runs and prints to sys.stderr, which is
    /dev/null in a daemon: it must reach the log, and every hook fails
    closed."""
    import shutil
    from .conftest import PLUGIN_DIR
    dst = tmp_path / "plugins"
    shutil.copytree(PLUGIN_DIR, dst, symlinks=False,
                    ignore=shutil.ignore_patterns("cffi"))
    for so in (dst / "slurmpy" / "python").glob("_cffi_backend*.so"):
        so.unlink()
    (dst / "slurmpy" / "python" / "_cffi_backend.py").write_text(
        "raise ImportError('this cffi backend is broken')\n")
    handlers.write("hh", "from slurmpy_plugins import PrEpHandler\n"
                         "class H(PrEpHandler):\n"
                         "    def prolog_slurmctld(self, job): pass\n")
    h = make_host("prep", so=str(dst / "prep_python.so"))
    h.conf(prep_params=handlers.params("hh:H"))
    h.load()
    h.callbacks()
    h.wait_booted()
    assert_async_ok(h.prolog_slurmctld(job_id=1))
    assert h.wait_callbacks(1)[0]["rc"] == WAIT_FAILED
    log = h.log()
    assert "error: slurmpy: Failed to initialize the Python-CFFI embedding logic" in log, log
    assert "the Python bridge did not attach" in log
