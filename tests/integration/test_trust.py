"""Can a site trust prep/python to check every job?  Real-daemon tests
(issue: trust).

These tests state REQUIRED behaviour.  Each one must be able to fail; none
encodes what the current code happens to do.  Every wait is bounded, and
every cluster is stopped by the cluster_factory fixture, even on failure.

1. prep/python added by ``scontrol reconfigure`` (Slurm 22.05 then re-inits
   the plugin with ``prep_g_init(NULL)``: no callbacks) still runs the
   handler, and a failing prolog_slurmctld still stops the job.
2. Hung handlers (blocked in C, where TimeoutError cannot reach them) never
   leave jobs CONFIGURING: the queue drains, slurmctld answers, and it stops
   on SIGTERM.
3. A handler package that others can write is refused before any of its
   code runs, and jobs fail closed.
4. Non-ASCII text I/O works inside the daemons as in a normal ``python3``.
5. Processes a handler starts do not inherit a blocked signal mask.
"""
from __future__ import annotations

import importlib.util
import json
import os
import pathlib
import py_compile
import pwd
import re
import signal
import subprocess
import textwrap
import threading
import time

import pytest

from tests.harness.daemonproc import pid_alive
from tests.harness.slurmcluster import TERMINAL_JOB_STATES, Cluster, slurm_at_least

from .conftest import BUILD_PLUGINS, RECORDING_HANDLER, read_calls, write_handler

pytestmark = pytest.mark.integration

FAILED_STATES = frozenset({"FAILED", "CANCELLED", "NODE_FAIL", "BOOT_FAIL"})


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------

def _require_build() -> None:
    if not (BUILD_PLUGINS / "prep_python.so").exists():
        pytest.fail("build/plugins/prep_python.so is missing: run `make build` first")


def _prep_conf(hdir: pathlib.Path, handler: str = "site_prep:Handler",
               params: str = "") -> list[str]:
    return ["PrEpPlugins=prep/python",
            f"PrEpParameters=handler={handler},path={hdir}{params}",
            "Epilog=/bin/true"]


def _log_lines(c: Cluster, *needles: str, which: str = "ctld",
               limit: int = 40) -> str:
    """The log lines that contain any of ``needles`` (last ``limit``)."""
    log = c.ctld_log() if which == "ctld" else c.slurmd_log()
    lines = [l for l in log.splitlines() if any(n in l for n in needles)]
    return "\n".join(lines[-limit:]) or f"<no {which} log line contains {needles}>"


def _context(c: Cluster, *needles: str) -> str:
    """Log excerpt for assertion messages: matching lines of both logs,
    then the tails."""
    needles = needles or ("prep/python",)
    return ("\n----- slurmctld.log lines matching " + repr(needles) + " -----\n"
            + _log_lines(c, *needles)
            + "\n----- slurmd.log lines matching " + repr(needles) + " -----\n"
            + _log_lines(c, *needles, which="slurmd")
            + "\n" + c.log_tails(25))


def _wait_terminal(c: Cluster, jid: int, timeout: float = 60.0) -> dict:
    """Poll until the job is in a terminal state; returns its record.  On
    timeout: AssertionError with the last record and log context."""
    deadline = time.monotonic() + timeout
    rec: dict = {}
    while True:
        rec = c.jobs().get(jid, rec)
        if rec.get("JobState") in TERMINAL_JOB_STATES:
            return rec
        if time.monotonic() > deadline:
            raise AssertionError(
                f"JobId={jid} not finished after {timeout}s: "
                f"JobState={rec.get('JobState')} Reason={rec.get('Reason')}"
                + _context(c, "prep/python", f"JobId={jid}"))
        time.sleep(0.2)


#: The boot's outcome in slurmctld's log: the handler loaded, or not.
LOAD_OUTCOME = r"prep/python: (loaded handler |handler not loaded: )"


def _wait_log_quietly(c: Cluster, pattern: str, timeout: float = 30.0) -> None:
    """Wait for `pattern` in slurmctld's log; if it never comes, return and
    let the test's own assertions say what is missing (the deadline only
    catches a hang)."""
    try:
        c.wait_for_log(pattern, timeout=timeout)
    except Exception:
        pass


def _wait_calls_quietly(calls: pathlib.Path, jid: int, timeout: float = 30.0) -> list[dict]:
    """The handler's call records once one is for `jid` (or after the
    deadline, whatever there is: the test's assertions report it)."""
    deadline = time.monotonic() + timeout
    while not any(r["job_id"] == jid for r in read_calls(calls)):
        if time.monotonic() > deadline:
            break
        time.sleep(0.2)
    return read_calls(calls)


def _wait_file(path: pathlib.Path, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


# --------------------------------------------------------------------------
# 1. fail-open after a reconfigure that adds prep/python
# --------------------------------------------------------------------------

def _cluster_then_add_prep_python(cluster_factory, tmp_path, body: str):
    """Start a cluster whose PrEpPlugins is Slurm's default (prep/script),
    then write prep/python + a recording handler into slurm.conf and
    ``scontrol reconfigure``.  Returns (cluster, calls file)."""
    _require_build()
    hdir = tmp_path / "handlers"
    calls = tmp_path / "calls.jsonl"
    write_handler(hdir, "site_prep", RECORDING_HANDLER.format(calls=str(calls), body=body))
    c = cluster_factory(plugin_dirs=[str(BUILD_PLUGINS)], conf_extra=["Epilog=/bin/true"])
    c.start()
    assert "prep/python" not in c.conf_path.read_text()
    since = c.log_offset()
    c.rewrite_conf(_prep_conf(hdir))   # rewrites slurm.conf, scontrol reconfigure
    if slurm_at_least(23, 11):
        # a new slurmctld image loads prep/python from scratch
        c.wait_for_log(r"prep/python: loaded handler site_prep:Handler",
                       since=since, timeout=30)
    else:
        c.wait_for_log(r"PrEpPlugins changed to prep/python", since=since, timeout=30)
    # slurmd reconfigures too: let the node settle before the next job
    c.wait_node(predicate=lambda n: n.get("State", "").split("+")[0] in ("IDLE", "MIXED"),
                timeout=30)
    return c, calls


def test_reconfigure_adding_prep_python_runs_handler(cluster_factory, tmp_path):
    body = '''
    def prolog_slurmctld(self, job):
        record("prolog_slurmctld", job)
'''
    c, calls = _cluster_then_add_prep_python(cluster_factory, tmp_path, body)
    ran = tmp_path / "script_ran_at"
    jid = c.sbatch("-o", "/dev/null", wrap=f"date +%s.%N > {ran}")
    rec = _wait_terminal(c, jid, timeout=60)
    # the handler's record of the call (it may come late: that is a fail-open
    # too, caught by the order check below); the deadline only catches never
    seen = [r for r in _wait_calls_quietly(calls, jid) if r["hook"] == "prolog_slurmctld"]
    assert any(r["job_id"] == jid for r in seen), (
        f"prolog_slurmctld of the handler added by reconfigure never ran for "
        f"JobId={jid} (job ended {rec.get('JobState')}, batch script ran: "
        f"{ran.exists()}); handler calls: {seen}" + _context(c, "prep/python", f"JobId={jid}"))
    assert rec["JobState"] == "COMPLETED", rec
    started = next(r["t"] for r in seen if r["job_id"] == jid)
    assert ran.exists() and float(ran.read_text()) >= started, \
        "the batch script ran before prolog_slurmctld"


def test_reconfigure_adding_prep_python_raising_prolog_stops_job(cluster_factory, tmp_path):
    body = '''
    def prolog_slurmctld(self, job):
        record("prolog_slurmctld", job)
        raise RuntimeError("site check refused job " + str(job.job_id) + " marker-5521")
'''
    c, calls = _cluster_then_add_prep_python(cluster_factory, tmp_path, body)
    ran = tmp_path / "script_ran"
    jid = c.sbatch("--no-requeue", "-o", "/dev/null", wrap=f"touch {ran}")
    rec = _wait_terminal(c, jid, timeout=60)
    _wait_log_quietly(c, f"site check refused job {jid} marker-5521")
    ctx = _context(c, "prep/python", f"JobId={jid}")
    assert not ran.exists(), (
        f"the batch script of JobId={jid} ran although the handler's "
        f"prolog_slurmctld raises (job ended {rec['JobState']})" + ctx)
    assert rec["JobState"] in FAILED_STATES, rec
    assert f"site check refused job {jid} marker-5521" in c.ctld_log(), ctx


# --------------------------------------------------------------------------
# 2. hung handlers never leave jobs CONFIGURING
# --------------------------------------------------------------------------

class _Pinger(threading.Thread):
    """``scontrol ping`` every 0.5 s until stopped; records (time, seconds,
    error or None)."""

    def __init__(self, c: Cluster, timeout: float = 10.0):
        super().__init__(daemon=True)
        self.c, self.timeout = c, timeout
        self.samples: list[tuple[float, float, str | None]] = []
        self.halt = threading.Event()

    def run(self):
        while not self.halt.is_set():
            t0 = time.monotonic()
            err = None
            try:
                cp = self.c.run("scontrol", "ping", check=False, timeout=self.timeout)
                if " is UP" not in cp.stdout:
                    err = (cp.stdout + cp.stderr).strip()[:200]
            except Exception as e:  # ClusterError on timeout
                err = str(e).splitlines()[0][:200]
            self.samples.append((t0, time.monotonic() - t0, err))
            self.halt.wait(0.5)


#: More hung calls than the 64 replacement threads a pool allowed itself
#: when this was found (the shim's cap is now 128 stuck threads a pool).
HUNG_JOBS = 70


def test_hung_handlers_never_leave_jobs_configuring(cluster_factory, tmp_path):
    """70 prolog_slurmctld calls blocked in C (time.sleep: TimeoutError
    cannot stop them) with timeout=1,workers=2, then one quick job.

    --no-requeue: a timed-out PrologSlurmctld fails the job, and Slurm
    requeues a requeueable job (eligible again ~2 min later, forever), so
    only non-requeueable hung jobs can leave the queue: Slurm kills them.

    The quick job too: its call may wait in the queue behind hung ones
    for longer than timeout=1, and a deadline counts from submission, so
    it either completes or is answered "timed out" (and killed) within
    its second.  Either way every job is answered and leaves the queue;
    then a job submitted after the burst must run normally (the pool still
    has workers although 70 threads are stuck)."""
    _require_build()
    hdir = tmp_path / "handlers"
    calls = tmp_path / "calls.jsonl"
    body = '''
    def prolog_slurmctld(self, job):
        record("prolog_slurmctld", job)
        if job.name == "hang":
            time.sleep(3600)      # blocked in C: only the thread's end stops it
'''
    write_handler(hdir, "site_prep", RECORDING_HANDLER.format(calls=str(calls), body=body))
    c = cluster_factory(plugin_dirs=[str(BUILD_PLUGINS)],
                        conf_extra=_prep_conf(hdir, params=",timeout=1,workers=2"))
    c.start()
    pinger = _Pinger(c)
    pinger.start()
    try:
        t0 = time.monotonic()
        hung = [c.sbatch("-J", "hang", "--no-requeue", "-o", "/dev/null", wrap="true")
                for _ in range(HUNG_JOBS)]
        quick = c.sbatch("-J", "quick", "--no-requeue", "-o", "/dev/null", wrap="true")
        ids = set(hung) | {quick}
        deadline = t0 + 120
        left: dict[int, str] = {}
        while True:
            cp = c.run("squeue", "-h", "-o", "%i %T", check=False, timeout=15)
            left = {}
            for line in cp.stdout.splitlines():
                jid, _, st = line.strip().partition(" ")
                if jid.isdigit() and int(jid) in ids:
                    left[int(jid)] = st
            if cp.returncode == 0 and not left:
                break
            if time.monotonic() > deadline:
                break
            time.sleep(1)
        drained_after = time.monotonic() - t0
    finally:
        pinger.halt.set()
        pinger.join(timeout=20)
    # Every requirement is checked, and all misses reported together.
    problems: list[str] = []
    jobs = c.jobs()
    if left:
        problems.append(
            f"{len(left)} of {len(ids)} jobs still in squeue 120 s after submission: "
            f"{dict(sorted(left.items()))}")
    else:
        problems.extend(
            f"{what} JobId={j} ended {jobs.get(j, {}).get('JobState')}, wanted {want}"
            for what, js, want in (("quick", [quick], {"COMPLETED"} | FAILED_STATES),
                                   ("hung", hung, FAILED_STATES))
            for j in js if jobs.get(j, {}).get("JobState") not in want)
        if jobs.get(quick, {}).get("JobState") != "COMPLETED" and \
                f"prolog_slurmctld for JobId={quick} timed out" not in c.ctld_log():
            problems.append(f"quick JobId={quick} failed without a timeout in the log")
        # After the burst: 70 threads are stuck in C, the pool still runs.
        after = c.sbatch("-J", "after", "-o", "/dev/null", wrap="true")
        state = c.wait_job(after, ("COMPLETED",) + tuple(FAILED_STATES), timeout=60).get("JobState")
        if state != "COMPLETED":
            problems.append(f"JobId={after}, submitted after the burst, ended {state}")
    # slurmctld stays responsive while 70 handlers hang: a ping held up by
    # the hung calls would take their 1 s timeouts in turn or never answer;
    # 10 s is generous for a shared 2-vCPU machine and still tells them apart
    bad_pings = [(round(dt, 2), err) for _t, dt, err in pinger.samples
                 if err or dt > 10.0]
    if not pinger.samples or bad_pings:
        problems.append(f"scontrol ping failed or took > 10 s: {bad_pings[:10]} "
                        f"(of {len(pinger.samples)} pings every 0.5 s)")
    log_excerpt = _context(c, "worker threads", "not starting")
    # slurmctld must still stop on SIGTERM (the harness's stop: SIGTERM,
    # then SIGKILL after the timeout)
    pid = c.ctld_pid
    t1 = time.monotonic()
    c.stop_ctld(timeout=30)
    took = time.monotonic() - t1
    if pid_alive(pid):
        problems.append(f"slurmctld {pid} still alive after stop_ctld")
    if c.ctld_returncode == -signal.SIGKILL:
        problems.append(f"slurmctld did not exit within 30 s of SIGTERM and "
                        f"had to be killed (SIGKILL after {took:.0f} s)")
    assert not problems, (
        "\n".join(problems) + f"\n(queue check ended {drained_after:.0f} s "
        f"after the first submission; stop took {took:.1f} s, "
        f"exit status {c.ctld_returncode})" + log_excerpt)


# --------------------------------------------------------------------------
# 3. a handler package others can write is refused before it runs
# --------------------------------------------------------------------------

PKG_MOD = '''
import json, os, time
from slurmpy_plugins import PrEpHandler

class Handler(PrEpHandler):
    def prolog_slurmctld(self, job):
        with open({calls!r}, "a") as f:
            f.write(json.dumps(dict(hook="prolog_slurmctld", job_id=job.job_id)) + "\\n")
'''


def test_world_writable_handler_package_is_refused_before_it_runs(cluster_factory, tmp_path):
    _require_build()
    hdir = tmp_path / "handlers"
    hdir.mkdir()
    hdir.chmod(0o755)
    pkg = hdir / "pkg"
    pkg.mkdir()
    marker = tmp_path / "init_ran"
    calls = tmp_path / "calls.jsonl"
    init = pkg / "__init__.py"
    init.write_text("import os\n"
                    f"open({str(marker)!r}, 'a').write(str(os.getpid()) + '\\n')\n")
    (pkg / "mod.py").write_text(textwrap.dedent(PKG_MOD.format(calls=str(calls))))
    (pkg / "mod.py").chmod(0o644)
    init.chmod(0o666)
    pkg.chmod(0o777)
    assert os.stat(pkg).st_mode & 0o777 == 0o777      # no umask in the way
    c = cluster_factory(plugin_dirs=[str(BUILD_PLUGINS)],
                        conf_extra=_prep_conf(hdir, handler="pkg.mod:Handler"))
    c.start()
    ran = tmp_path / "script_ran"
    jid = c.sbatch("--no-requeue", "-o", "/dev/null", wrap=f"touch {ran}")
    rec = _wait_terminal(c, jid, timeout=60)
    _wait_log_quietly(c, LOAD_OUTCOME)       # the load (and any code it ran) is over
    ctx = _context(c, "prep/python", "refusing", f"JobId={jid}")
    assert not marker.exists(), (
        f"pkg/__init__.py (mode 0666, in a 0777 directory) was executed by "
        f"pid(s) {marker.read_text().split()} (slurmctld={c.ctld_pid}, "
        f"slurmd={c.slurmd_pid})" + ctx)
    refusals = [l for l in c.ctld_log().splitlines()
                if "refusing" in l and str(pkg) in l]
    assert refusals, f"slurmctld's log has no 'refusing ... {pkg}' line" + ctx
    assert not ran.exists(), f"JobId={jid} ran its batch script: not failed closed" + ctx
    assert rec["JobState"] in FAILED_STATES, rec
    assert not read_calls(calls), read_calls(calls)


def test_planted_pyc_in_writable_pycache_never_runs(cluster_factory, tmp_path):
    """The handler module is root-owned 0644 in a 0755 directory, but its
    __pycache__ is world-writable and holds a .pyc planted by 'nobody'
    whose header matches the source (so a plain import would run it).
    Required: the planted code never runs; the handler either runs from
    its source or is refused (jobs then fail closed)."""
    _require_build()
    hdir = tmp_path / "handlers"
    calls = tmp_path / "calls.jsonl"
    marker = tmp_path / "planted_ran"
    good = RECORDING_HANDLER.format(calls=str(calls), body='''
    def prolog_slurmctld(self, job):
        record("prolog_slurmctld", job, origin="source")
''')
    # the planted version: same size and mtime as the source, which is
    # all a timestamp-based .pyc header records about it
    evil = good.replace('origin="source")', 'origin="planted")') \
        + f"\nopen({str(marker)!r}, 'a').write(str(os.getpid()) + '\\n')\n"
    size = max(len(good.encode()), len(evil.encode())) + 2
    good = good + "#" * (size - len(good.encode()) - 1) + "\n"
    evil = evil + "#" * (size - len(evil.encode()) - 1) + "\n"
    src = write_handler(hdir, "site_prep", good)
    evil_src = tmp_path / "evil" / "site_prep.py"
    evil_src.parent.mkdir()
    evil_src.write_text(evil)
    st = os.stat(src)
    assert st.st_size == os.stat(evil_src).st_size, "test bug: sizes differ"
    os.utime(evil_src, ns=(st.st_atime_ns, st.st_mtime_ns))
    cache = hdir / "__pycache__"
    cache.mkdir(exist_ok=True)
    pyc = pathlib.Path(importlib.util.cache_from_source(str(src)))
    py_compile.compile(str(evil_src), cfile=str(pyc), dfile=str(src),
                       invalidation_mode=py_compile.PycInvalidationMode.TIMESTAMP)
    nobody = pwd.getpwnam("nobody")
    os.chown(pyc, nobody.pw_uid, nobody.pw_gid)
    pyc.chmod(0o666)
    cache.chmod(0o777)
    c = cluster_factory(plugin_dirs=[str(BUILD_PLUGINS)], conf_extra=_prep_conf(hdir))
    c.start()
    ran = tmp_path / "script_ran"
    jid = c.sbatch("--no-requeue", "-o", "/dev/null", wrap=f"touch {ran}")
    rec = _wait_terminal(c, jid, timeout=60)
    _wait_log_quietly(c, LOAD_OUTCOME)       # the load (and any code it ran) is over
    if rec["JobState"] == "COMPLETED":       # its prolog_slurmctld ran before the job
        _wait_calls_quietly(calls, jid)
    ctx = _context(c, "prep/python", f"JobId={jid}")
    origins = {r.get("origin") for r in read_calls(calls) if r["job_id"] == jid}
    assert not marker.exists() and "planted" not in origins, (
        f"the planted {pyc} (owner nobody, in a 0777 __pycache__) was executed "
        f"(marker pids: {marker.read_text().split() if marker.exists() else []}, "
        f"handler origins seen: {origins})" + ctx)
    if rec["JobState"] == "COMPLETED":
        assert origins == {"source"}, (origins, rec)
    else:       # refused: fail closed
        assert not ran.exists(), ctx
        assert "refusing" in c.ctld_log(), ctx


# --------------------------------------------------------------------------
# 4. non-ASCII I/O inside the daemons
# --------------------------------------------------------------------------

UNICODE_HANDLER = '''
import json, locale, os, subprocess, sys
from slurmpy_plugins import PrEpHandler

DIR = {dir!r}
TEXT = "h\\u00e9llo w\\u00f6rld \\u2713 \\u65e5\\u672c"


def probe(tag):
    out = {{"encodings": [locale.getpreferredencoding(False),
                         sys.getfilesystemencoding(), sys.flags.utf8_mode]}}

    def step(name, fn):
        try:
            out[name] = {{"ok": True, "value": fn()}}
        except BaseException as e:
            out[name] = {{"ok": False, "error": f"{{type(e).__name__}}: {{e}}"}}

    def text():
        p = os.path.join(DIR, tag + "-text.txt")
        with open(p, "w") as f:
            f.write(TEXT)
        with open(p) as f:
            return f.read()

    def data():
        p = os.path.join(DIR, tag + "-data.json")
        with open(p, "w") as f:
            json.dump({{"k": TEXT}}, f, ensure_ascii=False)
        with open(p) as f:
            return json.load(f)["k"]

    def echo():
        return subprocess.run(["echo", "\\u00e9"], text=True,
                              capture_output=True, check=True).stdout

    step("text", text)
    step("json", data)
    step("echo", echo)
    path = os.path.join(DIR, tag + "-result.json")
    fd = os.open(path + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.write(fd, json.dumps(out, ensure_ascii=True).encode("ascii"))
    os.close(fd)
    os.replace(path + ".tmp", path)
    failed = [k for k, v in out.items() if isinstance(v, dict) and not v["ok"]]
    if failed:
        raise RuntimeError("non-ASCII I/O failed: " + ", ".join(
            f"{{k}}: {{out[k]['error']}}" for k in failed))


class Handler(PrEpHandler):
    def {hook}(self, rec):
        probe("{hook}")
'''

TEXT = "h\u00e9llo w\u00f6rld \u2713 \u65e5\u672c"


@pytest.mark.parametrize("lang", ["C.UTF-8", "C"])
@pytest.mark.parametrize("hook", ["prolog_slurmctld", "prolog"])
def test_non_ascii_io_inside_the_daemon(cluster_factory, tmp_path, hook, lang):
    """LANG=C is what a daemon gets from a bare systemd unit; python3
    itself then runs in UTF-8 mode (PEP 540), so a handler must too."""
    _require_build()
    hdir = tmp_path / "handlers"
    out = tmp_path / "out"
    out.mkdir()
    write_handler(hdir, "site_prep", UNICODE_HANDLER.format(dir=str(out), hook=hook))
    c = cluster_factory(plugin_dirs=[str(BUILD_PLUGINS)], conf_extra=_prep_conf(hdir),
                        env={"LANG": lang})
    c.start()
    jid = c.sbatch("--no-requeue", "-o", "/dev/null", wrap="true")
    result_path = out / f"{hook}-result.json"
    got = _wait_file(result_path, 60)
    which = "ctld" if hook == "prolog_slurmctld" else "slurmd"
    assert got, f"{hook} never wrote {result_path}" + _context(c, "prep/python")
    res = json.loads(result_path.read_text())
    ctx = (f"\n{hook} saw: {res}\n----- {which} log -----\n"
           + _log_lines(c, "prep/python", which=which))
    errors = {k: v["error"] for k, v in res.items() if isinstance(v, dict) and not v["ok"]}
    assert not errors, f"non-ASCII I/O failed in {hook} (LANG={lang}): {errors}" + ctx
    assert res["text"]["value"] == TEXT, ctx
    assert (out / f"{hook}-text.txt").read_bytes() == TEXT.encode("utf-8"), \
        "open() without encoding= did not write UTF-8"
    assert res["json"]["value"] == TEXT, ctx
    assert json.loads((out / f"{hook}-data.json").read_bytes().decode("utf-8")) == {"k": TEXT}
    assert res["echo"]["value"] == "\u00e9\n", ctx
    rec = _wait_terminal(c, jid, timeout=60)
    assert rec["JobState"] == "COMPLETED", (rec["JobState"], rec.get("Reason")) + (ctx,)
    if hook == "prolog":
        assert "DRAIN" not in c.node().get("State", ""), c.node()


# --------------------------------------------------------------------------
# 5. children of handlers start with an empty signal mask
# --------------------------------------------------------------------------

SIGMASK_HANDLER = '''
import json, os, subprocess
from slurmpy_plugins import PrEpHandler

OUT = {out!r}

def record(tag):
    cp = subprocess.run(["grep", "-E", "^Sig(Blk|Ign):", "/proc/self/status"],
                        capture_output=True, check=True)
    path = os.path.join(OUT, tag + ".json")
    fd = os.open(path + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.write(fd, json.dumps(cp.stdout.decode("ascii")).encode("ascii"))
    os.close(fd)
    os.replace(path + ".tmp", path)

class Handler(PrEpHandler):
    def {hook}(self, rec):
        record("{hook}")
'''


def _mask(status_lines: str, key: str) -> int:
    m = re.search(rf"^{key}:\s*([0-9a-fA-F]+)$", status_lines, re.M)
    assert m, status_lines
    return int(m.group(1), 16)


def _signal_names(mask: int) -> list[str]:
    names = []
    for n in range(1, 65):
        if mask & (1 << (n - 1)):
            try:
                names.append(signal.Signals(n).name)
            except ValueError:
                names.append(str(n))
    return names


@pytest.mark.parametrize("hook", ["prolog", "prolog_slurmctld"])
def test_handler_subprocess_has_empty_signal_mask(cluster_factory, tmp_path, hook):
    _require_build()
    hdir = tmp_path / "handlers"
    out = tmp_path / "out"
    out.mkdir()
    write_handler(hdir, "site_prep", SIGMASK_HANDLER.format(out=str(out), hook=hook))
    c = cluster_factory(plugin_dirs=[str(BUILD_PLUGINS)], conf_extra=_prep_conf(hdir))
    c.start()
    jid = c.sbatch("--no-requeue", "-o", "/dev/null", wrap="true")
    path = out / f"{hook}.json"
    assert _wait_file(path, 60), f"{hook} never recorded its child's mask" + _context(c)
    status = json.loads(path.read_text())
    blk = _mask(status, "SigBlk")
    assert blk == 0, (f"a subprocess started by {hook} has SigBlk={blk:016x} "
                      f"({', '.join(_signal_names(blk))})")
    rec = _wait_terminal(c, jid, timeout=60)
    assert rec["JobState"] == "COMPLETED", rec
