"""One site_factor handler, every way of reading the batch and of answering
(issue 12): per-job Job views (iterated and indexed), declared-field rows,
columns (lists, dictionary-encoded strings, numpy without copying), and
answers as {job_id: factor}, a list aligned with the batch (None: leave the
job as it is) or an integer buffer.  Driven through the C host (the real
snapshot, bridge and apply code), with hypothesis drawing the jobs; the
oracle is the factor computed here from the fields the host was given.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from .conftest import NICE_OFFSET, expected_job
from .test_records_hypothesis import (hyp_settings, job_fields, pending,
                                      time_t, uint)

# numpy is optional (never a dependency): the numpy path runs when the
# daemon's Python can import it, from this venv if it exists
# (/usr/bin/python3 -m venv DIR && DIR/bin/pip install numpy), made with
# the Python the plugin embeds (the one running these tests).
NUMPY_VENV = os.environ.get("SLURMPY_NUMPY_VENV", "/var/tmp/slurmpy-numpy-venv")

FIELDS = ("account", "num_cpus", "submit_time", "name", "nice", "user_name",
          "bit_flags")

SOURCE = '''\
import array
import spmtest_rec as R
from slurmpy_plugins import SiteFactorHandler

FIELDS = {fields!r}


def factor(account, num_cpus, submit_time, name, nice, user_name, bit_flags):
    if num_cpus % 5 == 0:
        return None                      # leave this job as it is
    return (len(account or "") * 7 + num_cpus + submit_time // 3600
            + len(name or "") + nice + len(user_name or "") + bit_flags % 1000)


def seen(path, rows):
    R.dump("{{out}}/seen.json", [path] + [list(r) for r in rows])


class PerJob(SiteFactorHandler):
    def update(self, jobs):
        rows = [[getattr(j, f) for f in FIELDS] + [j.job_id] for j in jobs]
        seen("PerJob", rows)
        out = {{}}
        for r in rows:
            v = factor(*r[:-1])
            if v is not None:
                out[r[-1]] = v
        return out


class PerJobIndex(SiteFactorHandler):
    def update(self, jobs):
        rows = [[getattr(jobs[i], f) for f in FIELDS] + [jobs[i].job_id]
                for i in range(len(jobs))]
        seen("PerJobIndex", rows)
        return [factor(*r[:-1]) for r in rows]


class Declared(SiteFactorHandler):
    fields = FIELDS

    def update(self, jobs):
        assert jobs.fields == ("job_id",) + FIELDS
        rows = [[getattr(j, f) for f in FIELDS] + [j.job_id] for j in jobs]
        seen("Declared", rows)
        return {{r[-1]: factor(*r[:-1]) for r in rows
                if factor(*r[:-1]) is not None}}


class DeclaredAligned(SiteFactorHandler):
    fields = FIELDS

    def update(self, jobs):
        rows = [[getattr(j, f) for f in FIELDS] + [j.job_id] for j in jobs]
        seen("DeclaredAligned", rows)
        return [factor(*r[:-1]) for r in rows]


class Columns(SiteFactorHandler):
    def update(self, jobs):
        cols = [list(jobs.column(f)) for f in FIELDS + ("job_id",)]
        seen("Columns", zip(*cols))
        return list(map(factor, *cols[:-1]))


class Categories(SiteFactorHandler):
    """Strings dictionary-encoded, the answer an array.array of int64 by
    index; jobs to leave alone get their current factor back."""
    def update(self, jobs):
        cols = []
        for f in FIELDS + ("job_id",):
            if f in ("account", "name"):
                codes, values = jobs.categories(f)
                cols.append([values[c] for c in codes])
            else:
                c = jobs.column(f)   # numbers: a memoryview; user_name: a list
                cols.append(c.tolist() if isinstance(c, memoryview) else c)
        seen("Categories", zip(*cols))
        cur = jobs.column("site_factor")
        out = array.array("q", (cur[i] if v is None else max(-2**63, min(v, 2**63 - 1))
                                for i, v in enumerate(map(factor, *cols[:-1]))))
        return out


class Numpy(SiteFactorHandler):
    def update(self, jobs):
        try:
            import numpy as np
        except ImportError:
            R.dump("{{out}}/seen.json", ["no numpy"])
            return None
        num = {{f: np.frombuffer(jobs.column(f), dtype=jobs.column(f).format)
               for f in FIELDS + ("job_id",) if f not in ("account", "name", "user_name")}}
        for f in num:   # no copy: the arrays read the batch's C memory
            assert not num[f].flags.owndata
        cols = [num[f].tolist() if f in num else jobs.column(f)
                for f in FIELDS + ("job_id",)]
        seen("Numpy", zip(*cols))
        keep = np.frombuffer(jobs.column("site_factor"), dtype=np.int64)
        vals = [factor(*r) for r in zip(*cols[:-1])]
        big = [k if v is None else max(-2**63, min(v, 2**63 - 1))
               for v, k in zip(vals, keep.tolist())]
        return np.array(big, dtype=np.int64)
'''

PATHS = ("PerJob", "PerJobIndex", "Declared", "DeclaredAligned", "Columns",
         "Categories", "Numpy")


def oracle_factor(e):
    if e["num_cpus"] % 5 == 0:
        return None
    return (len(e["account"] or "") * 7 + e["num_cpus"] + e["submit_time"] // 3600
            + len(e["name"] or "") + e["nice"] + len(e["user_name"] or "")
            + e["bit_flags"] % 1000)


def clamp(v):
    return min(max(v, -(2**31)), 2**31 - 1)


def _numpy_venv() -> None:
    """Make NUMPY_VENV (numpy from PyPI, for the Python the plugin embeds)
    unless it exists; if pip cannot, the numpy path is skipped (and says
    so): numpy is never a dependency of the project."""
    site = os.path.join(NUMPY_VENV, "lib", "python%d.%d" % sys.version_info[:2],
                        "site-packages")
    if os.path.isdir(os.path.join(site, "numpy")):
        return
    base = getattr(sys, "_base_executable", None) or sys.executable
    try:
        subprocess.run([base, "-m", "venv", "--clear", NUMPY_VENV], check=True,
                       capture_output=True, timeout=120)
        subprocess.run([os.path.join(NUMPY_VENV, "bin", "pip"), "install", "-q",
                        "--disable-pip-version-check", "numpy"], check=True,
                       capture_output=True, timeout=300)
    except (OSError, subprocess.SubprocessError):
        shutil.rmtree(NUMPY_VENV, ignore_errors=True)


def test_every_access_path_gives_the_same_factors(make_host, handlers):
    _numpy_venv()
    handlers.write("paths", SOURCE.format(fields=FIELDS))
    hosts = {}
    for p in PATHS:
        h = make_host("sf", timeout=120)
        keys = {"timeout": 60}
        if p == "Numpy" and os.path.isdir(os.path.join(
                NUMPY_VENV, "lib", "python%d.%d" % sys.version_info[:2], "site-packages")):
            keys["venv"] = NUMPY_VENV
        h.conf(site_factor_params=handlers.params("paths:%s" % p, **keys))
        h.load()
        hosts[p] = h
    counter = iter(range(1, 10**9))
    no_numpy = []

    # strings that stress the dictionary encoding: few distinct values,
    # duplicates, NULL, empty, invalid UTF-8
    shared = st.sampled_from([None, b"", b"acct1", b"acct2", b"\xff\xfe", "é".encode()])

    @hyp_settings(40)
    @given(data=st.data(), n=st.integers(0, 15))
    def run(data, n):
        batch = []
        for _ in range(n):
            f = pending(data.draw(job_fields(next(counter))))
            for k in ("account", "name"):
                if data.draw(st.booleans()):
                    f[k] = data.draw(shared)
            f["total_cpus"] = data.draw(uint(32))
            f["submit_time"] = data.draw(time_t)
            batch.append(f)
        want = {}
        for f in batch:
            e = expected_job(f)
            e.setdefault("submit_time", 0)
            v = oracle_factor(e)
            want[f["job_id"]] = (clamp(v) + NICE_OFFSET if v is not None
                                 else f.get("site_factor", NICE_OFFSET))
        rows_want = []
        for f in batch:
            e = expected_job(f)
            e.setdefault("submit_time", 0)
            rows_want.append([e[k] for k in FIELDS] + [f["job_id"]])
        for p, h in hosts.items():
            h.jobs_clear()
            for f in batch:
                h.jobs_add(**f)
            got = h.site_update()
            try:
                seen = handlers.read("seen.json", timeout=5)
            except AssertionError:
                raise AssertionError(f"{p}: {h.log()[-3000:]}") from None
            (handlers.out / "seen.json").unlink()
            if seen == ["no numpy"]:
                no_numpy.append(p)
                continue
            assert seen[0] == p
            assert seen[1:] == rows_want, p
            assert got == want, p
            assert "error" not in h.log().lower(), p

    run()
    if no_numpy:
        pytest.skip("numpy is not importable in the host's Python (no venv for Python "
                    "%d.%d at %s): the numpy path was not run (every other path was)"
                    % (*sys.version_info[:2], NUMPY_VENV))



@pytest.mark.parametrize("fields,message", [
    ('("account", "num_cpu")', "paths_bad:H.fields: 'num_cpu' is not a Job field "
                               "(did you mean 'num_cpus'?)"),
    ('("spank_env",)', "paths_bad:H.fields: 'spank_env' cannot be a column (a dict per job)"),
    ('"account"', "paths_bad:H.fields: must be a tuple of Job field names, not str"),
])
def test_a_bad_declared_field_fails_the_load_naming_it(make_host, handlers, fields,
                                                       message):
    handlers.write("paths_bad", "from slurmpy_plugins import SiteFactorHandler\n"
                   "class H(SiteFactorHandler):\n"
                   f"    fields = {fields}\n"
                   "    def update(self, jobs):\n"
                   "        return {}\n")
    h = make_host("sf")
    h.conf(site_factor_params=handlers.params("paths_bad:H"))
    h.load()
    h.jobs_add(job_id=5, job_state="PENDING", site_factor=77)
    assert h.site_update() == {5: 77}
    log = h.log()
    assert "handler not loaded: %s/paths_bad.py: %s" % (handlers.path, message) in log


def test_declared_rows_refuse_undeclared_fields(make_host, handlers):
    handlers.write("paths_rows", """\
        import spmtest_rec as R
        from slurmpy_plugins import SiteFactorHandler
        class H(SiteFactorHandler):
            fields = ("num_cpus", "job_state")
            def update(self, jobs):
                j = jobs[0]
                out = {"repr": repr(j), "state": j.state, "fields": list(jobs.fields)}
                for name in ("account", "acount"):
                    try:
                        getattr(j, name)
                    except AttributeError as e:
                        out[name] = str(e)
                R.dump("{out}/rows.json", out)
                return [j.num_cpus for j in jobs]
        """)
    h = make_host("sf")
    h.conf(site_factor_params=handlers.params("paths_rows:H"))
    h.load()
    h.jobs_add(job_id=5, job_state="PENDING", total_cpus=3)
    assert h.site_update() == {5: NICE_OFFSET + 3}
    got = handlers.read("rows.json")
    assert got == {
        "repr": "<Job job_id=5 num_cpus=3 job_state=0>", "state": "PENDING",
        "fields": ["job_id", "num_cpus", "job_state"],
        "account": "JobId=5: 'account' is not among the fields the handler declared "
                   "(job_id, num_cpus, job_state): add it to the handler's `fields`",
        "acount": "'acount' is not a Job field (did you mean 'account'?)"}


def test_check_reports_a_bad_declared_field_like_the_daemon(make_host, handlers, tmp_path):
    from tests.python.test_check import run_check, slurm_conf
    handlers.write("paths_chk", "from slurmpy_plugins import SiteFactorHandler\n"
                   "class H(SiteFactorHandler):\n"
                   "    fields = ('acount',)\n"
                   "    def update(self, jobs):\n"
                   "        return {}\n")
    params = handlers.params("paths_chk:H")
    h = make_host("sf")
    h.conf(site_factor_params=params)
    h.load()
    h.site_update()
    conf = slurm_conf(tmp_path, ["PriorityType=priority/multifactor",
                                 "PrioritySiteFactorPlugin=site_factor/python",
                                 f"PrioritySiteFactorParameters={params}"])
    cp = run_check(str(conf), "--json")
    assert cp.returncode == 1, cp
    (p,) = json.loads(cp.stdout)["plugins"]
    assert p["loaded"] is False
    assert "'acount' is not a Job field (did you mean 'account'?)" in p["error"]
    assert "site_factor/python: " + p["error"] in h.log()
