"""The banking example (examples/banking/bank.py) on a real cluster:
job_submit/python estimates and refuses, prep/python reserves at start,
jobcomp/python charges at the end, site_factor/python lowers the priority
of accounts near exhaustion; one SQLite ledger."""
from __future__ import annotations

import math
import os
import pathlib
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import datetime

import pytest

from tests.harness.slurmcluster import TERMINAL_JOB_STATES

from .conftest import BUILD_PLUGINS

ROOT = pathlib.Path(__file__).resolve().parents[2]
BANK = ROOT / "examples" / "banking" / "bank.py"


RATE = 1          # SU per CPU-minute in partition debug (the fixture's `rate debug 1`)


def _ts(s: str) -> int:
    return int(datetime.strptime(s, "%Y-%m-%dT%H:%M:%S").timestamp())


def _minutes(limit: str) -> int:
    """scontrol's TimeLimit ([days-]hours:minutes:seconds) in minutes."""
    days, _, hms = limit.rpartition("-")
    h, m, sec = (int(x) for x in hms.split(":"))
    return int(days or 0) * 1440 + h * 60 + m + math.ceil(sec / 60)


@pytest.fixture
def bank(cluster_factory, tmp_path):
    hdir = tmp_path / "handlers"
    hdir.mkdir(mode=0o755)
    os.chmod(hdir, 0o755)
    shutil.copy(BANK, hdir / "bank.py")
    os.chmod(hdir / "bank.py", 0o644)
    db = tmp_path / "ledger" / "bank.sqlite"
    db.parent.mkdir(mode=0o755)
    admin = [sys.executable, str(BANK)]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    for args in (["init"], ["account", "phys", "100"], ["account", "chem", "50"],
                 ["rate", "debug", str(RATE)]):
        subprocess.run(admin[:2] + [args[0], str(db), *args[1:]], check=True, env=env)
    c = cluster_factory(
        plugin_dirs=[str(BUILD_PLUGINS)],
        env={"SLURMPY_BANK_DB": str(db), "SLURMPY_BANK_LOCK_TIMEOUT": "1"},
        conf_extra=["JobSubmitPlugins=python",
                    "JobCompType=jobcomp/python",
                    "PrEpPlugins=prep/python",
                    f"PrEpParameters=handler=bank:Accounting,path={hdir}",
                    "PrioritySiteFactorPlugin=site_factor/python",
                    f"PrioritySiteFactorParameters=handler=bank:Priority,path={hdir}"])
    (c.conf_path.parent / "job_submit_python.conf").write_text(
        f"handler=bank:Submit\npath={hdir}\n")
    (c.conf_path.parent / "jobcomp_python.conf").write_text(
        f"handler=bank:Completion\npath={hdir}\n")
    c.start()
    c.db = db
    return c


def ledger(db) -> sqlite3.Connection:
    return sqlite3.connect(db, timeout=10)


def balances(db) -> dict[str, tuple[int, int, int]]:
    with ledger(db) as d:
        return {n: (o, b, r) for n, o, b, r in
                d.execute("SELECT name, opening, balance, reserved FROM accounts")}


def sbatch(c, *args):
    return c.run("sbatch", "--parsable", *args, check=False, timeout=60)


def jid(cp) -> int:
    assert cp.returncode == 0, cp.stderr
    return int(cp.stdout.strip().split(";")[0])


def test_banking_end_to_end(bank):
    c, db = bank, bank.db
    never_negative = []
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            for name, (o, b, r) in balances(db).items():
                never_negative.append(b - r >= 0 and b >= 0)
            time.sleep(0.1)

    w = threading.Thread(target=watch)
    w.start()
    try:
        # refused at submission: no account, no bound, over budget
        cp = sbatch(c, "-t", "2", "--wrap=true")
        assert cp.returncode != 0 and "bank: give --account" in cp.stderr
        cp = sbatch(c, "-A", "phys", "--wrap=true")
        assert cp.returncode != 0 and "has no time limit: give --time" in cp.stderr
        cp = sbatch(c, "-A", "phys", "-t", "200", "--wrap=true")
        assert cp.returncode != 0
        assert "account phys has 100 SU available" in cp.stderr
        assert "may cost up to 200 SU (1 CPUs x 200 min x 1 SU/CPU-min)" in cp.stderr
        # 4 CPUs x 30 min: 120 > 100, never 0 for an unset --ntasks
        cp = sbatch(c, "-A", "phys", "-t", "30", "-c", "4", "--wrap=true")
        assert cp.returncode != 0 and "may cost up to 120 SU" in cp.stderr

        # completed, failed, cancelled while pending
        ok = sbatch(c, "-A", "phys", "-t", "2", "--wrap=sleep 1")
        assert "bank: job may cost up to 2 SU; phys has 100 SU available" in ok.stderr
        done = jid(ok)
        failed = jid(sbatch(c, "-A", "phys", "-t", "3", "--wrap=false"))
        pending = jid(sbatch(c, "-A", "phys", "-t", "3", "--hold", "--wrap=true"))
        c.run("scancel", str(pending))
        c.wait_jobs([done, failed], TERMINAL_JOB_STATES, timeout=60)

        # 20 at once against a balance for 10 (5 SU each, 50 SU)
        held = [jid(sbatch(c, "-A", "chem", "-t", "5", "--hold", "--no-requeue",
                           "--wrap=sleep 3")) for _ in range(20)]
        c.scontrol("release", ",".join(map(str, held)))
        c.wait_jobs(held, TERMINAL_JOB_STATES, timeout=120)
        # the completion records are delivered after the jobs end
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and any(r for _, _, r in balances(db).values()):
            time.sleep(0.2)
    finally:
        stop.set()
        w.join()

    assert never_negative and all(never_negative)
    with ledger(db) as d:
        charges = {j: (a, amt, cpus, s, st) for j, a, amt, cpus, s, st in
                   d.execute("SELECT * FROM charges")}
        refusals = {j: m for j, _, _, m in d.execute("SELECT * FROM refusals")}
        assert d.execute("SELECT COUNT(*) FROM reservations").fetchone()[0] == 0

    # started chem jobs: at most 10 fit; the others were refused at start
    started = [j for j in held if j in charges]
    refused = [j for j in held if j in refusals]
    assert len(started) == 10 and len(refused) == 10, (started, refused)
    for j in refused:
        job = c.job(j)
        assert job["JobState"] != "COMPLETED"
        assert "bank: not started: account chem has" in job.get("Comment", ""), job
    assert pending not in charges and done in charges and failed in charges

    # each charge is the usage computed from Slurm's own record of the job
    # (its start and end times, its CPUs), capped at its reservation (CPUs x
    # time limit x rate), never the ledger's own figures checked against
    # themselves; the ledger's balance = opening - those charges
    for j, (account, amount, cpus, seconds, _) in charges.items():
        job = c.job(j)
        elapsed = _ts(job["EndTime"]) - _ts(job["StartTime"])
        slurm_cpus = int(job["NumCPUs"])
        used = math.ceil(slurm_cpus * elapsed * RATE / 60)
        want = min(used, slurm_cpus * _minutes(job["TimeLimit"]) * RATE)
        assert (amount, cpus, seconds) == (want, slurm_cpus, elapsed), (j, job)
    # the chem jobs ran `sleep 3`: at least 1 SU each, so a bank that
    # charges nothing cannot pass
    assert all(charges[j][1] >= 1 for j in started), charges
    b = balances(db)
    for name, (opening, balance, reserved) in b.items():
        used = sum(a for acc, a, *_ in charges.values() if acc == name)
        assert balance == opening - used and reserved == 0, (name, b, charges)


def test_unreachable_or_locked_ledger_refuses(bank):
    c, db = bank, bank.db
    # locked: the reservation at start waits LOCK_TIMEOUT (1 s) and fails
    lock = sqlite3.connect(db, isolation_level=None)
    j = jid(sbatch(c, "-A", "phys", "-t", "2", "--hold", "--no-requeue", "--wrap=true"))
    lock.execute("BEGIN IMMEDIATE")
    try:
        c.scontrol("release", str(j))
        c.wait_jobs([j], TERMINAL_JOB_STATES, timeout=60)
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    job = c.job(j)
    assert job["JobState"] != "COMPLETED"
    assert "ledger is busy" in job.get("Comment", ""), job
    # unreachable: submissions are refused with a message
    os.rename(db, db.with_suffix(".moved"))
    try:
        cp = sbatch(c, "-A", "phys", "-t", "2", "--wrap=true")
        assert cp.returncode != 0
        assert "the ledger cannot be read" in cp.stderr and "does not exist" in cp.stderr
    finally:
        os.rename(db.with_suffix(".moved"), db)
    assert balances(db)["phys"] == (100, 100, 0)


def test_site_factor_lowers_accounts_near_exhaustion(bank):
    c, db = bank, bank.db
    with ledger(db) as d:
        d.execute("UPDATE accounts SET balance = 5 WHERE name = 'chem'")
    c.drain("banking test: keep jobs pending")
    c.wait_node(predicate=lambda n: "DRAIN" in n["State"].split("+"))
    low = jid(sbatch(c, "-A", "chem", "-t", "1", "--wrap=true"))
    full = jid(sbatch(c, "-A", "phys", "-t", "1", "--wrap=true"))
    pr = c.sprio(fmt="%i|%S", jobs=[low, full])
    assert int(pr[full]["SITE"]) == 0
    assert int(pr[low]["SITE"]) == -900        # 5 of 50 SU left: -1000 x 0.9


def test_a_ledger_down_at_job_end_charges_once_it_is_back(bank):
    # job_end raises while the ledger is gone: slurmctld keeps the record
    # and retries it (logged); the reservation stays; once the ledger is
    # back the job is charged exactly once
    c, db = bank, bank.db
    j = jid(sbatch(c, "-A", "phys", "-t", "2", "--hold", "--wrap=sleep 2"))
    c.scontrol("release", str(j))
    c.wait_job(j, ("RUNNING",))
    assert balances(db)["phys"][2] > 0            # reserved at start
    moved = db.with_suffix(".moved")
    os.rename(db, moved)
    try:
        c.wait_job(j, ("COMPLETED",))
        c.wait_for_log(r"delivery of record \S+:%d:\d+:\d+ failed \(attempt 2" % j, timeout=60)
    finally:
        os.rename(moved, db)
    c.wait_for_log(r"a record held back by \d+ failed attempts is delivered", timeout=60)
    with ledger(db) as d:
        charges = d.execute("SELECT job_id, amount FROM charges").fetchall()
    assert [cj for cj, _ in charges] == [j] and charges[0][1] >= 1
    opening, balance, reserved = balances(db)["phys"]
    assert balance == opening - charges[0][1] and reserved == 0
