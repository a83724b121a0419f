"""A throw-away real Slurm cluster (one node, or several) for integration tests.

``Cluster`` writes a self-contained slurm.conf into its own work directory
(state, spool, pid files, logs all live there), starts a real ``slurmctld``
and ``slurmd`` (foreground, ``-D``, so the pid we hold is the daemon's), and
offers small helpers around the real client commands (sbatch, scontrol,
squeue, sprio).  Everything has a timeout; failures raise ``ClusterError``
with the tail of the daemon logs attached.

Processes are only ever stopped by pid: the two daemons we spawned, plus any
leftover process (slurmstepd, job tasks, prolog scripts, slurmscriptd...) whose
environment carries this cluster's unique tag / SLURM_CONF path or whose
command line mentions this cluster's work directory.  The process and log
plumbing shared with tests/harness/slurmdbd.py lives in tests/harness/daemonproc.py.

``nodes=N`` (N > 1) starts N slurmd on this one machine, as Debian's Slurm
(built with --enable-multiple-slurmd) allows: ``slurmd -N nodeK``, each node
with its own NodeName, Port, spool directory, log and pid file (slurm.conf's
``%n``), all on 127.0.0.1.  One node keeps the historical layout (node1,
slurmd.log, spool/).

Designed for the Debian 12 packages (Slurm 22.05.8), running as root in a
container without munge: auth/none + cred/none.  ``SLURM_PREFIX`` runs a
Slurm installed into a prefix instead (tests/harness/slurmpaths.py).
"""

from __future__ import annotations

import os
import pathlib
import re
import shlex
import socket
import subprocess
import time
import uuid
from typing import Callable, Iterable, Mapping, Sequence

from .daemonproc import (DaemonHarness, descendants, format_tails, free_ports,
                        is_running, kill_pids, log_size, pid_alive, pid_of,
                        survivors, terminate)

# Debian's packages, or the Slurm install that $SLURM_PREFIX names
from .slurmpaths import (SLURM_PATH, SLURM_PLUGIN_DIR, SLURM_PREFIX,  # noqa: F401
                        SLURMCTLD, SLURMD, client_path)



def _slurm_version() -> tuple[int, int, int]:
    """The installed daemons' release, from ``slurmctld -V`` ("slurm 24.11.5")."""
    try:
        out = subprocess.run([SLURMCTLD, "-V"], capture_output=True, text=True,
                             timeout=30).stdout
        m = re.search(r"(\d+)\.(\d+)\.(\d+)", out)
        if m:
            return tuple(int(x) for x in m.groups())
    except (OSError, subprocess.SubprocessError):
        pass
    return (0, 0, 0)


#: (major, minor, micro) of the Slurm the tests run against.
SLURM_VERSION = _slurm_version()


def slurm_at_least(major: int, minor: int) -> bool:
    return SLURM_VERSION[:2] >= (major, minor)


def job_re(job_id: int | str) -> str:
    """A regex for a job as Slurm's own log lines name it (``%pJ``):
    ``JobId=5``, and from 25.11 on, where a job also has a SLUID, often
    ``JobId=5 SLUID=s2DSM91DNT9N00``.  Never matches JobId=51."""
    return rf"JobId={int(job_id)}(?: SLUID=\w+)?(?![0-9])"


#: JobState values after which a job will not change state on its own.
TERMINAL_JOB_STATES = frozenset({
    "COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "PREEMPTED",
    "BOOT_FAIL", "DEADLINE", "OUT_OF_MEMORY", "REVOKED",
})

#: Environment variable put into the daemons' environment to recognise
#: every process that belongs to one cluster (slurmstepd inherits it).
TAG_ENV = "SLURMCLUSTER_TAG"

_DEFAULT_TIMEOUT = 30.0


class ClusterError(RuntimeError):
    """Something went wrong with the test cluster (message has log tails)."""


class JobStateError(ClusterError):
    """A job reached an unexpected terminal state, or never got there."""

    def __init__(self, msg: str, job: dict | None = None):
        super().__init__(msg)
        self.job = job


# --------------------------------------------------------------------------
# "Key=Value Key=Value" parsing (scontrol show -o)
# --------------------------------------------------------------------------

# Keys whose values are free text (may contain spaces and even "X=Y").
_FREE_TEXT_KEYS = frozenset({
    "JobName", "Comment", "AdminComment", "SystemComment", "Command",
    "WorkDir", "StdOut", "StdErr", "StdIn", "Reason", "OS", "Extra",
    "Features", "MailUser", "Dependency",
})

# Keys scontrol 22.05 prints for jobs and nodes.  Inside a free-text value
# only one of these starts a new field.
_KNOWN_KEYS = frozenset("""
Account AccrueTime AdminComment AllocNode:Sid ArrayJobId ArrayTaskId
ArrayTaskThrottle BatchFeatures BatchFlag BatchHost BurstBuffer
BurstBufferState CPUs/Task CPU_IDs ClusterFeatures Command Comment Container
Contiguous CoreSpec CpusPerTres CronJob CrontabSpec Deadline DelayBoot
Dependency DerivedExitCode EligibleTime EndTime ExcNodeList ExitCode Features
FedActiveSiblings FedActiveSiblingsRaw FedOrigin FedOriginRaw
FedViableSiblings FedViableSiblingsRaw GRES GresEnforceBind GroupId HetJobId
HetJobIdSet HetJobOffset JOB_GRES JobId JobName JobState
KillOInInvalidDependent LastSchedEval Licenses MCS_label MailType MailUser Mem
MemPerTres MinCPUsNode MinMemoryCPU MinMemoryNode MinTmpDiskNode Network Nice
NodeList Nodes NtasksPerN:B:S:C NtasksPerTRES NumCPUs NumNodes NumTasks
OverSubscribe Partition Power PreemptEligibleTime PreemptTime Prefer Priority
Profile QOS Reason Reboot ReqB:S:C:T ReqNodeList Requeue Reservation
ResizeTime Restarts RunTime SELinuxContext Scheduler SecsPreSuspend
Socks/Node SpreadJob StartTime StdErr StdIn StdOut SubmitTime SuspendTime
Switches SystemComment TRES ThreadSpec TimeLimit TimeMin TresBind TresFreq
TresPerJob TresPerNode TresPerSocket TresPerTask UserId WCKey WorkDir
ActiveFeatures AllocMem AllocTRES Arch AvailableFeatures AveWatts BcastAddr
Boards BootTime CPUAlloc CPUEfctv CPULoad CPUSpecList CPUTot CapWatts CfgTRES
CoreSpecCount CoresPerSocket CpuBind CurrentWatts ExtSensorsJoules
ExtSensorsTemp ExtSensorsWatts Extra FreeMem Gres GresDrain GresUsed
LastBusyTime MemSpecLimit NextState NodeAddr NodeHostName NodeName OS Owner
Partitions Port RealMemory ResumeAfter Sockets SlurmdStartTime State
ThreadsPerCore TmpDisk Version Weight
""".split())

_KEY_RE = re.compile(r"(?:(?<=\s)|^)([A-Za-z][A-Za-z0-9_/:]*)=")


def parse_kv_line(line: str) -> dict[str, str]:
    """Parse one ``scontrol show <entity> -o`` line into a dict.

    Values may contain spaces.  A `` Key=`` sequence starts a new field when
    ``Key`` is a known scontrol key, or -- outside free-text values such as
    JobName/Comment/Command/Reason -- when it merely looks like one.
    Values are stripped; repeated keys (e.g. ``Nodes`` with ``-d``) keep the
    first occurrence.
    """
    line = line.rstrip("\n")
    fields: list[tuple[str, int, int]] = []  # key, key start, value start
    current: str | None = None
    for m in _KEY_RE.finditer(line):
        key = m.group(1)
        if current is not None and current in _FREE_TEXT_KEYS \
                and key not in _KNOWN_KEYS:
            continue
        fields.append((key, m.start(), m.end()))
        current = key
    out: dict[str, str] = {}
    for i, (key, _kstart, vstart) in enumerate(fields):
        vend = fields[i + 1][1] if i + 1 < len(fields) else len(line)
        out.setdefault(key, line[vstart:vend].strip())
    return out


class Cluster(DaemonHarness):
    """One slurmctld + ``nodes`` slurmd (NodeName ``node1``..``nodeN``) on
    127.0.0.1.  Methods that act on one node take ``node=`` (default: the
    first, ``NODE``); those that act on the slurmd (start/stop) act on every
    node unless given one.

    A context manager (start/stop); a cluster not stopped is stopped at
    interpreter exit as a last resort."""

    error = ClusterError
    NODE = "node1"
    PARTITION = "debug"

    def __init__(self, workdir: pathlib.Path | str, *,
                 conf_extra: Sequence[str] = (),
                 plugin_dirs: Sequence[str] = (),
                 cpus: int = 64,
                 nodes: int = 1,
                 epilog: str | None = None,
                 env: Mapping[str, str] | None = None,
                 debug: str = "debug",
                 start_timeout: float = _DEFAULT_TIMEOUT):
        self.workdir = pathlib.Path(workdir).resolve()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.conf_extra = list(conf_extra)
        self.plugin_dirs = [str(d) for d in plugin_dirs]
        self.cpus = int(cpus)
        if int(nodes) < 1:
            raise ValueError(f"nodes must be >= 1, not {nodes!r}")
        #: NodeNames, in order; the first is NODE.
        self.nodes = [self.NODE] if int(nodes) == 1 else \
            [f"node{i}" for i in range(1, int(nodes) + 1)]
        self.debug = debug
        self.start_timeout = start_timeout
        self.extra_env = dict(env or {})
        self.tag = uuid.uuid4().hex[:10]
        self.name = f"t{self.tag[:8]}"          # ClusterName: lowercase
        self.hostname = socket.gethostname().split(".")[0]
        self._pick_ports()

        self.conf_path = self.workdir / "slurm.conf"
        self.state_dir = self.workdir / "state"
        self.spool_dir = self.workdir / "spool"
        self.ctld_log_path = self.workdir / "slurmctld.log"
        self.ctld_out_path = self.workdir / "slurmctld.stdout"
        self.slurmd_log_path = self.slurmd_log_path_of(self.NODE)
        self.slurmd_out_path = self.slurmd_out_path_of(self.NODE)

        if epilog is not None and epilog.startswith("#!"):
            p = self.workdir / "epilog.sh"
            p.write_text(epilog)
            p.chmod(0o755)
            epilog = str(p)
        self.epilog = epilog

        self._ctld: subprocess.Popen | None = None
        self._slurmds: dict[str, subprocess.Popen | None] = \
            dict.fromkeys(self.nodes)
        self._ctld_started_once = False
        self._slurmd_started_once = dict.fromkeys(self.nodes, False)
        self.write_conf()
        self._remember()

    # ------------------------------------------------------------------ conf
    def default_conf(self) -> list[str]:
        """The harness's own slurm.conf lines (before conf_extra)."""
        w = self.workdir
        # ours first: a build-tree plugin must win over an installed copy
        plugin_dir = ":".join([*self.plugin_dirs, SLURM_PLUGIN_DIR])
        lines = [
            f"ClusterName={self.name}",
            f"SlurmctldHost={self.hostname}(127.0.0.1)",
            f"SlurmctldPort={self.ctld_port}",
            f"SlurmdPort={self.slurmd_port}",
            "AuthType=auth/none",
            "CredType=cred/none",
            "SlurmUser=root",
            "SlurmdUser=root",
            f"StateSaveLocation={self.state_dir}",
            f"SlurmdSpoolDir={self._per_node(self.spool_dir)}",
            f"SlurmctldPidFile={w / 'slurmctld.pid'}",
            f"SlurmdPidFile={self._per_node(w / 'slurmd.pid')}",
            f"SlurmctldLogFile={self.ctld_log_path}",
            f"SlurmdLogFile={self._per_node(w / 'slurmd.log')}",
            f"SlurmctldDebug={self.debug}",
            f"SlurmdDebug={self.debug}",
            "LogTimeFormat=iso8601_ms",
            f"PluginDir={plugin_dir}",
            f"PlugStackConfig={w / 'plugstack.conf'}",
            "MailProg=/bin/true",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none",
            "JobCompType=jobcomp/none",
            "MpiDefault=none",
            "SwitchType=switch/none",
            "SchedulerType=sched/backfill",
            "SchedulerParameters=bf_interval=1",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_CPU",
            "PriorityType=priority/multifactor",
            "SlurmdParameters=config_overrides",
            "ReturnToService=2",
            "MessageTimeout=10",
            "KillWait=1",
            "MinJobAge=300",
            "InactiveLimit=0",
            "Waittime=0",
        ]
        if self.epilog:
            lines.append(f"Epilog={self.epilog}")
        multi = len(self.nodes) > 1
        for node in self.nodes:
            port = f" Port={self.node_ports[node]}" if multi else ""
            lines.append(
                f"NodeName={node} NodeAddr=127.0.0.1 "
                f"NodeHostname={self.hostname}{port} CPUs={self.cpus} "
                f"State=UNKNOWN")
        lines.append(
            f"PartitionName={self.PARTITION} Nodes={','.join(self.nodes)} "
            f"Default=YES MaxTime=INFINITE State=UP")
        return lines

    # ---------------------------------------------------------- per node
    def _pick_ports(self) -> None:
        """Free ports for slurmctld and every slurmd (SlurmdPort is the
        first node's; with several nodes each has its own Port=)."""
        ports = free_ports(1 + len(self.nodes))
        self.ctld_port = ports[0]
        self.node_ports = dict(zip(self.nodes, ports[1:]))
        self.slurmd_port = ports[1]

    def _per_node(self, path: pathlib.Path) -> str:
        """A slurmd path: as is for one node; with several, slurmd's own
        per-node form (``%n`` is replaced by the NodeName)."""
        if len(self.nodes) == 1:
            return str(path)
        if path.suffix:
            return str(path.with_name(f"{path.stem}-%n{path.suffix}"))
        return str(path / "%n")

    def _node_path(self, path: pathlib.Path, node: str) -> pathlib.Path:
        return pathlib.Path(self._per_node(path).replace("%n", node))

    def _node(self, node: str | None) -> str:
        node = node or self.NODE
        if node not in self.nodes:
            raise ValueError(f"no node {node!r} in this cluster "
                             f"(nodes: {', '.join(self.nodes)})")
        return node

    def slurmd_log_path_of(self, node: str) -> pathlib.Path:
        return self._node_path(self.workdir / "slurmd.log", node)

    def slurmd_out_path_of(self, node: str) -> pathlib.Path:
        return self._node_path(self.workdir / "slurmd.stdout", node)

    def spool_dir_of(self, node: str) -> pathlib.Path:
        return self._node_path(self.spool_dir, node)

    @staticmethod
    def _conf_key(line: str) -> str | None:
        s = line.strip()
        if not s or s.startswith("#") or "=" not in s:
            return None
        return s.split("=", 1)[0].strip().lower()

    def conf_lines(self) -> list[str]:
        """Final slurm.conf: defaults minus keys overridden by conf_extra.

        NodeName/PartitionName lines are only dropped if conf_extra defines
        the same node / partition name.
        """
        def ident(line: str):
            k = self._conf_key(line)
            if k in ("nodename", "partitionname"):
                first = line.strip().split()[0]
                return (k, first.split("=", 1)[1].strip().lower())
            return k

        overridden = {ident(l) for l in self.conf_extra} - {None}
        out = [l for l in self.default_conf() if ident(l) not in overridden]
        return out + list(self.conf_extra)

    def write_conf(self) -> None:
        for d in (self.state_dir, self.spool_dir,
                  *(self.spool_dir_of(n) for n in self.nodes)):
            d.mkdir(parents=True, exist_ok=True)
        cgroup = self.workdir / "cgroup.conf"
        if slurm_at_least(23, 2) and not cgroup.exists():
            # slurmd reads cgroup.conf beside slurm.conf from 23.02 on and
            # fails without a cgroup filesystem (a chroot, a container)
            # unless told not to use one.  22.05 has no "disabled".
            cgroup.write_text("CgroupPlugin=disabled\n")
        plugstack = self.workdir / "plugstack.conf"
        if not plugstack.exists():
            plugstack.write_text("")
        # atomically: client commands may read it while we rewrite it
        tmp = self.conf_path.with_name(self.conf_path.name + ".tmp")
        tmp.write_text("# generated by tests/harness/slurmcluster.py\n"
                       + "\n".join(self.conf_lines()) + "\n")
        os.replace(tmp, self.conf_path)

    def rewrite_conf(self, conf_extra: Sequence[str] | None = None, *,
                     reconfigure: bool = True) -> None:
        """Replace conf_extra, rewrite slurm.conf, optionally reconfigure."""
        if conf_extra is not None:
            self.conf_extra = list(conf_extra)
        self.write_conf()
        if reconfigure and self.ctld_running():
            self.reconfigure()

    # ------------------------------------------------------------- env/paths
    def daemon_env(self) -> dict[str, str]:
        env = {
            "PATH": SLURM_PATH,
            "HOME": "/root",
            "LANG": "C.UTF-8",
            "SLURM_CONF": str(self.conf_path),
            TAG_ENV: self.tag,
        }
        env.update(self.extra_env)
        return env

    def client_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("SLURM_", "SBATCH_", "SQUEUE_", "SPRIO_",
                                    "SRUN_", "SALLOC_", "SINFO_"))}
        env["SLURM_CONF"] = str(self.conf_path)
        env[TAG_ENV] = self.tag
        env["PATH"] = client_path(env.get("PATH"))
        return env

    # ------------------------------------------------------------- lifecycle
    def __repr__(self) -> str:
        return (f"<Cluster {self.name} ctld={self.ctld_pid} "
                f"slurmd={self.slurmd_pid} {self.workdir}>")

    @property
    def ctld_pid(self) -> int | None:
        return pid_of(self._ctld)

    @property
    def _slurmd(self) -> subprocess.Popen | None:
        """The first node's slurmd."""
        return self._slurmds[self.NODE]

    @property
    def slurmd_pid(self) -> int | None:
        return pid_of(self._slurmd)

    def slurmd_pids(self) -> dict[str, int | None]:
        """{NodeName: pid of its slurmd (None if not running)}."""
        return {n: (pid_of(p) if is_running(p) else None)
                for n, p in self._slurmds.items()}

    def ctld_running(self) -> bool:
        return is_running(self._ctld)

    @property
    def ctld_returncode(self) -> int | None:
        """slurmctld's exit status once it has exited (None while running
        or never started).  ``-signal.SIGKILL`` after ``stop_ctld()`` means
        it did not exit on SIGTERM within the timeout and was killed."""
        return self._ctld.poll() if self._ctld is not None else None

    def slurmd_running(self, node: str | None = None) -> bool:
        """Is the slurmd of ``node`` running (default: any node's)?"""
        if node is None:
            return any(is_running(p) for p in self._slurmds.values())
        return is_running(self._slurmds[self._node(node)])

    def start(self, timeout: float | None = None) -> "Cluster":
        """Start slurmctld then slurmd; wait for ping UP and node IDLE."""
        timeout = self.start_timeout if timeout is None else timeout
        for attempt in range(3):
            deadline = time.monotonic() + timeout
            try:
                self.start_ctld(timeout=timeout)
                self.start_slurmd(
                    timeout=max(1.0, deadline - time.monotonic()))
                return self
            except BaseException as e:
                self.stop()
                # the free ports we picked were taken in the meantime:
                # pick new ones and retry from a clean state
                if (isinstance(e, ClusterError) and attempt < 2
                        and "Address already in use" in str(e)):
                    self._pick_ports()
                    self._ctld_started_once = False
                    self._slurmd_started_once = dict.fromkeys(
                        self.nodes, False)
                    self.write_conf()
                    continue
                raise
        return self

    def start_ctld(self, *, clean: bool | None = None,
                   timeout: float | None = None) -> None:
        """Start slurmctld -D; wait until ``scontrol ping`` says UP.

        ``clean`` (default: True on first start only) passes ``-c`` to drop
        any saved state; a restart with clean=False recovers jobs.
        """
        if self.ctld_running():
            raise ClusterError("slurmctld already running")
        timeout = self.start_timeout if timeout is None else timeout
        if clean is None:
            clean = not self._ctld_started_once
        argv = [SLURMCTLD, "-D", "-i", "-f", str(self.conf_path)]
        if clean:
            argv.insert(2, "-c")
        since = {n: self.log_offset(f"slurmd:{n}") for n in self.nodes}
        self._ctld = self._spawn(argv, self.ctld_out_path,
                                 env=self.daemon_env(), cwd=self.workdir)
        self._ctld_started_once = True
        deadline = time.monotonic() + timeout
        self._await_daemon(self._ctld, "slurmctld", self._ping_up, timeout,
                           waiting_for="UP")
        for n in self.nodes:
            if self.slurmd_running(n):
                # restart under a live slurmd: wait until the node has
                # re-registered (it is UNKNOWN for ~5 s otherwise)
                self._wait_registered(
                    since[n], max(1.0, deadline - time.monotonic()), node=n)

    def start_slurmd(self, *, timeout: float | None = None,
                     wait_idle: bool = True, node: str | None = None) -> None:
        """Start ``slurmd -D -N <node>`` for ``node``, or for every node
        (default).  First start: wait for the node(s) to be IDLE; restart:
        wait until slurmctld saw each register again."""
        names = [self._node(node)] if node else list(self.nodes)
        running = [n for n in names if self.slurmd_running(n)]
        if running:
            raise ClusterError(f"slurmd already running: {', '.join(running)}")
        timeout = self.start_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        started = []
        for n in names:
            argv = [SLURMD, "-D", "-N", n, "-f", str(self.conf_path)]
            since = self.log_offset(f"slurmd:{n}")
            first = not self._slurmd_started_once[n]
            self._slurmds[n] = self._spawn(
                argv, self.slurmd_out_path_of(n), env=self.daemon_env(),
                cwd=self.workdir)
            self._slurmd_started_once[n] = True
            started.append((n, since, first))
        if not wait_idle:
            return
        for n, since, first in started:
            left = max(1.0, deadline - time.monotonic())
            if first:
                self.wait_node(("IDLE",), timeout=left, node=n)
            else:
                self._wait_registered(since, left, node=n)

    _REGISTERED_LOG_LEVELS = frozenset(
        {"debug", "debug2", "debug3", "debug4", "debug5"})

    def _wait_registered(self, since: int, timeout: float,
                         node: str | None = None) -> dict:
        """Wait until the slurmd of ``node`` got slurmctld's answer to a
        registration made after its log offset ``since`` (seen in the
        slurmd log when SlurmdDebug>=debug) and the node is neither
        UNKNOWN, DOWN nor NOT_RESPONDING."""
        node = self._node(node)
        deadline = time.monotonic() + timeout
        if self._conf_value("SlurmdDebug", self.debug) \
                in self._REGISTERED_LOG_LEVELS:
            self.wait_for_log(r"_handle_node_reg_resp: slurmctld sent back",
                              f"slurmd:{node}", since=since, timeout=timeout)

        def registered(rec: dict) -> bool:
            st = rec.get("State", "").split("+")
            return (st[0] not in ("UNKNOWN", "DOWN")
                    and "NOT_RESPONDING" not in st)
        return self.wait_node(predicate=registered, node=node,
                              timeout=max(1.0, deadline - time.monotonic()))

    def _conf_value(self, key: str, default: str | None = None) -> str | None:
        """Value of a simple key in the generated slurm.conf (last wins)."""
        val = default
        for line in self.conf_lines():
            if self._conf_key(line) == key.lower():
                val = line.split("=", 1)[1].strip()
        return val

    def stop(self, timeout: float = 15.0) -> None:
        """Stop everything this cluster started (by pid). Idempotent."""
        self.stop_slurmd(timeout=timeout)
        self.stop_ctld(timeout=timeout)
        self.kill_leftovers()
        self._forget()

    def stop_slurmd(self, timeout: float = 15.0, *,
                    kill_jobs: bool = True, node: str | None = None) -> None:
        """Stop the slurmd of ``node``, or of every node (default).  With
        kill_jobs (default) also kill every slurmstepd/job/script process
        of this cluster left behind (except the trees of daemons still
        running); kill_jobs=False leaves running jobs' slurmstepds alone,
        as a real slurmd restart would."""
        names = [self._node(node)] if node else list(self.nodes)
        for n in names:
            self._terminate(self._slurmds[n], timeout, scan=False)
        if kill_jobs and not self.slurmd_running():
            self.kill_leftovers()

    def stop_ctld(self, timeout: float = 15.0) -> None:
        """Stop slurmctld and whatever of its process tree survives it
        (running jobs are only killed if slurmd is down too)."""
        self._terminate(self._ctld, timeout,
                        scan=not self.slurmd_running())

    def _terminate(self, proc: subprocess.Popen | None, timeout: float,
                   scan: bool = True) -> None:
        # tree is {} if proc was not running: then only the scan (if any)
        tree = terminate(proc, timeout)
        self.kill_leftovers(extra=tree, scan=scan)

    def kill_leftovers(self, timeout: float = 5.0,
                       extra: Mapping[int, str] | None = None, *,
                       scan: bool = True) -> list[int]:
        """SIGKILL processes that belong to this cluster but are not one of
        our running daemons (or their children): slurmstepd, job tasks,
        prolog/epilog scripts, an orphaned slurmscriptd...  See
        leftover_pids().  ``extra`` is a {pid: start time} snapshot of more
        processes to kill if still the same process.  Returns pids that
        could not be killed within ``timeout``.  scan=False: only
        ``extra``."""
        pids = set(self.leftover_pids()) if scan else set()
        if extra:
            mine = self._protected()
            pids |= {p for p in survivors(extra) if p not in mine}
        return kill_pids(pids, timeout)

    def _protected(self) -> set[int]:
        """Ourselves, our ancestors, running daemons and their children."""
        mine = {os.getpid(), *_ancestors()}
        running = [p.pid for p in (self._ctld, *self._slurmds.values())
                   if is_running(p)]
        if running:
            # slurmstepd is re-parented away from slurmd, so this never
            # protects job processes; it protects slurmscriptd & co.
            mine |= descendants(running)
        return mine

    def _uses_workdir(self, pid: int) -> bool:
        """Is pid a slurmstepd working in, or logging into, the workdir?
        (24.11 starts a step's slurmstepd with an empty environment.)"""
        wd = str(self.workdir)
        try:
            with open(f"/proc/{pid}/comm") as f:
                if f.read().strip() != "slurmstepd":
                    return False
            links = [os.readlink(f"/proc/{pid}/cwd")]
            for fd in os.listdir(f"/proc/{pid}/fd"):
                try:
                    links.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
                except OSError:
                    pass
        except OSError:
            return False
        return any(l == wd or l.startswith(wd + "/") for l in links)

    def slurmstepd_pids(self) -> list[int]:
        """This cluster's live slurmstepd processes (by comm; found through
        leftover_pids(), as 24.11 starts a step's slurmstepd with an empty
        environment)."""
        out = []
        for pid in self.leftover_pids():
            try:
                with open(f"/proc/{pid}/comm") as f:
                    if f.read().strip() == "slurmstepd":
                        out.append(pid)
            except OSError:
                continue
        return out

    def leftover_pids(self) -> list[int]:
        """Live (non-zombie) processes that belong to this cluster: those
        whose environment has this cluster's tag (daemons and the client
        commands export it, so slurmstepd, jobs, scripts inherit it) or its
        SLURM_CONF, or whose command line mentions the workdir, or
        slurmstepd processes with their cwd or a file in the workdir -- plus
        all their descendants.  Excludes _protected()."""
        mine = self._protected()
        tag = f"{TAG_ENV}={self.tag}".encode()
        conf = f"SLURM_CONF={self.conf_path}".encode()
        wd = str(self.workdir).encode() + b"/"
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            pid = int(entry)
            if pid in mine:
                continue
            try:
                with open(f"/proc/{pid}/environ", "rb") as f:
                    env = f.read().split(b"\0")
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    cmd = f.read()
            except OSError:
                continue
            if tag in env or conf in env or wd in cmd \
                    or self._uses_workdir(pid):
                found.append(pid)
        if not found:
            return []
        return sorted(p for p in descendants(found)
                      if p not in mine and pid_alive(p))

    # ---------------------------------------------------------------- client
    def run(self, *argv: str, check: bool = True,
            timeout: float = _DEFAULT_TIMEOUT, input: str | None = None,
            cwd: str | os.PathLike | None = None,
            env: Mapping[str, str] | None = None
            ) -> subprocess.CompletedProcess:
        """Run a Slurm client command against this cluster (text mode)."""
        e = self.client_env()
        if env:
            e.update(env)
        try:
            cp = subprocess.run(
                list(argv), env=e, cwd=cwd or self.workdir, input=input,
                capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as ex:
            raise ClusterError(f"{shlex.join(argv)} timed out after "
                               f"{timeout}s\n" + self.log_tails()) from ex
        if check and cp.returncode != 0:
            raise ClusterError(
                f"{shlex.join(argv)} failed rc={cp.returncode}\n"
                f"stdout: {cp.stdout}\nstderr: {cp.stderr}\n"
                + self.log_tails())
        return cp

    def scontrol(self, *args: str, **kw) -> subprocess.CompletedProcess:
        return self.run("scontrol", *args, **kw)

    def sbatch(self, *args: str, wrap: str | None = "true",
               timeout: float = _DEFAULT_TIMEOUT) -> int:
        """Submit with ``sbatch --parsable``; returns the job id.

        ``wrap`` adds ``--wrap=<wrap>``; pass wrap=None to submit a script
        given in ``args``.  Runs in the workdir, so default output files
        (slurm-%j.out) land there.
        """
        argv = ["sbatch", "--parsable", *args]
        if wrap is not None:
            argv.append(f"--wrap={wrap}")
        cp = self.run(*argv, timeout=timeout)
        out = cp.stdout.strip().splitlines()
        if not out:
            raise ClusterError(f"sbatch printed nothing: {cp.stderr}")
        return int(out[-1].split(";")[0])

    def job(self, job_id: int | str) -> dict[str, str]:
        """``scontrol show job -o <id>`` as a dict (first record)."""
        cp = self.run("scontrol", "show", "job", "-o", str(job_id))
        for line in cp.stdout.splitlines():
            if line.strip():
                return parse_kv_line(line)
        raise ClusterError(f"no record for job {job_id}: {cp.stderr}")

    def jobs(self) -> dict[int, dict[str, str]]:
        """All jobs slurmctld still knows about, {job_id: record}."""
        cp = self.run("scontrol", "show", "job", "-o", check=False)
        if cp.returncode != 0:
            if "No jobs in the system" in cp.stdout + cp.stderr:
                return {}
            raise ClusterError(f"scontrol show job failed: {cp.stderr}")
        out = {}
        for line in cp.stdout.splitlines():
            if line.startswith("JobId="):
                rec = parse_kv_line(line)
                out[int(rec["JobId"])] = rec
        return out

    def job_output(self, job_id: int | str) -> str:
        """Contents of the job's StdOut file."""
        path = self.job(job_id)["StdOut"]
        return pathlib.Path(path).read_text()

    def wait_job(self, job_id: int | str,
                 states: Iterable[str] = ("COMPLETED",), *,
                 timeout: float = 60.0, poll: float = 0.2,
                 reason: str | None = None) -> dict[str, str]:
        """Poll until JobState is in ``states`` (and Reason matches the regex
        ``reason`` if given); returns the job record.  Raises JobStateError
        if the job reaches a terminal state not in ``states`` or on timeout.
        """
        return self.wait_jobs([job_id], states, timeout=timeout, poll=poll,
                              reason=reason)[int(job_id)]

    def wait_jobs(self, job_ids: Iterable[int | str],
                  states: Iterable[str] = ("COMPLETED",), *,
                  timeout: float = 120.0, poll: float = 0.2,
                  reason: str | None = None) -> dict[int, dict[str, str]]:
        """wait_job for many jobs with one ``scontrol show job`` per poll."""
        want = {int(j) for j in job_ids}
        states = frozenset(states)
        deadline = time.monotonic() + timeout
        last: dict[int, dict[str, str]] = {}
        while True:
            recs = self.jobs()
            for jid in want:
                if jid in recs:
                    last[jid] = recs[jid]
            done = {}
            for jid in want:
                rec = recs.get(jid)
                if rec is None:
                    continue
                st = rec.get("JobState", "")
                ok = st in states and (
                    reason is None or re.search(reason, rec.get("Reason", "")))
                if ok:
                    done[jid] = rec
                elif st in TERMINAL_JOB_STATES and st not in states:
                    raise JobStateError(
                        f"job {jid} reached {st} (Reason={rec.get('Reason')}"
                        f", ExitCode={rec.get('ExitCode')}), wanted "
                        f"{sorted(states)}\n{rec}\n" + self.log_tails(), rec)
            if len(done) == len(want):
                return done
            if time.monotonic() > deadline:
                pending = {j: (last.get(j, {}).get("JobState", "<unknown>"),
                               last.get(j, {}).get("Reason"))
                           for j in sorted(want - set(done))}
                raise JobStateError(
                    f"timeout after {timeout}s waiting for {sorted(states)}; "
                    f"not there: {pending}\n" + self.log_tails())
            time.sleep(poll)

    def node(self, name: str | None = None) -> dict[str, str]:
        cp = self.run("scontrol", "show", "node", "-o", name or self.NODE)
        return parse_kv_line(cp.stdout.strip().splitlines()[0])

    def node_states(self, name: str | None = None) -> set[str]:
        """The node's State split on '+', e.g. {'IDLE', 'DRAIN'}."""
        return set(self.node(name)["State"].split("+"))

    def wait_node(self, states: Iterable[str] = ("IDLE",), *,
                  timeout: float = _DEFAULT_TIMEOUT,
                  predicate: Callable[[dict], bool] | None = None,
                  node: str | None = None) -> dict[str, str]:
        """Wait until the node's full State string (e.g. 'IDLE',
        'IDLE+DRAIN') is one of ``states`` (or ``predicate(node)``)."""
        node = self._node(node)
        proc = self._slurmds[node]
        states = set(states)
        deadline = time.monotonic() + timeout
        rec: dict = {}
        while True:
            if proc is not None and proc.poll() is not None:
                raise ClusterError(
                    f"slurmd of {node} exited with {proc.returncode}\n"
                    + self.log_tails())
            cp = self.run("scontrol", "show", "node", "-o", node,
                          check=False)
            if cp.returncode == 0 and cp.stdout.strip():
                rec = parse_kv_line(cp.stdout.strip().splitlines()[0])
                ok = (predicate(rec) if predicate
                      else rec.get("State") in states)
                if ok:
                    return rec
            if time.monotonic() > deadline:
                raise ClusterError(
                    f"{node} not in {sorted(states)} after {timeout}s: "
                    f"State={rec.get('State')} Reason={rec.get('Reason')}\n"
                    + self.log_tails())
            time.sleep(0.1)

    def drain(self, reason: str = "test drain", node: str | None = None
              ) -> None:
        self.run("scontrol", "update", f"NodeName={self._node(node)}",
                 "State=DRAIN", f"Reason={reason}")

    def resume(self, node: str | None = None) -> None:
        self.run("scontrol", "update", f"NodeName={self._node(node)}",
                 "State=RESUME")

    def _ping_up(self) -> bool:
        try:
            cp = self.run("scontrol", "ping", check=False, timeout=15)
        except ClusterError:
            return False
        return cp.returncode == 0 and " is UP" in cp.stdout

    def ping(self) -> bool:
        """True if ``scontrol ping`` reports the controller UP."""
        return self._ping_up()

    def ping_seconds(self) -> float:
        """Wall time of one ``scontrol ping`` (must report UP)."""
        t0 = time.monotonic()
        cp = self.run("scontrol", "ping", check=False)
        dt = time.monotonic() - t0
        if " is UP" not in cp.stdout:
            raise ClusterError(f"scontrol ping: {cp.stdout}{cp.stderr}")
        return dt

    def reconfigure(self) -> None:
        self.run("scontrol", "reconfigure")

    def sprio(self, fmt: str = "%i|%Y|%S|%A|%F|%J|%P|%Q|%N",
              jobs: Iterable[int] | None = None
              ) -> dict[int, dict[str, str]]:
        """Parse sprio (pending jobs only) into {job_id: {HEADER: value}}.

        ``fmt`` fields must be '|'-separated and include %i (JOBID).  sprio
        letters: %Y PRIORITY (weighted), %S SITE, %A AGE, %F FAIRSHARE,
        %J JOBSIZE, %P PARTITION, %Q QOS, %N NICE, %y/%a/... normalized.
        Values are stripped strings ('' if blank).
        """
        # No `-j 1,2,...`: sprio 24.11.5 parses the whole list as one id
        # ("Invalid job id: 1", src/sprio/opts.c _build_job_list), so ask
        # for every pending job and keep the ones asked for.
        wanted = None if jobs is None else {int(j) for j in jobs}
        cp = self.run("sprio", "-o", fmt, check=False)
        lines = [l for l in cp.stdout.splitlines() if l.strip()]
        if cp.returncode != 0 and not lines:
            raise ClusterError(f"sprio failed: {cp.stdout}{cp.stderr}")
        if not lines:
            return {}
        header = [h.strip() for h in lines[0].split("|")]
        out: dict[int, dict[str, str]] = {}
        for line in lines[1:]:
            vals = [v.strip() for v in line.split("|")]
            if len(vals) != len(header):
                continue
            rec = dict(zip(header, vals))
            try:
                jid = int(rec["JOBID"])
            except (KeyError, ValueError):
                continue
            if wanted is None or jid in wanted:
                out[jid] = rec
        return out

    # ------------------------------------------------------------------ logs
    def ctld_log(self) -> str:
        return _read(self.ctld_log_path)

    def slurmd_log(self, node: str | None = None) -> str:
        """The slurmd log of ``node`` (default: the first node)."""
        return _read(self.slurmd_log_path_of(self._node(node)))

    def _log_path(self, which: str) -> pathlib.Path:
        if which == "ctld":
            return self.ctld_log_path
        if which == "slurmd":
            return self.slurmd_log_path
        if which.startswith("slurmd:"):
            return self.slurmd_log_path_of(self._node(which[7:]))
        raise ValueError(f"which must be 'ctld', 'slurmd' or "
                         f"'slurmd:<node>', not {which!r}")

    def log_offset(self, which: str = "ctld") -> int:
        """Current size of a log; pass as ``since=`` to wait_for_log to only
        match lines written after this point."""
        return log_size(self._log_path(which))

    def wait_for_log(self, pattern: str, which: str = "ctld", *,
                     timeout: float = _DEFAULT_TIMEOUT, since: int = 0,
                     flags: int = re.MULTILINE) -> re.Match:
        """Wait until regex ``pattern`` matches the log (from byte ``since``);
        returns the match object."""
        return self._wait_for_log(self._log_path(which), which, pattern,
                                  timeout=timeout, since=since, flags=flags)

    def log_tails(self, lines: int = 40) -> str:
        # *.stdout mostly duplicates the log, but holds fatal errors from
        # before the log file was opened (e.g. a bad slurm.conf)
        tails = [("slurmctld.log", self.ctld_log_path, lines),
                 ("slurmctld.stdout", self.ctld_out_path, min(lines, 10))]
        for n in self.nodes:
            log, out = self.slurmd_log_path_of(n), self.slurmd_out_path_of(n)
            tails += [(log.name, log, lines), (out.name, out, min(lines, 10))]
        return format_tails(tails)


def _read(path: pathlib.Path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""


def _ancestors() -> list[int]:
    out, pid = [], os.getpid()
    for _ in range(64):
        try:
            with open(f"/proc/{pid}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            break
        if ppid <= 1:
            break
        out.append(ppid)
        pid = ppid
    return out
