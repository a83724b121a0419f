"""Part 8: jobcomp: jobs/s and slurmctld CPU per job with jobcomp/python against
jobcomp/none, a record's cost from uprobes, the hook in the C host and the
deliverer's records/s (bench/jobcomp.py)."""
from __future__ import annotations

import pathlib
import subprocess

from .common import ForeignCPU, SLURM_LIBDIR, Uprobes, _probes_ready, log, med


T_JC_THROUGHPUT = 0.95    # jobcomp/python jobs/s >= 0.95 x jobcomp/none


def part_jobcomp(n: int, n_probe: int, rounds: int, n_host: int, tmp: pathlib.Path) -> dict:
    from bench import jobcomp as jcb   # bench/jobcomp.py: the hook, deliverer and cluster runs
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
