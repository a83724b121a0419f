"""Attribution micro-benchmark for bench/NOTES.md: the Python side of one
prep hook call, in this (venv) interpreter on one thread, with no pool, no
GIL hand-off and no cffi callback entry.

It replays what slurmpy_plugins/_bridge.py's spm_py_prep() does for a
no-op handler (a copy of its body as of commit d4b1dfe, and of the body
before that commit, for comparison: keep the copy in step with _bridge.py),
step by step, with the real modules (_records, _log,
_bridge.Context) and a real C record: an spm_job_t in a real arena from
build/plugins/slurmpy/libslurmpy.so (loaded with cffi in ABI mode, only its
plain C arena functions are called).  It also times update()'s Python side
for the two bench handlers over a JobList of N records.

    .venv/bin/python bench/micro_bridge.py [N_CALLS=200000] [N_JOBS=100000]

Prints one "name ns=..." (or "ms=...") line per step.  C calls here go
through cffi's ABI mode (libffi), slower than the embedded module's direct
calls: abi_call_pair shows what two of them cost, to subtract.
"""
from __future__ import annotations

import pathlib
import sys
import time

import cffi

ROOT = pathlib.Path(__file__).resolve().parent.parent

from slurmpy_plugins import PrEpHandler, _context, _factors, _log, _records  # noqa: E402


def per_call(fn, n: int, repeat: int = 7) -> float:
    """Best of `repeat` rounds of n/repeat calls (timeit's rule: the
    minimum is the figure least disturbed by other processes)."""
    fn()
    k = max(1, n // repeat)
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter_ns()
        for _ in range(k):
            fn()
        best = min(best, (time.perf_counter_ns() - t0) / k)
    return best


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    n_jobs = int(sys.argv[2]) if len(sys.argv) > 2 else 100_000
    ffi = cffi.FFI()
    ffi.cdef((ROOT / "csrc" / "spm_types.h").read_text())
    ffi.cdef("spm_arena_t *spm_arena_new(size_t first_chunk);"
             "void *spm_arena_alloc(spm_arena_t *arena, size_t size);")
    # libslurmpy.so refers to Slurm's symbols (slurm_conf, log_var...),
    # which the daemon provides: libslurmfull.so stands in for it here
    import ctypes
    ctypes.CDLL("/usr/lib/x86_64-linux-gnu/slurm-wlm/libslurmfull.so", mode=ctypes.RTLD_GLOBAL)
    lib = ffi.dlopen(str(ROOT / "build" / "plugins" / "slurmpy" / "libslurmpy.so"))
    _records.install(ffi, lib)
    _factors.install(lib)
    _context.install(ffi, lib)
    PREP = lib.SPM_CTX_PREP
    PREFIX = _context.PREFIX
    HOOKS = _context.HOOKS[PREP]

    arena = lib.spm_arena_new(4096)
    job = ffi.cast("spm_job_t *", lib.spm_arena_alloc(arena, ffi.sizeof("spm_job_t")))
    job.job_id = 1234567

    class Handler(PrEpHandler):
        def prolog_slurmctld(self, job):
            pass

    class Cfg:          # what Context.maybe_reload() reads
        reload = 2.0
    ctx = _context.Context(PREP)
    ctx.cfg = Cfg()
    ctx.next_check = time.monotonic() + 3600
    ctx.loaded = type("L", (), {"instance": Handler()})()
    h = ctx.loaded.instance
    name = "prolog_slurmctld"

    def own():
        lib.spm_arena_ref(arena)
        return ffi.gc(arena, lib.spm_arena_unref)

    def full():
        # spm_py_prep's body for a no-op handler, success path, as of
        # d4b1dfe: no arena ref/ffi.gc unless the record escaped, no log
        # strings unless something failed
        _log.set_prefix(PREFIX[PREP])
        c = ctx
        nm = HOOKS[lib.SPM_HOOK_PROLOG_SLURMCTLD]
        loaded = c.loaded
        if loaded is None:
            return 2
        rec = _records.Job(job, None)
        method = getattr(loaded.instance, nm)
        try:
            result = method(rec)
        except BaseException:
            return 2
        if sys.getrefcount(rec) > 3:       # _bridge._keep_if_escaped
            rec._owner = own()
        if result is not None:
            return 2
        return 1

    def full_before():
        # the same body before d4b1dfe: arena ref + ffi.gc and the log
        # string on every call
        _log.set_prefix(PREFIX[PREP])
        c = ctx
        nm = HOOKS[lib.SPM_HOOK_PROLOG_SLURMCTLD]
        rec = _records.Job(job, own())
        what = f"{nm} for JobId={rec.job_id}"
        if c.loaded is None:
            return 2
        hh = c.loaded.instance
        del what
        method = getattr(hh, nm)
        try:
            result = method(rec)
        except BaseException:
            return 2
        if result is not None:
            return 2
        return 1

    steps = {
        "noop_method_call": lambda: h.prolog_slurmctld(None),
        "set_prefix": lambda: _log.set_prefix("prep/python"),
        "abi_call_pair(ref+unref)": lambda: (lib.spm_arena_ref(arena), lib.spm_arena_unref(arena)),
        "own_arena(ref+ffi.gc+unref)": own,
        "Job(rec)+own": lambda: _records.Job(job, own()),
        "job_id_attr": (lambda r: (lambda: r.job_id))(_records.Job(job, None)),
        "what_fstring": (lambda r: (lambda: f"{name} for JobId={r.job_id}"))(
            _records.Job(job, None)),
        "getattr+call": lambda: getattr(h, name)(None),
        "getrefcount_check": (lambda r: (lambda: sys.getrefcount(r) > 3))(
            _records.Job(job, None)),
        "spm_py_prep_body": full,
        "spm_py_prep_body_before_d4b1dfe": full_before,
    }
    for k, fn in steps.items():
        print(f"{k} ns={per_call(fn, n):.0f}")

    # update(): JobList over n_jobs zeroed records (job ids set)
    big = lib.spm_arena_new(n_jobs * ffi.sizeof("spm_job_t") + 4096)
    arr = ffi.cast("spm_job_t *", lib.spm_arena_alloc(big, n_jobs * ffi.sizeof("spm_job_t")))
    for i in range(n_jobs):
        arr[i].job_id = 1000000 + i
    # Job views over C rows (an update() JobList now reads per-field
    # columns copied from slurmctld's records, which needs the daemon)
    jobs = [_records.Job(arr + i, None) for i in range(n_jobs)]
    import array
    for label, fn in (("update_empty", lambda: {}),
                      ("update_all", lambda: {j.job_id: 1 for j in jobs}),
                      ("update_all+to_arrays", lambda: (lambda r: (
                          array.array("I", r.keys()), array.array("q", r.values())))(
                          {j.job_id: 1 for j in jobs})),
                      # what the bridge does with the returned dict: its
                      # checks (if this version has them) and the C arrays
                      ("bridge_check+arrays", (lambda r: lambda: _factors.check_update(r, n_jobs))(
                          {1000000 + i: 1 for i in range(n_jobs)}))):
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter_ns()
            fn()
            best = min(best, (time.perf_counter_ns() - t0) / 1e6)
        print(f"{label} n={n_jobs} ms={best:.2f}")


if __name__ == "__main__":
    main()
