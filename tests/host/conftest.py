"""Fixtures for the tests that drive build/plugins/*.so through the C test
host (tests/host/spm_host.c, tests/harness/hostdriver.py), and for the other
tests that need the build, a configured Slurm source tree, the checkout's
sources (csrc/, scripts/, docs/) or root.  The tests that need none of
these are in tests/python.

* ``handlers``: a handler directory (root-owned here, 0755) that the loader
  accepts: tests/python/conftest.py's, see there.
* ``make_host``: starts spm_host on prep_python.so or site_factor_python.so
  and closes it (quit + deadlock / unexpected-callback check) at teardown.

``$SPM_PLUGIN_DIR`` points the tests at another build, ``$SPM_TEST_ASAN=1``
runs every make_host() host as build/host/spm_host.asan (no LD_PRELOAD: the
host executable is instrumented).  With an ASan+UBSan build of the plugins:

    make build BUILD=build/asan SLURM_SRC=$PWD/build/slurm-src/slurm-wlm-22.05.8 \
        SPM_CFLAGS="-fsanitize=address,undefined -fno-omit-frame-pointer" \
        SPM_LDFLAGS="-fsanitize=address,undefined"
    SPM_PLUGIN_DIR=build/asan/plugins SPM_TEST_ASAN=1 .venv/bin/python -m pytest -q tests/host
"""
from __future__ import annotations

import os
import pathlib
import shutil
import time

import pytest

TESTS = pathlib.Path(__file__).resolve().parents[1]
REPO = TESTS.parent

from tests.harness import hostdriver
from tests.harness.hostdriver import Host
from tests.python.conftest import RECORDER, HandlerDir, handlers  # noqa: F401

PLUGIN_DIR = pathlib.Path(os.environ.get("SPM_PLUGIN_DIR",
                                         REPO / "build" / "plugins"))
PREP_SO = PLUGIN_DIR / "prep_python.so"
SF_SO = PLUGIN_DIR / "site_factor_python.so"
ASAN = os.environ.get("SPM_TEST_ASAN") == "1"

NICE_OFFSET = hostdriver.NICE_OFFSET
WAIT_FAILED = 1 << 8          # wait status of "exit 1"
WAIT_KILLED = 9               # wait status of "killed by SIGKILL"


def _missing_prereqs() -> str | None:
    libdir = pathlib.Path(hostdriver.SLURM_LIBDIR)
    if not (libdir / "libslurmfull.so").exists():
        return "libslurmfull.so not installed"
    if not (pathlib.Path(hostdriver.SLURM_SRC) / "config.h").exists():
        return "no configured Slurm source tree for the host"
    for so in (PREP_SO, SF_SO, PLUGIN_DIR / "slurmpy" / "libslurmpy.so"):
        if not so.exists():
            return f"{so} not built (run make build)"
    if os.geteuid() != 0:
        return "handler files must be root-owned: run as root"
    return None


def pytest_collection_modifyitems(config, items):
    # A missing prerequisite is an error, never a silent skip: CI must not
    # pass with the unit layer not run.
    here = pathlib.Path(__file__).resolve().parent
    if any(pathlib.Path(str(i.fspath)).parent == here for i in items):
        why = _missing_prereqs()
        if why:
            raise pytest.UsageError(f"host tests cannot run: {why}")


@pytest.fixture
def make_host():
    """make_host("prep"|"sf", daemon="slurmctld", so=None, **Host kwargs)
    -> Host (so: another plugin file than build/plugins/<kind>_python.so).
    Every host is closed at teardown; close() raises if the plugin would
    have deadlocked slurmctld or called back without an outstanding call."""
    made: list[Host] = []

    def make(kind: str = "prep", daemon: str = "slurmctld", so=None,
             **kw) -> Host:
        so = so or {"prep": PREP_SO, "sf": SF_SO}[kind]
        kw.setdefault("asan", ASAN)
        if kw["asan"]:
            kw["timeout"] = max(kw.get("timeout", 30.0), 60.0)
            # LeakSanitizer runs with tests/host/lsan.supp: the interpreter
            # is never finalized, so what CPython holds at exit is listed
            # there.  use_tls=0: LSan's tracer crashes reading the TLS of
            # the embedded interpreter's threads (it only means TLS is not
            # scanned for roots: more reports, never fewer).
            env = dict(kw.pop("env", None) or {})
            env.setdefault("ASAN_OPTIONS", os.environ.get(
                "ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0:exitcode=23:"
                "halt_on_error=1:detect_odr_violation=0"))
            # Python objects on the C heap, so LSan can follow what the
            # interpreter still references (pymalloc arenas are mmap'd)
            env.setdefault("SPM_PYTHONMALLOC", "malloc")
            env.setdefault("LSAN_OPTIONS", os.environ.get(
                "LSAN_OPTIONS", "suppressions=%s:print_suppressions=0:use_tls=0"
                % (TESTS / "host" / "lsan.supp")))
            kw["env"] = env
        h = Host(str(so), daemon=daemon, **kw)
        made.append(h)
        return h

    yield make
    errors = []
    for h in made:
        try:
            h.close()
        except Exception as e:  # report every host, not just the first
            errors.append(e)
    if errors:
        raise errors[0]


@pytest.fixture
def broken_bridge_plugins(tmp_path):
    """A copy of the plugin build whose staged slurmpy_plugins package
    cannot be imported: the cffi bridge never attaches."""
    dst = tmp_path / "plugins"
    shutil.copytree(PLUGIN_DIR, dst, symlinks=True,
                    ignore=shutil.ignore_patterns("cffi"))
    pkg = dst / "slurmpy" / "python" / "slurmpy_plugins"
    if pkg.is_symlink() or not pkg.is_dir():
        pkg.unlink()
    else:
        shutil.rmtree(pkg)
    pkg.mkdir()
    (pkg / "__init__.py").write_text("raise ImportError('staged package "
                                     "is broken')\n")
    return dst


def wait_for(pred, timeout=5.0, interval=0.02, what="condition"):
    """Poll pred() until it returns a truthy value; return that value."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for %s" % what)
        time.sleep(interval)


def expected_str(value):
    """What a handler sees for a string given to the host (None stays
    None; bytes decode with surrogateescape, as the records do)."""
    if value is None:
        return None
    if isinstance(value, str):
        value = value.encode("utf-8", "surrogateescape")
    return value.decode("utf-8", "surrogateescape")


def expected_env(items):
    """What Job.spank_env / JobEnv.gres_env shows for a list of entries."""
    out = {}
    for item in items or ():
        k, _, v = expected_str(item).partition("=")
        out[k] = v
    return out


# ---------------------------------------------------------------------------
# Oracles: what a handler must see for the fields given to the host.  Kept
# independent of slurmpy_plugins/_records.py on purpose.
# ---------------------------------------------------------------------------

STATE_NAMES = ("PENDING", "RUNNING", "SUSPENDED", "COMPLETED", "CANCELLED",
               "FAILED", "TIMEOUT", "NODE_FAIL", "PREEMPTED", "BOOT_FAIL",
               "DEADLINE", "OUT_OF_MEMORY")
STATE_FLAGS = {"LAUNCH_FAILED": 1 << 8, "REQUEUE": 1 << 10,
               "REQUEUE_HOLD": 1 << 11, "SPECIAL_EXIT": 1 << 12,
               "RESIZING": 1 << 13, "CONFIGURING": 1 << 14,
               "COMPLETING": 1 << 15, "STOPPED": 1 << 16}

# Host job fields the snapshot copies: name -> (bits, signed).
JOB_INTS = {
    "job_id": 32, "array_job_id": 32, "array_task_id": 32, "het_job_id": 32,
    "het_job_offset": 32, "user_id": 32, "group_id": 32, "job_state": 32,
    "state_reason": 32, "exit_code": 32, "derived_ec": 32, "priority": 32,
    "time_limit": 32, "time_min": 32, "node_cnt": 32, "total_cpus": 32,
    "qos_id": 32, "assoc_id": 32, "resv_id": 32, "site_factor": 32,
    "batch_flag": 16, "restart_cnt": 16, "bit_flags": 64,
    "min_cpus": 32, "min_nodes": 32, "max_nodes": 32, "nice": 32,
    "requeue": 16, "pn_min_memory": 64,
}
JOB_TIMES = ("start_time", "end_time", "deadline", "submit_time",
             "begin_time")
JOB_STRS = ("account", "admin_comment", "alloc_node", "batch_host",
            "burst_buffer", "comment", "licenses", "mcs_label", "name",
            "nodes", "partition", "resv_name", "state_desc",
            "system_comment", "tres_alloc_str", "tres_req_str",
            "tres_per_job", "tres_per_node", "tres_per_task", "user_name",
            "wckey", "features", "std_err", "std_in", "std_out", "work_dir",
            "qos")
ENV_INTS = {"jobid": 32, "step_id": 32, "uid": 32, "gid": 32,
            "het_job_id": 32, "exit_code": 32, "derived_ec": 32}
ENV_STRS = ("user_name", "partition", "node_list", "node_aliases",
            "work_dir")

JOB_FIELDS = (
    "job_id", "array_job_id", "array_task_id", "het_job_id",
    "het_job_offset", "user_id", "group_id", "job_state", "state_reason",
    "exit_code", "derived_ec", "priority", "time_limit", "time_min",
    "num_nodes", "num_cpus", "min_nodes", "max_nodes", "min_cpus",
    "restart_cnt", "qos_id", "assoc_id", "resv_id", "batch_flag", "requeue",
    "nice", "site_factor", "pn_min_memory", "bit_flags", "submit_time",
    "eligible_time", "start_time", "end_time", "deadline",
    "account", "admin_comment", "alloc_node", "batch_host", "burst_buffer",
    "comment", "features", "licenses", "mcs_label", "name", "nodes",
    "partition", "qos", "resv_name", "state_desc", "std_err", "std_in",
    "std_out", "system_comment", "tres_alloc_str", "tres_req_str",
    "tres_per_job", "tres_per_node", "tres_per_task", "user_name", "wckey",
    "work_dir", "spank_env", "state", "state_flags")
ENV_FIELDS = ("job_id", "step_id", "uid", "gid", "het_job_id", "exit_code",
              "derived_ec", "user_name", "partition", "node_list",
              "node_aliases", "work_dir", "node_name", "spank_env", "gres_env")
#: The host's slurmd NodeName (tests/host/spm_host.c sets conf->node_name):
#: JobEnv.node_name reads it from the daemon's conf, not from job_env_t.
HOST_NODE_NAME = "spmnode1"


def _pw_name(uid):
    import pwd
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return None


def expected_job(f: dict) -> dict:
    """The Job.as_dict() a handler must see for host job fields `f`
    (defaults as spm_host's job_new(); submit_time only if given)."""
    g = f.get
    state = g("job_state", 0)
    if isinstance(state, str):
        state = hostdriver.JOB_STATES[state.upper()]
    base = state & 0xFF
    min_nodes, min_cpus = g("min_nodes", 0), g("min_cpus", 0)
    e = {
        "job_id": g("job_id", 0), "array_job_id": g("array_job_id", 0),
        "array_task_id": g("array_task_id", hostdriver.NO_VAL),
        "het_job_id": g("het_job_id", 0),
        "het_job_offset": g("het_job_offset", 0),
        "user_id": g("user_id", 0), "group_id": g("group_id", 0),
        "job_state": state, "state_reason": g("state_reason", 0),
        "exit_code": g("exit_code", 0), "derived_ec": g("derived_ec", 0),
        "priority": g("priority", 0),
        "time_limit": g("time_limit", hostdriver.NO_VAL),
        "time_min": g("time_min", 0),
        "num_nodes": g("node_cnt", 0) or min_nodes,
        "num_cpus": g("total_cpus", 0) or min_cpus,
        "min_nodes": min_nodes, "max_nodes": g("max_nodes", 0),
        "min_cpus": min_cpus, "restart_cnt": g("restart_cnt", 0),
        "qos_id": g("qos_id", 0), "assoc_id": g("assoc_id", 0),
        "resv_id": g("resv_id", 0), "batch_flag": g("batch_flag", 0),
        "requeue": g("requeue", 0),
        "nice": g("nice", NICE_OFFSET) - NICE_OFFSET,
        "site_factor": g("site_factor", NICE_OFFSET) - NICE_OFFSET,
        "pn_min_memory": g("pn_min_memory", 0),
        "bit_flags": g("bit_flags", 0),
        "eligible_time": g("begin_time", 0),
        "start_time": g("start_time", 0), "end_time": g("end_time", 0),
        "deadline": g("deadline", 0),
        "spank_env": expected_env(g("spank_job_env")),
        "state": STATE_NAMES[base] if base < len(STATE_NAMES)
        else "UNKNOWN(%d)" % base,
        "state_flags": sorted(n for n, b in STATE_FLAGS.items()
                              if state & b),
    }
    if "submit_time" in f:
        e["submit_time"] = f["submit_time"]
    for s in JOB_STRS:
        e[s] = expected_str(g(s))
    if e["user_name"] is None:
        e["user_name"] = _pw_name(e["user_id"])
    return e


def expected_jobenv(f: dict) -> dict:
    g = f.get
    e = {"job_id": g("jobid", 0), "step_id": g("step_id", 0),
         "uid": g("uid", 0), "gid": g("gid", 0),
         "het_job_id": g("het_job_id", 0), "exit_code": g("exit_code", 0),
         "derived_ec": g("derived_ec", 0),
         "spank_env": expected_env(g("spank_job_env")),
         "gres_env": expected_env(g("gres_job_env"))}
    for s in ENV_STRS:
        e[s] = expected_str(g(s))
    e["node_name"] = HOST_NODE_NAME
    if f.get("user_name") is None and hostdriver.slurm_at_least(23, 11):
        # 23.11+ has no job_env_t.user_name: with no name in the credential
        # the shim looks the uid up, as prep/script does (csrc/compat.h)
        import pwd
        try:
            e["user_name"] = pwd.getpwuid(e["uid"]).pw_name
        except KeyError:           # no such user: None
            e["user_name"] = None
    return e


def compare_record(seen: dict, want: dict, fields) -> None:
    """Assert that a handler's dump matches the oracle, field by field,
    and that the record has exactly the documented fields."""
    seen = dict(seen)
    for k in [k for k in seen if k.startswith("_")]:
        del seen[k]
    assert sorted(seen) == sorted(fields), "record fields changed"
    if "submit_time" not in want:
        seen.pop("submit_time", None)
    diffs = {k: (seen.get(k), want[k]) for k in want if seen.get(k) != want[k]}
    assert not diffs, "fields differ (seen, expected): %r" % diffs
