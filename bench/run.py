#!/usr/bin/env python3
"""slurmpy_plugins benchmarks: bridge cost, site_factor update(), a real
cluster's job throughput and prolog latency, slurmctld memory.

    make bench                               # full run, both releases, ~25 min
    make bench BENCH_ARGS=--quick            # 10k calls, 100 jobs: iterate fast
    .venv/bin/python bench/run.py [--quick]  # this machine's Slurm only

Everything is measured in one run.  Output: a table on stdout, and
bench/results/latest.{txt,json} plus a timestamped copy of both.  Nothing
here asserts on time: targets are reported as PASS/MISS with the measured
ratio (see bench/NOTES.md for what dominates a miss).

Parts
 1. Bridge cost per hook call, through tests/host/spm_host (a fake slurmctld /
    slurmd that dlopens the plugin as Slurm does): prep_python.so with a no-op
    handler vs bench/noop_prep.c (a C no-op prep plugin built the same way)
    vs starting /bin/true (bench/spawn_true.c, posix_spawn+waitpid in C).
 2. site_factor update() over 100,000 pending jobs via the host's
    bench_update (snapshot, hand-off, Python, applying factors) vs the host's
    C baseline loop.
 3. A real slurmctld+slurmd (tests/harness/slurmcluster.py): 1,000 `sbatch
    --wrap=true` jobs with (a) no PrEp work, (b) prep/script with trivial
    PrologSlurmctld/EpilogSlurmctld shell scripts, (c) prep/python with
    trivial prolog/epilog_slurmctld handlers: jobs/s and the prolog stage
    latency (allocation -> "Configuration for JobId=N is complete").
 4. slurmctld VmRSS after those jobs, with and without prep/python.
 5. Attribution: the shim's C pieces (bench/micro_snapshot.c) and the
    Python side of a hook call (bench/micro_bridge.py), each alone.
 6. Job steps: N `srun true` steps in one job, time per step and the step's
    slurmstepd VmRSS, with and without prep/python in PrEpPlugins (24.05+
    loads PrEp plugins in every slurmstepd: Python must not start there).
 7. job_submit: submissions/s from 8 parallel sbatch clients with no
    plugin, job_submit/python and job_submit/lua running the same policy;
    per-call cost of each plugin's job_submit() from uprobes (perf probe)
    in the real slurmctld, net of the probes' own cost.
 8. jobcomp: jobs/s and slurmctld CPU per job with JobCompType=
    jobcomp/python (no-op handler) against jobcomp/none, alternating; the
    cost of a record inside the real slurmctld from uprobes on slurmctld's
    jobcomp call and the plugin's (the probes' own cost: the generic call
    timed under jobcomp/none); the hook alone in the C test host and the
    records/s the deliverer sustains (bench/jobcomp.py).
 9. spank: `srun true` step time and the step's slurmstepd peak RSS with
    no SPANK plugin, a C plugin doing spank_setenv in user_init,
    spank/python with a user_init doing setenv, and spank/python with an
    option and no hook in slurmstepd; one job of N steps per
    configuration (bench/spank.py).
With --trixie-root DIR (what `make bench` passes), parts 3, 4 and 6 also
run inside that Debian 13 root against Slurm 24.11 (this script with
--json-out there) and are reported as 3', 4', 6'.
Part 3 also runs (d), a C no-op async prep plugin, as a control, and an
"isolated" latency phase; every part records how much CPU other processes
took meanwhile (this machine is shared).  See bench/NOTES.md.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import datetime as dt
import glob
import json
import os
import pathlib
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent

from tests.harness import hostdriver  # noqa: E402
from tests.harness.hostdriver import Host  # noqa: E402

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
# part 1: bridge cost per hook call
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


def bench_calls(host: Host, hook: str, n: int, reps: int, window: int = 0) -> dict:
    """reps x bench_call(hook, n).  Per run: wall ns/call in the hook (the
    host's loop around the call: the time a slurmctld thread spends in it,
    under the job lock), wall total/N (including the wait for the async
    callbacks), CPU ns/call of the calling (main) thread net of the host's
    own record set-up (a mode=baseline run of the same size), and CPU
    ns/call of every other thread (workers, callbacks).

    window > 0: the n calls go as n/window bench_calls of `window` calls
    each, every one waiting for its callbacks, so that at most `window`
    calls are outstanding (a scheduler pass starts tens to hundreds of
    jobs, not 100,000); the figures are the sums over the batches."""
    pid = host.proc.pid
    size = window or n
    batches = max(1, n // size)
    n = size * batches

    def one(mode):
        us_calls = us_total = cbs = asyncs = 0
        for _ in range(batches):
            r = host.bench_call(hook, size, mode=mode, timeout=300)
            if not r.get("waited") or (r["async"] and r["callbacks"] < r["async"]):
                raise RuntimeError(f"bench_call {hook}: callbacks missing: {r}")
            us_calls += r["us_calls"]
            us_total += r["us_total"]
            asyncs += r["async"]
        return us_calls, us_total, asyncs

    host.bench_call(hook, min(size, 2000), timeout=120)          # warm up
    runs = []
    for _ in range(reps):
        # the host's own cost (building and freeing the records, its loop):
        # the same bench with a noinline C no-op in place of the plugin
        b0 = thread_cpu(pid)
        one("baseline")
        setup_main, _ = _cpu_split(pid, b0, thread_cpu(pid))
        c0 = thread_cpu(pid)
        us_calls, us_total, asyncs = one("plugin")
        main, other = _cpu_split(pid, c0, thread_cpu(pid))
        runs.append({"calls_ns": us_calls * 1000 / n,
                     "total_ns": us_total * 1000 / n,
                     "cpu_main_ns": (main - setup_main) / n,
                     "setup_cpu_ns": setup_main / n,
                     "cpu_other_ns": other / n, "async": asyncs})
    return {"n": n, "reps": reps, "window": window, "runs": runs,
            "async": runs[-1]["async"] == n,
            "setup_cpu_ns": med([x["setup_cpu_ns"] for x in runs]),
            "calls_ns": med([x["calls_ns"] for x in runs]),
            "total_ns": med([x["total_ns"] for x in runs]),
            "cpu_main_ns": med([x["cpu_main_ns"] for x in runs]),
            "cpu_other_ns": med([x["cpu_other_ns"] for x in runs])}


def run_host_prep(so: str, daemon: str, params: str, hook: str, n: int,
                  reps: int, window: int = 0) -> dict:
    with Host(so, daemon=daemon, debug=3, timeout=120) as h:
        h.conf(prep_params=params)
        h.load()
        if daemon == "slurmctld":
            h.callbacks()
        h.required()      # prep/python boots Python here, as in slurmctld
        res = bench_calls(h, hook, n, reps, window)
        res["plugin_log_errors"] = [l for l in h.log().splitlines() if "error" in l.lower()][:5]
    return res


def part_calls(tools: dict, tmp: pathlib.Path, n: int, reps: int, n_spawn: int) -> dict:
    hdir = handler_dir(tmp / "calls", {"bench_noop.py": NOOP_PREP})
    py = f"handler=bench_noop:Handler,path={hdir}"
    out = {}
    win = min(1000, n)
    plan = [
        ("python_async", str(PREP_SO), "slurmctld", py, "prolog_slurmctld", 0),
        ("python_async_w1", str(PREP_SO), "slurmctld", py + ",workers=1", "prolog_slurmctld", 0),
        ("c_handoff_async", tools["noop"], "slurmctld", "mode=handoff", "prolog_slurmctld", 0),
        ("c_direct_ctld", tools["noop"], "slurmctld", "mode=direct", "prolog_slurmctld", 0),
        ("python_async_win", str(PREP_SO), "slurmctld", py, "prolog_slurmctld", win),
        ("python_async_w1_win", str(PREP_SO), "slurmctld", py + ",workers=1",
         "prolog_slurmctld", win),
        ("c_handoff_async_win", tools["noop"], "slurmctld", "mode=handoff",
         "prolog_slurmctld", win),
        ("python_sync", str(PREP_SO), "slurmd", py, "prolog", 0),
        ("python_sync_w1", str(PREP_SO), "slurmd", py + ",workers=1", "prolog", 0),
        ("c_handoff_sync", tools["noop"], "slurmd", "mode=handoff", "prolog", 0),
        ("c_direct_sync", tools["noop"], "slurmd", "mode=direct", "prolog", 0),
    ]
    for name, so, daemon, params, hook, window in plan:
        log(f"calls: {name} ({hook}, {reps} x {n:,}"
            + (f" in batches of {window:,})" if window else ")"))
        out[name] = run_host_prep(so, daemon, params, hook, n, reps, window)
        out[name].update(hook=hook, daemon=daemon, params=params,
                         plugin=os.path.basename(so))
    log(f"calls: /bin/true x {n_spawn:,} (posix_spawn, fork+execve)")
    cp = subprocess.run([tools["spawn"], str(n_spawn)], check=True,
                        capture_output=True, text=True)
    for line in cp.stdout.splitlines():
        parts = line.split()
        kv = dict(p.split("=", 1) for p in parts[1:])
        out["spawn_" + parts[0]] = {"n": int(kv["n"]), "ns": int(kv["ns_per_call"])}
    return out


# --------------------------------------------------------------------------
# part 2: site_factor update()
# --------------------------------------------------------------------------

def part_update(tmp: pathlib.Path, sizes: tuple, reps: int) -> dict:
    """Each handler in its own host: bench_update at every size (reps runs
    each, 1M jobs: 2), the host's peak RSS (VmHWM) after the largest, and
    the host's C loop as the floor."""
    hdir = handler_dir(tmp / "sf", {"bench_sf.py": SITE_FACTOR})
    out = {"sizes": list(sizes)}
    for cls in list(UPDATE_HANDLERS) + ["baseline"]:
        mode = "baseline" if cls == "baseline" else "plugin"
        with Host(str(SF_SO), daemon="slurmctld", debug=3, timeout=120) as h:
            h.conf(site_factor_params=f"handler=bench_sf:{'Empty' if cls == 'baseline' else cls},"
                   f"path={hdir}")
            h.load()
            h.bench_update(1000, mode=mode)                 # boot + warm up
            per = {}
            for n in sizes:
                k = reps if n < 1_000_000 else min(reps, 2)
                log(f"update: {cls} ({k} x {n:,} pending jobs)")
                runs = []
                for _ in range(k):
                    c0 = thread_cpu(h.proc.pid)
                    r = h.bench_update(n, mode=mode, timeout=600)
                    _, worker = _cpu_split(h.proc.pid, c0, thread_cpu(h.proc.pid))
                    # the worker thread runs only Python (update() and the
                    # bridge around it, and the per-field copies it asks
                    # for); the rest of the wall time is C in the calling
                    # thread: snapshot, hand-off, applying factors
                    runs.append({"ms": r["ns"] / 1e6, "py_ms": worker / 1e6,
                                 "c_ms": r["ns"] / 1e6 - worker / 1e6,
                                 "changed": r["changed"]})
                want = 0 if cls == "Empty" else n
                if any(x["changed"] != want for x in runs):
                    raise RuntimeError(f"update {cls} n={n}: changed {runs}, want {want}")
                ms = [x["ms"] for x in runs]
                per[n] = {"n": n, "runs_ms": ms, "ms": med(ms), "us_per_job": med(ms) * 1000 / n,
                          "py_ms": med([x["py_ms"] for x in runs]),
                          "c_ms": med([x["c_ms"] for x in runs])}
            st = proc_status(h.proc.pid)
            out[cls] = {"by_n": per, "hwm_kb": st.get("VmHWM", 0)}
    return out


# --------------------------------------------------------------------------
# part 5: attribution (pieces alone, one thread, no contention)
# --------------------------------------------------------------------------

def _kv_lines(text: str) -> dict:
    out = {}
    for line in text.splitlines():
        parts = line.split()
        if not parts:
            continue
        out[parts[0]] = {k: float(v) for k, v in (p.split("=", 1) for p in parts[1:])}
    return out


def part_attrib(tools: dict, quick: bool) -> dict:
    log("attrib: bench/micro_snapshot (C pieces) and bench/micro_bridge.py (Python side)")
    env = dict(os.environ, SPM_LIB=str(PLUGINS / "slurmpy" / "libslurmpy.so"))
    c = subprocess.run([tools["micro"], "100000", "50000" if quick else "200000"],
                       check=True, capture_output=True, text=True, env=env, cwd=ROOT)
    p = subprocess.run([sys.executable, str(HERE / "micro_bridge.py"),
                        "50000" if quick else "300000", "100000"],
                       check=True, capture_output=True, text=True, cwd=ROOT)
    return {"c": _kv_lines(c.stdout), "py": _kv_lines(p.stdout)}


# --------------------------------------------------------------------------
# part 3/4: a real cluster
# --------------------------------------------------------------------------

TS = r"^\[(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3})\] "
# main scheduler: "sched: Allocate JobId=N ..."; backfill (22.05):
# "sched/backfill: _start_job: Started JobId=N in debug on node1"
RX_ALLOC = re.compile(TS + r"(?:sched: Allocate|(?:\S+: )*Started) JobId=(\d+)", re.M)
RX_CONF = re.compile(TS + r"\S+: Configuration for JobId=(\d+) (?:is )?complete", re.M)
RX_DONE = re.compile(TS + r"_job_complete: JobId=(\d+) done", re.M)


def ts(s: str) -> float:
    return dt.datetime.fromisoformat(s).timestamp()


def conf_for(kind: str, base: pathlib.Path) -> tuple[list[str], list[str]]:
    if kind == "a":
        # PrEpPlugins defaults to prep/script; with no Prolog*/Epilog*
        # scripts set, it requires no hook: no PrEp work at all.
        return [], []
    if kind == "b":
        scripts = []
        for name in ("prolog_ctld.sh", "epilog_ctld.sh"):
            p = base / name
            p.write_text(TRIVIAL_SCRIPT)
            os.chmod(p, 0o755)
            scripts.append(p)
        return ["PrEpPlugins=prep/script", f"PrologSlurmctld={scripts[0]}",
                f"EpilogSlurmctld={scripts[1]}"], []
    if kind == "d":
        # control: the C no-op plugin, async with a worker thread calling
        # back (bench/noop_prep.c mode=handoff), i.e. prep/python's shape
        # without Python
        return ["PrEpPlugins=prep/noop", "PrEpParameters=mode=handoff"], [str(BUILD)]
    hdir = handler_dir(base, {"bench_ctld.py": CTLD_PREP})
    return ["PrEpPlugins=prep/python",
            f"PrEpParameters=handler=bench_ctld:Handler,path={hdir}"], [str(PLUGINS)]


def submit(c, n: int, par: int = 4) -> list[int]:
    def one(_):
        return c.sbatch("-o", "/dev/null", "-e", "/dev/null", wrap="true", timeout=60)
    with concurrent.futures.ThreadPoolExecutor(par) as ex:
        return list(ex.map(one, range(n)))


def wait_all_done(c, ids: list[int], timeout: float) -> None:
    """Poll squeue until none of our jobs is pending/running/completing."""
    deadline = time.monotonic() + timeout
    while True:
        cp = c.run("squeue", "-h", "-t", "PD,CF,R,CG", "-o", "%i", check=False)
        if cp.returncode == 0 and not cp.stdout.strip():
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"jobs not done after {timeout}s: {cp.stdout[:300]}\n"
                               + c.log_tails())
        time.sleep(0.25)


def _latencies(text: str, ids: list[int]) -> tuple[dict, dict, dict, list[float]]:
    mine = set(ids)
    alloc, conf, done = {}, {}, {}
    for rx, d in ((RX_ALLOC, alloc), (RX_CONF, conf), (RX_DONE, done)):
        for m in rx.finditer(text):
            j = int(m.group(2))
            if j in mine:
                d.setdefault(j, ts(m.group(1)))
    lat = [round((conf[j] - alloc[j]) * 1000, 3) for j in ids if j in conf and j in alloc]
    return alloc, conf, done, lat


def isolated_latency(c, k: int, gap: float) -> list[float]:
    """Prolog latency without a burst: k jobs submitted one at a time, gap
    seconds apart, on an otherwise idle node."""
    ids = []
    for _ in range(k):
        ids.append(c.sbatch("-o", "/dev/null", "-e", "/dev/null", wrap="true", timeout=60))
        time.sleep(gap)
    wait_all_done(c, ids, timeout=120)
    return _latencies(c.ctld_log(), ids)[3]


def run_cluster(kind: str, n: int, cpus: int, tmp: pathlib.Path, idx: int,
                iso_n: int = 0) -> dict:
    from tests.harness.slurmcluster import Cluster
    work = tmp / f"cluster-{idx}-{kind}"
    work.mkdir(parents=True)
    os.chmod(work, 0o755)
    extra, pdirs = conf_for(kind, work)
    c = Cluster(work, conf_extra=extra, plugin_dirs=pdirs, cpus=cpus, debug="info")
    try:
        t_start = time.monotonic()
        c.start(timeout=60)
        pid = c.ctld_pid
        rss_idle = proc_status(pid)
        c.scontrol("update", f"PartitionName={c.PARTITION}", "State=DOWN")
        t_sub = time.monotonic()
        ids = submit(c, n)
        t_sub = time.monotonic() - t_sub
        time.sleep(1.0)
        cpu0 = sum(proc_cpu_s(p) for p in [pid, *children(pid)])
        t0 = time.time()
        with ForeignCPU(tags=[c.tag], clusters=[c]) as fcpu:
            c.scontrol("update", f"PartitionName={c.PARTITION}", "State=UP")
            wait_all_done(c, ids, timeout=max(120, n * 0.5))
        t_wall = time.time() - t0
        cpu1 = sum(proc_cpu_s(p) for p in [pid, *children(pid)])
        time.sleep(1.0)         # let the last epilog threads settle
        rss = proc_status(pid)
        text = c.ctld_log()
        alloc, conf, done, lat = _latencies(text, ids)
        states = c.jobs()
        bad = {j: states[j].get("JobState") for j in ids
               if states.get(j, {}).get("JobState") != "COMPLETED"}
        if bad:
            raise RuntimeError(f"({kind}) jobs not COMPLETED: {dict(list(bad.items())[:5])}")
        if kind == "c" and "loaded handler bench_ctld:Handler" not in text:
            raise RuntimeError("(c) prep/python handler not loaded:\n" + c.log_tails())
        if kind == "d" and not conf:
            raise RuntimeError("(d) prep/noop did not run:\n" + c.log_tails())
        if kind != "a" and len(lat) < 0.9 * n:
            raise RuntimeError(f"({kind}) prolog latency found for {len(lat)}/{n} jobs")
        if len(done) != n or len(alloc) != n:
            raise RuntimeError(f"({kind}) log has {len(alloc)} allocations and "
                               f"{len(done)} completions for {n} jobs")
        # From the first allocation (the partition coming UP does not kick
        # the scheduler at once: backfill starts within bf_interval=1 s) to
        # the last completion.
        first_alloc, last_done = min(alloc.values()), max(done.values())
        t_span = last_done - first_alloc
        # 1.1 s apart: more than bf_interval=1, so each backfill pass (which
        # starts these jobs: batch_sched_delay holds the main scheduler
        # back) finds one new job
        iso = isolated_latency(c, iso_n, 1.1) if iso_n and kind != "a" else []
        res = {
            "kind": kind, "n": n, "submit_s": t_sub,
            "wall_s": t_wall, "span_s": t_span, "up_to_first_alloc_s": first_alloc - t0, "jobs_per_s": n / t_span,
            "ctld_cpu_s": cpu1 - cpu0,
            "lat_ms": lat, "lat_n": len(lat), "lat_med_ms": med(lat),
            "lat_p95_ms": pct(lat, 95), "lat_mean_ms": statistics.fmean(lat) if lat else None,
            "rss_idle_kb": rss_idle.get("VmRSS"), "rss_kb": rss.get("VmRSS"),
            "hwm_kb": rss.get("VmHWM"), "rss_anon_kb": rss.get("RssAnon"),
            "threads": rss.get("Threads"), "iso_lat_ms": iso,
            "foreign": fcpu.result(),
            "total_s": time.monotonic() - t_start,
        }
        log(f"cluster ({kind}) {n} jobs: {res['jobs_per_s']:.1f} jobs/s, "
            f"prolog median {res['lat_med_ms']} ms, RSS {res['rss_kb']} kB, "
            f"{res['total_s']:.0f} s, other processes {res['foreign']['foreign_frac']:.0%} CPU "
            f"{res['foreign']['top']}")
        return res
    finally:
        c.stop()
        if os.environ.get("BENCH_KEEP") != "1":
            shutil.rmtree(work, ignore_errors=True)


def part_cluster(n: int, rounds: int, cpus: int, tmp: pathlib.Path, iso_n: int) -> dict:
    runs = []
    idx = 0
    for r in range(rounds):
        # (d), a control rather than a target, runs in the first round only
        for kind in (("a", "b", "c", "d") if r == 0 else ("a", "b", "c")):
            log(f"cluster: round {r + 1}/{rounds}, config ({kind}), {n} jobs")
            runs.append(run_cluster(kind, n, cpus, tmp, idx, iso_n))
            idx += 1
    out = {"n_per_run": n, "rounds": rounds, "cpus": cpus, "iso_per_run": iso_n, "runs": []}
    for kind in ("a", "b", "c", "d"):
        rs = [x for x in runs if x["kind"] == kind]
        lat = [v for x in rs for v in x["lat_ms"]]
        iso = [v for x in rs for v in x["iso_lat_ms"]]
        out[kind] = {
            "jobs": sum(x["n"] for x in rs),
            "jobs_per_s": sum(x["n"] for x in rs) / sum(x["span_s"] for x in rs),
            "jobs_per_s_runs": [x["jobs_per_s"] for x in rs],
            "lat_n": len(lat), "lat_med_ms": med(lat), "lat_p95_ms": pct(lat, 95),
            "lat_mean_ms": statistics.fmean(lat) if lat else None,
            "iso_n": len(iso), "iso_med_ms": med(iso), "iso_p95_ms": pct(iso, 95),
            "iso_mean_ms": statistics.fmean(iso) if iso else None,
            "iso_lat_ms": iso,
            "rss_kb": med([x["rss_kb"] for x in rs]),
            "rss_idle_kb": med([x["rss_idle_kb"] for x in rs]),
            "hwm_kb": med([x["hwm_kb"] for x in rs]),
            "ctld_cpu_s_per_1k": 1000 * sum(x["ctld_cpu_s"] for x in rs) / sum(x["n"] for x in rs),
            "foreign_frac_runs": [x["foreign"]["foreign_frac"] for x in rs],
        }
    for x in runs:
        y = dict(x)
        y.pop("lat_ms")
        out["runs"].append(y)
    return out


# --------------------------------------------------------------------------
# part 6: job steps with and without prep/python (Slurm 24.05+ loads PrEp
# plugins in every slurmstepd and calls init(); Python must not start there)
# --------------------------------------------------------------------------

STEP_SCRIPT = """\
#!/bin/sh
# {n} steps of `srun true`, each timed; then one step that sleeps {hold} s
# so that the bench can read its slurmstepd
out={out}
i=0
while [ $i -lt {n} ]; do
    t0=$(date +%s%N)
    srun -n1 -N1 true || {{ echo "failed $i" >> $out; exit 1; }}
    t1=$(date +%s%N)
    echo "step $((t1 - t0))" >> $out
    i=$((i + 1))
done
echo hold >> $out
srun -n1 -N1 sleep {hold}
echo done >> $out
"""


def _stepd_procs(c, jid: int) -> dict[str, int]:
    """{'S': pid} of the slurmstepd processes of job jid in cluster c
    (argv[0] is 'slurmstepd: [J.S]'; the cluster's own process list, as
    24.11 starts a step's slurmstepd with an empty environment)."""
    out = {}
    for pid in c.slurmstepd_pids():
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().decode(errors="replace")
        except OSError:
            continue
        m = re.search(r"\[(\d+)\.(\w+)\]", cmd)
        if m and int(m.group(1)) == jid:
            out[m.group(2)] = pid
    return out


def _stepd_sample(pid: int) -> dict | None:
    st = proc_status(pid)
    try:
        with open(f"/proc/{pid}/maps") as f:
            maps = f.read()
    except OSError:
        return None
    if not st:
        return None
    return {"rss_kb": st.get("VmRSS"), "hwm_kb": st.get("VmHWM"),
            "anon_kb": st.get("RssAnon"), "threads": st.get("Threads"),
            "prep_python_mapped": "prep_python.so" in maps,
            # Python starting imports the cffi backend (as the tests check)
            "python_started": "_cffi_backend" in maps}


def run_steps(kind: str, n: int, hold: float, tmp: pathlib.Path, idx: int) -> dict:
    """One cluster: a batch job that runs n `srun true` steps one after the
    other (each timed inside the job with date +%s%N: srun's start, the step
    RPCs, slurmd forking slurmstepd, which loads the plugins, `true`, the
    step's end), then one `srun sleep` step whose slurmstepd (and the batch
    step's) the bench samples for VmRSS, threads and what is mapped."""
    from tests.harness.slurmcluster import Cluster
    work = tmp / f"steps-{idx}-{kind}"
    work.mkdir(parents=True)
    os.chmod(work, 0o755)
    if kind == "c":
        hdir = handler_dir(work, {"bench_steps.py": NOOP_PREP})
        extra = ["PrEpPlugins=prep/python",
                 f"PrEpParameters=handler=bench_steps:Handler,path={hdir}"]
        pdirs = [str(PLUGINS)]
    else:
        extra, pdirs = [], []          # PrEpPlugins default: prep/script, no scripts
    out = work / "steps.out"
    script = work / "steps.sh"
    script.write_text(STEP_SCRIPT.format(n=n, hold=hold, out=out))
    os.chmod(script, 0o755)
    c = Cluster(work, conf_extra=extra, plugin_dirs=pdirs, cpus=4, debug="info")
    fcpu = None
    try:
        c.start(timeout=60)
        fcpu = ForeignCPU(tags=[c.tag], clusters=[c]).__enter__()
        t0 = time.monotonic()
        jid = c.sbatch("-o", str(work / "job.out"), "-e", str(work / "job.err"),
                       str(script), wrap=None, timeout=60)
        samples: dict[str, list[dict]] = {}
        deadline = time.monotonic() + max(120, n * 2)
        while "hold" not in (out.read_text() if out.exists() else ""):
            if time.monotonic() > deadline:
                raise RuntimeError(f"steps ({kind}): no hold step after {n} steps:\n"
                                   + c.log_tails())
            time.sleep(0.2)
        # sample the sleeping step's slurmstepd and the batch step's
        t_hold = time.monotonic()
        while time.monotonic() - t_hold < hold - 0.5:
            for step, pid in _stepd_procs(c, jid).items():
                role = "batch" if step == "batch" else (
                    "extern" if step == "extern" else "step")
                s = _stepd_sample(pid)
                if s:
                    samples.setdefault(role, []).append(s)
            time.sleep(0.2)
        c.wait_job(jid, timeout=60)
        wall = time.monotonic() - t0
        fcpu.__exit__(None, None, None)
        text = out.read_text()
        if "failed" in text or "done" not in text:
            raise RuntimeError(f"steps ({kind}): job output {text[-300:]!r}\n"
                               + (work / "job.err").read_text()[-500:])
        per = [int(l.split()[1]) / 1e6 for l in text.splitlines() if l.startswith("step ")]
        if len(per) != n:
            raise RuntimeError(f"steps ({kind}): {len(per)} step times for {n} steps")
        if "step" not in samples:
            raise RuntimeError(f"steps ({kind}): never saw the sleeping step's slurmstepd")
        if kind == "c" and "loaded handler bench_steps:Handler" not in c.slurmd_log():
            raise RuntimeError("steps (c): prep/python handler not loaded in slurmd:\n"
                               + c.log_tails())
        py_started = len(re.findall(r"slurmpy: Python \S+ .* started", c.slurmd_log()))

        def agg(role):
            xs = samples.get(role, [])
            if not xs:
                return None
            return {"rss_kb": max(x["rss_kb"] for x in xs),
                    "hwm_kb": max(x["hwm_kb"] for x in xs),
                    "anon_kb": max(x["anon_kb"] or 0 for x in xs),
                    "threads": max(x["threads"] for x in xs),
                    "prep_python_mapped": any(x["prep_python_mapped"] for x in xs),
                    "python_started": any(x["python_started"] for x in xs)}
        res = {"kind": kind, "n": n, "step_ms": per, "med_ms": med(per),
               "mean_ms": statistics.fmean(per), "p95_ms": pct(per, 95),
               "step": agg("step"), "batch": agg("batch"),
               "slurmd_python_started_lines": py_started, "wall_s": wall,
               "foreign": fcpu.result()}
        log(f"steps ({kind}): {n} steps, median {res['med_ms']:.1f} ms, step slurmstepd "
            f"VmRSS {res['step']['rss_kb']} kB, python started "
            f"{res['step']['python_started']}")
        return res
    finally:
        if fcpu is not None:
            fcpu._stop.set()
        c.stop()
        if os.environ.get("BENCH_KEEP") != "1":
            shutil.rmtree(work, ignore_errors=True)


def part_steps(n: int, rounds: int, tmp: pathlib.Path) -> dict:
    runs = []
    for r in range(rounds):
        for kind in ("a", "c"):
            log(f"steps: round {r + 1}/{rounds}, config ({kind}), {n} steps")
            runs.append(run_steps(kind, n, 3.0, tmp, len(runs)))
    out = {"n_per_run": n, "rounds": rounds, "runs": runs}
    for kind in ("a", "c"):
        rs = [x for x in runs if x["kind"] == kind]
        per = [v for x in rs for v in x["step_ms"]]

        def m(role, key, rs=rs):
            v = [x[role][key] for x in rs if x.get(role)]
            return med(v) if v else None
        out[kind] = {"steps": len(per), "med_ms": med(per), "mean_ms": statistics.fmean(per),
                     "p95_ms": pct(per, 95),
                     "med_ms_runs": [x["med_ms"] for x in rs],
                     "step_rss_kb": m("step", "rss_kb"), "step_anon_kb": m("step", "anon_kb"),
                     "step_threads": m("step", "threads"),
                     "batch_rss_kb": m("batch", "rss_kb"),
                     "prep_python_mapped": any((x["step"] or {}).get("prep_python_mapped")
                                               or (x["batch"] or {}).get("prep_python_mapped")
                                               for x in rs),
                     "python_started": any((x["step"] or {}).get("python_started")
                                           or (x["batch"] or {}).get("python_started")
                                           for x in rs),
                     "foreign_frac_runs": [x["foreign"]["foreign_frac"] for x in rs]}
    for x in runs:
        x.pop("step_ms")
    return out


# --------------------------------------------------------------------------
# part 7: job_submit throughput (none / python / lua) and per-call cost
# --------------------------------------------------------------------------

JS_PY_POLICY = """\
from slurmpy_plugins import JobSubmitHandler, Reject


class Policy(JobSubmitHandler):
    def submit(self, job, submit_uid):
        if job.time_limit is None:
            job.time_limit = 10
        if job.name == "forbidden":
            raise Reject("forbidden name")
        job.comment = "stamped"
"""

JS_LUA_POLICY = """\
function slurm_job_submit(job_desc, part_list, submit_uid)
    if job_desc.time_limit == slurm.NO_VAL then
        job_desc.time_limit = 10
    end
    if job_desc.name == "forbidden" then
        slurm.log_user("forbidden name")
        return slurm.ERROR
    end
    job_desc.comment = "stamped"
    return slurm.SUCCESS
end
function slurm_job_modify(job_desc, job_rec, part_list, modify_uid)
    return slurm.SUCCESS
end
return slurm.SUCCESS
"""

T_JS_THROUGHPUT = 0.95    # job_submit/python submissions/s >= 0.95 x no plugin
T_JS_VS_LUA = 2.0         # job_submit/python per-call cost <= 2 x job_submit/lua's
T_JS_LAT_VS_LUA = 1.05    # sbatch latency with job_submit/python <= 1.05 x with lua (p50, p99)


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


def run_jsubmit(mode: str, n: int, n_probe: int, clients: int, tmp: pathlib.Path,
                idx: int, n_serial: int = 200) -> dict:
    """One cluster with JobSubmitPlugins=<mode> (none: the key unset):
    n `sbatch --hold` from `clients` threads (submissions/s over the whole
    burst), then n_probe more with uprobes on the plugin's job_submit() and
    on slurmctld's job_submit_plugin_submit(), which wraps the plugins."""
    from tests.harness.slurmcluster import Cluster
    work = tmp / f"js-{idx}-{mode}"
    work.mkdir(parents=True)
    os.chmod(work, 0o755)
    hdir = handler_dir(work, {"bench_policy.py": JS_PY_POLICY})
    extra = ["MaxJobCount=100000"]
    if mode != "none":
        extra.append(f"JobSubmitPlugins={mode}")
    c = Cluster(work, plugin_dirs=[str(PLUGINS)], conf_extra=extra, debug="info")
    (c.conf_path.parent / "job_submit_python.conf").write_text(
        f"handler=bench_policy:Policy\npath={hdir}\n")
    (c.conf_path.parent / "job_submit.lua").write_text(JS_LUA_POLICY)
    try:
        c.start(timeout=60)

        lat: list[float] = []        # ms per sbatch, start to exit (list.append: thread-safe)

        def one(i):
            t = time.monotonic()
            cp = c.run("sbatch", "--parsable", "--hold", "-J", f"b{i}", "-o", "/dev/null",
                       "--wrap=true", check=False, timeout=120)
            lat.append((time.monotonic() - t) * 1000)
            return cp

        def burst(k, par=clients):
            with concurrent.futures.ThreadPoolExecutor(par) as ex:
                cps = list(ex.map(one, range(k)))
            bad = [cp for cp in cps if cp.returncode]
            if bad:
                raise RuntimeError(f"jsubmit ({mode}): {len(bad)} sbatch failed: "
                                   f"{bad[0].stderr.strip()[:300]}")
        for i in range(5):                       # warm up: the handler loads
            if one(-1).returncode:
                raise RuntimeError(f"jsubmit ({mode}): warm-up sbatch failed\n" + c.log_tails())
        pid = c.ctld_pid
        cpu0 = proc_cpu_s(pid)
        with ForeignCPU(tags=[c.tag]) as fcpu:
            t0 = time.monotonic()
            burst(n)
            wall = time.monotonic() - t0
        cpu = proc_cpu_s(pid) - cpu0
        lat_burst = sorted(lat)
        # as one user feels it: sbatch after sbatch, nothing else submitting
        del lat[:]
        burst(n_serial, 1)
        lat_serial = sorted(lat)
        probe: dict = {}
        if n_probe:
            so = {"python": str(PLUGINS / "job_submit_python.so"),
                  "lua": os.path.join(SLURM_LIBDIR, "job_submit_lua.so")}
            probes = {"wrap": (shutil.which("slurmctld") or "/usr/sbin/slurmctld",
                               "job_submit_plugin_submit")}
            if mode in so:
                probes["plugin"] = (so[mode], "job_submit")
            passes = [("", probes, clients, n_probe), ("_1", probes, 1, max(20, n_probe // 3))]
            if mode == "python":
                # the worker thread's part (the cffi entry and the Python
                # side; the rest of job_submit() is C and the hand-off), in
                # a pass of its own: a probe costs several us of traps, and
                # nested in job_submit() it would count in python's figure
                passes.append(("_split", {
                    "plugin": probes["plugin"],
                    "py": (str(PLUGINS / "slurmpy" / "libslurmpy.so"), "spm_py_js_call")},
                    clients, max(20, n_probe // 3)))
            # with `clients` parallel sbatch (as in the burst), then one at a time
            for sfx, pr, par, k_sub in passes:
                with Uprobes(pr, pid, work / f"perf{sfx}.data") as up:
                    burst(k_sub, par)
                for k, v in up.durations().items():
                    if len(v) < 0.9 * k_sub:
                        raise RuntimeError(f"jsubmit ({mode}): {len(v)} {k} calls traced "
                                           f"for {k_sub} submissions")
                    probe[k + sfx] = {"n": len(v), "med_us": med(v),
                                      "mean_us": statistics.fmean(v), "p95_us": pct(v, 95)}
        jobs = c.jobs()
        if mode != "none":
            unstamped = [j for j, v in jobs.items() if v.get("Comment") != "stamped"
                         or v.get("TimeLimit") != "00:10:00"]
            if unstamped:
                raise RuntimeError(f"jsubmit ({mode}): policy not applied to {len(unstamped)} "
                                   f"jobs, e.g. {jobs[unstamped[0]]}")
        res = {"mode": mode, "n": n, "clients": clients, "wall_s": wall,
               "per_s": n / wall, "ctld_cpu_ms_per_job": cpu * 1000 / n,
               "lat_burst_ms": {"p50": pct(lat_burst, 50), "p99": pct(lat_burst, 99)},
               "lat_serial_ms": {"p50": pct(lat_serial, 50), "p99": pct(lat_serial, 99),
                                 "n": len(lat_serial)},
               "probe": probe, "foreign": fcpu.result()}
        log(f"jsubmit ({mode}): {res['per_s']:.1f} submissions/s, probes "
            + ", ".join(f"{k} {v['med_us']:.1f} us" for k, v in probe.items()))
        return res
    finally:
        c.stop()
        if os.environ.get("BENCH_KEEP") != "1":
            shutil.rmtree(work, ignore_errors=True)


def js_host(tmp: pathlib.Path, n: int = 2000) -> dict:
    """job_submit() of job_submit_python.so in the C test host, the bench
    policy, no slurmctld and no sbatch around it: the plugin's own wall time
    per call (spm_host bench_js), calls back to back, 200 us apart (the
    worker's CPU still polling in the guest's idle loop) and 2 ms apart (as
    between sbatch RPCs: the CPU has gone idle)."""
    work = tmp / "js-host"
    work.mkdir(parents=True)
    os.chmod(work, 0o755)
    hdir = handler_dir(work, {"bench_policy.py": JS_PY_POLICY})
    (work / "slurm.conf").write_text("# not read by the host\n")
    (work / "job_submit_python.conf").write_text(f"handler=bench_policy:Policy\npath={hdir}\n")
    out = {}
    with Host(str(PLUGINS / "job_submit_python.so"), daemon="slurmctld", debug=3,
              timeout=120) as h:
        h.conf(slurm_conf=str(work / "slurm.conf"))
        h.load()
        for i in range(4):
            h.parts_add(name=f"p{i}", max_time=60, default=(i == 0))
        h.request("bench_js", "n=100", timeout=60)          # warm up: the handler loads
        for gap in (0, 200, 2000):
            r = h.request("bench_js", f"n={n}", f"gap_us={gap}", timeout=300)
            if int(r["failed"]):
                raise RuntimeError(f"bench_js: {r['failed']} of {n} calls refused")
            out[str(gap)] = {k: int(r[k + "_ns"]) / 1000 for k in ("med", "p10", "p90")}
    shutil.rmtree(work, ignore_errors=True)
    log("jsubmit (C host): " + ", ".join(f"{g} us apart: median {v['med']:.1f} us"
                                         for g, v in out.items()))
    return out


def part_jsubmit(n: int, n_probe: int, rounds: int, clients: int, tmp: pathlib.Path,
                 n_serial: int = 200) -> dict:
    mounted, probe_err = _probes_ready("jsubmit", "per-call cost") if n_probe else (False, None)
    if probe_err:
        n_probe = 0
    runs = []
    modes = ("none", "python", "lua")
    warmup = None
    try:
        # the part's first cluster was an outlier in two of three full
        # runs (426 and 666 subm/s against 300-340 for the same mode later
        # in the part): one run, of none and without probes, is taken first
        # and left out of the figures
        log(f"jsubmit: warm-up run (left out), JobSubmitPlugins=none, {n} sbatch")
        w = run_jsubmit("none", n, 0, clients, tmp, 99, n_serial=10)
        warmup = {"mode": "none", "per_s": w["per_s"]}
        for r in range(rounds):
            # the order rotates from round to round, so that a drift of the
            # machine (a neighbour starting, caches, the disk) is shared
            for mode in modes[r % 3:] + modes[:r % 3]:
                log(f"jsubmit: round {r + 1}/{rounds}, JobSubmitPlugins={mode}, {n} sbatch "
                    f"from {clients} clients" + (f", then {n_probe} traced" if n_probe else ""))
                runs.append(run_jsubmit(mode, n, n_probe, clients, tmp, len(runs),
                                        n_serial=n_serial))
    finally:
        if mounted:
            subprocess.run(["umount", "/sys/kernel/tracing"], capture_output=True)
    out = {"n_per_run": n, "n_probe": n_probe, "rounds": rounds, "clients": clients,
           "probe_error": probe_err, "runs": runs, "warmup": warmup, "host": js_host(tmp)}
    for i in range(rounds):   # python and lua against none, round by round
        by = {x["mode"]: x["per_s"] for x in runs[3 * i:3 * i + 3]}
        out.setdefault("round_ratios", []).append(
            {m: by[m] / by["none"] for m in ("python", "lua")})
    for mode in ("none", "python", "lua"):
        rs = [x for x in runs if x["mode"] == mode]
        o = out[mode] = {"per_s": sum(x["n"] for x in rs) / sum(x["wall_s"] for x in rs),
                         "per_s_runs": [x["per_s"] for x in rs],
                         "ctld_cpu_ms_per_job": med([x["ctld_cpu_ms_per_job"] for x in rs]),
                         "foreign_frac_runs": [x["foreign"]["foreign_frac"] for x in rs]}
        for k in ("lat_burst_ms", "lat_serial_ms"):
            o[k] = {q: med([x[k][q] for x in rs]) for q in ("p50", "p99")}
        o["lat_serial_n"] = rs[0]["lat_serial_ms"]["n"]
        for k in ("wrap", "plugin", "wrap_1", "plugin_1", "plugin_split", "py_split"):
            v = [x["probe"][k] for x in rs if k in x["probe"]]
            if v:
                o[k + "_med_us"] = med([p["med_us"] for p in v])
                o[k + "_mean_us"] = med([p["mean_us"] for p in v])
    return out


T_JC_THROUGHPUT = 0.95    # jobcomp/python jobs/s >= 0.95 x jobcomp/none


def part_jobcomp(n: int, n_probe: int, rounds: int, n_host: int, tmp: pathlib.Path) -> dict:
    import jobcomp as jcb        # bench/jobcomp.py: the hook, deliverer and cluster runs
    mounted, probe_err = _probes_ready("jobcomp", "per-record cost") if n_probe else (False, None)
    if probe_err:
        n_probe = 0
    runs: dict[str, list] = {"none": [], "python": []}
    try:
        for r in range(rounds):
            # the order alternates round by round (a drift is shared)
            for kind in (("none", "python") if r % 2 == 0 else ("python", "none")):
                log(f"jobcomp: round {r + 1}/{rounds}, JobCompType=jobcomp/{kind}, {n} jobs"
                    + (f", then {n_probe} traced" if n_probe else ""))
                with ForeignCPU() as f:
                    x = jcb.run_cluster(tmp, kind, n, r, n_probe=n_probe, uprobes=Uprobes,
                                        libdir=SLURM_LIBDIR)
                x["foreign"] = f.result()
                runs[kind].append(x)
                log(f"jobcomp/{kind}: {x['jobs_per_s']:.1f} jobs/s, slurmctld "
                    f"{x['ctld_cpu_us_per_job']:.0f} us CPU per job"
                    + "".join(f", {k} {v['med_us']:.1f} us" for k, v in x["probe"].items()))
    finally:
        if mounted:
            subprocess.run(["umount", "/sys/kernel/tracing"], capture_output=True)
    out: dict = {"n_per_run": n, "n_probe": n_probe, "rounds": rounds, "probe_error": probe_err,
                 "runs": runs}
    for kind, rs in runs.items():
        o = out[kind] = {"jobs_per_s": med([x["jobs_per_s"] for x in rs]),
                         "jobs_per_s_runs": [x["jobs_per_s"] for x in rs],
                         "ctld_cpu_us_per_job": med([x["ctld_cpu_us_per_job"] for x in rs]),
                         "foreign_frac_runs": [x["foreign"]["foreign_frac"] for x in rs]}
        for k in ("wrap", "plugin"):
            v = [x["probe"][k] for x in rs if k in x["probe"]]
            if v:
                for stat in ("med_us", "p90_us", "p99_us"):
                    o[f"{k}_{stat}"] = med([p[stat] for p in v])
                o[k + "_fn"] = v[0]["fn"]
    out["round_ratios"] = [p["jobs_per_s"] / n_["jobs_per_s"]
                           for p, n_ in zip(runs["python"], runs["none"])]
    log(f"jobcomp: the hook in the C test host, {n_host} records, then the deliverer")
    out["host"] = jcb.part_host(tmp, n_host)
    return out


def report_jobcomp(lines: list, target, jc: dict) -> None:
    lines.append(f"8. jobcomp: {jc['rounds']} round(s) of jobcomp/none and jobcomp/python "
                 f"(no-op job_end; the order alternating), {jc['n_per_run']:,} `sbatch "
                 "--wrap=true` per run from 4 clients;")
    lines.append("   jobs/s = jobs / wall time from the first sbatch to the last job gone "
                 "from squeue; every python run checked: one spooled record per job,")
    lines.append("   all delivered.")
    if jc.get("probe_error"):
        lines.append(f"   {jc['probe_error']}")
    else:
        py = jc["python"]
        lines.append(f"   per-record cost: then {jc['n_probe']:,} more jobs per run with uprobes "
                     f"(perf probe) inside the real slurmctld on {py.get('wrap_fn')}() (slurmctld's")
        lines.append(f"   call, under the job write lock) and on the plugin's {py.get('plugin_fn')}(): "
                     "wall time per call, median per run, median of runs; the")
        lines.append("   floor is the same call under jobcomp/none (the probes' traps and Slurm's "
                     "dispatch): net = python - floor.")
    lines.append(f"   {'JobComp':<10} {'jobs/s':>8} {'ctld CPU/job':>13} {'call med':>10} "
                 f"{'p90':>9} {'p99':>9} {'plugin med':>11}   jobs/s per run")

    def us(v):
        return "-" if v is None else f"{v:.1f} us"
    for kind in ("none", "python"):
        r = jc[kind]
        lines.append(f"   {kind:<10} {r['jobs_per_s']:>8.1f} {r['ctld_cpu_us_per_job']:>10.0f} us "
                     f"{us(r.get('wrap_med_us')):>10} {us(r.get('wrap_p90_us')):>9} "
                     f"{us(r.get('wrap_p99_us')):>9} {us(r.get('plugin_med_us')):>11}   "
                     + ", ".join(f"{x:.1f}" for x in r["jobs_per_s_runs"]))
    fl, pw = jc["none"].get("wrap_med_us"), jc["python"].get("wrap_med_us")
    if fl is not None and pw is not None:
        lines.append(f"   a record costs slurmctld {pw - fl:.1f} us net (median; "
                     f"{pw:.1f} us with the probes, floor {fl:.1f} us)")
    lines.append("   jobs/s python / none, round by round: "
                 + ", ".join(f"{x:.3f}" for x in jc["round_ratios"])
                 + ";  other processes' CPU per run: " + "; ".join(
                     f"{k} " + ", ".join(f"{x:.0%}" for x in jc[k]["foreign_frac_runs"])
                     for k in ("none", "python")))
    h = jc.get("host")
    if h:
        lines.append(f"   the hook alone in the C test host ({h['n']:,} records, back to back): "
                     f"median {h['hook_us']['median']} us, p90 {h['hook_us']['p90']} us, "
                     f"p99 {h['hook_us']['p99']} us")
        lines.append(f"   ({h['record_bytes']:.0f}-byte JSON line, append, fdatasync); the "
                     f"deliverer: {h['deliver_records_per_s']:,.0f} records/s to a no-op job_end()")
    ratio = jc["python"]["jobs_per_s"] / jc["none"]["jobs_per_s"]
    target("8a jobcomp/python jobs/s >= 0.95 x jobcomp/none", f"{ratio:.3f} x none", "0.95",
           ratio >= T_JC_THROUGHPUT, f"{ratio:.3f}")
    lines.append("")


T_SPANK_VS_C = 1.2        # spank/python step with a user_init hook <= 1.2 x the C plugin's
T_SPANK_NO_HOOK = 1.02    # spank/python step with no hook there <= 1.02 x no plugin


def part_spank(steps: int, rounds: int) -> dict:
    import spank as spb          # bench/spank.py
    if not (PLUGINS / "spank_python.so").exists():
        raise RuntimeError("build/plugins/spank_python.so missing: run `make build`")
    with ForeignCPU() as f:
        m = spb.measure(steps, rounds, slurm_src(), log=log)
    m["foreign"] = f.result()
    return m


def report_spank(lines: list, target, sp: dict) -> None:
    import spank as spb
    lines.append(f"9. spank: {sp['rounds']} round(s) of one job of {sp['steps']:,} `srun true` "
                 "steps per configuration (alternating), each step timed inside the job;")
    lines.append("   VmHWM: the peak RSS of an `srun sleep` step's slurmstepd. none: an empty "
                 "plugstack.conf; c_setenv: a C plugin, spank_setenv in user_init;")
    lines.append("   py_setenv: spank_python.so, setenv in user_init (Python starts in each "
                 "step's slurmstepd); py_options: an option, no hook there.")
    lines.append(f"   machine busy {sp['busy']:.0%} (this bench included); other processes' "
                 f"CPU {sp['foreign']['foreign_frac']:.0%}")
    lines += ["   " + x for x in spb.table(sp)]
    r = sp["results"]
    v = r["py_setenv"]["median_ms"] / r["c_setenv"]["median_ms"]
    target("9a spank/python user_init step <= 1.2 x C plugin", f"{v:.2f} x C", "1.2",
           v <= T_SPANK_VS_C, f"{v:.2f}")
    v = r["py_options"]["median_ms"] / r["none"]["median_ms"]
    target("9b spank/python, no hook in slurmstepd <= 1.02 x none", f"{v:.3f} x none", "1.02",
           v <= T_SPANK_NO_HOOK, f"{v:.3f}")
    lines.append("")


def report_steps(lines: list, target, st: dict, rel: str, release: str) -> None:
    lines.append(f"6{rel}. Job steps with and without prep/python{release}: {st['rounds']} round(s) "
                 f"of a batch job running {st['n_per_run']} `srun true` steps in turn")
    lines.append("   step time: each srun timed inside the job (date +%s%N around it: srun start, "
                 "step RPCs, slurmd forks slurmstepd, which loads")
    lines.append("   the PrEp plugins from 24.05 on, `true`, step end); slurmstepd figures: "
                 "the max while a final `srun sleep 3` step runs")
    lines.append(f"   {'config':<40} {'step med':>9} {'mean':>8} {'p95':>8} {'step RSS':>9} "
                 f"{'anon':>7} {'thr':>4} {'batch RSS':>10} {'plugin':>7} {'Python':>7}")
    for key, label in (("a", "(a) no prep/python (prep/script default)"),
                       ("c", "(c) prep/python, no-op handler")):
        r = st[key]

        def kb(v):
            return "-" if v is None else f"{v / 1024:.1f} MB"
        lines.append(f"   {label:<40} {r['med_ms']:>6.1f} ms {r['mean_ms']:>5.1f} ms "
                     f"{r['p95_ms']:>5.1f} ms {kb(r['step_rss_kb']):>9} "
                     f"{kb(r['step_anon_kb']):>7} {r['step_threads'] or '-':>4} "
                     f"{kb(r['batch_rss_kb']):>10} "
                     f"{'mapped' if r['prep_python_mapped'] else 'no':>7} "
                     f"{'STARTED' if r['python_started'] else 'no':>7}")
    lines.append("   step median per run: " + "; ".join(
        f"({k}) " + ", ".join(f"{x:.1f}" for x in st[k]["med_ms_runs"]) for k in ("a", "c"))
        + " ms;  other processes' CPU per run: " + "; ".join(
        f"({k}) " + ", ".join(f"{x:.0%}" for x in st[k]["foreign_frac_runs"]) for k in ("a", "c")))
    a, c_ = st["a"], st["c"]
    lines.append(f"   (c) - (a): step time {c_['med_ms'] - a['med_ms']:+.1f} ms "
                 f"({c_['med_ms'] / a['med_ms']:.2f}x), step slurmstepd VmRSS "
                 f"{(c_['step_rss_kb'] - a['step_rss_kb']) / 1024:+.1f} MB")
    target(f"6{rel} slurmstepd never starts Python", "started" if c_["python_started"]
           else "not started", "not started", not c_["python_started"],
           "prep_python.so " + ("mapped" if c_["prep_python_mapped"] else "not mapped")
           + f"; VmRSS {(c_['step_rss_kb'] - a['step_rss_kb']) / 1024:+.1f} MB, "
           f"step time {c_['med_ms'] / a['med_ms']:.2f}x")
    lines.append("")


def clients_hdr(js: dict) -> str:
    return f"{js['clients']} parallel clients"


def report_jsubmit(lines: list, target, js: dict) -> None:
    lines.append(f"7. job_submit: {js['rounds']} round(s) of none, python, lua (the order rotating each round); "
                 f"{js['n_per_run']:,} `sbatch --hold` per run from {js['clients']} parallel "
                 "clients; policy in Python and in Lua: default")
    lines.append("   time limit, a refusal rule that never fires, a comment stamp (checked on "
                 "every job). submissions/s = jobs / wall time of the burst")
    lines.append("   (sbatch's own start-up, on the same 2 CPUs as slurmctld, is most of it).")
    if js.get("probe_error"):
        lines.append(f"   {js['probe_error']}")
    else:
        lines.append(f"   per-call cost: then {js['n_probe']:,} more submissions per run "
                     f"({js['clients']} clients) and {max(20, js['n_probe'] // 3)} one at a time, "
                     "with uprobes (perf probe) on the plugin's job_submit() entry and return,")
        lines.append("   inside the real slurmctld: wall time per call, paired per thread, "
                     "median per run, median of runs. The probes' own trap")
        lines.append("   cost (the floor) is job_submit_plugin_submit() timed with no plugin "
                     "(mode none); net = plugin - floor. The wrapper column")
        lines.append("   is job_submit_plugin_submit() itself: with parallel clients it includes "
                     "waiting for job_submit.c's g_context_lock.")
    lines.append(f"   {'':<10} {'':>8} {'':>13} {clients_hdr(js):^29}  {'one client at a time':^29}")
    lines.append(f"   {'JobSubmit':<10} {'subm/s':>8} {'ctld CPU/job':>13} "
                 f"{'wrapper':>9} {'plugin':>9} {'net':>9}  {'wrapper':>9} {'plugin':>9} {'net':>9}"
                 "   subm/s per run")

    def us(v):
        return "-" if v is None else f"{v:.1f} us"
    for mode in ("none", "python", "lua"):
        r = js[mode]
        cols = []
        for sfx in ("", "_1"):
            fl = js["none"].get("wrap" + sfx + "_med_us")
            pl = r.get("plugin" + sfx + "_med_us")
            cols += [r.get("wrap" + sfx + "_med_us"), pl,
                     None if pl is None or fl is None else pl - fl]
        lines.append(f"   {mode:<10} {r['per_s']:>8.1f} {r['ctld_cpu_ms_per_job']:>10.2f} ms "
                     + " ".join(f"{us(v):>9}" for v in cols[:3]) + "  "
                     + " ".join(f"{us(v):>9}" for v in cols[3:]) + "   "
                     + ", ".join(f"{x:.1f}" for x in r["per_s_runs"]))
    p = js["python"]
    if "py_split_med_us" in p and "plugin_split_med_us" in p:
        lines.append("   job_submit/python's time split (a separate pass, probes on job_submit() and "
                     f"spm_py_js_call(), {js['clients']} clients): on the worker (cffi entry,")
        lines.append(f"   Python side, handler) {p['py_split_med_us']:.1f} us of "
                     f"{p['plugin_split_med_us']:.1f} us; the rest (snapshot, hand-off to the "
                     f"worker and back, write-back, the inner probe's traps) "
                     f"~{p['plugin_split_med_us'] - p['py_split_med_us']:.1f} us "
                     "(medians subtracted: indicative)")
    lines.append("   other processes' CPU per run: " + "; ".join(
        f"{m} " + ", ".join(f"{x:.0%}" for x in js[m]["foreign_frac_runs"])
        for m in ("none", "python", "lua")))
    if js.get("warmup"):
        lines.append(f"   left out: a warm-up run before the rounds (none, "
                     f"{js['warmup']['per_s']:.1f} subm/s; the part's first cluster was often an outlier)")
    if js.get("round_ratios"):
        lines.append("   subm/s against none, round by round (the order rotates each round): python "
                     + ", ".join(f"{r['python']:.3f}" for r in js["round_ratios"]) + "; lua "
                     + ", ".join(f"{r['lua']:.3f}" for r in js["round_ratios"]))
    if js.get("host"):
        lines.append("   the plugin alone, in the C test host (no slurmctld, no sbatch; spm_host "
                     "bench_js, 2,000 calls each): job_submit() median")
        lines.append("   " + ", ".join(f"{v['med']:.1f} us (p10 {v['p10']:.1f}, p90 {v['p90']:.1f})"
                                       f" {'back to back' if g == '0' else g + ' us apart'}"
                                       for g, v in js["host"].items()))
    lines.append("   sbatch latency, start to exit (ms; median of the runs' percentiles): "
                 f"one at a time ({js['none']['lat_serial_n']} per run, nothing else "
                 f"submitting) and in the {js['clients']}-client burst")
    lines.append(f"   {'JobSubmit':<10} {'alone p50':>10} {'p99':>8}   {'burst p50':>10} {'p99':>8}")
    for mode in ("none", "python", "lua"):
        r = js[mode]
        lines.append(f"   {mode:<10} {r['lat_serial_ms']['p50']:>10.1f} "
                     f"{r['lat_serial_ms']['p99']:>8.1f}   {r['lat_burst_ms']['p50']:>10.1f} "
                     f"{r['lat_burst_ms']['p99']:>8.1f}")
    for q, name in (("p50", "7d"), ("p99", "7e")):
        py, lu = js["python"]["lat_serial_ms"][q], js["lua"]["lat_serial_ms"][q]
        target(f"{name} sbatch latency {q}, python <= 1.05 x lua", f"{py:.1f} vs {lu:.1f} ms",
               "1.05x", py <= T_JS_LAT_VS_LUA * lu,
               f"{py / lu:.3f}x; none {js['none']['lat_serial_ms'][q]:.1f} ms")
    ratio = js["python"]["per_s"] / js["none"]["per_s"]
    target("7a job_submit/python subm/s >= 0.95 x none", f"{ratio:.3f} x none", "0.95",
           ratio >= T_JS_THROUGHPUT,
           f"{ratio:.3f}; lua {js['lua']['per_s'] / js['none']['per_s']:.3f}")
    for sfx, name in (("", f"7b python per-call <= 2 x lua, {js['clients']} clients"),
                      ("_1", "7c python per-call <= 2 x lua, one client")):
        py = js["python"].get("plugin" + sfx + "_med_us")
        lu = js["lua"].get("plugin" + sfx + "_med_us")
        floor = js["none"].get("wrap" + sfx + "_med_us")
        if py is not None and lu is not None and floor is not None:
            pn, ln = py - floor, lu - floor
            r2 = pn / max(ln, 0.01)
            target(name, f"{pn:.1f} vs {ln:.1f} us", "2x", r2 <= T_JS_VS_LUA,
                   f"{r2:.2f}x net of probes; raw {py:.1f} vs {lu:.1f} us")
        else:
            target(name, "not measured", "2x", False, js.get("probe_error") or "no probe data")
    lines.append("")


# --------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------

def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def fmt_ns(ns) -> str:
    if ns is None:
        return "-"
    if abs(ns) < 1e6:
        return f"{ns / 1000:.2f} us"
    return f"{ns / 1e6:.2f} ms"


def report_cluster(lines: list, target, cl: dict, rel: str = "", release: str = "") -> None:
    """Parts 3 and 4 of one release (rel: a suffix for the section and target
    names; release: what ran, for the header)."""
    a, b, c_ = cl["a"], cl["b"], cl["c"]
    lines.append(f"3{rel}. Real cluster{release}: {cl['rounds']} round(s) of (a), (b), (c), interleaved, "
                 f"{cl['n_per_run']:,} `sbatch --wrap=true` jobs per run, 1 node with "
                 f"{cl['cpus']} CPUs")
    lines.append("   burst: jobs submitted with the partition DOWN, then set UP; jobs/s = jobs /"
                 " (last '_job_complete: JobId=N done' - first")
    lines.append("   allocation) in slurmctld's log; prolog latency: 'sched: Allocate' or "
                 "'_start_job: Started JobId=N' -> 'prolog_running_decr:")
    lines.append("   Configuration for JobId=N is complete' (log timestamps: 1 ms resolution)."
                 f"  isolated: {cl.get('iso_per_run', 0)} jobs per run, one every 1.1 s")
    lines.append(f"   {'config':<44} {'jobs/s':>7} {'burst med':>9} {'p95':>7} "
                 f"{'isol med':>9} {'p95':>6} {'mean':>8} {'RSS MB':>7} {'ctld CPU s/1k':>13}")

    def ms(v):
        return "-" if v is None else f"{v:.0f} ms"
    for key, label in (("a", "(a) no PrEp work (prep/script, no scripts)"),
                       ("b", "(b) prep/script, trivial sh scripts"),
                       ("c", "(c) prep/python, trivial handlers"),
                       ("d", "(d) control: C no-op async plugin (round 1)")):
        r = cl[key]
        lines.append(f"   {label:<44} {r['jobs_per_s']:>7.1f} {ms(r['lat_med_ms']):>9} "
                     f"{ms(r['lat_p95_ms']):>7} {ms(r.get('iso_med_ms')):>9} "
                     f"{ms(r.get('iso_p95_ms')):>6} "
                     f"{'-' if r.get('iso_mean_ms') is None else format(r['iso_mean_ms'], '.2f') + ' ms':>8} "
                     f"{r['rss_kb'] / 1024:>7.1f} "
                     f"{r['ctld_cpu_s_per_1k']:>13.2f}")
    lines.append("   jobs/s per run: " + "; ".join(
        f"({k}) " + ", ".join(f"{x:.1f}" for x in cl[k]["jobs_per_s_runs"])
        for k in ("a", "b", "c", "d")))
    lines.append("   other processes' CPU during each burst (share of the machine): " + "; ".join(
        f"({k}) " + ", ".join(f"{x:.0%}" for x in cl[k].get("foreign_frac_runs", []))
        for k in ("a", "b", "c", "d")))
    ratio = c_["jobs_per_s"] / a["jobs_per_s"]
    target(f"3a{rel} (c) jobs/s >= 0.95 x (a)", f"{ratio:.3f} x (a)", "0.95", ratio >= T_THROUGHPUT,
           f"{ratio:.3f}")
    bm, cm = b["lat_med_ms"], c_["lat_med_ms"]
    if bm is not None and cm is not None:
        lr = bm / max(cm, 1.0)
        target(f"3b{rel} (c) prolog median >= 20x shorter than (b), burst",
               f"{cm:.0f} vs {bm:.0f} ms", "20x", lr >= T_LATENCY_RATIO, f"{lr:.1f}x")
    bi, ci = b.get("iso_mean_ms"), c_.get("iso_mean_ms")
    if bi is not None and ci is not None:
        # Isolated latencies are near the log's 1 ms resolution, where a
        # median is mostly quantization.  The mean of the truncated
        # differences is unbiased (uniform sub-ms phase), so it decides.
        lr = bi / max(ci, 0.001)
        target(f"3c{rel} (c) prolog >= 20x shorter than (b), isolated (means)",
               f"{ci:.2f} vs {bi:.2f} ms", "20x", lr >= T_LATENCY_RATIO,
               f"{lr:.1f}x; medians {c_['iso_med_ms']:.0f} vs {b['iso_med_ms']:.0f} ms")
    lines.append("")
    d_mb = (c_["rss_kb"] - a["rss_kb"]) / 1024
    lines.append(f"4{rel}. slurmctld VmRSS after the burst (median of runs): (a) "
                 f"{a['rss_kb'] / 1024:.1f} MB, (b) {b['rss_kb'] / 1024:.1f} MB, "
                 f"(c) {c_['rss_kb'] / 1024:.1f} MB;")
    lines.append(f"   right after start: (a) {a['rss_idle_kb'] / 1024:.1f} MB, (b) "
                 f"{b['rss_idle_kb'] / 1024:.1f} MB, (c) {c_['rss_idle_kb'] / 1024:.1f} MB")
    target(f"4{rel} prep/python adds <= 25 MB RSS", f"+{d_mb:.1f} MB", "25 MB", d_mb <= T_RSS_MB,
           f"{d_mb / T_RSS_MB:.2f}x the budget")
    lines.append("")


def report(res: dict) -> tuple[str, list[dict]]:
    lines, targets = [], []

    def target(name, measured, goal, ok, ratio):
        targets.append({"target": name, "measured": measured, "goal": goal,
                        "status": verdict(ok), "ratio": ratio})

    m = res["meta"]
    lines.append(f"slurmpy_plugins bench  {m['started']}  ({m['mode']}, "
                 f"{m['cpus']} CPUs, {m['host']}, Slurm {m['slurm']}, Python {m['python']})")
    tr = m.get("tree", {})
    lines.append(f"git {m.get('git')}, csrc+slurmpy_plugins sha1 {tr.get('sources_sha1')}, "
                 f"plugins built {tr.get('plugins_built')}"
                 + ("  WARNING: csrc/ is newer than the built plugins (run make build)"
                    if tr.get("stale_build") else ""))
    busy = m.get("busy_before", {})
    if busy:
        lines.append("other processes on this shared machine (> 10% skews the figures): busy "
                     "before each part " + ", ".join(
                         f"{k} {v['busy']:.0%}" for k, v in busy.items()))
    fg = m.get("foreign_cpu", {})
    if fg:
        lines.append("   their CPU during the part: " + ", ".join(
            f"{k} {v['foreign_frac']:.0%}" + (f" ({v['top'][0][0]})" if v["top"] and
                                              v["foreign_frac"] > 0.05 else "")
            for k, v in fg.items()) + "; during the cluster runs: see part 3")
    if "jsubmit" in res:
        lines.append("job_submit per-call cost (7b): uprobes (perf probe) on each plugin's job_submit() "
                     "entry/return inside the real slurmctld, minus the")
        lines.append("   probes' own cost measured on job_submit_plugin_submit() with no plugin; "
                     "not inferred from throughput")
    r2 = res.get("release2")
    if r2:
        lines.append(f"parts marked ' ran on Slurm {r2['meta'].get('slurm', '?').split()[-1]} in "
                     f"{r2['meta'].get('where')} (bench/run.py run there, same checkout, "
                     f"Python {r2['meta'].get('python')}), right after the parts above")
    lines.append("")
    if "calls" in res:
        c = res["calls"]
        spawn = c["spawn_posix_spawn"]["ns"]
        fork = c["spawn_fork_exec"]["ns"]
        n = c["python_async"]["n"]
        reps = c["python_async"]["reps"]
        lines.append(f"1. Bridge cost per hook call (spm_host bench_call; {reps} runs x {n:,} "
                     "calls; figures are total/N per run, median of the runs)")
        w = c.get("python_async_win", {}).get("window") or 1000
        lines.append(f"   (all {n:,} in one bench_call: tens of thousands of async calls queue up; "
                     f"'<= {w:,} outstanding': {n // w:,} bench_calls of {w:,}, each waiting "
                     "for its callbacks)")
        lines.append("   call loop: wall/N of the host's loop (take job lock, call hook, drop "
                     "lock: what a slurmctld thread spends);")
        lines.append("   total/N: wall/N until every async callback has run too; CPU caller: "
                     "calling thread, net of the host's")
        lines.append("   record set-up (a mode=baseline run; +-0.7 us noise); CPU workers: all "
                     "other threads; spawn/x: posix_spawn / total")
        lines.append(f"   {'path':<48} {'call loop':>9} {'total/N':>9} {'CPU call':>9} "
                     f"{'CPU wrkr':>9} {'spawn/x':>8}")
        win = c.get("python_async_win", {}).get("window", 1000)
        rows = [
            ("python_async", "prep/python prolog_slurmctld, async (4 workers)"),
            ("python_async_w1", "prep/python prolog_slurmctld, async, workers=1"),
            ("c_handoff_async", "C no-op, async: queue + worker calls back"),
            ("c_direct_ctld", "C no-op, synchronous (*async=false)"),
            ("python_async_win", f"  same, <= {win:,} outstanding: prep/python"),
            ("python_async_w1_win", "    prep/python, workers=1"),
            ("c_handoff_async_win", "    C no-op, async hand-off"),
            ("python_sync", "prep/python slurmd prolog, sync (4 workers)"),
            ("python_sync_w1", "prep/python slurmd prolog, sync, workers=1"),
            ("c_handoff_sync", "C no-op slurmd prolog: hand off + wait"),
            ("c_direct_sync", "C no-op slurmd prolog: return 0"),
        ]
        for key, label in rows:
            if key not in c:
                continue
            r = c[key]
            tot = r["total_ns"]
            lines.append(f"   {label:<48} {fmt_ns(r['calls_ns']):>9} {fmt_ns(tot):>9} "
                         f"{fmt_ns(r['cpu_main_ns']):>9} {fmt_ns(r['cpu_other_ns']):>9} "
                         f"{spawn / tot:>7.0f}x")
        lines.append(f"   {'/bin/true: posix_spawn + waitpid (C)':<48} {'':>9} {fmt_ns(spawn):>9}")
        lines.append(f"   {'/bin/true: fork + execve + waitpid (C)':<48} {'':>9} {fmt_ns(fork):>9}")
        pa, ps = c["python_async"]["total_ns"], c["python_sync"]["total_ns"]
        # (no "prep/python minus the C hand-off" line: the C baseline sleeps
        # on a condvar while the sync path polls, so the difference is no cost)
        target("1a async call+callback <= 2 us", fmt_ns(pa), "2.00 us", pa <= T_CALL_NS,
               f"{pa / T_CALL_NS:.1f}x the budget")
        if "python_async_win" in c:
            pw = c["python_async_win"]["total_ns"]
            target(f"1a' same, <= {win:,} calls outstanding", fmt_ns(pw), "2.00 us",
                   pw <= T_CALL_NS, f"{pw / T_CALL_NS:.1f}x the budget")
        target("1b sync slurmd prolog <= 2 us", fmt_ns(ps), "2.00 us", ps <= T_CALL_NS,
               f"{ps / T_CALL_NS:.1f}x the budget")
        target("1c async >= 300x cheaper than spawn", f"{spawn / pa:.0f}x", "300x",
               spawn / pa >= T_SPAWN_RATIO, f"{spawn / pa:.0f}x")
        target("1d sync >= 300x cheaper than spawn", f"{spawn / ps:.0f}x", "300x",
               spawn / ps >= T_SPAWN_RATIO, f"{spawn / ps:.0f}x")
        lines.append("")
    if "update" in res:
        u = res["update"]
        sizes = u["sizes"]
        lines.append("2. site_factor update() (spm_host bench_update: snapshot + hand-off + Python + "
                     "copies asked for + apply; median of 3 runs, 2 at 1M; ms and us/job)")
        lines.append("   the 3-field handlers read account, num_cpus, submit_time of every job and "
                     "return a factor for each (bench/run.py SITE_FACTOR)")
        lines.append(f"   {'handler':<42}" + "".join(f"{n:>19,}" for n in sizes)
                     + f"{'peak RSS':>10}")
        base_kb = u["baseline"]["hwm_kb"]
        for cls in list(UPDATE_HANDLERS) + ["baseline"]:
            label = (UPDATE_HANDLERS[cls][0] if cls in UPDATE_HANDLERS
                     else "host C baseline loop (sets every factor)")
            r = u[cls]
            cells = "".join(f"{r['by_n'][n]['ms']:>9.1f} ms {r['by_n'][n]['us_per_job']:>4.2f} us"
                            for n in sizes)
            rss = (f"{r['hwm_kb'] / 1024:>7.0f} MB" if cls == "baseline"
                   else f"{(r['hwm_kb'] - base_kb) / 1024:>+7.0f} MB")
            lines.append(f"   {label:<42}{cells}{rss}")
        lines.append(f"   peak RSS: the host's VmHWM after the largest size ({sizes[-1]:,} jobs); "
                     "for handlers, what they add over the C baseline host (same synthetic "
                     "records)")
        for nn in sorted({n for n in sizes if n >= 100_000} or {max(sizes)}):
            lines.append(f"   at {nn:,} jobs, Python (worker CPU) / C (rest of wall), ms: " + "; ".join(
                f"{cls} {u[cls]['by_n'][nn]['py_ms']:.0f} / {u[cls]['by_n'][nn]['c_ms']:.0f}"
                for cls in UPDATE_HANDLERS))
        for cls, (label, goal) in UPDATE_HANDLERS.items():
            if goal is None:
                continue
            for n in sizes:
                g = goal * n / 100_000
                ms = u[cls]["by_n"][n]["ms"]
                scaled = "" if n == 100_000 else " (scaled per job)"
                target(f"2 update() {cls} at {n:,} <= {g:g} ms{scaled}", f"{ms:.1f} ms",
                       f"{g:g} ms", ms <= g, f"{ms / g:.2f}x the budget")
            if goal == T_UPDATE_MS and 100_000 in sizes:
                ms = u[cls]["by_n"][100_000]["ms"]
                target(f"2s update() {cls} at 100,000 <= 25 ms (stretch)", f"{ms:.1f} ms",
                       "25 ms", ms <= T_UPDATE_STRETCH_MS,
                       f"{ms / T_UPDATE_STRETCH_MS:.2f}x the budget")
        lines.append("")
    if "cluster" in res:
        report_cluster(lines, target, res["cluster"], "", f" (Slurm {m['slurm'].split()[-1]}, this machine)")
    r2 = res.get("release2")
    if r2 and "cluster" in r2:
        report_cluster(lines, target, r2["cluster"], "'", f" (Slurm {r2['meta']['slurm'].split()[-1]}, "
                       f"{r2['meta']['where']}, Python {r2['meta']['python']})")
    if "attrib" in res:
        a = res["attrib"]
        cc, py = a["c"], a["py"]

        def g(d, k, f="ns"):
            return d.get(k, {}).get(f)
        lines.append("5. Attribution: the pieces alone, one thread, best of several rounds "
                     "(bench/micro_snapshot.c, bench/micro_bridge.py)")
        lines.append(f"   C  spm_snapshot_job + unref, same thread {g(cc, 'snapshot_job'):>8.0f} ns"
                     f";  unref on another thread (as the shim does) {g(cc, 'snapshot_xthr'):.0f} ns")
        lazy = g(cc, 'pending_lazy_all', 'ms')
        lines.append(f"   C  spm_snapshot_pending, 100k jobs: first {g(cc, 'pending_cold', 'ms'):.1f} ms, "
                     f"again {g(cc, 'pending_warm', 'ms'):.1f} ms"
                     + (f", + every job's strings (lazy loads) {lazy:.1f} ms" if lazy else "")
                     + f"; a full copy into a touched buffer {g(cc, 'pending_noalloc', 'ms'):.1f} ms;")
        lines.append(f"      walking the 100k jobs reading 2 fields {g(cc, 'pending_walk', 'ms'):.1f} ms; "
                     f"freeing the batch arena {g(cc, 'pending_unref', 'ms'):.1f} ms")
        lines.append(f"   Py spm_py_prep body (no-op handler, no cffi entry/GIL) "
                     f"{g(py, 'spm_py_prep_body'):.0f} ns (before d4b1dfe: "
                     f"{g(py, 'spm_py_prep_body_before_d4b1dfe'):.0f} ns, of which Job()+arena "
                     f"ref/ffi.gc {g(py, 'Job(rec)+own'):.0f}, 'what' f-string "
                     f"{g(py, 'what_fstring'):.0f});")
        lines.append(f"      set_prefix {g(py, 'set_prefix'):.0f}, getattr+call "
                     f"{g(py, 'getattr+call'):.0f}, bare method call {g(py, 'noop_method_call'):.0f}, "
                     f"getrefcount check {g(py, 'getrefcount_check'):.0f} ns "
                     f"(ABI-mode cffi: a C call pair costs {g(py, 'abi_call_pair(ref+unref)'):.0f} ns "
                     "here, less in the shim)")
        lines.append(f"   Py update() over 100k records: {{j.job_id: 1 for j in jobs}} "
                     f"{g(py, 'update_all', 'ms'):.1f} ms; the bridge's checks + C arrays of "
                     f"the result {g(py, 'bridge_check+arrays', 'ms'):.1f} ms")
        lines.append("")
    if "steps" in res:
        report_steps(lines, target, res["steps"], "", f" (Slurm {m['slurm'].split()[-1]}, this machine)")
    r2 = res.get("release2")
    if r2 and "steps" in r2:
        report_steps(lines, target, r2["steps"], "'", f" (Slurm {r2['meta']['slurm'].split()[-1]}, "
                     f"{r2['meta']['where']})")
    if "jsubmit" in res:
        report_jsubmit(lines, target, res["jsubmit"])
    if "jobcomp" in res:
        report_jobcomp(lines, target, res["jobcomp"])
    if "spank" in res:
        report_spank(lines, target, res["spank"])
    if r2 and r2.get("error"):
        lines.append(f"Slurm 24.11 parts ({r2['meta'].get('where')}) FAILED: {r2['error']}")
        lines.append("")
    lines.append("Targets")
    for t in targets:
        lines.append(f"   {t['status']}  {t['target']:<58} {t['measured']:<20} "
                     f"({t['ratio']})")
    lines.append("")
    lines.append(f"runtime {res['meta']['runtime_s']:.0f} s")
    return "\n".join(lines) + "\n", targets


ALL_PARTS = "calls,update,attrib,cluster,steps,jsubmit,jobcomp,spank"


def where_am_i() -> str:
    """'Debian 13 (trixie) root' inside scripts/trixie-root.sh's root."""
    try:
        osr = dict(l.rstrip("\n").split("=", 1) for l in open("/etc/os-release") if "=" in l)
    except OSError:
        return "?"
    name = f"Debian {osr.get('VERSION_ID', '?').strip(chr(34))} ({osr.get('VERSION_CODENAME', '?')})"
    # scripts/trixie-root.sh leaves its stamps in the root's /var/lib/slurmpy
    return name + (" root" if os.path.exists("/var/lib/slurmpy/debootstrap") else "")


def run_in_trixie(args) -> dict:
    """Run bench/run.py --parts <trixie-parts> inside the Debian 13 root
    against its Slurm 24.11 daemons (same checkout, the root's own build/),
    and return its results; its progress goes to our stderr.  A failure
    there is reported, not fatal: the host's figures stand."""
    root = os.path.realpath(args.trixie_root)
    name = f"slurmpy-bench-release2-{os.getpid()}.json"
    inner = [f"SLURM_SRC={args.trixie_slurm_src}", args.trixie_python, str(HERE / "run.py"),
             "--parts", args.trixie_parts, "--json-out", f"/tmp/{name}",
             "--cpus", str(args.cpus), "--wait-quiet", str(args.wait_quiet)]
    for opt in ("jobs", "rounds", "steps"):
        v = getattr(args, opt)
        if v:
            inner += [f"--{opt}", str(v)]
    if args.quick:
        inner.append("--quick")
    cmd = [str(ROOT / "scripts" / "trixie-root.sh"), "-r", root, "run", "/usr/bin/env", *inner]
    log(f"release 2: {' '.join(cmd)}")
    out = pathlib.Path(root + "/tmp/" + name)
    cp = subprocess.run(cmd, stdout=subprocess.DEVNULL)
    try:
        if cp.returncode:
            return {"meta": {"where": f"the Debian 13 root {root}"},
                    "error": f"bench/run.py in the root exited {cp.returncode} (its log is above)"}
        r2 = json.loads(out.read_text())
    finally:
        out.unlink(missing_ok=True)
    r2["meta"]["where"] = f"{r2['meta']['where']} {root}"
    return r2


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="10k calls, 100 jobs")
    ap.add_argument("--parts", default=ALL_PARTS,
                    help=f"comma-separated subset of {ALL_PARTS}")
    ap.add_argument("--calls", type=int, help="calls per run (100000)")
    ap.add_argument("--reps", type=int, help="runs per measurement (3)")
    ap.add_argument("--jobs", type=int, help="sbatch jobs per cluster run (1000)")
    ap.add_argument("--rounds", type=int, help="rounds of (a),(b),(c) (3; 1 with --quick)")
    ap.add_argument("--update-jobs", type=int,
                    help="pending jobs for update() (default: 1k, 10k, 100k, 1M; --quick: no 1M)")
    ap.add_argument("--cpus", type=int, default=64, help="CPUs of the cluster's node")
    ap.add_argument("--wait-quiet", type=float, default=0, metavar="S",
                    help="before each part, wait up to S s for the machine to be idle")
    ap.add_argument("--steps", type=int, help="srun steps per steps run (100; 20 with --quick)")
    ap.add_argument("--js-jobs", type=int, help="sbatch per job_submit run (2000; 100 with --quick)")
    ap.add_argument("--js-probe", type=int,
                    help="traced sbatch per job_submit run for the per-call cost (300; 100)")
    ap.add_argument("--clients", type=int, default=8, help="parallel sbatch clients (job_submit)")
    ap.add_argument("--spank-steps", type=int,
                    help="srun steps per spank configuration (1000; 50 with --quick)")
    ap.add_argument("--jc-jobs", type=int, help="jobs per jobcomp run (500; 100 with --quick)")
    ap.add_argument("--jc-probe", type=int,
                    help="traced jobs per jobcomp run for the per-record cost (200; 50)")
    ap.add_argument("--trixie-root", metavar="DIR",
                    help="then run --trixie-parts against Slurm 24.11 inside this Debian 13 "
                    "root (scripts/trixie-root.sh; the plugins built there first: make bench "
                    "does both) and merge its figures into the report")
    ap.add_argument("--trixie-parts", default="cluster,steps",
                    help="parts run in the trixie root (cluster,steps)")
    ap.add_argument("--trixie-python", default=str(ROOT / ".venv" / "trixie" / "bin" / "python"),
                    help="the root's venv interpreter (the Makefile's TRIXIE_MAKE VENV)")
    ap.add_argument("--trixie-slurm-src", default="/usr/src/slurm-24.11.5",
                    help="the configured Slurm tree inside the root")
    ap.add_argument("--json-out", metavar="PATH",
                    help="write the results as JSON to PATH only (no report, no bench/results): "
                    "what --trixie-root runs inside the root")
    ap.add_argument("--no-save", action="store_true", help="do not write bench/results")
    args = ap.parse_args()
    q = args.quick
    calls = args.calls or (10_000 if q else 100_000)
    reps = args.reps or (3 if q else 3)
    jobs = args.jobs or (100 if q else 1000)
    rounds = args.rounds or (1 if q else 3)
    ujobs = args.update_jobs or (100_000)
    parts = set(args.parts.split(","))
    unknown = parts - set(ALL_PARTS.split(","))
    if unknown:
        sys.exit(f"bench: --parts: unknown part(s) {', '.join(sorted(unknown))} "
                 f"(known: {ALL_PARTS})")
    steps = args.steps or (20 if q else 100)
    js_jobs = args.js_jobs or (100 if q else 2000)
    js_probe = args.js_probe if args.js_probe is not None else (100 if q else 300)
    spank_steps = args.spank_steps or (50 if q else 1000)
    jc_jobs = args.jc_jobs or (100 if q else 500)
    jc_probe = args.jc_probe if args.jc_probe is not None else (50 if q else 200)

    if os.geteuid() != 0 and (parts & {"cluster", "steps", "jsubmit", "jobcomp", "spank"}
                              or args.trixie_root):
        sys.exit("bench: the cluster, steps, jsubmit, jobcomp and spank parts run "
                 "slurmctld/slurmd and need root")
    for p in (PREP_SO, SF_SO, *([PLUGINS / "jobcomp_python.so"] if "jobcomp" in parts else [])):
        if not p.exists():
            sys.exit(f"bench: {p} missing: run `make build` first")

    t_begin = time.monotonic()
    started = dt.datetime.now().astimezone()
    res: dict = {"meta": {
        "started": started.isoformat(timespec="seconds"),
        "mode": "quick" if q else "full", "cpus": os.cpu_count(),
        "host": platform.node(), "kernel": platform.release(),
        "python": platform.python_version(),
        "slurm": subprocess.run(["slurmctld", "-V"], capture_output=True,
                                text=True).stdout.strip(),
        # the Debian 13 root has no git: the host's report names the commit
        "git": (subprocess.run(["git", "-C", str(ROOT), "describe", "--always", "--dirty"],
                               capture_output=True, text=True).stdout.strip()
                if shutil.which("git") else None),
        "tree": tree_state(),
        "params": {"calls": calls, "reps": reps, "jobs": jobs, "rounds": rounds,
                   "update_jobs": ujobs, "node_cpus": args.cpus, "steps": steps,
                   "js_jobs": js_jobs, "js_probe": js_probe, "clients": args.clients,
                   "jc_jobs": jc_jobs, "jc_probe": jc_probe, "spank_steps": spank_steps},
    }}
    tools = build_tools(parts)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="slurmpy-bench."))
    os.chmod(tmp, 0o755)
    try:
        fg = res["meta"]["foreign_cpu"] = {}
        if "calls" in parts:
            quiet_check("calls", args.wait_quiet, res)
            with ForeignCPU() as f:
                res["calls"] = part_calls(tools, tmp, calls, reps, 500 if q else 2000)
            fg["calls"] = f.result()
        if "update" in parts:
            quiet_check("update", args.wait_quiet, res)
            with ForeignCPU() as f:
                sizes = UPDATE_SIZES if not args.update_jobs else (args.update_jobs,)
                res["update"] = part_update(tmp, sizes[:3] if q else sizes, 3)
            fg["update"] = f.result()
        if "attrib" in parts:
            quiet_check("attrib", args.wait_quiet, res)
            with ForeignCPU() as f:
                res["attrib"] = part_attrib(tools, q)
            fg["attrib"] = f.result()
        if "cluster" in parts:
            quiet_check("cluster", args.wait_quiet, res)
            res["cluster"] = part_cluster(jobs, rounds, args.cpus, tmp, 5 if q else 12)
        if "steps" in parts:
            quiet_check("steps", args.wait_quiet, res)
            res["steps"] = part_steps(steps, 1 if q else 3, tmp)
        if "jsubmit" in parts:
            quiet_check("jsubmit", args.wait_quiet, res)
            res["jsubmit"] = part_jsubmit(js_jobs, js_probe, 1 if q else 5, args.clients, tmp,
                                          n_serial=30 if q else 200)
        if "jobcomp" in parts:
            quiet_check("jobcomp", args.wait_quiet, res)
            res["jobcomp"] = part_jobcomp(jc_jobs, jc_probe, 2 if q else 4,
                                          500 if q else 2000, tmp)
        if "spank" in parts:
            quiet_check("spank", args.wait_quiet, res)
            res["spank"] = part_spank(spank_steps, 1)
        if args.trixie_root:
            res["release2"] = run_in_trixie(args)
    finally:
        if os.environ.get("BENCH_KEEP") != "1":
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            log(f"kept {tmp}")
    res["meta"]["runtime_s"] = time.monotonic() - t_begin
    if args.json_out:
        res["meta"]["where"] = where_am_i()
        tmpf = args.json_out + ".tmp"
        with open(tmpf, "w") as f:
            json.dump(res, f, indent=1, default=str)
        os.replace(tmpf, args.json_out)
        return 0
    text, targets = report(res)
    res["targets"] = targets
    print(text, end="")
    if not args.no_save:
        RESULTS.mkdir(exist_ok=True)
        stamp = started.strftime("%Y%m%dT%H%M%S")
        for name in ("latest", stamp):
            for ext, data in (("txt", text), ("json", json.dumps(res, indent=1, default=str) + "\n")):
                p = RESULTS / f"{name}.{ext}"
                tmpf = RESULTS / f"{name}.{ext}.tmp"
                tmpf.write_text(data)
                os.replace(tmpf, p)
        log(f"wrote {RESULTS}/latest.txt, latest.json, {stamp}.*")
    return 0


if __name__ == "__main__":
    sys.exit(main())
