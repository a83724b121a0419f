"""`slurmpy-plugins stats [SLURM_CONF] [--json | --openmetrics]`: what the
plugins did in each slurmctld and slurmd of this host, read from the files
those daemons map (csrc/stats.c; layout spm_stats_file_t of spm_types.h,
read here through the same header with cffi), without talking to them.

slurm.conf is found as the Slurm commands find it ($SLURM_CONF, else
/etc/slurm/slurm.conf); the files are under StateSaveLocation (slurmctld)
and SlurmdSpoolDir (slurmd, its %n/%h matching any node) in
slurmpy-stats/<daemon>.<host>.<pid>.  Files of another host are left out;
those of a daemon no longer running (its pid gone, or reused by another
process) are reported as stale and their numbers not shown.

spank/python's figures are the node's, not one process's: every root
process of the node running its hooks (slurmstepd, slurmd) adds into
<SlurmdSpoolDir>/slurmpy-stats/spank.<host>.shared, shown as the daemon
"spank" (pid 0) with the figures since the file was made.  Hooks run in
srun, sbatch and salloc, and task_init of a non-root user's job (run as
that user), are not counted (see docs/admin.md).

Percentiles come from the histogram: each is the upper bound of its
bucket (a quarter of a power of two wide), capped at the maximum, so at
most 25% above the true value.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import socket
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from . import _abi, _chain, _slurmconf

__all__ = ["DaemonStats", "collect", "main", "openmetrics", "percentile"]

ffi, lib = _abi.ffi, _abi.lib
SUB, BUCKETS = int(lib.SPM_STATS_SUB), int(lib.SPM_STATS_BUCKETS)
DAEMONS = {int(lib.SPM_DAEMON_SLURMCTLD): "slurmctld", int(lib.SPM_DAEMON_SLURMD): "slurmd"}
COUNTERS = ("calls", "ok", "refused", "failed", "timeouts", "written_off")
JOBCOMP = ("spooled", "dropped", "delivered", "retried", "backlog_bytes", "head_failures",
           "head_failing_since")
SPANK_NOTE = ("spank/python: counted in this node's root processes only (slurmstepd, "
              "its job_prolog/job_epilog, slurmd's slurmd_exit); hooks run in srun, sbatch "
              "and salloc, and task_init of a non-root user's job (it runs as that user), "
              "are not counted")


def _s(c: Any) -> str:
    return str(ffi.string(c).decode("utf-8", "replace"))


PLUGIN = {int(lib.spm_plugins[i].ctx): _s(lib.spm_plugins[i].name)
          for i in range(int(lib.SPM_CTX_COUNT))}
HOOK = {int(lib.spm_hooks[i].hook): (int(lib.spm_hooks[i].ctx), _s(lib.spm_hooks[i].name))
        for i in range(int(lib.SPM_HOOK_COUNT))}


def bucket_upper_us(b: int) -> int:
    """The largest latency (us) bucket b holds (see spm_types.h)."""
    e, s = divmod(b, SUB)
    if e < 2:      # one value of us + 1 each: (SUB + s) << e >> 2
        return ((SUB + s) << e) // SUB - 1
    return ((SUB + s + 1) << e) // SUB - 2


def percentile(buckets: list[int], max_us: int, q: float) -> int | None:
    total = sum(buckets)
    if not total:
        return None
    rank = max(1, -(-int(q * total * 1000) // 1000))   # ceil(q * total)
    seen = 0
    for b, n in enumerate(buckets):
        seen += n
        if seen >= rank:
            return min(max(bucket_upper_us(b), 0), max_us)
    return max_us


@dataclass
class HookStats:
    plugin: str
    hook: str
    calls: int
    ok: int
    refused: int
    failed: int
    timeouts: int
    written_off: int
    p50_us: int | None
    p99_us: int | None
    max_us: int
    last_error: dict[str, Any] | None
    buckets: list[int] = field(repr=False, default_factory=list)


@dataclass
class DaemonStats:
    daemon: str
    pid: int
    host: str
    path: str
    state: str                       # "running", "stale", "unreadable"
    why: str | None = None
    started: int | None = None
    release: str | None = None
    plugins: dict[str, dict[str, int]] = field(default_factory=dict)  # loads, reloads
    hooks: list[HookStats] = field(default_factory=list)
    jobcomp: dict[str, int] | None = None    # jobcomp/python's spool (JOBCOMP)
    # handlers=<dir>: per plugin, {"directory": ..., "files": {name: figures}}
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _proc_start(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except OSError:
        return None
    return int(text[text.rindex(")") + 2:].split()[19])


def _read(path: str) -> bytes:
    """The file's bytes, with no hook's error record caught mid-write."""
    size = ffi.sizeof("spm_stats_file_t")
    for _ in range(20):
        with open(path, "rb") as f:
            data = f.read(size + 1)
        if len(data) < ffi.sizeof("spm_stats_file_t"):
            return data
        m = ffi.cast("spm_stats_file_t *", ffi.from_buffer(data))
        if all(not (m.errors[i].seq & 1) for i in range(int(lib.SPM_HOOK_COUNT))):
            return data
        time.sleep(0.001)
    return data


def read_file(path: str) -> DaemonStats:
    base = os.path.basename(path)
    name, _, rest = base.partition(".")
    host, _, pid_s = rest.rpartition(".")
    out = DaemonStats(name, int(pid_s) if pid_s.isdigit() else 0, host, path, "unreadable")
    try:
        data = _read(path)
    except OSError as e:
        out.why = f"cannot read: {e.strerror}"
        return out
    if len(data) < 16:
        out.why = "too short"
        return out
    head = ffi.cast("spm_stats_file_t *", ffi.from_buffer(data))
    if head.magic != lib.SPM_STATS_MAGIC:
        out.why = "not a stats file (or not initialised yet)"
        return out
    if head.version != lib.SPM_STATS_VERSION or head.size != ffi.sizeof("spm_stats_file_t") \
            or len(data) != head.size:
        out.why = (f"layout version {head.version} (size {head.size}); this slurmpy-plugins "
                   f"reads version {lib.SPM_STATS_VERSION}: run the CLI of the installed release")
        return out
    m = head
    out.pid, out.host = int(m.pid), _s(m.host)
    out.daemon = DAEMONS.get(int(m.daemon), out.daemon)
    out.started, out.release = int(m.started), _s(m.release)
    shared = out.pid == 0 and int(m.daemon) == int(lib.SPM_DAEMON_SLURMSTEPD)
    if shared:     # spank/python: the node's root processes, one file
        out.daemon = "spank"
        out.notes.append(SPANK_NOTE)
    start = None if shared else _proc_start(out.pid)
    if not shared and (start is None or (m.proc_start and start != int(m.proc_start))):
        out.state = "stale"
        out.why = f"pid {out.pid} is not running (the file of an earlier {out.daemon})"
        return out
    out.state = "running"
    hooks_seen = set()
    for h in range(int(m.hook_count)):
        st, err = m.hooks[h], m.errors[h]
        ctx, hname = HOOK[h]
        if not st.calls and not st.written_off and not err.time:
            continue
        hooks_seen.add(ctx)
        buckets = [int(st.buckets[i]) for i in range(BUCKETS)]
        last = None
        if err.time:
            last = {"where": _s(err.where) or None, "text": _s(err.text),
                    "time": int(err.time)}
        counts = {c: int(getattr(st, c)) for c in COUNTERS}
        out.hooks.append(HookStats(
            plugin=PLUGIN[ctx], hook=hname, **counts,
            p50_us=percentile(buckets, int(st.max_us), 0.5),
            p99_us=percentile(buckets, int(st.max_us), 0.99),
            max_us=int(st.max_us), last_error=last, buckets=buckets))
    for c in range(int(m.ctx_count)):
        if (m.loads[c] or m.reloads[c] or c in hooks_seen) and not shared:
            out.plugins[PLUGIN[c]] = {"loads": int(m.loads[c]), "reloads": int(m.reloads[c])}
    if not shared:
        _read_files(out)
    jc = {k: int(getattr(m.jobcomp, k)) for k in JOBCOMP}
    if "jobcomp/python" in out.plugins or any(jc.values()):   # records spool before the boot
        out.jobcomp = jc
    return out


def _read_files(out: DaemonStats) -> None:
    """The per-file figures a handlers= set publishes beside the daemon's
    file (_chain.publish): out.files, or a note naming a file unreadable."""
    for p in sorted(glob.glob(glob.escape(out.path + _chain.FILES_SUFFIX) + "*")):
        if p.endswith(".tmp"):
            continue
        try:
            with open(p, "rb") as f:
                data = json.loads(f.read())
            out.files[str(data["plugin"])] = {"directory": str(data["directory"]),
                                              "files": dict(data["files"])}
        except (OSError, ValueError, KeyError, TypeError) as e:
            out.notes.append(f"{p}: unreadable ({type(e).__name__}: {e})")


def _glob_dir(d: str) -> str:
    return d.replace("%n", "*").replace("%h", "*")


def _this_host() -> str:
    return socket.gethostname().split(".")[0].replace("/", "_")


def collect(conf_path: str) -> list[DaemonStats]:
    conf = _slurmconf.read(conf_path)
    dirs = [conf.get("StateSaveLocation", "/var/spool/slurmctld"),
            conf.get("SlurmdSpoolDir", "/var/spool/slurmd")]
    host = _this_host()
    paths: set[str] = set()
    for d in dirs:
        assert d is not None
        for sd in glob.glob(glob.escape(_glob_dir(d)).replace(r"[*]", "*")):
            paths.update(glob.glob(os.path.join(glob.escape(sd), "slurmpy-stats", "*")))
    found = []
    for p in sorted(paths):
        base = os.path.basename(p)
        if base.count(".") < 2 or base.rpartition(".")[0].partition(".")[2] != host:
            continue   # another host's daemon (a shared StateSaveLocation)
        found.append(read_file(p))
    return found


def _ms(us: int | None) -> str:
    return "-" if us is None else f"{us / 1000:.3f}"


def table(stats: list[DaemonStats]) -> str:
    lines = []
    for d in stats:
        head = f"{d.daemon} pid {d.pid} ({d.path})"
        if d.state != "running":
            lines.append(f"{head}: {d.state}: {d.why}")
            continue
        lines.append(f"{head}: Slurm {d.release}, up since "
                     f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(d.started or 0))}")
        if d.daemon == "spank":
            lines[-1] = (f"spank/python in this node's root processes ({d.path}): Slurm "
                         f"{d.release}, counting since "
                         f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(d.started or 0))}")
        for plugin, n in d.plugins.items():
            lines.append(f"  {plugin}: {n['loads']} load(s), {n['reloads']} reload(s)")
        if d.jobcomp is not None:
            j = d.jobcomp
            line = (f"  jobcomp/python spool: {j['spooled']} spooled, {j['delivered']} delivered, "
                    f"{j['retried']} failed attempt(s) retried, {j['dropped']} dropped, "
                    f"{j['backlog_bytes']} byte(s) undelivered")
            if j["head_failures"]:
                since = time.strftime("%Y-%m-%d %H:%M:%S",
                                      time.localtime(j["head_failing_since"]))
                line += (f"; delivery held back by a record failing {j['head_failures']} "
                         f"time(s) since {since}")
            lines.append(line)
        lines.extend(f"  note: {n}" for n in d.notes)
        if not d.hooks:
            lines.append("  no calls yet")
            continue
        cols = ("hook", "calls", "ok", "refused", "failed", "timeouts", "written_off",
                "p50_ms", "p99_ms", "max_ms")
        rows = [cols] + [(f"{h.plugin} {h.hook}", *(str(getattr(h, c)) for c in COUNTERS),
                          _ms(h.p50_us), _ms(h.p99_us), _ms(h.max_us)) for h in d.hooks]
        widths = [max(len(r[i]) for r in rows) for i in range(len(cols))]
        for r in rows:
            lines.append("  " + "  ".join(v.ljust(w) if i == 0 else v.rjust(w)
                                          for i, (v, w) in enumerate(zip(r, widths))))
        for plugin, fs in d.files.items():
            lines.append(f"  {plugin} handlers from {fs['directory']}, per file:")
            for name, f in fs["files"].items():
                for hook, n in f["hooks"].items():
                    mean = n["total_us"] / n["calls"] / 1000 if n["calls"] else 0.0
                    refused = f", {n['refusals']} refused" if n.get("refusals") else ""
                    lines.append(f"    {name} {hook}: {n['calls']} call(s), {n['failures']} "
                                 f"failed{refused}, mean {mean:.3f} ms, max "
                                 f"{n['max_us'] / 1000:.3f} ms")
                if f.get("last_error"):
                    lines.append(f"    {name} last error: {f['last_error']}")
        for h in d.hooks:
            if h.last_error:
                e = h.last_error
                when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e["time"]))
                lines.append(f"  last error of {h.plugin} {h.hook} at {when}: "
                             f"{e['where'] + ': ' if e['where'] else ''}{e['text']}")
    return "\n".join(lines) if lines else "no slurmctld or slurmd of this host runs slurmpy plugins"


def to_json(stats: list[DaemonStats]) -> str:
    out = []
    for d in stats:
        j = asdict(d)
        for h in j["hooks"]:
            del h["buckets"]
        out.append(j)
    return json.dumps({"daemons": out}, indent=2)


def _esc(v: str) -> str:
    return v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(**kv: Any) -> str:
    return "{" + ",".join(f'{k}="{_esc(str(v))}"' for k, v in kv.items()) + "}"


def openmetrics(stats: list[DaemonStats]) -> str:
    """The Prometheus/OpenMetrics text exposition format, ending in # EOF."""
    running = [d for d in stats if d.state == "running"]
    out: list[str] = []

    def family(name: str, typ: str, help_: str, samples: list[str]) -> None:
        out.append(f"# TYPE {name} {typ}")
        out.append(f"# HELP {name} {help_}")
        out.extend(samples)

    family("slurmpy_daemon_info", "gauge",
           "A daemon of this host running slurmpy plugins (stale: its file outlived it; "
           "daemon spank, pid 0: spank/python in the node's root processes).",
           [f"slurmpy_daemon_info{_labels(daemon=d.daemon, pid=d.pid, state=d.state)} 1"
            for d in stats])
    helps = {"calls": "Hook calls answered.", "ok": "Calls the handler answered successfully.",
             "refused": "Calls the handler refused on purpose (job_submit Reject).",
             "failed": "Calls that failed: raised, wrong return value, no handler, no worker.",
             "timeouts": "Calls whose time limit passed first.",
             "written_off": "Worker threads written off, stuck past a call's time limit."}
    for c in COUNTERS:
        family(f"slurmpy_hook_{c}", "counter", helps[c],
               [f"slurmpy_hook_{c}_total"
                f"{_labels(daemon=d.daemon, pid=d.pid, plugin=h.plugin, hook=h.hook)} "
                f"{getattr(h, c)}" for d in running for h in d.hooks])
    samples = []
    for d in running:
        for h in d.hooks:
            lab = dict(daemon=d.daemon, pid=d.pid, plugin=h.plugin, hook=h.hook)
            cum = 0
            last = max((i for i, n in enumerate(h.buckets) if n), default=-1)
            for b in range(last + 1):
                cum += h.buckets[b]
                if b + 1 < len(h.buckets) and h.buckets[b] == 0 and cum == 0:
                    continue
                le = (bucket_upper_us(b) + 1) / 1e6
                samples.append(f"slurmpy_hook_latency_seconds_bucket{_labels(**lab, le=repr(le))} {cum}")
            samples.append(f"slurmpy_hook_latency_seconds_bucket{_labels(**lab, le='+Inf')} "
                           f"{sum(h.buckets)}")
            samples.append(f"slurmpy_hook_latency_seconds_count{_labels(**lab)} {sum(h.buckets)}")
    family("slurmpy_hook_latency_seconds", "histogram",
           "Time from a hook's call to its answer (log-scale buckets, 4 per power of two).",
           samples)
    family("slurmpy_hook_latency_max_seconds", "gauge", "The slowest call so far.",
           [f"slurmpy_hook_latency_max_seconds"
            f"{_labels(daemon=d.daemon, pid=d.pid, plugin=h.plugin, hook=h.hook)} "
            f"{h.max_us / 1e6}" for d in running for h in d.hooks])
    family("slurmpy_hook_last_error_timestamp_seconds", "gauge",
           "When the hook last failed (its text: slurmpy-plugins stats).",
           [f"slurmpy_hook_last_error_timestamp_seconds"
            f"{_labels(daemon=d.daemon, pid=d.pid, plugin=h.plugin, hook=h.hook)} "
            f"{h.last_error['time']}" for d in running for h in d.hooks if h.last_error])
    jc = [d for d in running if d.jobcomp is not None]
    for key, typ, help_ in (
            ("spooled", "counter", "Completion records appended to the spool."),
            ("dropped", "counter", "Completion records dropped (spool full, unwritable): lost."),
            ("delivered", "counter", "Completion records the handler took."),
            ("retried", "counter", "Failed delivery attempts (each is retried)."),
            ("backlog_bytes", "gauge", "Bytes of spooled records not yet delivered."),
            ("head_failures", "gauge",
             "Failed attempts of the record delivery is held back on (0: none)."),
            ("head_failing_since", "gauge",
             "When that record first failed (Unix time; 0: none failing).")):
        name = f"slurmpy_jobcomp_{key}" + ("_timestamp_seconds" if key.endswith("since") else "")
        family(name, typ, help_,
               [f"{name}{'_total' if typ == 'counter' else ''}"
                f"{_labels(daemon=d.daemon, pid=d.pid)} {d.jobcomp[key]}"  # type: ignore[index]
                for d in jc])
    per_file = [(d, plugin, name, hook, n) for d in running
                for plugin, fs in d.files.items() for name, f in fs["files"].items()
                for hook, n in f["hooks"].items()]
    for key, typ, help_ in (
            ("calls", "counter", "Calls of one handlers= file's hook."),
            ("failures", "counter", "Those that raised (or answered wrongly)."),
            ("refusals", "counter", "Those that refused (job_submit's Reject)."),
            ("total_us", "counter", "Time in that file's hook, microseconds."),
            ("max_us", "gauge", "That file's slowest call of the hook, microseconds.")):
        name = f"slurmpy_handler_file_{key}"
        family(name, typ, help_,
               [f"{name}{'_total' if typ == 'counter' else ''}"
                f"{_labels(daemon=d.daemon, pid=d.pid, plugin=p, file=fn, hook=h)} {n.get(key, 0)}"
                for d, p, fn, h, n in per_file])
    for key, help_ in (("loads", "Handler loads (boot, reconfigure)."),
                       ("reloads", "Changed handlers taken (reload=).")):
        family(f"slurmpy_plugin_{key}", "counter", help_,
               [f"slurmpy_plugin_{key}_total{_labels(daemon=d.daemon, pid=d.pid, plugin=p)} {n[key]}"
                for d in running for p, n in d.plugins.items()])
    out.append("# EOF")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="slurmpy-plugins stats", description=__doc__.split("\n\n")[0])
    ap.add_argument("slurm_conf", nargs="?", default=None,
                    help="slurm.conf (default: $SLURM_CONF, else /etc/slurm/slurm.conf)")
    fmt = ap.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="JSON")
    fmt.add_argument("--openmetrics", action="store_true",
                     help="the Prometheus text format (node_exporter's textfile collector)")
    args = ap.parse_args(argv)
    path = args.slurm_conf or _slurmconf.default_path()
    try:
        stats = collect(path)
    except _slurmconf.SlurmConfError as e:
        print(f"slurmpy-plugins stats: {e}", file=sys.stderr)
        return 2
    sys.stdout.write(to_json(stats) + "\n" if args.json else
                     openmetrics(stats) if args.openmetrics else table(stats) + "\n")
    return 0
