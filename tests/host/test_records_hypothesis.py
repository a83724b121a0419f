"""Bad records: hypothesis feeds the snapshot code (csrc/snapshot.c) and the
record views (slurmpy_plugins/_records.py) synthetic job records and slurmd
job environments with NULL strings, invalid UTF-8, empty and very long
strings, huge environment arrays and extreme numbers, and checks that the
handler sees exactly what the host passed in.

Each test starts ONE host and runs every example through it (starting a
host per example would cost ~50 ms each); handlers dump what they saw as
JSON.  HYPOTHESIS_EXAMPLES scales the example counts (default 1.0).
"""
from __future__ import annotations

import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .conftest import (ENV_FIELDS, ENV_INTS, ENV_STRS, JOB_FIELDS, JOB_INTS,
                       JOB_STRS, JOB_TIMES, NICE_OFFSET, WAIT_FAILED,
                       compare_record, expected_job, expected_jobenv)

SCALE = float(os.environ.get("HYPOTHESIS_EXAMPLES", "1"))


def examples(n):
    return max(1, int(n * SCALE))


def hyp_settings(n):
    return settings(max_examples=examples(n), deadline=None,
                    suppress_health_check=list(HealthCheck),
                    derandomize=False, print_blob=True)


# ---------------------------------------------------------------------------
# strategies
# ---------------------------------------------------------------------------

def uint(bits):
    top = 2**bits - 1
    return st.one_of(
        st.sampled_from([0, 1, top, top - 1, 2**(bits - 1),
                         2**(bits - 1) - 1]),
        st.integers(0, top))


time_t = st.one_of(st.sampled_from([0, -1, 1, -(2**63), 2**63 - 1,
                                    2**31 - 1, -(2**31)]),
                   st.integers(-(2**63), 2**63 - 1))

# Strings as the C side holds them: bytes without NUL.  Valid UTF-8
# (incl. non-ASCII), arbitrary bytes (mostly invalid UTF-8), empty,
# NULL, and now and then very long.
_text = st.text(st.characters(blacklist_characters="\x00",
                              blacklist_categories=("Cs",)), max_size=40)
_raw = st.binary(max_size=40).map(lambda b: b.replace(b"\x00", b"\x01"))
_long = st.builds(lambda unit, n: unit * n,
                  st.sampled_from([b"a", "é".encode(), b"\xff", b"\xed\xa0\x80",
                                   "🚀".encode(), b"=", b"\xc3"]),
                  st.integers(1000, 60000))
c_string = st.one_of(st.none(), st.just(b""), _text.map(str.encode), _raw,
                     _long)
c_elem = st.one_of(_text.map(str.encode), _raw,
                   st.builds(lambda k, v: k + b"=" + v, _raw, _raw))
_huge_env = st.integers(1000, 20000).map(
    lambda n: [b"K%d=%s" % (i, b"v\xff" * (i % 3)) for i in range(n)])
env_array = st.one_of(st.none(), st.just([]),
                      st.lists(c_elem, max_size=30), _huge_env)

_states = st.one_of(uint(32), st.integers(0, 12).flatmap(
    lambda base: st.sets(st.sampled_from([1 << b for b in range(8, 24)]))
    .map(lambda fl: base | sum(fl))))


def job_fields(job_id):
    opt = {k: uint(bits) for k, bits in JOB_INTS.items() if k != "job_id"}
    opt["job_state"] = _states
    opt.update({k: time_t for k in JOB_TIMES})
    opt.update({k: c_string for k in JOB_STRS})
    opt["spank_job_env"] = env_array
    return st.fixed_dictionaries({"job_id": st.just(job_id)}, optional=opt)


def env_fields():
    opt = {k: uint(bits) for k, bits in ENV_INTS.items()}
    opt.update({k: c_string for k in ENV_STRS})
    opt["spank_job_env"] = env_array
    opt["gres_job_env"] = env_array
    return st.fixed_dictionaries({}, optional=opt)


def pending(fields):
    """Keep the job pending (for update()'s batch of pending jobs)."""
    f = dict(fields)
    f["job_state"] = f.get("job_state", 0) & ~0xFF
    return f


# ---------------------------------------------------------------------------
# handlers
# ---------------------------------------------------------------------------

SF_HANDLER = """\
import spmtest_rec as R
from slurmpy_plugins import SiteFactorHandler

class H(SiteFactorHandler):
    def set(self, job):
        R.dump("{out}/set.json", R.plain(job))
        c = job.comment
        if c is not None and c.startswith("factor="):
            return int(c[len("factor="):])
        return None

    def update(self, jobs):
        R.dump("{out}/update.json", [R.plain(j) for j in jobs])
        return {j.job_id: j.job_id * 7 - 1000 for j in jobs}
"""

PREP_HANDLER = """\
import spmtest_rec as R
from slurmpy_plugins import PrEpHandler

class H(PrEpHandler):
    def prolog(self, env):
        R.dump("{out}/prolog.json", R.plain(env))

    def prolog_slurmctld(self, job):
        R.dump("{out}/ctld.%d.json" % job.job_id, R.plain(job))
        if job.comment == "fail":
            raise RuntimeError("asked to fail")
"""


def sf_host(make_host, handlers, daemon="slurmctld"):
    handlers.write("sf", SF_HANDLER)
    h = make_host("sf", daemon, timeout=120)
    h.conf(site_factor_params=handlers.params("sf:H", timeout=60))
    h.load()
    return h


def _take(handlers, name):
    p = handlers.out / name
    data = handlers.read(name, timeout=1)
    p.unlink()
    return data


# ---------------------------------------------------------------------------
# tests
# ---------------------------------------------------------------------------

def test_job_records_through_set(make_host, handlers):
    h = sf_host(make_host, handlers)
    counter = iter(range(1, 10**9))

    @hyp_settings(300)
    @given(data=st.data())
    def run(data):
        f = data.draw(job_fields(next(counter)))
        res = h.site_set(**f)
        seen = _take(handlers, "set.json")
        compare_record(seen, expected_job(f), JOB_FIELDS)
        # set() returned None (comments never start with "factor=" here,
        # or if they do the factor is checked below): factor unchanged
        if not (seen["comment"] or "").startswith("factor="):
            assert res["site_factor"] == f.get("site_factor", NICE_OFFSET)

    run()
    assert "internal error" not in h.log()
    assert h.ping() == {}


def test_set_factor_clamping(make_host, handlers):
    h = sf_host(make_host, handlers)
    counter = iter(range(1, 10**9))

    @hyp_settings(200)
    @given(v=st.one_of(st.integers(-(2**31), 2**31 - 1),
                       st.integers(-(2**100), 2**100),
                       st.sampled_from([2**31, -(2**31) - 1, 2**63,
                                        -(2**63) - 1, 2**64])),
           before=uint(32))
    def run(v, before):
        j = next(counter)
        res = h.site_set(job_id=j, comment="factor=%d" % v,
                         site_factor=before)
        _take(handlers, "set.json")
        want = min(max(v, -(2**31)), 2**31 - 1) + NICE_OFFSET
        assert res["before"] == before and res["site_factor"] == want

    run()


def test_pending_batches_through_update(make_host, handlers):
    h = sf_host(make_host, handlers)
    counter = iter(range(1, 10**9))

    @hyp_settings(80)
    @given(data=st.data(), n=st.integers(0, 12))
    def run(data, n):
        h.jobs_clear()
        jobs = []
        for _ in range(n):
            f = data.draw(job_fields(next(counter)))
            if data.draw(st.booleans()):
                f = pending(f)
            jobs.append(f)
            h.jobs_add(**f)
        got = h.site_update()
        want_pending = [f for f in jobs if f.get("job_state", 0) & 0xFF == 0]
        seen = _take(handlers, "update.json")
        assert [s["job_id"] for s in seen] == \
            [f["job_id"] for f in want_pending]
        for s, f in zip(seen, want_pending):
            compare_record(s, expected_job(f), JOB_FIELDS)
        for f in jobs:
            j = f["job_id"]
            if f in want_pending:
                assert got[j] == j * 7 - 1000 + NICE_OFFSET
            else:
                assert got[j] == f.get("site_factor", NICE_OFFSET)

    run()


def test_job_env_records_through_slurmd_prolog(make_host, handlers):
    handlers.write("hh", PREP_HANDLER)
    h = make_host("prep", "slurmd", timeout=120)
    h.conf(prep_params=handlers.params("hh:H", timeout=60))
    h.load()

    @hyp_settings(300)
    @given(f=env_fields())
    def run(f):
        res = h.prolog(**f)
        assert res["rc"] == 0
        seen = _take(handlers, "prolog.json")
        compare_record(seen, expected_jobenv(f), ENV_FIELDS)

    run()


def test_job_records_through_async_prolog_slurmctld(make_host, handlers):
    handlers.write("hh", PREP_HANDLER)
    h = make_host("prep", timeout=120)
    h.conf(prep_params=handlers.params("hh:H", timeout=60, workers=4))
    h.load()
    h.callbacks()
    counter = iter(range(1, 10**9))

    @hyp_settings(120)
    @given(data=st.data(), k=st.integers(1, 4))
    def run(data, k):
        # a few jobs in flight at once
        batch = [data.draw(job_fields(next(counter))) for _ in range(k)]
        n0 = len(h.callback_events)
        for f in batch:
            res = h.prolog_slurmctld(**f)
            assert res["rc"] == 0 and res["async"] == 1
        cbs = {c["job_id"]: c for c in h.wait_callbacks(n0 + k,
                                                          timeout=60)[n0:]}
        assert sorted(cbs) == [f["job_id"] for f in batch]
        for f in batch:
            j = f["job_id"]
            fail = expected_job(f)["comment"] == "fail"
            assert cbs[j]["rc"] == (WAIT_FAILED if fail else 0)
            assert cbs[j]["thread"] == "other" and cbs[j]["expected"] == 1
            seen = _take(handlers, "ctld.%d.json" % j)
            compare_record(seen, expected_job(f), JOB_FIELDS)

    run()
    st_ = h.stats()
    assert st_["pending"] == 0 and st_["unexpected"] == 0
