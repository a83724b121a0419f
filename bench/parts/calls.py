"""Part 1: bridge cost per hook call, through tests/host/spm_host: prep_python.so
with a no-op handler vs bench/noop_prep.c vs starting /bin/true."""
from __future__ import annotations

import os
import pathlib
import subprocess

from tests.harness.hostdriver import Host

from .common import NOOP_PREP, PREP_SO, _cpu_split, handler_dir, log, med, thread_cpu


def timed_calls(host: Host, hook: str, n: int, reps: int, window: int = 0) -> dict:
    """reps x call_many(hook, n).  Per run: wall ns/call in the hook (the
    host's loop around the call: the time a slurmctld thread spends in it,
    under the job lock), wall total/N (including the wait for the async
    callbacks), CPU ns/call of the calling (main) thread net of the host's
    own record set-up (a mode=baseline run of the same size), and CPU
    ns/call of every other thread (workers, callbacks).

    window > 0: the n calls go as n/window call_many requests of `window` calls
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
            r = host.call_many(hook, size, mode=mode, timeout=300)
            if not r.get("waited") or (r["async"] and r["callbacks"] < r["async"]):
                raise RuntimeError(f"call_many {hook}: callbacks missing: {r}")
            us_calls += r["us_calls"]
            us_total += r["us_total"]
            asyncs += r["async"]
        return us_calls, us_total, asyncs

    host.call_many(hook, min(size, 2000), timeout=120)          # warm up
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
                  reps: int, window: int = 0, stats_dir: str | None = None) -> dict:
    """stats_dir: the daemon's StateSaveLocation (slurmctld) or SlurmdSpoolDir
    (slurmd), where it publishes its stats file; None: no stats file (no
    such directory), as in the other rows."""
    with Host(so, daemon=daemon, debug=3, timeout=120) as h:
        h.conf(prep_params=params)
        if stats_dir and daemon == "slurmctld":
            h.conf(state_save_location=stats_dir)
        elif stats_dir:
            h.slurmd_conf(spooldir=stats_dir)
        h.load()
        if daemon == "slurmctld":
            h.callbacks()
        h.required()      # prep/python boots Python here, as in slurmctld
        res = timed_calls(h, hook, n, reps, window)
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
    # Publishing stats (slurmpy-plugins stats) must not slow a hook: the
    # same calls with and without the daemon's stats file, alternating one
    # run each so that the machine's drift falls on both alike.
    for hook, daemon in (("prolog_slurmctld", "slurmctld"), ("prolog", "slurmd")):
        pair: dict[str, list[dict]] = {"off": [], "on": []}
        for r in range(reps):
            for mode in ("off", "on") if r % 2 == 0 else ("on", "off"):
                sdir = tmp / f"stats-{daemon}-{r}" if mode == "on" else None
                if sdir is not None:
                    sdir.mkdir(mode=0o755, exist_ok=True)
                log(f"calls: stats {mode}, {hook}, run {r + 1} of {reps} ({n:,})")
                one = run_host_prep(str(PREP_SO), daemon, py, hook, n, 1,
                                    stats_dir=str(sdir) if sdir else None)
                if sdir is not None and not list((sdir / "slurmpy-stats").glob(f"{daemon}.*")):
                    raise RuntimeError(f"calls: stats on, but no stats file under {sdir}")
                pair[mode].append(one)
        out[f"stats_{daemon}"] = {
            "hook": hook, "n": n, "reps": reps,
            "off_ns": med([x["total_ns"] for x in pair["off"]]),
            "on_ns": med([x["total_ns"] for x in pair["on"]]),
            "off_runs": [x["total_ns"] for x in pair["off"]],
            "on_runs": [x["total_ns"] for x in pair["on"]]}
    log(f"calls: /bin/true x {n_spawn:,} (posix_spawn, fork+execve)")
    cp = subprocess.run([tools["spawn"], str(n_spawn)], check=True,
                        capture_output=True, text=True)
    for line in cp.stdout.splitlines():
        parts = line.split()
        kv = dict(p.split("=", 1) for p in parts[1:])
        out["spawn_" + parts[0]] = {"n": int(kv["n"]), "ns": int(kv["ns_per_call"])}
    return out
