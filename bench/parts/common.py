"""What the parts of bench/run.py share: paths, targets, the handlers the
host runs, building the bench tools, /proc readings, the machine-quiet
check, the uprobes the job_submit and jobcomp parts use, and formatting."""
from __future__ import annotations

import datetime as dt
import glob
import os
import pathlib
import re
import shutil
import statistics
import subprocess
import sys
import time

from tests.harness import hostdriver


HERE = pathlib.Path(__file__).resolve().parents[1]     # bench/
ROOT = HERE.parent

PLUGINS = ROOT / "build" / "plugins"
SLURM_LIBDIR = hostdriver.SLURM_LIBDIR
PREP_SO = PLUGINS / "prep_python.so"
SF_SO = PLUGINS / "site_factor_python.so"
# per release: the trixie root has its own build/ over the checkout's
BUILD = ROOT / "build" / "bench"
RESULTS = HERE / "results"

# Targets (the project's performance goals).
T_CALL_NS = 2000          # <= 2 us per hook call
T_SPAWN_RATIO = 300       # >= 300x cheaper than fork+exec of /bin/true
T_STATS_RATIO = 1.05      # a hook call with the stats file published: <= 1.05x without (noise)
T_UPDATE_MS = 50          # <= 50 ms for update() over 100k pending jobs (3 fields read)
T_UPDATE_STRETCH_MS = 25  # stretch for the same
T_UPDATE_EMPTY_MS = 10    # <= 10 ms with an empty handler
UPDATE_SIZES = (1_000, 10_000, 100_000, 1_000_000)
# handler class -> (label, target ms at 100k jobs, scaled per job for other sizes)
UPDATE_HANDLERS = {
    "Empty": ("handler returns {}", T_UPDATE_EMPTY_MS),
    "All": ("{j.job_id: 1 for j in jobs}", None),
    "ThreeJobs": ("3 fields, per-job Job views -> dict", T_UPDATE_MS),
    "ThreeRows": ("3 fields declared, per-job rows -> list", T_UPDATE_MS),
    "ThreeColumns": ("3 fields, columns -> list", T_UPDATE_MS),
}
T_THROUGHPUT = 0.95       # (c) jobs/s >= 0.95 x (a)
T_LATENCY_RATIO = 20      # (c) median prolog latency >= 20x shorter than (b)
T_RSS_MB = 25             # prep/python adds <= 25 MB to slurmctld's RSS

NOOP_PREP = '''\
from slurmpy_plugins import PrEpHandler


class Handler(PrEpHandler):
    def prolog(self, env):
        pass

    def epilog(self, env):
        pass

    def prolog_slurmctld(self, job):
        pass

    def epilog_slurmctld(self, job):
        pass
'''

CTLD_PREP = '''\
from slurmpy_plugins import PrEpHandler


class Handler(PrEpHandler):
    def prolog_slurmctld(self, job):
        pass

    def epilog_slurmctld(self, job):
        pass
'''

SITE_FACTOR = '''\
from slurmpy_plugins import SiteFactorHandler


class Empty(SiteFactorHandler):
    def update(self, jobs):
        return {}


class All(SiteFactorHandler):
    def update(self, jobs):
        return {j.job_id: 1 for j in jobs}


# issue 12's fair-share shape: three fields of every job, a factor each
NOW = 1800000000


def factor(account, num_cpus, submit_time):
    return len(account) * 7 + num_cpus + (NOW - submit_time) // 3600


class ThreeJobs(SiteFactorHandler):
    """per-job API, nothing declared: Job views, {job_id: factor}"""
    def update(self, jobs):
        return {j.job_id: factor(j.account, j.num_cpus, j.submit_time) for j in jobs}


class ThreeRows(SiteFactorHandler):
    """per-job API, fields declared: rows, one factor per job (a list)"""
    fields = ("account", "num_cpus", "submit_time")

    def update(self, jobs):
        return [factor(j.account, j.num_cpus, j.submit_time) for j in jobs]


class ThreeColumns(SiteFactorHandler):
    """columnar, plain Python: three columns, one factor per job (a list)"""
    def update(self, jobs):
        return list(map(factor, jobs.column("account"), jobs.column("num_cpus"),
                        jobs.column("submit_time")))
'''

TRIVIAL_SCRIPT = "#!/bin/sh\nexit 0\n"


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------

def slurm_src() -> str:
    env = os.environ.get("SLURM_SRC")
    cands = ([env] if env else []) + sorted(
        glob.glob(str(ROOT / "build" / "slurm-src" / "slurm-wlm-*"))) + [
        hostdriver.SLURM_SRC]
    for c in cands:
        if c and os.path.isfile(os.path.join(c, "config.h")):
            return c
    sys.exit("bench: no configured Slurm source tree (run `make deps`)")


def tree_state() -> dict:
    """What was measured: a hash of the shim's sources as they are in the
    work tree (others edit them while benches run), and whether the built
    plugins are older than those sources (a stale build)."""
    import hashlib
    h = hashlib.sha1()
    newest = 0.0
    files = sorted(glob.glob(str(ROOT / "csrc" / "*")) +
                   glob.glob(str(ROOT / "slurmpy_plugins" / "*.py")))
    for f in files:
        with open(f, "rb") as fh:
            h.update(os.path.relpath(f, ROOT).encode() + b"\0" + fh.read())
        if "/csrc/" in f:
            newest = max(newest, os.path.getmtime(f))
    built = min(os.path.getmtime(p) for p in (PREP_SO, SF_SO,
                                               PLUGINS / "slurmpy" / "libslurmpy.so"))
    return {"sources_sha1": h.hexdigest()[:12],
            "plugins_built": dt.datetime.fromtimestamp(built).isoformat(timespec="seconds"),
            "stale_build": newest > built}


def build_tools(parts: set[str]) -> dict:
    """Compile bench/noop_prep.c (as the Makefile builds the real plugins),
    bench/spawn_true.c and bench/micro_snapshot.c into build/bench/, those
    the chosen parts use."""
    BUILD.mkdir(parents=True, exist_ok=True)
    src = slurm_src()
    noop = BUILD / "prep_noop.so"
    spawn = BUILD / "spawn_true"
    micro = BUILD / "micro_snapshot"
    cmds = [
        (noop, HERE / "noop_prep.c",
         ["gcc", "-O2", "-g", "-Wall", "-fPIC", "-shared", "-pthread",
          "-I", str(ROOT / "csrc"), "-I", src, "-o", str(noop) + ".tmp",
          str(HERE / "noop_prep.c"),
          f"-Wl,--version-script={ROOT / 'csrc' / 'plugin.map'}",
          "-Wl,-z,nodelete"]),
        (spawn, HERE / "spawn_true.c",
         ["gcc", "-O2", "-g", "-Wall", "-o", str(spawn) + ".tmp",
          str(HERE / "spawn_true.c")]),
        (micro, HERE / "micro_snapshot.c",
         ["gcc", "-std=gnu11", "-O2", "-g", "-Wall", "-Wno-unused-parameter", "-pthread",
          "-DHAVE_CONFIG_H", "-I", src, "-I", f"{src}/slurm", "-I", str(ROOT / "csrc"),
          "-o", str(micro) + ".tmp",
          str(HERE / "micro_snapshot.c"), "-rdynamic", f"-L{SLURM_LIBDIR}", "-lslurmfull",
          f"-Wl,-rpath,{SLURM_LIBDIR}", "-ldl", "-lpthread"]),
    ]
    deps = {micro: [ROOT / "csrc" / "spm_types.h"]}
    used = {noop: bool(parts & {"calls", "cluster"}), spawn: "calls" in parts,
            micro: "attrib" in parts}
    for out, source, cmd in cmds:
        if not used[out]:
            continue
        newest = max([source.stat().st_mtime] + [d.stat().st_mtime for d in deps.get(out, [])])
        if out.exists() and out.stat().st_mtime >= newest:
            continue
        subprocess.run(cmd, check=True)
        os.replace(str(out) + ".tmp", out)
    return {"noop": str(noop), "spawn": str(spawn), "micro": str(micro),
            "host": hostdriver.ensure_built() if parts & {"calls", "update"} else None,
            "slurm_src": src}


def bench_host() -> str:
    """build/bench/bench_host: the C test host with the verbs only the bench
    uses (bench/bench_host.c, sharing tests/host/spm_host.h), built by the
    host's own build.sh when older than its sources."""
    out = BUILD / "bench_host"
    srcs = [ROOT / "tests" / "host" / n for n in ("spm_host.c", "spm_host.h", "build.sh")]
    srcs.append(HERE / "bench_host.c")
    if out.exists() and out.stat().st_mtime >= max(p.stat().st_mtime for p in srcs):
        return str(out)
    BUILD.mkdir(parents=True, exist_ok=True)
    subprocess.run([str(ROOT / "tests" / "host" / "build.sh"), slurm_src(), str(out) + ".tmp"],
                   check=True, stdout=subprocess.DEVNULL,
                   env=dict(os.environ, EXTRA_SRC=str(HERE / "bench_host.c")))
    os.replace(str(out) + ".tmp", out)
    return str(out)


def handler_dir(base: pathlib.Path, files: dict[str, str]) -> pathlib.Path:
    """A handler directory the loader accepts: root-owned 0755, files 0644."""
    d = base / "handlers"
    d.mkdir(parents=True, exist_ok=True)
    os.chmod(d, 0o755)
    for name, text in files.items():
        p = d / name
        p.write_text(text)
        os.chmod(p, 0o644)
    return d


def proc_status(pid: int) -> dict[str, int]:
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("VmRSS", "VmHWM", "VmSize", "RssAnon", "RssFile", "Threads"):
                    out[k] = int(v.split()[0])
    except OSError:
        pass
    return out


def proc_cpu_s(pid: int) -> float:
    """utime+stime+cutime+cstime of a process, seconds."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


def children(pid: int) -> list[int]:
    out = []
    for st in glob.glob("/proc/[0-9]*/stat"):
        try:
            with open(st) as f:
                if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(st.split("/")[2]))
        except (OSError, ValueError, IndexError):
            pass
    return out


def _cpu_jiffies() -> tuple[int, int]:
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + (v[4] if len(v) > 4 else 0)
    return sum(v[:8]) - idle, sum(v[:8])


def sys_busy(interval: float = 1.0) -> float:
    """Fraction of all CPUs busy over `interval` (we are idle meanwhile)."""
    b0, t0 = _cpu_jiffies()
    time.sleep(interval)
    b1, t1 = _cpu_jiffies()
    return (b1 - b0) / max(1, t1 - t0)


def quiet_check(part: str, wait: float, res: dict) -> None:
    """Record how busy the machine is before a part (other sessions' tests
    skew every figure here); with wait > 0, wait up to that long for it
    to calm down (< 10% busy)."""
    deadline = time.monotonic() + wait
    busy = sys_busy()
    while busy > 0.10 and time.monotonic() < deadline:
        log(f"{part}: machine {busy:.0%} busy (other processes); waiting")
        time.sleep(4)
        busy = sys_busy()
    load = open("/proc/loadavg").read().split()[:3]
    res["meta"].setdefault("busy_before", {})[part] = {"busy": round(busy, 3),
                                                       "loadavg": load}
    if busy > 0.10:
        log(f"{part}: WARNING machine {busy:.0%} busy before the part (load {load[0]})")


class ForeignCPU:
    """Samples, every `period` s on a thread, the CPU time used by processes
    that are not ours: not descended from this process and not carrying one
    of our clusters' tags in their environment (slurmstepd and the jobs
    are re-parented to init but keep the tag).  Other sessions' test runs
    on this shared machine skew every figure here; this says by how much.
    CPU of processes that start and end between two samples is missed."""

    def __init__(self, tags=(), period: float = 1.0, clusters=()):
        import threading
        self.tags = [f"SLURMCLUSTER_TAG={t}".encode() for t in tags]
        # 24.11 starts a step's slurmstepd with an empty environment: ours if
        # it works in or logs into one of our clusters' directories
        self.clusters = list(clusters)
        self.period = period
        self.me = os.getpid()
        self.kind: dict[tuple[int, str], bool] = {}
        self.last: dict[tuple[int, str], int] = {}
        self.foreign_ticks = 0
        self.top: dict[str, int] = {}
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._loop, daemon=True)

    def _scan(self, count: bool) -> None:
        ppid_of, stats = {}, {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as f:
                    raw = f.read()
            except OSError:
                continue
            head, _, rest = raw.rpartition(")")
            fields = rest.split()
            pid = int(entry)
            ppid_of[pid] = int(fields[1])
            stats[pid] = (head.partition("(")[2], fields[19],
                          int(fields[11]) + int(fields[12]))
        for pid, (comm, start, ticks) in stats.items():
            key = (pid, start)
            ours = self.kind.get(key)
            if ours is None:
                ours, p = False, pid
                for _ in range(64):
                    if p == self.me:
                        ours = True
                        break
                    p = ppid_of.get(p, 0)
                    if p <= 1:
                        break
                if not ours and self.tags:
                    try:
                        with open(f"/proc/{pid}/environ", "rb") as f:
                            env = f.read().split(b"\0")
                        ours = any(t in env for t in self.tags)
                    except OSError:
                        pass
                if not ours and self.clusters and comm == "slurmstepd":
                    ours = any(c._uses_workdir(pid) for c in self.clusters)
                    if not ours:
                        ours = None         # ask again next time: it may not have opened its files yet
                self.kind[key] = ours
            if not ours and count and key in self.last:
                d = ticks - self.last[key]
                self.foreign_ticks += d
                self.top[comm] = self.top.get(comm, 0) + d
            self.last[key] = ticks

    def _loop(self):
        while not self._stop.wait(self.period):
            self._scan(True)

    def __enter__(self):
        self._scan(False)
        self.t0 = time.monotonic()
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()
        self._scan(True)
        self.wall = time.monotonic() - self.t0

    def result(self) -> dict:
        hz = os.sysconf("SC_CLK_TCK")
        cpu = self.foreign_ticks / hz
        top = sorted(self.top.items(), key=lambda kv: -kv[1])[:3]
        return {"foreign_cpu_s": round(cpu, 2),
                "foreign_frac": round(cpu / max(1e-9, self.wall * (os.cpu_count() or 1)), 3),
                "top": [(k, round(v / hz, 2)) for k, v in top if v]}


def pct(values, p: float):
    """Nearest-rank percentile."""
    if not values:
        return None
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(round(p / 100.0 * len(s) + 0.5)) - 1))
    return s[k]


def med(values):
    return statistics.median(values) if values else None


# --------------------------------------------------------------------------
# threads' CPU time (parts 1 and 2)
# --------------------------------------------------------------------------

def thread_cpu(pid: int) -> dict[int, int]:
    """{tid: CPU ns} for the live threads of pid (schedstat: exact ns)."""
    out = {}
    for st in glob.glob(f"/proc/{pid}/task/*/schedstat"):
        try:
            with open(st) as f:
                out[int(st.split("/")[4])] = int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return out


def _cpu_split(pid: int, before: dict, after: dict) -> tuple[int, int]:
    """(CPU ns of the main thread, CPU ns of all other threads) between two
    thread_cpu() snapshots (threads that exited in between are lost)."""
    main = after.get(pid, 0) - before.get(pid, 0)
    other = sum(v - before.get(t, 0) for t, v in after.items() if t != pid)
    return main, other


def _tracefs() -> bool:
    """perf probe needs tracefs; mount it if nothing has (returns whether
    we did, so that the caller unmounts it again)."""
    if os.path.exists("/sys/kernel/tracing/uprobe_events"):
        return False
    subprocess.run(["mount", "-t", "tracefs", "nodev", "/sys/kernel/tracing"],
                   check=True, capture_output=True)
    return True


def _probes_ready(part: str, what: str) -> tuple[bool, str | None]:
    """(whether we mounted tracefs, why uprobes cannot run or None) for a
    part that times calls with Uprobes; the reason is logged."""
    mounted = False
    try:
        mounted = _tracefs()
        if not shutil.which("perf"):
            raise RuntimeError("perf not installed (linux-perf)")
    except (OSError, subprocess.CalledProcessError, RuntimeError) as e:
        err = f"{what} not measured: {e}"
        log(f"{part}: {err}")
        return mounted, err
    return mounted, None


class Uprobes:
    """Entry and return uprobes on functions of ELF files (perf probe),
    recorded with `perf record -p PID` while the block runs; `durations()`
    pairs entry and return per thread: wall ns of every call.  The kernel's
    trap on each probe adds the same fixed cost to every measured call; the
    caller measures that floor on an empty-ish function and subtracts it."""

    def __init__(self, probes: dict[str, tuple[str, str]], pid: int, out: pathlib.Path):
        self.probes, self.pid, self.out = probes, pid, out
        self.events: dict[str, tuple[str, str]] = {}
        self.tag = f"spmb{os.getpid()}"

    def __enter__(self):
        try:
            for name, (elf, func) in self.probes.items():
                ev = f"{self.tag}_{name}"
                for spec in (f"{ev}={func}", f"{ev}_ret={func}%return"):
                    cp = subprocess.run(["perf", "probe", "-q", "-x", elf, "-a", spec],
                                        capture_output=True, text=True)
                    if cp.returncode:
                        raise RuntimeError(f"perf probe -x {elf} -a {spec}: {cp.stderr.strip()}")
                group = "probe_" + re.sub(r"[^A-Za-z0-9_]", "_",
                                          os.path.basename(elf).split(".")[0])
                self.events[name] = (f"{group}:{ev}", f"{group}:{ev}_ret__return")
            cmd = ["perf", "record", "-o", str(self.out), "-p", str(self.pid)]
            for a, b in self.events.values():
                cmd += ["-e", a, "-e", b]
            # perf record now and then exits 255 at once, saying nothing
            # (seen under load, 2 of ~20 starts): try again, 3 times
            for attempt in range(3):
                self.rec = subprocess.Popen(cmd, stdout=subprocess.DEVNULL,
                                            stderr=subprocess.PIPE)
                time.sleep(1.0)             # perf attaches
                if self.rec.poll() is None:
                    break
                err = self.rec.stderr.read().decode()[-300:]
                log(f"perf record -p {self.pid} exited {self.rec.returncode} at once "
                    f"(attempt {attempt + 1}): {err.strip()}")
            else:
                raise RuntimeError(f"perf record -p {self.pid} exited {self.rec.returncode} "
                                   f"at once, 3 times: {err}")
        except BaseException:
            self._delete()
            raise
        return self

    def _delete(self):
        subprocess.run(["perf", "probe", "-q", "-d", f"probe_*:{self.tag}_*"],
                       capture_output=True)

    def __exit__(self, *exc):
        try:
            self.rec.send_signal(2)
            self.rec.wait(timeout=60)
        finally:
            self._delete()

    def durations(self) -> dict[str, list[float]]:
        cp = subprocess.run(["perf", "script", "-i", str(self.out), "--ns", "-F", "tid,time,event"],
                            capture_output=True, text=True, check=True)
        names = {}
        for name, (a, b) in self.events.items():
            names[a.split(":")[1]] = (name, "in")
            names[b.split(":")[1]] = (name, "ret")
        open_: dict[tuple[int, str], float] = {}
        out: dict[str, list[float]] = {n: [] for n in self.events}
        for line in cp.stdout.splitlines():
            m = re.match(r"\s*(\d+)\s+(\d+\.\d+):\s+(\S+?):?\s*$", line)
            if not m:
                continue
            tid, t, ev = int(m.group(1)), float(m.group(2)), m.group(3).split(":")[-1]
            if ev not in names:
                continue
            name, which = names[ev]
            if which == "in":
                open_[(tid, name)] = t
            elif (tid, name) in open_:
                out[name].append((t - open_.pop((tid, name))) * 1e6)
        return out


# --------------------------------------------------------------------------
# report formatting
# --------------------------------------------------------------------------

def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def fmt_ns(ns) -> str:
    if ns is None:
        return "-"
    if abs(ns) < 1e6:
        return f"{ns / 1000:.2f} us"
    return f"{ns / 1e6:.2f} ms"
