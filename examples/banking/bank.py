"""An example site policy: service-unit (SU) banking across four plugins,
with a transactional SQLite ledger.

    JobSubmitPlugins=python                      # job_submit_python.conf: handler=bank:Submit
    JobCompType=jobcomp/python                   # jobcomp_python.conf: handler=bank:Completion
    PrEpPlugins=prep/python
    PrEpParameters=handler=bank:Accounting,path=/etc/slurm/handlers
    PriorityType=priority/multifactor
    PrioritySiteFactorPlugin=site_factor/python
    PrioritySiteFactorParameters=handler=bank:Priority,path=/etc/slurm/handlers

The ledger is the SQLite file named by $SLURMPY_BANK_DB (default
/var/lib/slurm/bank.sqlite); make it with ``python3 bank.py init DB`` and
add accounts and rates with ``python3 bank.py account DB NAME SU`` and
``python3 bank.py rate DB PARTITION SU_PER_CPU_MINUTE``.

Units: an amount is SU; a job costs CPUs x minutes x the partition's rate.

- submit (job_submit): the *maximum* cost, CPUs x time limit x rate, with
  every missing value resolved, never 0: the time limit from the
  partition's DefaultTime, else its MaxTime (a job with neither is refused:
  no bound, no estimate; the time limit used is set on the job); CPUs from
  --ntasks (else --nodes x --ntasks-per-node) x --cpus-per-task, --mincpus,
  and for --exclusive jobs --nodes x the partition's CPUs per node,
  whichever is largest, at least 1.  Refused, with the balance in the message, when the account's
  available SU (balance minus what running jobs have reserved) is short.
- prolog_slurmctld: reserves the job's maximum cost, now with the CPUs and
  time limit Slurm actually gave it, in one transaction that checks the
  available SU first: jobs that start at the same time cannot overdraw.  A
  job that no longer fits fails its prolog (Slurm requeues it, or kills it
  if it cannot be requeued); the reason is written to the ledger's
  refusals table and to the job's comment.
- job_end (jobcomp): charges what the job used (CPUs x elapsed minutes x
  rate, rounded up, at most its reservation) and releases the reservation,
  in one transaction that also records the completion record's key: a
  record delivered again (after a crash of slurmctld) charges nothing.
- site_factor: accounts close to exhaustion get a lower priority:
  -1000 x (1 - available / opening balance) below 20 % available.

Fail closed: a ledger that cannot be reached or stays locked for more than
LOCK_TIMEOUT seconds refuses submissions (with a message) and fails the
prolog (the job does not start).  A job_end that cannot reach the ledger
raises: slurmctld keeps the completion record and offers it again, with
backoff, until the ledger is back (each failure is logged); meanwhile the
reservation stays in place (the SU stay reserved, never overdrawn).
`python3 bank.py settle DB JOBID SECONDS CPUS` settles a job by hand.
"""
from __future__ import annotations

import math
import os
import sqlite3
import subprocess
import sys
import time

from slurmpy_plugins import (JobCompHandler, JobSubmitHandler, PrEpHandler, Reject,
                             SiteFactorHandler)

LEDGER = os.environ.get("SLURMPY_BANK_DB", "/var/lib/slurm/bank.sqlite")
LOCK_TIMEOUT = float(os.environ.get("SLURMPY_BANK_LOCK_TIMEOUT", "2"))

SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (
    name TEXT PRIMARY KEY,
    opening INTEGER NOT NULL,
    balance INTEGER NOT NULL CHECK (balance >= 0),
    reserved INTEGER NOT NULL DEFAULT 0 CHECK (reserved >= 0 AND reserved <= balance));
CREATE TABLE IF NOT EXISTS rates (partition TEXT PRIMARY KEY, rate INTEGER NOT NULL CHECK (rate > 0));
CREATE TABLE IF NOT EXISTS reservations (
    job_id INTEGER PRIMARY KEY, account TEXT NOT NULL, amount INTEGER NOT NULL,
    cpus INTEGER NOT NULL, rate INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS charges (
    job_id INTEGER PRIMARY KEY, account TEXT NOT NULL, amount INTEGER NOT NULL,
    cpus INTEGER NOT NULL, seconds INTEGER NOT NULL, state TEXT);
CREATE TABLE IF NOT EXISTS refusals (job_id INTEGER, account TEXT, stage TEXT, message TEXT);
CREATE TABLE IF NOT EXISTS completions (key TEXT PRIMARY KEY);
"""


class LedgerError(Exception):
    """The ledger cannot be used (missing, unreadable, locked)."""


def connect(path: str = LEDGER) -> sqlite3.Connection:
    if not os.path.exists(path):
        raise LedgerError(f"the ledger {path} does not exist")
    try:
        db = sqlite3.connect(path, timeout=LOCK_TIMEOUT, isolation_level=None)
        db.execute("PRAGMA foreign_keys = ON")
        return db
    except sqlite3.Error as e:
        raise LedgerError(f"cannot open the ledger {path}: {e}") from None


class Tx:
    """BEGIN IMMEDIATE ... COMMIT (ROLLBACK on any exception)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> sqlite3.Connection:
        try:
            self.db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as e:
            raise LedgerError(f"the ledger is busy ({e})") from None
        return self.db

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.db.execute("COMMIT")
        else:
            self.db.execute("ROLLBACK")


def available(db, account: str) -> tuple[int, int, int]:
    row = db.execute("SELECT balance, reserved, opening FROM accounts WHERE name = ?",
                     (account,)).fetchone()
    if row is None:
        raise KeyError(account)
    return row


def rate_of(db, partition: str) -> int:
    row = db.execute("SELECT rate FROM rates WHERE partition = ?", (partition,)).fetchone()
    if row is None:
        raise LedgerError(f"no rate for partition {partition!r} in the ledger")
    return row[0]


# ---------------------------------------------------------------------------
# job_submit
# ---------------------------------------------------------------------------

def estimate(job, part) -> tuple[int, int, str | None]:
    """(cpus, minutes, problem): the job's maximum size, missing values
    taken from its partition; problem is a message when there is no bound."""
    minutes = job.time_limit
    if minutes is None:
        minutes = part.default_time if part.default_time is not None else part.max_time
    if minutes is None:
        return 0, 0, (f"partition {part.name} has no time limit: give --time so that "
                      "the job's cost can be bounded")
    nodes = job.min_nodes or 1
    tasks = job.num_tasks or nodes * (job.ntasks_per_node or 1)
    cpus = tasks * (job.cpus_per_task or 1)
    if job.shared == 0:          # --exclusive: whole nodes
        per_node = part.max_cpus_per_node or part.total_cpus // max(part.total_nodes, 1)
        cpus = max(cpus, nodes * per_node)
    cpus = max(cpus, job.min_cpus or 0, 1)
    return cpus, max(minutes, 1), None


class Submit(JobSubmitHandler):
    def submit(self, job, submit_uid):
        if job.account is None:
            raise Reject("bank: give --account=<account>: jobs are charged to an account")
        name = job.partition or next((p.name for p in self.partitions.values() if p.default),
                                     None)
        part = self.partitions.get(name) if name else None
        if part is None:
            raise Reject(f"bank: unknown partition {name!r}")
        cpus, minutes, problem = estimate(job, part)
        if problem:
            raise Reject(f"bank: {problem}")
        try:
            db = connect()
            try:
                rate = rate_of(db, part.name)
                balance, reserved, _ = available(db, job.account)
            finally:
                db.close()
        except KeyError:
            raise Reject(f"bank: account {job.account!r} has no allocation") from None
        except (LedgerError, sqlite3.Error) as e:
            raise Reject(f"bank: the ledger cannot be read ({e}); no job is accepted "
                         "until it can") from None
        if job.time_limit is None:
            job.time_limit = minutes     # the bound the estimate used, explicit
        cost = cpus * minutes * rate
        free = balance - reserved
        if cost > free:
            raise Reject(f"bank: account {job.account} has {free} SU available "
                         f"({balance} SU balance, {reserved} SU reserved by running jobs); "
                         f"this job may cost up to {cost} SU ({cpus} CPUs x {minutes} min x "
                         f"{rate} SU/CPU-min)")
        self.log_user(f"bank: job may cost up to {cost} SU; {job.account} has {free} SU "
                      "available")


# ---------------------------------------------------------------------------
# prolog_slurmctld / epilog_slurmctld
# ---------------------------------------------------------------------------

class InsufficientFunds(Exception):
    pass


def _tell(job_id: int, text: str) -> None:
    """Put the reason where the user sees it (scontrol show job, squeue
    --format=%k).  Best effort: the prolog fails either way."""
    try:
        subprocess.run(["scontrol", "update", f"JobId={job_id}", f"Comment={text[:200]}"],
                       capture_output=True, timeout=10)
    except Exception:
        pass


class Accounting(PrEpHandler):
    def prolog_slurmctld(self, job):
        if not job.account:
            raise InsufficientFunds(f"JobId={job.job_id} has no account")
        try:
            refused = self._reserve(job)
        except (LedgerError, sqlite3.Error) as e:
            _tell(job.job_id, f"bank: not started: {e}")
            raise
        if refused:
            _tell(job.job_id, refused)
            raise InsufficientFunds(refused)

    @staticmethod
    def _reserve(job) -> str | None:
        """Reserve the job's maximum cost; the refusal message if it does
        not fit (then nothing is reserved)."""
        db = connect()
        try:
            rate = rate_of(db, job.partition)
            amount = job.num_cpus * job.time_limit * rate
            with Tx(db):
                balance, reserved, _ = available(db, job.account)
                if amount > balance - reserved:
                    msg = (f"bank: not started: account {job.account} has "
                           f"{balance - reserved} SU available, the job may cost {amount} SU")
                    db.execute("INSERT INTO refusals VALUES (?, ?, 'start', ?)",
                               (job.job_id, job.account, msg))
                    return msg
                db.execute("INSERT INTO reservations VALUES (?, ?, ?, ?, ?)",
                           (job.job_id, job.account, amount, job.num_cpus, rate))
                db.execute("UPDATE accounts SET reserved = reserved + ? WHERE name = ?",
                           (amount, job.account))
                return None
        finally:
            db.close()


# ---------------------------------------------------------------------------
# jobcomp
# ---------------------------------------------------------------------------

class Completion(JobCompHandler):
    def job_end(self, job):
        """Charge the finished job.  Raising (the ledger is down or
        locked) keeps the record in slurmctld's spool: it comes again."""
        seconds = job.elapsed
        db = connect()
        try:
            with Tx(db):
                try:
                    db.execute("INSERT INTO completions VALUES (?)", (job.key,))
                except sqlite3.IntegrityError:
                    return          # delivered before (at least once): charged already
                row = db.execute("SELECT account, amount, cpus, rate FROM reservations "
                                 "WHERE job_id = ?", (job.job_id,)).fetchone()
                if row is None:
                    return          # never reserved (refused at start): nothing to charge
                account, amount, cpus, rate = row
                charge = min(amount, math.ceil(cpus * seconds * rate / 60))
                db.execute("UPDATE accounts SET balance = balance - ?, reserved = reserved - ? "
                           "WHERE name = ?", (charge, amount, account))
                db.execute("DELETE FROM reservations WHERE job_id = ?", (job.job_id,))
                db.execute("INSERT INTO charges VALUES (?, ?, ?, ?, ?, ?)",
                           (job.job_id, account, charge, cpus, seconds, job.state))
        finally:
            db.close()


# ---------------------------------------------------------------------------
# site_factor
# ---------------------------------------------------------------------------

class Priority(SiteFactorHandler):
    def set(self, job):
        if not job.account:
            return None
        try:
            db = connect()
            try:
                balance, reserved, opening = available(db, job.account)
            finally:
                db.close()
        except (KeyError, LedgerError, sqlite3.Error):
            return None          # factor unchanged
        frac = (balance - reserved) / opening if opening else 0.0
        return 0 if frac >= 0.2 else -int(1000 * (1 - frac))


# ---------------------------------------------------------------------------
# admin commands
# ---------------------------------------------------------------------------

def main(argv: list[str]) -> int:
    if len(argv) < 3:
        print(__doc__)
        return 2
    cmd, path = argv[1], argv[2]
    if cmd == "init":
        db = sqlite3.connect(path, isolation_level=None)
        db.executescript(SCHEMA)
        db.execute("PRAGMA journal_mode = WAL")
        os.chmod(path, 0o600)
        return 0
    db = connect(path)
    with Tx(db):
        if cmd == "account":
            su = int(argv[4])
            db.execute("INSERT INTO accounts (name, opening, balance) VALUES (?, ?, ?)",
                       (argv[3], su, su))
        elif cmd == "rate":
            db.execute("INSERT OR REPLACE INTO rates VALUES (?, ?)", (argv[3], int(argv[4])))
        elif cmd == "settle":
            job_id, seconds, cpus = int(argv[3]), int(argv[4]), int(argv[5])
            account, amount, _, rate = db.execute(
                "SELECT account, amount, cpus, rate FROM reservations WHERE job_id = ?",
                (job_id,)).fetchone()
            charge = min(amount, math.ceil(cpus * seconds * rate / 60))
            db.execute("UPDATE accounts SET balance = balance - ?, reserved = reserved - ? "
                       "WHERE name = ?", (charge, amount, account))
            db.execute("DELETE FROM reservations WHERE job_id = ?", (job_id,))
            db.execute("INSERT INTO charges VALUES (?, ?, ?, ?, ?, 'SETTLED')",
                       (job_id, account, charge, cpus, seconds))
        else:
            print(f"unknown command {cmd}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
