"""The Python entry points of the C shim (csrc/spm_bridge.h).

``attach(ffi, lib)`` is called once per daemon by the embedding init code
(build_ffi.py).  Every entry point names ``error=-1`` so that an exception
escaping the bridge itself is a failure, never SLURM_SUCCESS; handler
exceptions are caught, logged with their traceback, and reported as
SPM_PY_FAILED.
"""
from __future__ import annotations

import array
import inspect
import sys
import threading
import time
import traceback

from . import _config, _loader, _log, _records
from ._handlers import PrEpHandler, SiteFactorHandler

PREP, SITE_FACTOR = 0, 1
OK, FAILED, EXCEPTION = 1, 2, -1
DAEMON_SLURMCTLD, DAEMON_SLURMD = 1, 2

PREP_HOOKS = {0: "prolog", 1: "epilog", 2: "prolog_slurmctld", 3: "epilog_slurmctld"}
SF_HOOKS = {4: "set", 5: "update", 6: "reconfig"}
ALL_HOOKS = 0xFFFFFFFF

CONF_KEY = {PREP: "PrEpParameters", SITE_FACTOR: "PrioritySiteFactorParameters"}
PREFIX = {PREP: "prep/python", SITE_FACTOR: "site_factor/python"}
BASE = {PREP: PrEpHandler, SITE_FACTOR: SiteFactorHandler}
DEFAULT_WORKERS = {PREP: 4, SITE_FACTOR: 1}
SF_DEFAULT_TIMEOUT = 5.0

# sprio's SITE range: site_factor is a uint32 holding factor + NICE_OFFSET.
FACTOR_MIN, FACTOR_MAX = -(2**31), 2**31 - 1

ffi = lib = None
_contexts: dict[int, "Context"] = {}


def _say(ctx: int, level: int, msg: str) -> None:
    for line in msg.splitlines() or [""]:
        lib.spm_log(level, PREFIX[ctx].encode(), line.encode("utf-8", "backslashreplace"))


def _cstr(p) -> str | None:
    return ffi.string(p).decode("utf-8", "surrogateescape") if p else None


def _method_site(method) -> str:
    try:
        code = inspect.unwrap(method).__code__
        return f"{code.co_filename}:{code.co_firstlineno}"
    except (AttributeError, TypeError):
        return "?"


class Context:
    """One plugin's handler in this daemon (prep or site_factor)."""

    def __init__(self, ctx: int) -> None:
        self.ctx = ctx
        self.cfg: _config.Config | None = None
        self.loaded: _loader.Loaded | None = None
        self.error: str | None = "not booted"
        self.trusted: set[int] = {0}
        self.next_check = 0.0
        self.refused_signature: tuple | None = None
        self.reload_lock = threading.Lock()

    # -- loading --------------------------------------------------------
    def boot(self, boot) -> int:
        self.trusted = {0, int(boot.slurm_user_id)}
        default_timeout = float(boot.default_timeout) if self.ctx == PREP else SF_DEFAULT_TIMEOUT
        boot.workers = DEFAULT_WORKERS[self.ctx]
        boot.timeout_ms = int(default_timeout * 1000)
        try:
            cfg = _config.parse(_cstr(boot.params), conf_key=CONF_KEY[self.ctx],
                                conf_path=_cstr(boot.conf_path))
        except _config.ConfigError as e:
            self._fail(str(e))
            self.cfg = None
            self.loaded = None   # fail closed: no handler from older params
            boot.hooks = ALL_HOOKS
            return FAILED
        self.cfg = cfg
        if cfg.workers:
            boot.workers = cfg.workers
        if cfg.timeout:
            boot.timeout_ms = max(1, int(cfg.timeout * 1000))
        self.loaded = None
        ok = self._try_load(initial=True)
        boot.hooks = self.hooks()
        return OK if ok else FAILED

    def _fail(self, msg: str, cause: BaseException | None = None) -> None:
        if msg != self.error:
            _say(self.ctx, _log.ERROR, f"handler not loaded: {msg}")
            self._traceback(cause)
        self.error = msg

    def _traceback(self, cause: BaseException | None) -> None:
        # the handler's own code raised (at import or in __init__): show
        # where; a SyntaxError or a refusal is fully said in one line
        if cause is not None and not isinstance(cause, SyntaxError):
            _say(self.ctx, _log.ERROR, _loader.format_tb(cause))

    def _try_load(self, initial: bool) -> bool:
        try:
            loaded = _loader.load(self.cfg, BASE[self.ctx], self.trusted)
        except _loader.HandlerError as e:
            if self.loaded is None:
                self._fail(f"{e}; every {PREFIX[self.ctx]} hook fails until it is fixed",
                           e.__cause__)
            else:
                _say(self.ctx, _log.ERROR,
                     f"changed handler refused, the previous one keeps running: {e}")
                self._traceback(e.__cause__)
            return False
        self.loaded = loaded
        self.error = None
        self.refused_signature = None
        verb = "loaded" if initial else "reloaded"
        _say(self.ctx, _log.INFO, f"{verb} handler {self.cfg.handler} from "
             f"{loaded.module_file} (hooks: {', '.join(self.hook_names()) or 'none'})")
        return True

    def hook_names(self) -> list[str]:
        if self.loaded is None:
            return []
        names = PREP_HOOKS if self.ctx == PREP else SF_HOOKS
        cls, base = type(self.loaded.instance), BASE[self.ctx]
        return [n for n in names.values() if getattr(cls, n) is not getattr(base, n)]

    def hooks(self) -> int:
        """1 << SPM_HOOK_* for each overridden hook; all of them while no
        handler is loaded, so the calls come and fail closed."""
        if self.loaded is None:
            return ALL_HOOKS
        names = PREP_HOOKS if self.ctx == PREP else SF_HOOKS
        wanted = set(self.hook_names())
        return sum(1 << bit for bit, n in names.items() if n in wanted)

    def maybe_reload(self, force: bool = False) -> None:
        """Pick up a changed handler file (at most every cfg.reload s)."""
        cfg = self.cfg
        if cfg is None or (not force and not cfg.reload):
            return
        now = time.monotonic()
        if not force and now < self.next_check:
            return
        if not self.reload_lock.acquire(blocking=False):
            return
        try:
            self.next_check = now + (cfg.reload or 0)
            _log.sync_level(lib)
            if self.loaded is None:
                self._try_load(initial=True)
            else:
                try:
                    sig = _loader.file_signature(self.loaded.module_file)
                except OSError as e:
                    sig = ("missing", str(e))
                if sig == self.loaded.signature or sig == self.refused_signature:
                    return
                if not self._try_load(initial=False):
                    self.refused_signature = sig
                    return
            lib.spm_set_hooks(self.ctx, self.hooks())
        finally:
            self.reload_lock.release()

    # -- calling --------------------------------------------------------
    def handler(self, what: str):
        """The loaded handler, or None (logged) when failing closed."""
        if self.loaded is None:
            _say(self.ctx, _log.ERROR, f"{what} failed: no usable handler ({self.error})")
            return None
        return self.loaded.instance

    def report(self, what: str, exc: BaseException) -> None:
        roots = self.cfg.path if self.cfg else ()
        _say(self.ctx, _log.ERROR,
             f"{what} failed at {_loader.where(exc, roots)}: {type(exc).__name__}: {exc}")
        _say(self.ctx, _log.ERROR, _loader.format_tb(exc))


def _reload_loop() -> None:
    """Notice changed handler files within `reload=` seconds, calls or not
    (a prep plugin gets no call on `scontrol reconfigure` in 22.05)."""
    while True:
        waits = [c.cfg.reload for c in list(_contexts.values()) if c.cfg and c.cfg.reload]
        time.sleep(min(waits + [1.0]))
        _log.sync_level(lib)     # follow scontrol setdebug, reload= or not
        for c in list(_contexts.values()):
            _log.set_prefix(PREFIX[c.ctx])
            try:
                c.maybe_reload()
            except Exception:
                _onerror(*sys.exc_info())


def _onerror(exc_type, exc, tb):
    # An exception in the bridge itself (not in handler code): log it.  The
    # entry point then returns its error= value, -1, a failure.
    text = "".join(traceback.format_exception(exc_type, exc, tb)).rstrip()
    lib.spm_log(_log.ERROR, _log.prefix().encode(),
                f"internal error in slurmpy bridge:\n{text}".encode("utf-8", "backslashreplace"))


def _own(arena):
    """Take a reference on a C arena for as long as Python needs it."""
    lib.spm_arena_ref(arena)
    return ffi.gc(arena, lib.spm_arena_unref)


def _keep_if_escaped(rec, arena) -> None:
    """A record reads its arena, which C releases after the call.  If the
    handler kept the record (stored it, or a traceback holds it), give it a
    reference of its own; if not, skip the ref + ffi.gc (most calls).
    References here: `rec` in the caller, the argument, getrefcount's own."""
    if sys.getrefcount(rec) > 3:
        rec._owner = _own(arena)


def _ctx(n: int) -> Context:
    c = _contexts.get(n)
    if c is None:
        c = _contexts[n] = Context(n)
    return c


def _describe(value) -> str:
    text = repr(value)
    if len(text) > 80:
        text = text[:77] + "..."
    return f"{text} ({type(value).__name__})"


def attach(ffi_, lib_) -> None:
    global ffi, lib
    ffi, lib = ffi_, lib_
    _records.install(ffi, lib)
    _log.install(ffi, lib)
    sys.argv = ["slurmpy"]
    threading.Thread(target=_reload_loop, name="slurmpy-reload", daemon=True).start()

    @ffi.def_extern(error=EXCEPTION, onerror=_onerror)
    def spm_py_boot(boot):
        _log.set_prefix(PREFIX.get(boot.ctx))
        return _ctx(boot.ctx).boot(boot)

    @ffi.def_extern(error=EXCEPTION, onerror=_onerror)
    def spm_py_prep(hook, arena, job, env):
        _log.set_prefix(PREFIX[PREP])
        c = _contexts[PREP]
        name = PREP_HOOKS[hook]
        loaded = c.loaded
        if loaded is None:
            jid = job.job_id if job else env.job_id
            _say(PREP, _log.ERROR, f"{name} for JobId={jid} failed: no usable handler ({c.error})")
            return FAILED
        rec = _records.Job(job, None) if job else _records.JobEnv(env, None)
        method = getattr(loaded.instance, name)
        try:
            result = method(rec)
        except BaseException as e:  # even SystemExit must not leave the hook
            _keep_if_escaped(rec, arena)
            c.report(f"{name} for JobId={rec.job_id}", e)
            return FAILED
        _keep_if_escaped(rec, arena)
        if result is not None:
            _say(PREP, _log.ERROR,
                 f"{name} for JobId={rec.job_id} failed: {_method_site(method)}: {name}() "
                 f"returned {_describe(result)}; a hook returns None to succeed and raises to fail")
            return FAILED
        return OK

    @ffi.def_extern(error=EXCEPTION, onerror=_onerror)
    def spm_py_sf_set(arena, job, factor, have):
        _log.set_prefix(PREFIX[SITE_FACTOR])
        c = _contexts[SITE_FACTOR]
        have[0] = 0
        rec = _records.Job(job, None)
        what = f"set() for JobId={rec.job_id}"
        h = c.handler(what)
        if h is None:
            return FAILED
        try:
            value = h.set(rec)
        except BaseException as e:
            _keep_if_escaped(rec, arena)
            c.report(what, e)
            return FAILED
        _keep_if_escaped(rec, arena)
        if value is None:
            return OK
        if type(value) is bool or not isinstance(value, int):
            _say(SITE_FACTOR, _log.ERROR,
                 f"{what}: {_method_site(h.set)}: set() returned {_describe(value)}; "
                 "expected an int or None; factor left unchanged")
            return FAILED
        factor[0] = _clamp_one(rec.job_id, int(value))
        have[0] = 1
        return OK

    @ffi.def_extern(error=EXCEPTION, onerror=_onerror)
    def spm_py_sf_update(arena, batch, job_ids, factors, cap, n):
        _log.set_prefix(PREFIX[SITE_FACTOR])
        c = _contexts[SITE_FACTOR]
        n[0] = 0
        what = f"update() over {batch.count} pending jobs"
        h = c.handler(what)
        if h is None:
            return FAILED
        jobs = _records.JobList(batch.jobs, batch.count, _own(arena))
        try:
            result = h.update(jobs)
        except BaseException as e:
            c.report(what, e)
            return FAILED
        if result is None:
            return OK
        site = _method_site(h.update)
        bad = _check_mapping(result)
        if bad:
            _say(SITE_FACTOR, _log.ERROR,
                 f"{what}: {site}: update() must return a mapping of int job id "
                 f"to int factor; {bad}; factors left unchanged")
            return FAILED
        if len(result) > cap:
            _say(SITE_FACTOR, _log.ERROR,
                 f"{what}: {site}: update() returned {len(result)} factors for "
                 f"{cap} pending jobs; factors left unchanged")
            return FAILED
        ids = array.array("I", result.keys())
        try:
            vals = array.array("q", result.values())
        except OverflowError:       # beyond int64: clamp item by item
            vals = array.array("q", (_clamp_one(j, v) for j, v in result.items()))
        if vals and (min(vals) < FACTOR_MIN or max(vals) > FACTOR_MAX):
            vals = array.array("q", (_clamp_one(j, v) for j, v in zip(ids, vals)))
        k = len(ids)
        if k:
            ffi.memmove(job_ids, ids, k * ids.itemsize)
            ffi.memmove(factors, vals, k * vals.itemsize)
        n[0] = k
        return OK

    @ffi.def_extern(error=EXCEPTION, onerror=_onerror)
    def spm_py_sf_reconfig():
        _log.set_prefix(PREFIX[SITE_FACTOR])
        c = _contexts.get(SITE_FACTOR)
        if c is None:
            return FAILED
        c.maybe_reload(force=True)
        if c.loaded is None:
            return FAILED
        try:
            c.loaded.instance.reconfig()
        except BaseException as e:
            c.report("reconfig()", e)
            return FAILED
        return OK


def _clamp_one(job_id: int, value: int) -> int:
    if FACTOR_MIN <= value <= FACTOR_MAX:
        return value
    clamped = FACTOR_MIN if value < FACTOR_MIN else FACTOR_MAX
    _say(SITE_FACTOR, _log.INFO,
         f"warning: JobId={job_id}: site factor {value} is out of range "
         f"[{FACTOR_MIN}, {FACTOR_MAX}]; using {clamped}")
    return clamped


def _check_mapping(result) -> str | None:
    """None if result maps int job ids to int factors (bool is not a
    factor); else what is wrong.  Type checks run at C speed (map/set)."""
    try:
        keys, values = result.keys(), result.values()
        ktypes, vtypes = set(map(type, keys)), set(map(type, values))
    except (AttributeError, TypeError):
        return f"got {_describe(result)}"
    def ok(types):
        return all(issubclass(t, int) and not issubclass(t, bool) for t in types)
    if ok(ktypes) and ok(vtypes):
        if any(k < 0 or k > 0xFFFFFFFF for k in (min(keys, default=0), max(keys, default=0))):
            return "a job id is out of range"
        return None
    for k, v in result.items():
        if not ok({type(k)}) or not ok({type(v)}):
            return f"first bad entry {_describe(k)}: {_describe(v)}"
    return "bad entry"
