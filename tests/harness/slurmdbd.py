"""A throw-away slurmdbd backed by its own throw-away MariaDB, for tests.

``SlurmDBD`` initialises a fresh MariaDB data directory inside its own work
directory, starts ``mariadbd`` on a unix socket there (``--skip-networking``:
no TCP port, so it can never collide with, or touch, a system MariaDB),
creates the accounting database and a storage user, writes a
``slurmdbd.conf`` (mode 0600) and starts ``slurmdbd -D`` on a free TCP port.
Processes are only ever stopped by the pids we spawned (process and log
plumbing shared with tests/harness/slurmcluster.py: tests/harness/daemonproc.py).

Point a test cluster at it with ``conf_extra=dbd.accounting_conf()``::

    with SlurmDBD(tmp / "dbd") as dbd:
        c = Cluster(tmp / "c", conf_extra=[*dbd.accounting_conf(), ...])

slurmctld registers itself on start-up: slurmdbd then adds the cluster with
its root association (and a ``root`` user in the ``root`` account), so
``assoc_mgr_root_assoc`` exists and priority/multifactor runs its decay
thread -- no ``sacctmgr`` step is needed.  ``sacctmgr()`` is there for tests
that want more associations.

How slurmdbd reaches the socket: Slurm 22.05's mysql storage plugin passes
``unix_socket=NULL`` to ``mysql_real_connect()`` (no StorageParameters option
for it), and with ``StorageHost=localhost`` libmariadb then connects to the
socket named by the ``MYSQL_UNIX_PORT`` environment variable, which we set
in slurmdbd's environment.

Debian 12 packages: ``slurmdbd`` (pulls slurm-wlm-mysql-plugin) and
``mariadb-server`` (mariadbd, mariadb-install-db, the mariadb client).
Runs as root (mariadbd gets ``--user=root``).
"""

from __future__ import annotations

import os
import pathlib
import re
import secrets
import shutil
import subprocess
import tempfile
from typing import Mapping, Sequence

from .daemonproc import (DaemonHarness, descendants, format_tails, free_ports,
                        is_running, kill_pids, log_size, pid_of, read_log,
                        spawn, survivors, tail, terminate)

from .slurmpaths import SACCTMGR, SLURM_PATH, SLURM_PLUGIN_DIR, SLURMDBD  # noqa: E402
MYSQL_PLUGIN = f"{SLURM_PLUGIN_DIR}/accounting_storage_mysql.so"

#: apt packages (Debian 12) this helper needs.
APT_PACKAGES = ("slurmdbd", "mariadb-server")

_DEFAULT_TIMEOUT = 60.0
# lines of each log in error messages
_TAIL_LINES = 30
# sun_path is 108 bytes; keep a margin.
_MAX_SOCKET_PATH = 100

# mariadbd settings: small, fast, and at the values slurmdbd checks for
# (it logs "Database settings not recommended values" below half of
# 1 GiB buffer pool / 64 MiB log file / 900 s lock wait).  The buffer pool
# is only reserved address space until used.
_INNODB_ARGS = (
    "--innodb-buffer-pool-size=512M",
    "--innodb-log-file-size=32M",
    "--innodb-lock-wait-timeout=900",
    "--innodb-flush-log-at-trx-commit=0",
    "--innodb-doublewrite=0",
    "--innodb-use-native-aio=0",
)


class SlurmDBDError(RuntimeError):
    """Something went wrong with the test slurmdbd / MariaDB (message has
    log tails)."""


def _which(*names: str) -> str | None:
    for n in names:
        p = shutil.which(n, path="/usr/sbin:/usr/bin:/sbin:/bin")
        if p:
            return p
    return None


class SlurmDBD(DaemonHarness):
    """mariadbd (unix socket only) + slurmdbd (127.0.0.1:``port``), all
    files under ``workdir``.  A context manager (start/stop); one not
    stopped is stopped at interpreter exit as a last resort.

    Attributes: ``workdir``, ``port`` (DbdPort), ``socket_path`` (MariaDB
    socket), ``conf_path`` (slurmdbd.conf), ``log_path`` (slurmdbd.log),
    ``mariadb_log_path``, ``client_conf_path`` (a minimal slurm.conf for
    sacctmgr), ``db_name``, ``storage_user``, ``storage_pass``.
    """

    error = SlurmDBDError

    def __init__(self, workdir: pathlib.Path | str, *,
                 debug: str = "info",
                 conf_extra: Sequence[str] = (),
                 mariadb_args: Sequence[str] = (),
                 db_name: str = "slurm_acct_db",
                 storage_user: str = "slurm",
                 start_timeout: float = _DEFAULT_TIMEOUT):
        self.workdir = pathlib.Path(workdir).resolve()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.debug = debug
        self.conf_extra = list(conf_extra)
        self.mariadb_args = list(mariadb_args)
        self.db_name = db_name
        self.storage_user = storage_user
        self.storage_pass = secrets.token_hex(12)
        self.start_timeout = start_timeout
        self.port = free_ports(1)[0]

        self.db_dir = self.workdir / "mariadb"
        self.data_dir = self.db_dir / "data"
        self.mariadb_log_path = self.db_dir / "mariadb.err"
        self.mariadb_out_path = self.db_dir / "mariadbd.stdout"
        self.mariadb_pid_path = self.db_dir / "mariadbd.pid"
        self._short_dir: pathlib.Path | None = None
        sock = self.db_dir / "mysqld.sock"
        if len(str(sock)) > _MAX_SOCKET_PATH:
            self._short_dir = pathlib.Path(
                tempfile.mkdtemp(prefix="sfdbd.", dir="/tmp"))
            sock = self._short_dir / "mysqld.sock"
        self.socket_path = sock

        self.conf_path = self.workdir / "slurmdbd.conf"
        self.log_path = self.workdir / "slurmdbd.log"
        self.out_path = self.workdir / "slurmdbd.stdout"
        self.pid_path = self.workdir / "slurmdbd.pid"
        # slurmdbd finds slurmdbd.conf next to $SLURM_CONF; the same file is
        # a minimal client slurm.conf for sacctmgr.
        self.client_conf_path = self.workdir / "slurm.conf"

        self._mariadb: subprocess.Popen | None = None
        self._dbd: subprocess.Popen | None = None
        self._remember()

    # ------------------------------------------------------------ checks
    @staticmethod
    def missing() -> list[str]:
        """What this machine lacks to run a SlurmDBD ([] if nothing)."""
        out = []
        for path in (SLURMDBD, SACCTMGR, MYSQL_PLUGIN):
            if not os.path.exists(path):
                out.append(path)
        for names in (("mariadbd", "mysqld"),
                      ("mariadb-install-db", "mysql_install_db"),
                      ("mariadb", "mysql")):
            if not _which(*names):
                out.append(names[0])
        if os.geteuid() != 0:
            out.append("root")
        return out

    # -------------------------------------------------------------- conf
    def accounting_conf(self, host: str = "127.0.0.1") -> list[str]:
        """slurm.conf lines that make a cluster account to this slurmdbd."""
        return [
            "AccountingStorageType=accounting_storage/slurmdbd",
            f"AccountingStorageHost={host}",
            f"AccountingStoragePort={self.port}",
        ]

    def conf_lines(self) -> list[str]:
        lines = [
            "AuthType=auth/none",
            "DbdHost=localhost",
            f"DbdPort={self.port}",
            "SlurmUser=root",
            f"DebugLevel={self.debug}",
            f"LogFile={self.log_path}",
            "LogTimeFormat=iso8601_ms",
            f"PidFile={self.pid_path}",
            f"PluginDir={SLURM_PLUGIN_DIR}",
            "StorageType=accounting_storage/mysql",
            # "localhost" = the unix socket named by MYSQL_UNIX_PORT
            "StorageHost=localhost",
            f"StorageLoc={self.db_name}",
            f"StorageUser={self.storage_user}",
            f"StoragePass={self.storage_pass}",
        ]
        keys = {l.split("=", 1)[0].strip().lower()
                for l in self.conf_extra if "=" in l}
        return [l for l in lines
                if l.split("=", 1)[0].lower() not in keys] + self.conf_extra

    def write_conf(self) -> None:
        text = ("# generated by tests/harness/slurmdbd.py\n"
                + "\n".join(self.conf_lines()) + "\n")
        fd = os.open(self.conf_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
                     0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(self.conf_path, 0o600)   # slurmdbd refuses looser
        self.client_conf_path.write_text(
            "# generated by tests/harness/slurmdbd.py: for sacctmgr only\n"
            "ClusterName=dbdclient\n"
            "SlurmctldHost=localhost\n"
            "AuthType=auth/none\n"
            + "\n".join(self.accounting_conf()) + "\n")

    # ----------------------------------------------------------- lifecycle
    def __repr__(self) -> str:
        return (f"<SlurmDBD port={self.port} slurmdbd={self.dbd_pid} "
                f"mariadbd={self.mariadb_pid} {self.workdir}>")

    @property
    def dbd_pid(self) -> int | None:
        return pid_of(self._dbd)

    @property
    def mariadb_pid(self) -> int | None:
        return pid_of(self._mariadb)

    def dbd_running(self) -> bool:
        return is_running(self._dbd)

    def mariadb_running(self) -> bool:
        return is_running(self._mariadb)

    def start(self, timeout: float | None = None) -> "SlurmDBD":
        """Initialise + start MariaDB, create the database and user, start
        slurmdbd and wait until sacctmgr gets an answer from it."""
        timeout = self.start_timeout if timeout is None else timeout
        missing = self.missing()
        if missing:
            raise SlurmDBDError(
                "cannot run slurmdbd here, missing: " + ", ".join(missing)
                + f" (apt-get install {' '.join(APT_PACKAGES)})")
        try:
            if not (self.data_dir / "mysql").is_dir():
                self._install_db(timeout)
            self.start_mariadb(timeout=timeout)
            self._create_db()
            self.start_slurmdbd(timeout=timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        env = {"PATH": SLURM_PATH, "HOME": "/root",
               "LANG": "C.UTF-8", "SLURM_CONF": str(self.client_conf_path),
               "MYSQL_UNIX_PORT": str(self.socket_path)}
        env.update(extra or {})
        return env

    def _install_db(self, timeout: float) -> None:
        self.db_dir.mkdir(parents=True, exist_ok=True)
        install = _which("mariadb-install-db", "mysql_install_db")
        argv = [install, "--no-defaults", f"--datadir={self.data_dir}",
                "--user=root", "--auth-root-authentication-method=normal",
                "--skip-test-db", "--skip-name-resolve",
                *_INNODB_ARGS, *self.mariadb_args]
        log = self.db_dir / "install-db.log"
        proc = spawn(argv, log, env=self._env(), cwd=self.db_dir)
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_pids([*(descendants([proc.pid]) - {proc.pid}), proc.pid])
            proc.wait(timeout=10)
            raise SlurmDBDError(f"{install} timed out after {timeout}s\n"
                                + tail(log, _TAIL_LINES))
        if rc != 0:
            raise SlurmDBDError(f"{install} failed rc={rc}\n"
                                + tail(log, _TAIL_LINES))

    def start_mariadb(self, *, timeout: float | None = None) -> None:
        """Start mariadbd on ``socket_path`` (no networking); wait until it
        answers a query."""
        if self.mariadb_running():
            raise SlurmDBDError("mariadbd already running")
        timeout = self.start_timeout if timeout is None else timeout
        mariadbd = _which("mariadbd", "mysqld")
        argv = [mariadbd, "--no-defaults", f"--datadir={self.data_dir}",
                f"--socket={self.socket_path}",
                f"--pid-file={self.mariadb_pid_path}",
                f"--log-error={self.mariadb_log_path}",
                f"--tmpdir={self.db_dir}",
                "--skip-networking", "--skip-name-resolve", "--user=root",
                *_INNODB_ARGS, *self.mariadb_args]
        self._mariadb = self._spawn(argv, self.mariadb_out_path,
                                    env=self._env(), cwd=self.db_dir)

        def answering() -> bool:
            return (self.socket_path.exists() and self._client(
                "SELECT 1", check=False, timeout=10).returncode == 0)
        self._await_daemon(self._mariadb, "mariadbd", answering, timeout)

    def _create_db(self) -> None:
        u, p, db = self.storage_user, self.storage_pass, self.db_name
        self.sql(
            f"CREATE DATABASE IF NOT EXISTS `{db}`;"
            f"CREATE USER IF NOT EXISTS '{u}'@'localhost' IDENTIFIED BY '{p}';"
            f"ALTER USER '{u}'@'localhost' IDENTIFIED BY '{p}';"
            f"GRANT ALL ON `{db}`.* TO '{u}'@'localhost';"
            "FLUSH PRIVILEGES;")

    def start_slurmdbd(self, *, timeout: float | None = None) -> None:
        """Write the confs and start slurmdbd -D; wait until sacctmgr gets
        an answer.  Picks a new port if the chosen one got taken."""
        if self.dbd_running():
            raise SlurmDBDError("slurmdbd already running")
        timeout = self.start_timeout if timeout is None else timeout
        for attempt in range(3):
            try:
                self._start_slurmdbd_once(timeout)
                return
            except SlurmDBDError as e:
                self.stop_slurmdbd()
                if attempt < 2 and "Address already in use" in str(e):
                    self.port = free_ports(1)[0]
                    continue
                raise

    def _start_slurmdbd_once(self, timeout: float) -> None:
        self.write_conf()
        since = self.log_offset()
        self._dbd = self._spawn([SLURMDBD, "-D"], self.out_path,
                                env=self._env(), cwd=self.workdir)
        started = re.compile(r"slurmdbd version \S+ started")

        def answering() -> bool:
            return bool(started.search(read_log(self.log_path, since))
                        and self.sacctmgr(
                            "-n", "-P", "show", "cluster", "format=cluster",
                            check=False, timeout=10).returncode == 0)
        self._await_daemon(self._dbd, "slurmdbd", answering, timeout)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop slurmdbd, then mariadbd (by pid).  Idempotent."""
        try:
            self.stop_slurmdbd(timeout=timeout)
        finally:
            self.stop_mariadb(timeout=timeout)
            if self._short_dir is not None:
                shutil.rmtree(self._short_dir, ignore_errors=True)
            self._forget()

    def stop_slurmdbd(self, timeout: float = 30.0) -> None:
        self._terminate(self._dbd, timeout)

    def stop_mariadb(self, timeout: float = 30.0) -> None:
        self._terminate(self._mariadb, timeout)

    @staticmethod
    def _terminate(proc: subprocess.Popen | None, timeout: float) -> None:
        kids = terminate(proc, timeout, rescan_before_kill=True)
        # anything it left behind (neither daemon normally forks)
        kill_pids(survivors(kids))

    # -------------------------------------------------------------- clients
    def _client(self, query: str, *, database: str | None = None,
                check: bool = True, timeout: float = 30.0
                ) -> subprocess.CompletedProcess:
        client = _which("mariadb", "mysql")
        argv = [client, "--no-defaults", f"--socket={self.socket_path}",
                "-uroot", "--batch", "--skip-column-names", "-e", query]
        if database:
            argv.append(database)
        try:
            cp = subprocess.run(argv, env=self._env(), capture_output=True,
                                text=True, timeout=timeout,
                                stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as e:
            raise SlurmDBDError(f"mariadb client timed out: {query}") from e
        if check and cp.returncode != 0:
            raise SlurmDBDError(f"SQL failed rc={cp.returncode}: {query}\n"
                                f"{cp.stderr}\n" + self.log_tails())
        return cp

    def sql(self, query: str, database: str | None = None) -> str:
        """Run SQL as MariaDB root over the socket; returns the batch output
        (tab-separated rows, no header)."""
        return self._client(query, database=database).stdout

    def sacctmgr(self, *args: str, check: bool = True,
                 timeout: float = 30.0) -> subprocess.CompletedProcess:
        """Run sacctmgr against this slurmdbd (``-i`` is up to you)."""
        try:
            cp = subprocess.run(
                [SACCTMGR, *args], env=self._env(), capture_output=True,
                text=True, timeout=timeout, stdin=subprocess.DEVNULL,
                cwd=self.workdir)
        except subprocess.TimeoutExpired as e:
            raise SlurmDBDError(
                f"sacctmgr {' '.join(args)} timed out after {timeout}s\n"
                + self.log_tails()) from e
        if check and cp.returncode != 0:
            raise SlurmDBDError(
                f"sacctmgr {' '.join(args)} failed rc={cp.returncode}\n"
                f"stdout: {cp.stdout}\nstderr: {cp.stderr}\n"
                + self.log_tails())
        return cp

    def clusters(self) -> list[str]:
        """Names of the clusters registered in the database."""
        cp = self.sacctmgr("-n", "-P", "show", "cluster", "format=cluster")
        return [l.strip() for l in cp.stdout.splitlines() if l.strip()]

    # ----------------------------------------------------------------- logs
    def log(self) -> str:
        return read_log(self.log_path)

    def log_offset(self) -> int:
        return log_size(self.log_path)

    def wait_for_log(self, pattern: str, *, timeout: float = 30.0,
                     since: int = 0) -> re.Match:
        return self._wait_for_log(self.log_path, "slurmdbd", pattern,
                                  timeout=timeout, since=since)

    def log_tails(self, lines: int = _TAIL_LINES) -> str:
        return format_tails((
            ("slurmdbd.log", self.log_path, lines),
            ("slurmdbd.stdout", self.out_path, lines),
            ("mariadb.err", self.mariadb_log_path, lines),
            ("mariadbd.stdout", self.mariadb_out_path, lines)))
