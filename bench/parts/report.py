"""The report of a bench/run.py run: every part's lines and PASS/MISS
targets, from the results dict the parts returned."""
from __future__ import annotations


from .common import (T_CALL_NS, T_SPAWN_RATIO, T_STATS_RATIO, T_UPDATE_MS, T_UPDATE_STRETCH_MS,
                     UPDATE_HANDLERS, fmt_ns, verdict)
from .cluster import report_cluster
from .steps import report_steps
from .jsubmit import report_jsubmit
from .jobcomp import report_jobcomp
from .spank import report_spank


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
        lines.append(f"1. Bridge cost per hook call (spm_host call_many; {reps} runs x {n:,} "
                     "calls; figures are total/N per run, median of the runs)")
        w = c.get("python_async_win", {}).get("window") or 1000
        lines.append(f"   (all {n:,} in one call_many: tens of thousands of async calls queue up; "
                     f"'<= {w:,} outstanding': {n // w:,} call_many requests of {w:,}, each waiting "
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
        for daemon, letter in (("slurmctld", "e"), ("slurmd", "f")):
            st = c.get(f"stats_{daemon}")
            if not st:
                continue
            ratio = st["on_ns"] / st["off_ns"]
            lines.append(f"   stats file published ({daemon}, {st['hook']}, {st['reps']} "
                         f"alternating runs each): total/N {fmt_ns(st['on_ns'])} with, "
                         f"{fmt_ns(st['off_ns'])} without ({ratio:.3f}x; runs with: "
                         f"{', '.join(fmt_ns(x) for x in st['on_runs'])}; without: "
                         f"{', '.join(fmt_ns(x) for x in st['off_runs'])})")
            target(f"1{letter} stats publishing, {daemon}: <= {T_STATS_RATIO}x without",
                   f"{ratio:.3f}x", f"{T_STATS_RATIO}x", ratio <= T_STATS_RATIO, f"{ratio:.3f}x")
        lines.append("")
    if "update" in res:
        u = res["update"]
        sizes = u["sizes"]
        lines.append("2. site_factor update() (spm_host update_many: snapshot + hand-off + Python + "
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
