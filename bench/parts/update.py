"""Part 2: site_factor update() over pending jobs via the host's update_many,
against the host's C baseline loop."""
from __future__ import annotations

import pathlib

from tests.harness.hostdriver import Host

from .common import (SF_SO, SITE_FACTOR, UPDATE_HANDLERS, _cpu_split, handler_dir, log, med,
                     proc_status, thread_cpu)


# --------------------------------------------------------------------------
# part 2: site_factor update()
# --------------------------------------------------------------------------

def part_update(tmp: pathlib.Path, sizes: tuple, reps: int) -> dict:
    """Each handler in its own host: update_many at every size (reps runs
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
            h.update_many(1000, mode=mode)                 # boot + warm up
            per = {}
            for n in sizes:
                k = reps if n < 1_000_000 else min(reps, 2)
                log(f"update: {cls} ({k} x {n:,} pending jobs)")
                runs = []
                for _ in range(k):
                    c0 = thread_cpu(h.proc.pid)
                    r = h.update_many(n, mode=mode, timeout=600)
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
