"""Parts 3 and 4: a real slurmctld+slurmd: sbatch throughput and prolog latency
with no PrEp work, prep/script, prep/python (and a C control), and
slurmctld's VmRSS."""
from __future__ import annotations

import concurrent.futures
import datetime as dt
import os
import pathlib
import re
import shutil
import statistics
import time

from .common import (BUILD, CTLD_PREP, ForeignCPU, PLUGINS, TRIVIAL_SCRIPT, T_LATENCY_RATIO,
                     T_RSS_MB, T_THROUGHPUT, children, handler_dir, log, med, pct, proc_cpu_s,
                     proc_status)


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
