"""Smoke tests for the plugin unit-test host (tests/host/spm_host.c) and its
driver (tests/harness/hostdriver.py), run against Slurm's own stock plugins
prep_script.so and site_factor_none.so, plus a few tiny C plugins built here
to prove the host's failure detection (version check, deadlocks, stale
pointers, job_list export)."""

import os
import pathlib
import subprocess
import textwrap

import pytest


from tests.harness import hostdriver
from tests.harness.hostdriver import (NICE_OFFSET, SLURM_VERSION_NUMBER, Host,
                        HostDied, HostError, HostTimeout, PluginLoadError)

LIBDIR = pathlib.Path(hostdriver.SLURM_LIBDIR)
PREP_SCRIPT = LIBDIR / "prep_script.so"
SITE_NONE = LIBDIR / "site_factor_none.so"
if not SITE_NONE.exists() and (LIBDIR / "site_factor_example.so").exists():
    # site_factor/none is gone in 23.11; site_factor/example does as little
    SITE_NONE = LIBDIR / "site_factor_example.so"
SITE_NONE_TYPE = "site_factor/" + SITE_NONE.stem.rsplit("_", 1)[-1]
SLURM_SRC = pathlib.Path(hostdriver.SLURM_SRC)
CSRC = pathlib.Path(__file__).resolve().parents[2] / "csrc"   # compat.h

pytestmark = pytest.mark.skipif(
    not (PREP_SCRIPT.exists() and SITE_NONE.exists()
         and (LIBDIR / "libslurmfull.so").exists()
         and (SLURM_SRC / "config.h").exists()),
    reason=f"needs {LIBDIR}/libslurmfull.so, prep_script.so, {SITE_NONE.name} "
           f"and a configured source tree ({SLURM_SRC})")


@pytest.fixture(scope="session")
def host_bin():
    return hostdriver.ensure_built(asan=False)


@pytest.fixture(scope="session")
def host_bin_asan():
    return hostdriver.ensure_built(asan=True)


def script(tmp_path, name, body):
    """Write an executable /bin/sh script and return its path (str)."""
    p = tmp_path / name
    p.write_text("#!/bin/sh\n" + textwrap.dedent(body))
    p.chmod(0o755)
    return str(p)


def env_dump_script(tmp_path, name="dump.sh", rc=0):
    """Script that dumps its environment NUL-separated to <name>.env."""
    out = tmp_path / (name + ".env")
    path = script(tmp_path, name, """\
        env -0 > %s
        exit %d
        """ % (out, rc))
    return path, out


def read_env(path):
    data = pathlib.Path(path).read_bytes()
    env = {}
    for item in data.split(b"\0"):
        if item:
            k, _, v = item.partition(b"=")
            env[k.decode()] = v
    return env


def build_plugin(tmp_path, name, source, asan=False):
    """Compile a small test plugin against the Slurm tree.  ASan only checks
    instrumented code, so a plugin whose bugs ASan should see must itself be
    built with -fsanitize=address."""
    src = tmp_path / (name + ".c")
    so = tmp_path / (name + ".so")
    src.write_text(textwrap.dedent(source))
    san = ["-fsanitize=address", "-fno-omit-frame-pointer"] if asan else []
    subprocess.run(["cc", "-shared", "-fPIC", "-g", "-O0", "-pthread"] + san +
                   ["-DHAVE_CONFIG_H", "-I%s" % SLURM_SRC,
                    "-I%s/slurm" % SLURM_SRC, "-I%s" % CSRC, "-o", str(so), str(src)],
                   check=True, timeout=120)
    return str(so)


PREP_HEADER = """\
#include "config.h"
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <unistd.h>
#include "slurm/slurm.h"
#include "compat.h"
#include SPM_PREP_H
const char plugin_name[] = "test prep";
const char plugin_type[] = "prep/test";
const uint32_t plugin_version = SLURM_VERSION_NUMBER;
static prep_callbacks_t cbs;
void prep_p_register_callbacks(prep_callbacks_t *c) { cbs = *c; }
int prep_p_prolog(job_env_t *e, slurm_cred_t *c) { return 0; }
int prep_p_epilog(job_env_t *e, slurm_cred_t *c) { return 0; }
void prep_p_required(prep_call_type_t t, bool *r) { *r = true; }
"""


# ---------------------------------------------------------------------------
# prep/script, slurmctld side
# ---------------------------------------------------------------------------

def test_load_version_and_required_slurmctld(host_bin):
    with Host(str(PREP_SCRIPT), daemon="slurmctld") as h:
        assert h.ready["in_slurmctld"] == 1 and h.ready["in_slurmd"] == 0
        assert h.ready["version"] == SLURM_VERSION_NUMBER
        res = h.load()
        assert res["rc"] == 0
        assert res["type"] == "prep/script"
        assert res["name"] == "Script PrEp plugin"
        assert res["version"] == SLURM_VERSION_NUMBER
        assert res["family"] == "prep" and res["missing"] == 0
        req = h.required()
        # nothing configured: slurmctld side not required, slurmd side is
        # only required inside slurmd
        assert req == {"register_callbacks": False, "prolog": False,
                       "epilog": False, "prolog_slurmctld": False,
                       "epilog_slurmctld": False, "unset_mask": 0}


def test_all_imports_resolvable(host_bin):
    """RTLD_NOW: every undefined symbol of the stock plugins is provided by
    the host executable, libslurmfull or libc."""
    for plugin in (PREP_SCRIPT, SITE_NONE):
        for daemon in ("slurmctld", "slurmd"):
            with Host(str(plugin), daemon=daemon) as h:
                assert h.load(now=True)["rc"] == 0


def test_prolog_slurmctld_runs_script_and_calls_back(host_bin, tmp_path):
    path, out = env_dump_script(tmp_path)
    with Host(str(PREP_SCRIPT)) as h:
        h.conf(prolog_slurmctld=path, cluster_name="testcluster")
        h.load()
        assert h.callbacks() == {"prolog": 1, "epilog": 1}
        assert h.required()["prolog_slurmctld"] is True
        res = h.prolog_slurmctld(job_id=4242, account="physics",
                                 name="my job", partition="batch",
                                 user_id=os.getuid(), group_id=os.getgid(),
                                 comment="hello", work_dir="/tmp",
                                 spank_job_env=["FOO=bar"])
        assert res["job_id"] == 4242 and res["rc"] == 0
        assert res["async"] == 1
        cbs = h.wait_callbacks(1, timeout=10)
        assert len(cbs) == 1
        cb = cbs[0]
        assert cb["hook"] == "prolog_slurmctld" and cb["job_id"] == 4242
        assert cb["rc"] == 0 and cb["timed_out"] == 0
        assert cb["thread"] == "other" and cb["deadlock"] == 0
        assert cb["expected"] == 1
        st = h.stats()
        assert st["pending"] == 0 and st["scripts"] == 1
    env = read_env(out)
    assert env["SLURM_JOB_ID"] == b"4242"
    assert env["SLURM_JOB_ACCOUNT"] == b"physics"
    assert env["SLURM_JOB_NAME"] == b"my job"
    assert env["SLURM_JOB_PARTITION"] == b"batch"
    assert env["SLURM_JOB_COMMENT"] == b"hello"
    assert env["SLURM_JOB_WORK_DIR"] == b"/tmp"
    assert env["SLURM_CLUSTER_NAME"] == b"testcluster"
    assert env["SLURM_SCRIPT_CONTEXT"] == b"prolog_slurmctld"
    assert env["SPANK_FOO"] == b"bar"


def test_epilog_slurmctld_failure_status_and_exit_code(host_bin, tmp_path):
    path, out = env_dump_script(tmp_path, rc=3)
    with Host(str(PREP_SCRIPT)) as h:
        h.conf(epilog_slurmctld=path)
        h.load()
        h.callbacks()
        res = h.epilog_slurmctld(job_id=7, exit_code=2 << 8, derived_ec=0)
        assert res["async"] == 1
        cb = h.wait_callbacks(1)[0]
        assert cb["hook"] == "epilog_slurmctld" and cb["job_id"] == 7
        assert os.WIFEXITED(cb["rc"]) and os.WEXITSTATUS(cb["rc"]) == 3
        assert "exit status 3:0" in h.log()
    env = read_env(out)
    assert env["SLURM_JOB_EXIT_CODE2"] == b"2:0"
    assert env["SLURM_SCRIPT_CONTEXT"] == b"epilog_slurmctld"


def test_script_timeout_reports_timed_out(host_bin, tmp_path):
    path = script(tmp_path, "slow.sh", "exec sleep 30\n")
    with Host(str(PREP_SCRIPT)) as h:
        h.conf(prolog_slurmctld=path, **hostdriver.prep_timeout_conf(1))
        h.load()
        h.callbacks()
        assert h.prolog_slurmctld(job_id=9)["async"] == 1
        cb = h.wait_callbacks(1, timeout=15)[0]
        assert cb["timed_out"] == 1
        assert os.WIFSIGNALED(cb["rc"])


def test_invalid_prolog_slurmctld_is_disabled(host_bin, tmp_path):
    """22.05's prep/script disables an invalid PrologSlurmctld; from 23.02
    its init() fails instead (src/plugins/prep/script/prep_script.c)."""
    missing = str(tmp_path / "does-not-exist")
    with Host(str(PREP_SCRIPT)) as h:
        h.conf(prolog_slurmctld=missing)
        if hostdriver.slurm_at_least(23, 2):
            res = h.load(check=False)
            assert res["rc"] == 4 and res["init_rc"] != 0
            assert "Invalid PrologSlurmctld" in h.log()
            return
        h.load()
        h.callbacks()
        assert "Invalid PrologSlurmctld" in h.log()
        assert h.required()["prolog_slurmctld"] is False
        assert h.prolog_slurmctld(job_id=1)["async"] == 0
        assert h.stats()["scripts"] == 0


def test_null_callbacks_disable_async_hooks(host_bin, tmp_path):
    path, _ = env_dump_script(tmp_path)
    with Host(str(PREP_SCRIPT)) as h:
        h.conf(prolog_slurmctld=path, epilog_slurmctld=path)
        h.load()
        assert h.callbacks(prolog=False, epilog=True) == {"prolog": 0,
                                                          "epilog": 1}
        assert h.prolog_slurmctld(job_id=1)["async"] == 0
        assert h.epilog_slurmctld(job_id=1)["async"] == 1
        h.wait_callbacks(1)


def test_string_encoding_null_empty_binary_long(host_bin, tmp_path):
    """NULL, "", invalid UTF-8 and a 100 KiB value survive the protocol;
    Slurm's setenvf() itself drops values >= 128 KiB (MAX_ENV_STRLEN)."""
    path, out = env_dump_script(tmp_path)
    long_val = ("0123456789abcdef" * 6400).encode()          # 100 KiB
    too_long = ("0123456789abcdef" * 8200).encode()          # > 128 KiB
    weird = b"\xff\xfe caf\xc3\xa9 \t tab \x01 ctl"
    with Host(str(PREP_SCRIPT)) as h:
        h.conf(prolog_slurmctld=path)
        h.load()
        h.callbacks()
        h.prolog_slurmctld(job_id=1, comment=None, name=weird,
                           account=long_val, wckey="",
                           work_dir=too_long)
        h.wait_callbacks(1)
        assert "SLURM_JOB_WORK_DIR is too long" in h.log()
    env = read_env(out)
    assert "SLURM_JOB_COMMENT" not in env          # NULL -> not exported
    assert env["SLURM_WCKEY"] == b""               # "" -> exported empty
    assert env["SLURM_JOB_NAME"] == weird
    assert env["SLURM_JOB_ACCOUNT"] == long_val
    assert "SLURM_JOB_WORK_DIR" not in env


def test_reload_without_callbacks(host_bin):
    with Host(str(PREP_SCRIPT)) as h:
        h.load()
        h.callbacks()
        res = h.reload()
        assert res["rc"] == 0 and res["type"] == "prep/script"
        assert res["rows"][0]["row"] == "unloaded"
        assert res["rows"][0]["fini"] == 1
        un = h.unload()
        assert un["fini"] == 1 and un["resident"] == 0
        with pytest.raises(HostError, match="not_loaded"):
            h.required()


# ---------------------------------------------------------------------------
# prep/script, slurmd side
# ---------------------------------------------------------------------------

def test_slurmd_prolog_epilog(host_bin, tmp_path):
    path, out = env_dump_script(tmp_path)
    fail = script(tmp_path, "fail.sh", "exit 1\n")
    with Host(str(PREP_SCRIPT), daemon="slurmd") as h:
        assert h.ready["in_slurmd"] == 1
        h.conf(prolog=path, epilog=fail, cluster_name="c1")
        h.slurmd_conf(node_name="node042")
        h.load()
        req = h.required()
        assert req["prolog"] and req["epilog"]
        assert not req["prolog_slurmctld"] and not req["epilog_slurmctld"]
        res = h.prolog(jobid=77, uid=os.getuid(), gid=os.getgid(),
                       work_dir="/tmp", node_list="n[1-2]",
                       spank_job_env=["FOO=1", "SPANK_BAR=2"],
                       gres_job_env=["CUDA_VISIBLE_DEVICES=0"])
        assert res == {"job_id": 77, "rc": 0, "us": res["us"],
                       "ns": res["ns"]}
        res = h.epilog(jobid=77, uid=os.getuid(), exit_code=0)
        assert os.WIFEXITED(res["rc"]) and os.WEXITSTATUS(res["rc"]) == 1
        assert "epilog failed: rc:1" in h.log()
    env = read_env(out)
    assert env["SLURM_JOB_ID"] == b"77"
    assert env["SLURMD_NODENAME"] == b"node042"   # host's `conf` is used
    assert env["SLURM_NODELIST"] == b"n[1-2]"
    assert env["SPANK_FOO"] == b"1" and env["SPANK_BAR"] == b"2"
    assert env["CUDA_VISIBLE_DEVICES"] == b"0"
    assert env["SLURM_SCRIPT_CONTEXT"] == b"prolog_slurmd"


# ---------------------------------------------------------------------------
# site_factor/none
# ---------------------------------------------------------------------------

def test_site_factor_none(host_bin):
    with Host(str(SITE_NONE)) as h:
        res = h.load()
        assert res["type"] == SITE_NONE_TYPE
        assert res["family"] == "site_factor"
        r = h.site_set(job_id=5)
        assert r["site_factor"] == NICE_OFFSET == r["before"]
        assert h.site_set(job_id=6, site_factor=123)["site_factor"] == 123
        h.jobs_add(job_id=1)
        h.jobs_add(job_id=2, site_factor=77, account="a", qos="normal")
        assert h.jobs_add(job_id=3, job_state="RUNNING")["n"] == 3
        assert h.site_update() == {1: NICE_OFFSET, 2: 77, 3: NICE_OFFSET}
        if hostdriver.slurm_at_least(24, 5):
            # 24.05 no longer calls site_factor_p_reconfig: its stock
            # plugin has none
            with pytest.raises(HostError, match="missing_symbol"):
                h.site_reconfig()
        else:
            assert h.site_reconfig()["slurm_warn"] == 0
        assert h.jobs_clear()["removed"] == 3
        assert h.site_update() == {}
        b = h.update_many(2000)
        assert b["n"] == 2000 and b["changed"] == 0
        base = h.update_many(2000, mode="baseline")
        assert base["changed"] == 2000
        bc = h.call_many("site_set", 1000)
        assert bc["n"] == 1000 and bc["async"] == 0
        with pytest.raises(HostError, match="wrong_family"):
            h.required()
        fin = h.unload()
        assert fin["fini"] == 1 and fin["fini_rc"] == 0


# ---------------------------------------------------------------------------
# protocol strictness and driver robustness
# ---------------------------------------------------------------------------

def test_protocol_errors(host_bin):
    with Host(str(SITE_NONE)) as h:
        with pytest.raises(HostError, match="not_loaded"):
            h.site_set(job_id=1)
        h.load()
        with pytest.raises(HostError, match="unknown field"):
            h.site_set(no_such_field=1)
        with pytest.raises(HostError, match="unsigned"):
            h.site_set(job_id=-1)
        with pytest.raises(HostError, match="unsigned"):
            h.site_set(restart_cnt=70000)              # uint16_t
        with pytest.raises(HostError, match="hex"):
            h.request("site_set", "account=xzz")
        with pytest.raises(HostError, match="NUL"):
            h.request("site_set", "account=x6100")
        with pytest.raises(HostError, match="duplicate"):
            h.request("site_set", "job_id=1", "job_id=2")
        with pytest.raises(HostError, match="unknown command"):
            h.request("frobnicate")
        with pytest.raises(HostError, match="already_loaded"):
            h.load()
        assert h.ping() == {}                          # still alive


def test_driver_timeout_kills_hung_host(host_bin):
    h = Host(str(SITE_NONE))
    try:
        with pytest.raises(HostTimeout):
            h.sleep_ms(10000, timeout=0.5)
        with pytest.raises(HostDied):
            h.ping()
    finally:
        h._kill()
        h.close()


def test_in_thread_runs_on_other_thread(host_bin, tmp_path):
    path, _ = env_dump_script(tmp_path)
    with Host(str(PREP_SCRIPT)) as h:
        h.conf(prolog_slurmctld=path)
        h.load()
        h.callbacks()
        assert h.prolog_slurmctld(job_id=11, _thread=True)["async"] == 1
        h.wait_callbacks(1)


# ---------------------------------------------------------------------------
# host failure detection, with tiny purpose-built plugins
# ---------------------------------------------------------------------------

def test_version_init_and_symbol_checks(host_bin, tmp_path):
    # another micro release of the host's Slurm (22.05.8: 22.05.7)
    bad = SLURM_VERSION_NUMBER - 1 if SLURM_VERSION_NUMBER & 0xff else SLURM_VERSION_NUMBER + 1
    bad_version = build_plugin(tmp_path, "prep_badver", """\
        #include <stdint.h>
        const char plugin_name[] = "bad version";
        const char plugin_type[] = "prep/badver";
        const uint32_t plugin_version = %#x;
        """ % bad)
    init_fails = build_plugin(tmp_path, "prep_initfail", """\
        #include <stdint.h>
        const char plugin_name[] = "init fails";
        const char plugin_type[] = "prep/initfail";
        const uint32_t plugin_version = %#x;
        int init(void) { return -1; }
        """ % SLURM_VERSION_NUMBER)
    no_syms = build_plugin(tmp_path, "prep_nosyms", """\
        #include <stdint.h>
        const char plugin_name[] = "no api";
        const char plugin_type[] = "prep/nosyms";
        const uint32_t plugin_version = %#x;
        """ % SLURM_VERSION_NUMBER)
    with Host(bad_version) as h:
        res = h.load(check=False)
        assert res["rc"] == 6 and res["version"] == bad
        with pytest.raises(PluginLoadError):
            h.load()
    with Host(init_fails) as h:
        res = h.load(check=False)
        assert res["rc"] == 4 and res["init_rc"] == -1
    with Host(no_syms) as h:
        res = h.load()
        assert res["missing"] == 6
        assert "prep_p_prolog_slurmctld" in res["missing_syms"]
        with pytest.raises(HostError, match="missing_symbol"):
            h.prolog_slurmctld(job_id=1)
    with Host(str(tmp_path / "nonexistent.so")) as h:
        res = h.load(check=False)
        assert res["rc"] == 3 and "nonexistent.so" in res["dlerror"]


def test_synchronous_callback_deadlock_detected(host_bin, tmp_path):
    so = build_plugin(tmp_path, "prep_sync", PREP_HEADER + """\
        int prep_p_prolog_slurmctld(job_record_t *job, bool *async)
        {
            *async = true;
            cbs.prolog_slurmctld(0, job->job_id, false);  /* deadlock! */
            return 0;
        }
        int prep_p_epilog_slurmctld(job_record_t *job, bool *async)
        { *async = false; return 0; }
        """)
    with Host(so, fail_on_deadlock=False, strict_callbacks=False) as h:
        h.load()
        h.callbacks()
        res = h.prolog_slurmctld(job_id=5)
        assert res["async"] == 1
        dl = h.deadlocks
        assert dl and dl[0]["event"] == "callback_deadlock"
        assert dl[0]["thread"] == "same"
        assert dl[0]["reason"] == "lock_held_by_this_thread"
        cb = h.callback_events[0]
        assert cb["deadlock"] == 1 and cb["thread"] == "same"
        # arrived before async=1 was returned -> not an expected completion
        assert cb["expected"] == 0
        # the job lock is consistent afterwards: no further lock trouble
        h.jobs_add(job_id=6)
        assert len(h.deadlocks) == 1
        assert h.stats()["deadlocks"] == 1
    # by default the driver fails a test whose plugin would deadlock
    with pytest.raises(HostError, match="deadlock"):
        with Host(so) as h:
            h.load()
            h.callbacks()
            h.prolog_slurmctld(job_id=5)


def test_worker_thread_callbacks(host_bin, tmp_path):
    so = build_plugin(tmp_path, "prep_thread", PREP_HEADER + """\
        static void *worker(void *arg)
        {
            usleep(20000);
            cbs.prolog_slurmctld(0, (uint32_t)(uintptr_t) arg, false);
            return NULL;
        }
        /* good: fire-and-forget worker */
        int prep_p_prolog_slurmctld(job_record_t *job, bool *async)
        {
            pthread_t t;
            pthread_create(&t, NULL, worker, (void *)(uintptr_t) job->job_id);
            pthread_detach(t);
            *async = true;
            return 0;
        }
        /* bad: waits for a worker that needs the job lock */
        int prep_p_epilog_slurmctld(job_record_t *job, bool *async)
        {
            pthread_t t;
            pthread_create(&t, NULL, worker, (void *)(uintptr_t) job->job_id);
            pthread_join(t, NULL);
            *async = true;
            return 0;
        }
        """)
    with Host(so) as h:
        h.load()
        h.callbacks()
        for jid in (1, 2, 3):
            assert h.prolog_slurmctld(job_id=jid)["async"] == 1
        cbs = h.wait_callbacks(3)
        assert sorted(c["job_id"] for c in cbs) == [1, 2, 3]
        assert all(c["thread"] == "other" and c["deadlock"] == 0 and
                   c["expected"] == 1 for c in cbs)
        b = h.call_many("prolog_slurmctld", 200)
        assert b["async"] == 200 and b["callbacks"] == 200 and b["waited"]
    with Host(so, deadlock_ms=300, fail_on_deadlock=False,
              strict_callbacks=False) as h:
        h.load()
        h.callbacks()
        h.epilog_slurmctld(job_id=8)
        dl = h.deadlocks
        assert dl and dl[0]["reason"] == "lock_wait_timeout"
        assert dl[0]["thread"] == "other"


def test_job_list_export_for_site_factor_plugins(host_bin, tmp_path):
    so = build_plugin(tmp_path, "site_factor_test", """\
        #include "config.h"
        #include "src/common/list.h"
        #include "src/slurmctld/slurmctld.h"
        const char plugin_name[] = "test site_factor";
        const char plugin_type[] = "site_factor/test";
        const uint32_t plugin_version = SLURM_VERSION_NUMBER;
        int init(void) { return 0; }
        int fini(void) { return 7; }
        void site_factor_p_reconfig(void) {}
        void site_factor_p_set(job_record_t *job)
        {   /* the record is in job_list while slurmctld calls us */
            job->site_factor = (find_job_record(job->job_id) == job) ? 1234 : 1;
        }
        static int upd(void *x, void *arg)
        {
            job_record_t *job = x;
            if (IS_JOB_PENDING(job) && find_job_record(job->job_id) == job)
                job->site_factor = NICE_OFFSET + job->job_id;
            return 0;
        }
        void site_factor_p_update(void) { list_for_each(job_list, upd, NULL); }
        """)
    with Host(so) as h:
        h.load()
        assert h.site_set(job_id=1)["site_factor"] == 1234
        h.jobs_add(job_id=10)
        h.jobs_add(job_id=11, job_state="RUNNING", site_factor=5)
        assert h.site_update() == {10: NICE_OFFSET + 10, 11: 5}
        assert h.site_update(_thread=True) == {10: NICE_OFFSET + 10, 11: 5}
        assert h.update_many(500)["changed"] == 500
        assert h.unload()["fini_rc"] == 7


STALE_PTR_PLUGIN = PREP_HEADER + """\
    static job_record_t *saved;
    int prep_p_prolog_slurmctld(job_record_t *job, bool *async)
    { saved = job; *async = false; return 0; }
    /* uses the record after slurmctld freed it */
    int prep_p_epilog_slurmctld(job_record_t *job, bool *async)
    { *async = false; return saved->job_id == 42 ? 0 : 99; }
    """


def test_stale_job_pointer_visible_without_asan(host_bin, tmp_path):
    so = build_plugin(tmp_path, "prep_stale", STALE_PTR_PLUGIN)
    with Host(so) as h:
        h.load()
        h.prolog_slurmctld(job_id=42)
        # the freed record was scribbled over (0x5a) before xfree()
        assert h.epilog_slurmctld(job_id=43)["rc"] == 99


# ---------------------------------------------------------------------------
# AddressSanitizer build
# ---------------------------------------------------------------------------

def test_asan_smoke_prep_script(host_bin_asan, tmp_path):
    path, out = env_dump_script(tmp_path)
    with Host(str(PREP_SCRIPT), asan=True) as h:
        h.conf(prolog_slurmctld=path, epilog_slurmctld=path)
        h.load()
        h.callbacks()
        h.prolog_slurmctld(job_id=1, account="x", spank_job_env=["A=1"],
                           qos="normal", env_sup=["SLURM_ARRAY_TASK_X=1"])
        h.epilog_slurmctld(job_id=1, comment="")
        h.wait_callbacks(2)
        h.reload()
        h.unload()
    assert h.returncode == 0 and not h.sanitizer_report()
    with Host(str(PREP_SCRIPT), daemon="slurmd", asan=True) as h:
        h.conf(prolog=path)
        h.load()
        assert h.prolog(jobid=5, uid=os.getuid(), user_name="someone",
                        spank_job_env=["X=1"], gres_job_env=[])["rc"] == 0
    assert h.returncode == 0 and not h.sanitizer_report()


def test_asan_smoke_site_factor_none(host_bin_asan):
    with Host(str(SITE_NONE), asan=True) as h:
        h.load()
        h.site_set(job_id=1, account="a", qos="q", spank_job_env=["X=1"])
        h.jobs_add(job_id=2, name="n")
        h.site_update()
        h.update_many(1000, keep=True)
        h.call_many("site_set", 100)
    assert h.returncode == 0 and not h.sanitizer_report()


def test_asan_catches_stale_job_pointer(host_bin_asan, tmp_path):
    so = build_plugin(tmp_path, "prep_stale", STALE_PTR_PLUGIN, asan=True)
    with Host(so, asan=True) as h:
        h.load()
        h.prolog_slurmctld(job_id=42)
        with pytest.raises(HostDied) as ei:
            h.epilog_slurmctld(job_id=43)
    assert "heap-use-after-free" in str(ei.value)
