"""Part 9: spank: `srun true` step time and slurmstepd peak RSS with no SPANK
plugin, a C plugin, spank/python with a user_init hook and with no hook
in slurmstepd (bench/spank.py)."""
from __future__ import annotations


from .common import ForeignCPU, PLUGINS, log, slurm_src


T_SPANK_VS_C = 1.2        # spank/python step with a user_init hook <= 1.2 x the C plugin's
T_SPANK_NO_HOOK = 1.02    # spank/python step with no hook there <= 1.02 x no plugin


def part_spank(steps: int, rounds: int) -> dict:
    from bench import spank as spb     # bench/spank.py
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
