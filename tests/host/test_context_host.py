"""Loading and reloading a handler (slurmpy_plugins/_context.py), driven
through prep_python.so in the C host: one load at a time, and a reload whose
import hangs is given up without stopping later reloads."""
from __future__ import annotations

from .conftest import wait_for

# The module takes a while to import; each instance says where it was made.
SLOW_IMPORT = """\
import threading, time
import spmtest_rec as R
from slurmpy_plugins import PrEpHandler

VERSION = "{version}"
time.sleep({import_s})

class H(PrEpHandler):
    def __init__(self):
        R.append("{out}/inits.jsonl", [VERSION, threading.current_thread().name])

    def prolog_slurmctld(self, job):
        R.append("{out}/calls.jsonl", [VERSION])
"""


def slow(version, import_s):
    return SLOW_IMPORT.replace("{version}", version).replace("{import_s}", str(import_s))


def test_the_handler_is_loaded_once_at_boot(make_host, handlers):
    """issue 18.3: while the boot imports a slow module, the reload loop
    (every 0.2 s here) must not start a second import and instance of the
    same handler: module side effects would run twice, concurrently."""
    handlers.write("hh", slow("v1", 2.5))
    h = make_host("prep")
    h.conf(prep_params=handlers.params("hh:H", reload="0.2"))
    h.load()
    h.wait_booted(timeout=60)
    # a changed file: its reload shows the reload loop ran after the boot
    handlers.write("hh", slow("v2", 0))
    wait_for(lambda: "reloaded handler hh:H" in h.log(), 30, what="the reload of v2")
    inits = handlers.lines("inits.jsonl")
    assert [v for v, _ in inits] == ["v1", "v2"], inits
    assert inits[1][1] == "slurmpy-load-prep/python", inits


HANGS_IN_PYTHON = """\
from slurmpy_plugins import PrEpHandler
while True:          # an import that never ends (a TimeoutError stops it)
    pass

class H(PrEpHandler):
    def prolog_slurmctld(self, job):
        pass
"""


def test_a_reload_whose_import_hangs_is_given_up(make_host, handlers):
    """issue 18.7: a reload is bounded by the load limit (SPM_BOOT_TIMEOUT_MS,
    3 s here): an import that hangs is refused, interrupted, the running
    handler stays, and the next change is picked up."""
    handlers.write("hh", slow("v1", 0))
    h = make_host("prep", env={"SPM_BOOT_TIMEOUT_MS": "3000"})
    h.conf(prep_params=handlers.params("hh:H", reload="0.2"))
    h.load()
    h.wait_booted()
    h.callbacks()
    path = handlers.write("hh", HANGS_IN_PYTHON)
    wait_for(lambda: "took longer than 3 s" in h.log(), 60, what="the hung reload to be given up")
    log = h.log()
    assert ("changed handler refused, the previous one keeps running: loading hh:H took "
            "longer than 3 s (an import that hangs?): given up, and interrupted "
            "(TimeoutError)") in log
    assert h.prolog_slurmctld(job_id=1)["rc"] == 0
    wait_for(lambda: ["v1"] in handlers.lines("calls.jsonl"), 30, what="v1 to run")
    # the interrupted import ended (no later load is blocked behind it),
    # and the next good change loads
    handlers.write("hh", slow("v3", 0))
    wait_for(lambda: "reloaded handler hh:H from %s" % path in h.log(), 30,
             what="the reload of v3")
    assert "still running" not in h.log()
    assert h.prolog_slurmctld(job_id=2)["rc"] == 0
    wait_for(lambda: ["v3"] in handlers.lines("calls.jsonl"), 30, what="v3 to run")
