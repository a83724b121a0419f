"""slurmpy-plugins stats against the C host: job_submit/python calls that
succeed, refuse, raise and time out, then the numbers read back through
the CLI's own code (slurmpy_plugins._stats) from the file the plugin maps
under StateSaveLocation; jobcomp/python's deliveries and spool; spm.h's
writers (error claims, counters added by several processes at once).  The
reading of the node's shared spank file: tests/python/test_stats.py."""
from __future__ import annotations

import json
import os
import pathlib
import stat
import subprocess

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



JC_SO = PLUGIN_DIR / "jobcomp_python.so"

LEDGER = """\
import os
from slurmpy_plugins import JobCompHandler

DOWN, OUT = {down!r}, {out!r}


class Ledger(JobCompHandler):
    def job_end(self, job):
        if os.path.exists(DOWN):
            raise ConnectionError("the ledger is down")
        with open(OUT, "a") as f:
            f.write("%d\\n" % job.job_id)
"""
LEDGER_RAISE = LEDGER.splitlines().index('            raise ConnectionError("the ledger is down")') + 1


def _jc_job(job_id: int, **kw):
    d = dict(job_id=job_id, job_state=3 | (1 << 15), name=f"j{job_id}", user_id=1000,
             user_name="alice", group_id=1000, account="phys", partition="debug",
             submit_time=1_700_000_000 + job_id, start_time=1_700_000_100,
             end_time=1_700_000_160, node_cnt=1, total_cpus=2, nodes="node1",
             time_limit=0xFFFFFFFE, array_task_id=0xFFFFFFFE)
    d.update(kw)
    return d


def test_jobcomp_publishes_its_spool_and_deliveries(make_host, handlers, capsys):
    # the ledger is down for the first records: each attempt fails (its
    # file:line is the last error), the deliverer retries the first one
    # while the backlog grows; once it is up, all are delivered, in order,
    # and the backlog is empty; a record too big for spool_max= is dropped
    root = handlers.path.parent
    down, out = root / "down.flag", root / "delivered.txt"
    state = root / "state"
    state.mkdir()
    slurm_conf = root / "slurm.conf"
    slurm_conf.write_text(f"StateSaveLocation={state}\nSlurmdSpoolDir={root}/spool-%n\n")
    handlers.write("ledger", LEDGER.format(down=str(down), out=str(out)))
    (root / "jobcomp_python.conf").write_text(
        f"handler=ledger:Ledger\npath={handlers.path}\nspool_max=1\n")
    down.write_text("")
    h = make_host(so=JC_SO)
    h.conf(slurm_conf=str(slurm_conf), state_save_location=str(state), cluster_name="testc")
    h.load()
    for i in (1, 2, 3):
        assert h.jc_end(**_jc_job(i))["rc"] == 0
    assert h.jc_end(**_jc_job(4, name="x" * (1200 * 1024)))["rc"] != 0   # > spool_max

    def daemon():
        [d] = json.loads(_cli(capsys, slurm_conf, "--json"))["daemons"]
        return d

    def failing():
        d = daemon()
        return d if d["jobcomp"] and d["jobcomp"]["head_failures"] >= 2 else None

    d = wait_for(failing, timeout=30, what="two failed attempts of the first record")
    jc = d["jobcomp"]
    assert (jc["spooled"], jc["dropped"], jc["delivered"]) == (3, 1, 0)
    assert jc["retried"] >= 2 and jc["backlog_bytes"] > 0
    assert abs(jc["head_failing_since"] - __import__("time").time()) < 60
    [end] = [x for x in d["hooks"] if x["hook"] == "job_end"]
    assert end["plugin"] == "jobcomp/python" and end["ok"] == 0
    assert end["failed"] == end["calls"] >= 2 and end["timeouts"] == 0
    assert end["last_error"]["where"] == f"{handlers.path}/ledger.py:{LEDGER_RAISE}"
    assert end["last_error"]["text"] == "ConnectionError: the ledger is down"
    table = _cli(capsys, slurm_conf)
    assert "jobcomp/python spool: 3 spooled, 0 delivered" in table
    assert "delivery held back by a record failing" in table

    down.unlink()
    d = wait_for(lambda: (lambda d: d if d["jobcomp"]["delivered"] == 3 else None)(daemon()),
                 timeout=60, what="the three records delivered")
    jc = d["jobcomp"]
    assert (jc["backlog_bytes"], jc["head_failures"], jc["head_failing_since"]) == (0, 0, 0)
    assert out.read_text().split() == ["1", "2", "3"]
    [end] = [x for x in d["hooks"] if x["hook"] == "job_end"]
    assert end["ok"] == 3 and end["calls"] == end["ok"] + end["failed"]
    assert end["failed"] == jc["retried"]
    assert 0 < end["p50_us"] <= end["max_us"]
    om = _cli(capsys, slurm_conf, "--openmetrics")
    assert 'slurmpy_jobcomp_delivered_total{daemon="slurmctld",pid="%d"} 3' % d["pid"] in om
    assert 'slurmpy_jobcomp_dropped_total{daemon="slurmctld",pid="%d"} 1' % d["pid"] in om
    assert 'slurmpy_jobcomp_backlog_bytes{daemon="slurmctld",pid="%d"} 0' % d["pid"] in om
    h.close()


# spm.h's writers, shared by the daemons (stats.c) and the node's spank
# processes (spank_python.c): a hook's last error under a claim (a fresh
# one is respected: the newcomer's error is dropped; a stale one, a writer
# killed in the middle, is taken over), and counters that processes add to
# at once through one MAP_SHARED mapping, no lock, nothing lost.
CLAIMS_C = r"""
#include "spm.h"
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#define PROCS 4
#define CALLS 20000

int main(void)
{
	static spm_stats_error_t e;
	spm_stats_file_t *m;

	spm_stats_write_error(&e, "a.py:1", "first\nline", 1000);
	printf("write %u %s|%s|%lld\n", e.seq, e.where, e.text, (long long)e.time);
	e.seq = 3;                         /* a writer at it since 1999 */
	e.claimed = 1999;
	spm_stats_write_error(&e, "b.py:2", "second", 2000);
	printf("fresh %u %s|%s|%lld\n", e.seq, e.where, e.text, (long long)e.time);
	spm_stats_write_error(&e, "c.py:3", "third", 2001 + SPM_STATS_CLAIM_STALE);
	printf("stale %u %s|%s|%lld\n", e.seq, e.where, e.text, (long long)e.time);

	m = mmap(NULL, sizeof(*m), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED)
		return 1;
	for (int p = 0; p < PROCS; p++) {
		if (fork() == 0) {
			for (uint64_t i = 0; i < CALLS; i++) {
				spm_stats_count(&m->hooks[0], i % 4, i % 1000);
				if (i % 100 == 0)
					spm_stats_write_error(&m->errors[0], "x.py:9", "boom", 5000);
			}
			_exit(0);
		}
	}
	while (wait(NULL) > 0)
		;
	{
		spm_stats_hook_t *h = &m->hooks[0];
		uint64_t b = 0;

		for (int i = 0; i < SPM_STATS_BUCKETS; i++)
			b += h->buckets[i];
		printf("shared %llu %llu %llu %llu %llu %llu %llu %u %s\n",
		       (unsigned long long)h->calls, (unsigned long long)h->ok,
		       (unsigned long long)h->refused, (unsigned long long)h->failed,
		       (unsigned long long)h->timeouts, (unsigned long long)b,
		       (unsigned long long)h->max_us, m->errors[0].seq & 1,
		       m->errors[0].text);
	}
	return 0;
}
"""


def test_error_claims_and_counters_shared_by_processes(tmp_path):
    root = pathlib.Path(__file__).resolve().parents[2]
    src, exe = tmp_path / "claims.c", tmp_path / "claims"
    src.write_text(CLAIMS_C)
    subprocess.run(["gcc", "-O2", "-Wall", "-Werror", "-I", str(root / "csrc"), "-o", str(exe),
                    str(src)], check=True)
    out = dict(line.split(" ", 1) for line in
               subprocess.run([str(exe)], check=True, capture_output=True,
                              text=True).stdout.splitlines())
    assert out["write"] == "2 a.py:1|first line|1000"
    assert out["fresh"] == "3 a.py:1|first line|1000"       # dropped: not waited for
    assert out["stale"] == "6 c.py:3|third|2003"            # taken over, released even
    n = 4 * 20000
    assert out["shared"].split() == [str(n), str(n // 4), str(n // 4), str(n // 4),
                                     str(n // 4), str(n), "999", "0", "boom"]
