"""slurmpy-plugins stats against the C host: job_submit/python calls that
succeed, refuse, raise and time out, then the numbers read back through
the CLI's own code (slurmpy_plugins._stats) from the file the plugin maps
under StateSaveLocation."""
from __future__ import annotations

import json
import os
import stat

from slurmpy_plugins import _stats

from .conftest import PLUGIN_DIR, wait_for

JS_SO = PLUGIN_DIR / "job_submit_python.so"

POLICY = """\
from slurmpy_plugins import JobSubmitHandler, Reject


class Policy(JobSubmitHandler):
    def submit(self, job, submit_uid):
        if job.comment == "reject":
            raise Reject("no budget")
        if job.comment == "hang":
            while True:
                pass
        if job.comment == "raise":
            raise ValueError("bad comment")
"""
RAISE_LINE = POLICY.splitlines().index('            raise ValueError("bad comment")') + 1


def _cli(capsys, conf, *args):
    assert _stats.main([str(conf), *args]) == 0
    return capsys.readouterr().out


def test_counts_latency_and_last_error_read_by_the_cli(make_host, handlers, capsys):
    state = handlers.path.parent / "state"
    state.mkdir()
    slurm_conf = handlers.path.parent / "slurm.conf"
    slurm_conf.write_text(f"StateSaveLocation={state}\n"
                          f"SlurmdSpoolDir={handlers.path.parent}/spool-%n\n")
    handlers.write("policy", POLICY)
    (handlers.path.parent / "job_submit_python.conf").write_text(
        f"handler=policy:Policy\npath={handlers.path}\ntimeout=0.5\n")
    h = make_host(so=JS_SO)
    h.conf(slurm_conf=str(slurm_conf), state_save_location=str(state))
    h.load()

    assert h.js_submit(comment="fine")["rc"] == 0
    assert h.js_submit(comment="reject")["rc"] != 0
    assert h.js_submit(comment="hang")["rc"] != 0
    wait_for(lambda: "has returned" in h.log(), timeout=30, what="the stuck worker's return")
    assert h.js_submit(comment="raise")["rc"] != 0
    assert h.js_submit(comment="fine")["rc"] == 0

    files = list((state / "slurmpy-stats").iterdir())
    assert len(files) == 1
    st = files[0].stat()
    assert stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == os.geteuid()

    doc = json.loads(_cli(capsys, slurm_conf, "--json"))
    [d] = doc["daemons"]
    assert d["daemon"] == "slurmctld" and d["state"] == "running"
    assert d["path"] == str(files[0]) and files[0].name.endswith(f".{d['pid']}")
    assert d["plugins"] == {"job_submit/python": {"loads": 1, "reloads": 0}}
    [sub] = d["hooks"]
    assert (sub["plugin"], sub["hook"]) == ("job_submit/python", "submit")
    assert {k: sub[k] for k in _stats.COUNTERS} == dict(
        calls=5, ok=2, refused=1, failed=1, timeouts=1, written_off=1)
    # the timed-out call: answered at its deadline, which the pool keeps in
    # whole ms from submission (pool.c deadline_ms), so up to 1 ms early
    assert sub["max_us"] >= 500_000 - 1_000
    assert 0 < sub["p50_us"] <= sub["p99_us"] <= sub["max_us"]
    assert sub["p99_us"] >= 500_000 * 0.8
    err = sub["last_error"]
    assert err["where"] == f"{handlers.path}/policy.py:{RAISE_LINE}"
    assert err["text"] == "ValueError: bad comment"
    assert abs(err["time"] - __import__("time").time()) < 60

    table = _cli(capsys, slurm_conf)
    assert "job_submit/python submit" in table and "ValueError: bad comment" in table
    om = _cli(capsys, slurm_conf, "--openmetrics")
    assert om.endswith("# EOF\n")
    assert ('slurmpy_hook_timeouts_total{daemon="slurmctld",pid="%d",plugin="job_submit/python",'
            'hook="submit"} 1' % d["pid"]) in om

    h.close()
    [d] = json.loads(_cli(capsys, slurm_conf, "--json"))["daemons"]
    assert d["state"] == "stale" and not d["hooks"] and "not running" in d["why"]
