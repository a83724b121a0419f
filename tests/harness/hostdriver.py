"""Python driver for tests/host/spm_host: a fake slurmctld/slurmd that loads
one Slurm plugin .so and calls its exported symbols with synthetic records.

    from tests.harness.hostdriver import Host
    with Host("/usr/lib/x86_64-linux-gnu/slurm-wlm/prep_script.so") as h:
        h.conf(prolog_slurmctld="/path/to/script")
        h.load()
        h.callbacks()
        r = h.prolog_slurmctld(job_id=42, account="phys")
        cbs = h.wait_callbacks(1, timeout=10)

Every request has a timeout; a host that hangs or dies raises HostTimeout /
HostDied (and is killed) instead of hanging the test.  See
tests/host/README.md for the wire format.
"""

import fcntl
import os
import queue
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))   # tests/
HOST_DIR = os.path.join(HERE, "host")
HOST_SRC = os.path.join(HOST_DIR, "spm_host.c")
HOST_H = os.path.join(HOST_DIR, "spm_host.h")
BUILD_SH = os.path.join(HOST_DIR, "build.sh")
SLURM_LIBDIR = os.environ.get("SLURM_LIBDIR",
                              "/usr/lib/x86_64-linux-gnu/slurm-wlm")
def _default_slurm_src() -> str:
    """The configured Slurm tree `make deps` made (build/slurm-src/...)."""
    import glob
    found = sorted(glob.glob(os.path.join(os.path.dirname(HERE), "build",
                                          "slurm-src", "slurm-wlm-*", "config.h")))
    return os.path.dirname(found[-1]) if found else ""


SLURM_SRC = os.environ.get("SLURM_SRC") or _default_slurm_src()


def _slurm_version_number(src: str) -> int:
    """SLURM_VERSION_NUMBER of the configured tree (0x160508 for 22.05.8)."""
    import re
    try:
        text = open(os.path.join(src, "slurm", "slurm_version.h")).read()
    except OSError:
        return 0x160508
    m = re.search(r"#define\s+SLURM_VERSION_NUMBER\s+(0x[0-9a-fA-F]+)", text)
    return int(m.group(1), 16) if m else 0x160508


#: The Slurm release the plugins and the host are built against.
SLURM_VERSION_NUMBER = _slurm_version_number(SLURM_SRC)


def slurm_at_least(major: int, minor: int) -> bool:
    return SLURM_VERSION_NUMBER >= (major << 16) + (minor << 8)


def prep_timeout_conf(seconds: int) -> dict:
    """conf() fields for PrologEpilogTimeout=seconds: 25.05 splits it into
    PrologTimeout and EpilogTimeout (both set here)."""
    if slurm_at_least(25, 5):
        return {"prolog_timeout": seconds, "epilog_timeout": seconds}
    return {"prolog_epilog_timeout": seconds}

NO_VAL = 0xFFFFFFFE
NO_VAL16 = 0xFFFE
INFINITE = 0xFFFFFFFF
NICE_OFFSET = 0x80000000

# enum job_states (slurm.h)
JOB_STATES = {
    "PENDING": 0, "RUNNING": 1, "SUSPENDED": 2, "COMPLETE": 3,
    "CANCELLED": 4, "FAILED": 5, "TIMEOUT": 6, "NODE_FAIL": 7,
    "PREEMPTED": 8, "BOOT_FAIL": 9, "DEADLINE": 10, "OOM": 11,
}

SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                     "runtime error:", "ERROR: UndefinedBehaviorSanitizer")

_KEY_RE = re.compile(r"^[a-z_][a-z0-9_]*$")
_INT_RE = re.compile(r"^-?[0-9]+$")
_HEX_RE = re.compile(r"^x(?:[0-9a-f]{2})*$")


class HostError(Exception):
    """The host answered `error VERB message` (bad request or state)."""

    def __init__(self, verb, message, stderr=""):
        self.verb = verb
        self.message = message
        self.stderr = stderr
        text = "%s: %s" % (verb, message)
        if stderr:
            text += "\n--- host stderr (tail) ---\n" + stderr[-4000:]
        super().__init__(text)


class HostDied(HostError):
    """The host process exited (crash, sanitizer abort, symbol error)."""


class HostTimeout(HostError):
    """No answer within the timeout: the host was killed."""


class PluginLoadError(HostError):
    """load/reload returned rc != 0."""


# --------------------------------------------------------------------------
# encoding
# --------------------------------------------------------------------------

def encode_str(value):
    """str/bytes/None -> wire value (x<hex> or -)."""
    if value is None:
        return "-"
    if isinstance(value, str):
        value = value.encode("utf-8", "surrogateescape")
    if isinstance(value, (bytes, bytearray)):
        return "x" + bytes(value).hex()
    raise TypeError("expected str, bytes or None, got %r" % (value,))


def encode_value(value):
    if value is None or isinstance(value, (str, bytes, bytearray)):
        return encode_str(value)
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    raise TypeError("cannot encode %r" % (value,))


def encode_fields(fields):
    """kwargs -> list of key=value tokens (lists become repeated keys)."""
    tokens = []
    for key, value in fields.items():
        if not _KEY_RE.match(key):
            raise ValueError("bad field name %r" % key)
        if key == "job_state" and isinstance(value, str):
            value = JOB_STATES[value.upper()]
        if isinstance(value, (list, tuple)):
            if not value:
                tokens.append("%s=[]" % key)
            for item in value:
                if item is None:
                    raise ValueError("%s: list items cannot be None" % key)
                tokens.append("%s=%s" % (key, encode_str(item)))
        else:
            tokens.append("%s=%s" % (key, encode_value(value)))
    return tokens


def decode_value(raw):
    if raw == "-":
        return None
    if raw == "[]":
        return []
    if _INT_RE.match(raw):
        return int(raw)
    if _HEX_RE.match(raw):
        return bytes.fromhex(raw[1:]).decode("utf-8", "surrogateescape")
    return raw      # bare word (enumeration value)


def _fold_strv(row):
    """A desc row's char ** fields (name.size, name.nullterm, name.0 ...)
    as one list per field; a field whose array is not NULL-terminated
    fails here."""
    for key in [k for k in row if k.endswith(".size")]:
        name = key[:-5]
        n = row.pop(key)
        if row.pop(name + ".nullterm") != 1:
            raise AssertionError("%s: entry %d is not NULL" % (name, n))
        row[name] = [row.pop("%s.%d" % (name, i)) for i in range(n)]
    return row


def parse_kv(tokens):
    out = {}
    for tok in tokens:
        key, sep, val = tok.partition("=")
        if not sep:
            raise ValueError("malformed token %r" % tok)
        out[key] = decode_value(val)
    return out


# --------------------------------------------------------------------------
# building
# --------------------------------------------------------------------------

HOST_BUILD_DIR = os.environ.get(
    "SPM_HOST_BUILD_DIR",
    os.path.join(os.path.dirname(HERE), "build", "host"))


def host_binary(asan=False):
    """Path of the host; $SPM_HOST / $SPM_HOST_ASAN override."""
    env = os.environ.get("SPM_HOST_ASAN" if asan else "SPM_HOST")
    if env:
        return env
    return os.path.join(HOST_BUILD_DIR,
                        "spm_host.asan" if asan else "spm_host")


def ensure_built(asan=False, slurm_src=None):
    """Build spm_host (or the ASan variant) if missing or older than the
    source; serialized with a lock file so parallel test workers agree."""
    out = host_binary(asan)
    if os.environ.get("SPM_HOST_ASAN" if asan else "SPM_HOST"):
        return out              # externally provided, never rebuilt
    src_mtime = max(os.path.getmtime(p) for p in (HOST_SRC, HOST_H, BUILD_SH))
    if os.path.exists(out) and os.path.getmtime(out) >= src_mtime:
        return out
    os.makedirs(os.path.dirname(out), exist_ok=True)
    lock_path = out + ".lock"
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if os.path.exists(out) and os.path.getmtime(out) >= src_mtime:
            return out
        tmp = out + ".tmp.%d" % os.getpid()
        cmd = [BUILD_SH] + (["--asan"] if asan else []) + \
            [slurm_src or SLURM_SRC, tmp]
        res = subprocess.run(cmd, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, timeout=300)
        if res.returncode:
            raise RuntimeError("building spm_host failed:\n" +
                               res.stdout.decode(errors="replace"))
        os.replace(tmp, out)
    return out


# --------------------------------------------------------------------------
# the host
# --------------------------------------------------------------------------

class Host:
    """Context manager around one spm_host process driving one plugin."""

    def __init__(self, plugin_path, daemon="slurmctld", log_path=None,
                 env=None, asan=False, debug=5, deadlock_ms=3000,
                 clean_env=False,
                 timeout=30.0, binary=None, build=True,
                 fail_on_deadlock=True, strict_callbacks=True):
        if daemon not in ("slurmctld", "slurmd", "slurmstepd"):
            raise ValueError("daemon must be slurmctld, slurmd or slurmstepd")
        self.plugin_path = plugin_path
        self.daemon = daemon
        self.asan = asan
        self.timeout = timeout
        self.fail_on_deadlock = fail_on_deadlock
        self.strict_callbacks = strict_callbacks
        self._tmpdir = tempfile.mkdtemp(prefix="spm_host.")
        self.log_path = log_path or os.path.join(self._tmpdir, "plugin.log")
        self.stderr_path = os.path.join(self._tmpdir, "stderr")
        if binary is None:
            binary = ensure_built(asan) if build else host_binary(asan)
        self.binary = binary

        # clean_env: start with what systemd gives a daemon, nothing more
        penv = ({"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"} if clean_env
                else dict(os.environ))
        if asan:
            penv.setdefault("ASAN_OPTIONS",
                            "detect_leaks=1:abort_on_error=0:exitcode=23:"
                            "halt_on_error=1:detect_odr_violation=0")
            penv.setdefault("UBSAN_OPTIONS",
                            "print_stacktrace=1:halt_on_error=1")
        if env:
            penv.update(env)

        self._events = []               # all "event" lines, parsed
        self._cond = threading.Condition()
        self._responses = queue.Queue()
        self._stderr_f = open(self.stderr_path, "wb")
        self._final_log = self._final_stderr = None
        self._own_log = log_path is None
        self.returncode = None
        cmd = [binary, "--plugin", plugin_path, "--daemon", daemon,
               "--log", self.log_path, "--debug", str(debug),
               "--deadlock-ms", str(deadlock_ms)]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE,
                                     stderr=self._stderr_f, env=penv,
                                     start_new_session=True)
        self._reader = threading.Thread(target=self._read_loop, daemon=True)
        self._reader.start()
        ready = self._expect("ready", self.timeout)
        self.ready = ready

    # -- plumbing ----------------------------------------------------------

    def _read_loop(self):
        for raw in self.proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            if line.startswith("event "):
                parts = line.split()
                ev = parse_kv(parts[2:])
                ev["event"] = parts[1]
                with self._cond:
                    self._events.append(ev)
                    self._cond.notify_all()
            else:
                self._responses.put(line)
        self._responses.put(None)

    def stderr(self):
        if self._final_stderr is not None:
            return self._final_stderr
        try:
            with open(self.stderr_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def log(self):
        """The plugin's (and host's) Slurm log output so far."""
        if self._final_log is not None:
            return self._final_log
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def _kill(self):
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            self.returncode = self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass

    def _died(self, verb):
        try:
            self.returncode = self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._kill()
        raise HostDied(verb, "host exited with status %s" % self.returncode,
                       self.stderr() + "\n--- slurm log (tail) ---\n" +
                       self.log()[-3000:])

    def _expect(self, verb, timeout):
        """Read rows until `ok VERB ...` / `error ...`."""
        rows = []
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            try:
                line = self._responses.get(timeout=max(left, 0.001))
            except queue.Empty:
                self._kill()
                raise HostTimeout(verb, "no answer within %.1fs (host "
                                  "killed)" % timeout, self.stderr())
            if line is None:
                self._died(verb)
            parts = line.split()
            if not parts:
                continue
            if parts[0] == "row":
                row = parse_kv(parts[2:])
                row["row"] = parts[1]
                rows.append(row)
            elif parts[0] == "ok":
                if len(parts) < 2 or parts[1] != verb:
                    raise HostError(verb, "protocol desync: %r" % line)
                res = parse_kv(parts[2:])
                if rows:
                    res["rows"] = rows
                return res
            elif parts[0] == "error":
                raise HostError(parts[1] if len(parts) > 1 else verb,
                                " ".join(parts[2:]))
            else:
                raise HostError(verb, "unexpected line %r" % line)

    def request(self, verb, *tokens, timeout=None, thread=False):
        """Send one command and return its parsed `ok` line (rows under
        'rows').  thread=True runs it on a fresh pthread (in_thread)."""
        if self.proc.poll() is not None:
            self._died(verb)
        words = (["in_thread"] if thread else []) + [verb] + list(tokens)
        data = (" ".join(words) + "\n").encode("ascii")
        try:
            self.proc.stdin.write(data)
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            self._died(verb)
        return self._expect(verb, self.timeout if timeout is None
                            else timeout)

    # -- events ------------------------------------------------------------

    @property
    def events(self):
        with self._cond:
            return list(self._events)

    @property
    def callback_events(self):
        return [e for e in self.events if e["event"] == "callback"]

    @property
    def deadlocks(self):
        return [e for e in self.events if e["event"].endswith("_deadlock")]

    def wait_callbacks(self, n, timeout=10.0, check=True):
        """Wait until n callbacks in total have arrived; return all
        callback events so far.  Raises HostTimeout if check and fewer."""
        res = self.request("wait_callbacks", "n=%d" % n,
                           "timeout_ms=%d" % int(timeout * 1000),
                           timeout=timeout + self.timeout)
        cbs = self.callback_events
        if check and not res["waited"]:
            raise HostTimeout("wait_callbacks", "got %d of %d callbacks "
                              "within %.1fs: %r" % (res["got"], n, timeout,
                                                    cbs))
        return cbs

    # -- configuration / lifecycle -----------------------------------------

    def conf(self, **fields):
        """Set slurm_conf members (prolog_slurmctld=..., prep_params=...)."""
        return self.request("conf", *encode_fields(fields))

    def slurmd_conf(self, **fields):
        """Set slurmd's global `conf` (node_name, conffile, stepd_loc...)."""
        return self.request("dconf", *encode_fields(fields))

    def _check_load(self, verb, res, check):
        if check and res.get("rc") != 0:
            raise PluginLoadError(verb, "rc=%s (%s) dlerror=%s" % (
                res.get("rc"), res.get("err"), res.get("dlerror")),
                self.stderr() + self.log()[-2000:])
        return res

    def load(self, now=False, check=True, timeout=None):
        """dlopen + version check + init(), like plugin_load_from_file()."""
        toks = ["now=1"] if now else []
        return self._check_load("load", self.request("load", *toks,
                                                     timeout=timeout), check)

    # What the boot thread logs once it has published the result (ctx.c).
    BOOT_DONE = ": boot finished: hooks "

    def boots_done(self):
        return self.log().count(self.BOOT_DONE)

    def wait_booted(self, count=1, timeout=15.0):
        """Wait until `count` handler loads (init() starts them on a thread
        of their own) have finished, loaded or refused."""
        end = time.monotonic() + timeout
        while self.boots_done() < count:
            if time.monotonic() > end:
                raise HostTimeout("wait_booted", "%d of %d boots within %.1fs:\n%s"
                                  % (self.boots_done(), count, timeout, self.log()[-2000:]))
            time.sleep(0.01)

    def reload(self, check=True, timeout=None):
        """fini+dlclose then load again, without register_callbacks (like
        prep_g_reconfig() when PrEpPlugins changed)."""
        return self._check_load("reload", self.request("reload",
                                                       timeout=timeout), check)

    def unload(self, timeout=None):
        return self.request("unload", timeout=timeout)

    def fini(self, timeout=None):
        return self.request("fini", timeout=timeout)

    def callbacks(self, prolog=True, epilog=True):
        """prep_p_register_callbacks() with the host's callbacks (False ->
        NULL function pointer)."""
        return self.request("callbacks", "prolog=%d" % bool(prolog),
                            "epilog=%d" % bool(epilog))

    def required(self):
        res = self.request("required")
        return {k: (bool(v) if k != "unset_mask" else v)
                for k, v in res.items()}

    # -- prep hooks --------------------------------------------------------

    def prolog_slurmctld(self, _thread=False, _timeout=None, **job):
        return self.request("prolog_slurmctld", *encode_fields(job),
                            thread=_thread, timeout=_timeout)

    def epilog_slurmctld(self, _thread=False, _timeout=None, **job):
        return self.request("epilog_slurmctld", *encode_fields(job),
                            thread=_thread, timeout=_timeout)

    def prolog(self, _thread=False, _timeout=None, **env):
        return self.request("prolog", *encode_fields(env), thread=_thread,
                            timeout=_timeout)

    def epilog(self, _thread=False, _timeout=None, **env):
        return self.request("epilog", *encode_fields(env), thread=_thread,
                            timeout=_timeout)

    # -- site_factor -------------------------------------------------------

    def jc_end(self, _thread=False, _timeout=None, **job):
        """jobcomp: the job finished (log_record / record_job_end), under
        the host's job lock; the record is purged right after."""
        return self.request("jc_end", *encode_fields(job), thread=_thread, timeout=_timeout)

    def jc_start(self, _thread=False, _timeout=None, **job):
        return self.request("jc_start", *encode_fields(job), thread=_thread, timeout=_timeout)

    def jc_reconfig(self):
        """jobcomp: set_location() again, as on scontrol reconfigure."""
        return self.request("jc_reconfig")

    def site_set(self, _thread=False, **job):
        return self.request("site_set", *encode_fields(job), thread=_thread)

    def site_reconfig(self, _thread=False):
        return self.request("site_reconfig", thread=_thread)

    def site_update(self, _thread=False, raw=False):
        """Run site_factor_p_update(); return {job_id: site_factor}."""
        res = self.request("site_update", thread=_thread)
        if raw:
            return res
        return {r["job_id"]: r["value"] for r in res.get("rows", [])}

    # -- job_submit --------------------------------------------------------

    def parts_add(self, default=False, **part):
        toks = encode_fields(part) + (["default=1"] if default else [])
        return self.request("parts_add", *toks)

    def parts_clear(self):
        return self.request("parts_clear")

    def js_submit(self, submit_uid=0, _thread=False, _timeout=None, _err_msg=None, **desc):
        """job_submit() on a job_desc_msg_t built from `desc` (unset
        members as slurm_init_job_desc_msg() leaves them; `_err_msg`: what
        an earlier JobSubmitPlugins plugin left in *err_msg).  Returns the
        ok line (rc, err_msg, us) with the request afterwards under 'desc'."""
        extra = [] if _err_msg is None else ["err_msg=" + encode_str(_err_msg)]
        res = self.request("js_submit", "submit_uid=%d" % submit_uid, *extra,
                           *encode_fields(desc), thread=_thread, timeout=_timeout)
        res["desc"] = _fold_strv(res.pop("rows")[0])
        return res

    def js_modify(self, job, submit_uid=0, _thread=False, _timeout=None, **desc):
        """job_modify() with the job record built from `job` (host job
        fields) and the request from `desc`."""
        toks = ["job." + t for t in encode_fields(job)]
        res = self.request("js_modify", "submit_uid=%d" % submit_uid,
                           *encode_fields(desc), *toks, thread=_thread, timeout=_timeout)
        res["desc"] = _fold_strv(res.pop("rows")[0])
        return res

    def jobs_add(self, **job):
        return self.request("jobs_add", *encode_fields(job))

    def jobs_clear(self):
        return self.request("jobs_clear")

    # -- benchmarks / misc -------------------------------------------------

    def update_many(self, n, mode="plugin", keep=False, timeout=None):
        return self.request("update_many", "n=%d" % n, "mode=%s" % mode,
                            "keep=%d" % bool(keep), timeout=timeout)

    def call_many(self, hook, n, mode="plugin", timeout=30.0):
        return self.request("call_many", "hook=%s" % hook, "n=%d" % n,
                            "mode=%s" % mode,
                            "timeout_ms=%d" % int(timeout * 1000),
                            timeout=timeout + self.timeout)

    def stats(self):
        return self.request("stats")

    def mem(self):
        """{'rss_kib': VmRSS, 'malloc_inuse': bytes malloc has out}."""
        r = self.request("mem")
        return {k: int(r[k]) for k in ("rss_kib", "malloc_inuse")}

    def mark(self, text):
        return self.request("mark", "text=%s" % encode_str(text))

    def sleep_ms(self, ms, timeout=None):
        return self.request("sleep_ms", "ms=%d" % ms, timeout=timeout)

    def ping(self):
        return self.request("ping")

    def lock_hold(self):
        """A host thread takes the job write lock and keeps it (callbacks
        block on it) until lock_release()."""
        return self.request("lock_hold")

    def lock_release(self):
        return self.request("lock_release")

    def sanitizer_report(self):
        err = self.stderr()
        return err if any(m in err for m in SANITIZER_MARKERS) else ""

    def quit(self, timeout=None):
        """Orderly shutdown (joins script threads, fini+dlclose, frees
        everything); returns the exit status.  Raises HostDied on a
        non-zero exit (e.g. LeakSanitizer) or any sanitizer report."""
        if self.returncode is not None:
            return self.returncode
        if self.proc.poll() is None:
            self.request("quit", timeout=timeout)
        try:
            self.returncode = self.proc.wait(timeout=timeout or self.timeout)
        except subprocess.TimeoutExpired:
            self._kill()
            raise HostTimeout("quit", "host did not exit", self.stderr())
        report = self.sanitizer_report()
        if self.returncode != 0 or report:
            raise HostDied("quit", "exit status %s" % self.returncode,
                           self.stderr())
        self.check_events()
        return self.returncode

    def check_events(self):
        """Raise if the plugin deadlocked (a real slurmctld would hang) or
        completed an async call that was never started (expected=0)."""
        if self.fail_on_deadlock and self.deadlocks:
            raise HostError("deadlock", "plugin would deadlock slurmctld: "
                            "%r" % self.deadlocks, self.stderr())
        bad = [e for e in self.callback_events if not e.get("expected")]
        if self.strict_callbacks and bad:
            raise HostError("callback", "callbacks without an outstanding "
                            "async call: %r" % bad, self.stderr())

    def close(self):
        try:
            if self.returncode is None and self.proc.poll() is None:
                try:
                    self.quit()
                finally:
                    self._kill()
        finally:
            for f in (self.proc.stdin, self.proc.stdout):
                try:
                    f.close()
                except OSError:
                    pass
            self._stderr_f.close()
            self._reader.join(timeout=5)
            # keep the text, drop the temp dir
            self._final_log = self.log()
            self._final_stderr = self.stderr()
            shutil.rmtree(self._tmpdir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()        # may raise HostDied (sanitizer, bad exit)
        else:
            try:
                self.close()
            except HostError:
                pass            # the original exception is more useful
        return False
