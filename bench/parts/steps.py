"""Part 6: job steps: time per `srun true` step and the step's slurmstepd VmRSS,
with and without prep/python in PrEpPlugins."""
from __future__ import annotations

import os
import pathlib
import re
import shutil
import statistics
import time

from .common import ForeignCPU, NOOP_PREP, PLUGINS, handler_dir, log, med, pct, proc_status


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
