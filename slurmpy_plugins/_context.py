"""One plugin's handler in this daemon: parameters, loading, hot reload.

A Context is booted by the C side's boot thread (spm_py_boot) and then
used by the entry points in _bridge.  install(ffi, lib) binds it to the
embedded library; every constant comes from lib (csrc/spm_types.h).
"""
from __future__ import annotations

import os
import sys
import threading
import time
import traceback
from typing import Any

from . import _chain, _config, _loader, _log, _plugins

__all__ = ["Context", "context", "install", "say"]

ffi: Any = None
lib: Any = None
PREP = SITE_FACTOR = JOB_SUBMIT = 0
DAEMON_SLURMD = 0
ALL_HOOKS = 0xFFFFFFFF
# Views of the plugin table (_plugins.rows(): csrc/spm_plugins.h joined with
# _plugins.PLUGINS), by SPM_CTX_*; filled by bind().
PLUGIN: dict[int, _plugins.Row] = {}
HOOKS: dict[int, dict[int, str]] = {}   # ctx -> {hook number: method name}
PREFIX: dict[int, str] = {}
BASE: dict[int, type] = {}

_contexts: dict[int, "Context"] = {}
_contexts_lock = threading.Lock()
_daemon = False      # install() ran: each context gets its reload thread

EPILOG_WARNING = (
    "warning: the handler defines epilog(), but slurm.conf has no Epilog=: slurmd in "
    "Slurm 22.05 then skips the epilog of a job that has no running steps. Set "
    "Epilog=/bin/true (it is only run if prep/script is also in PrEpPlugins)")


def install(ffi_: Any, lib_: Any) -> None:
    """In a daemon: bind to the embedded library and start the log level
    loop; each context starts its own reload loop when it is made."""
    global _daemon
    bind(ffi_, lib_)
    _daemon = True
    threading.Thread(target=_level_loop, name="slurmpy-loglevel", daemon=True).start()


def bind(ffi_: Any, lib_: Any) -> None:
    """Read the plugin table and constants from `lib_` (the embedded
    library, or the test kit's stand-in, _abi.lib)."""
    global ffi, lib, PREP, SITE_FACTOR, JOB_SUBMIT, DAEMON_SLURMD
    ffi, lib = ffi_, lib_
    PREP, SITE_FACTOR = lib.SPM_CTX_PREP, lib.SPM_CTX_SITE_FACTOR
    JOB_SUBMIT = lib.SPM_CTX_JOB_SUBMIT
    DAEMON_SLURMD = lib.SPM_DAEMON_SLURMD
    table = _plugins.rows(ffi, lib)
    for d in (PLUGIN, HOOKS, PREFIX, BASE):
        d.clear()
    for ctx, row in table.items():
        PLUGIN[ctx], HOOKS[ctx], PREFIX[ctx], BASE[ctx] = row, row.hooks, row.name, row.base


def refusal(plugin: str, e: Exception) -> str:
    """Why the daemon cannot use a handler: the text of its log line
    `handler not loaded: <refusal>` (also what `slurmpy-plugins check`
    reports)."""
    if isinstance(e, _config.ConfigError):
        return str(e)
    return f"{e}; every {plugin} hook fails until it is fixed"


def say(ctx: int, level: int, msg: str, prefix_: str | None = None) -> None:
    """Log `msg` (each line) with the plugin's prefix, or `prefix_` (a
    handlers= file's own, ``prep/python[20-gpu]``)."""
    prefix = (prefix_ or PREFIX[ctx]).encode()
    for line in msg.splitlines() or [""]:
        lib.spm_log(level, prefix, line.encode("utf-8", "backslashreplace"))


def _cstr(p: Any) -> str | None:
    return ffi.string(p).decode("utf-8", "surrogateescape") if p else None


def context(ctx: int) -> "Context":
    c = _contexts.get(ctx)
    if c is None:
        with _contexts_lock:
            c = _contexts.get(ctx)
            if c is None:
                c = _contexts[ctx] = Context(ctx)
                if _daemon:
                    # one per plugin: a handler import that hangs during a
                    # reload stops only that plugin's reloads
                    threading.Thread(target=_reload_loop, args=(c,), daemon=True,
                                     name=f"slurmpy-reload-{PREFIX[ctx]}").start()
    return c


class Context:
    """One plugin's handler in this daemon (a row of the plugin table)."""

    def __init__(self, ctx: int) -> None:
        self.ctx = ctx
        self.cfg: _config.Config | None = None
        self.loaded: _loader.Loaded | None = None
        self.error: str | None = "not booted"
        self.trusted: set[int] = {0}
        self.next_check = 0.0
        self.refused_signature: tuple[Any, ...] | None = None
        # held by boot and by every reload: one load at a time
        self.reload_lock = threading.Lock()
        # how long a reload's load may take (0: no limit), and the thread
        # of a load given up on that may still be running
        self.load_limit = 0.0
        self.abandoned_load: threading.Thread | None = None
        # a plugin with a conf file beside slurm.conf (job_submit): its
        # path, watched like the handler file
        self.settings_path: str | None = None
        self.settings_sig: tuple[Any, ...] | None = None
        self.refused_settings_sig: tuple[Any, ...] | None = None
        self.conf_path: str | None = None
        self.default_timeout_ms = 0
        # handlers=: the per-file figures last published (publish_files)
        self.published: str | None = None

    # -- loading --------------------------------------------------------
    def boot(self, boot: Any) -> int:
        """spm_py_boot: parse the parameters, load the handler, fill the
        out fields of *boot.  Returns lib.SPM_PY_OK or SPM_PY_FAILED."""
        # the reload loop must not start a second load while this one
        # imports (it would see cfg set and nothing loaded yet)
        with self.reload_lock:
            return self._boot(boot)

    def _boot(self, boot: Any) -> int:
        self.trusted = {0, int(boot.slurm_user_id)}
        self.conf_path = _cstr(boot.conf_path)
        self.default_timeout_ms = int(boot.default_timeout_ms)
        self.load_limit = int(boot.load_limit_ms) / 1000
        boot.timeout_ms, boot.on_failure_accept, boot.workers = self.settings(None)
        try:
            row = PLUGIN[self.ctx]
            if row.conf_file:
                self.settings_path = _cstr(boot.params_file) or row.conf_file
                self.refused_settings_sig = None
                cfg = self._read_settings()
            else:
                cfg = _config.parse(_cstr(boot.params), conf_key=row.conf_source,
                                    conf_path=self.conf_path, keys=row.py.conf_keys)
        except (_config.ConfigError, _loader.HandlerError) as e:
            self._fail(refusal(PREFIX[self.ctx], e))
            self.cfg = None
            self.loaded = None   # fail closed: no handler from older params
            boot.hooks = ALL_HOOKS
            return int(lib.SPM_PY_FAILED)
        self.cfg = cfg
        boot.timeout_ms, boot.on_failure_accept, boot.workers = self.settings(cfg)
        self.loaded = None
        ok = self._try_load(initial=True)
        boot.hooks = self.hooks()
        if (ok and self.ctx == PREP and boot.daemon == DAEMON_SLURMD
                and not boot.epilog_set and "epilog" in self.hook_names()):
            say(self.ctx, lib.SPM_LOG_INFO, EPILOG_WARNING)
        return int(lib.SPM_PY_OK if ok else lib.SPM_PY_FAILED)

    def settings(self, cfg: _config.Config | None) -> tuple[int, int, int]:
        """(per-call limit in ms, on_failure=accept, workers) as C applies
        them (spm_ctx_apply_settings); the defaults when cfg is None."""
        if cfg is None:
            return self.default_timeout_ms, 0, PLUGIN[self.ctx].default_workers
        return (max(1, int(cfg.timeout * 1000)) if cfg.timeout else self.default_timeout_ms,
                int(cfg.on_failure == "accept"),
                cfg.workers or PLUGIN[self.ctx].default_workers)

    def _read_settings(self) -> _config.Config:
        """A conf-file plugin (job_submit): read (checked) and parse its conf
        file, noting its signature first, so that a bad file is retried only
        once it changes."""
        assert self.settings_path is not None
        self.settings_sig = _loader.file_signature(self.settings_path)
        text, sig = _loader.read_settings(self.settings_path, self.trusted)
        self.settings_sig = sig
        return _config.parse_file(self.settings_path, text, conf_path=self.conf_path,
                                  keys=PLUGIN[self.ctx].py.conf_keys)

    def _fail(self, msg: str, cause: BaseException | None = None) -> None:
        if msg != self.error:
            say(self.ctx, lib.SPM_LOG_ERROR, f"handler not loaded: {msg}")
            self._traceback(cause)
        self.error = msg

    def _traceback(self, cause: BaseException | None) -> None:
        # the handler's own code raised (at import or in __init__): show
        # where; a SyntaxError or a refusal is fully said in one line
        if cause is not None and not isinstance(cause, SyntaxError):
            say(self.ctx, lib.SPM_LOG_ERROR, _loader.format_tb(cause))

    def _load(self, cfg: _config.Config, bounded: bool) -> _loader.Loaded:
        """_loader.load; bounded (the reload loop's loads): on a thread of
        its own, given up after load_limit s, so that an import that hangs
        never stops this plugin's reloads for good.  A load given up on is
        interrupted (TimeoutError at its next bytecode; one blocked in C
        runs on until it returns, and no other load starts meanwhile)."""
        if not bounded or not self.load_limit:
            return self._load_now(cfg)
        if self.abandoned_load is not None and self.abandoned_load.is_alive():
            raise _loader.HandlerError(
                f"a load of {cfg.handler} given up on earlier is still running (an import "
                "blocked in C?): no new load starts until it returns")
        box: dict[str, Any] = {}

        def run() -> None:
            _log.set_prefix(PREFIX[self.ctx])
            try:
                box["loaded"] = self._load_now(cfg)
            except BaseException as e:  # handed to the waiting thread
                box["error"] = e

        t = threading.Thread(target=run, name=f"slurmpy-load-{PREFIX[self.ctx]}", daemon=True)
        t.start()
        t.join(self.load_limit)
        if t.is_alive():
            self.abandoned_load = t
            assert t.ident is not None
            import ctypes   # only here: most processes never need it
            ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(t.ident),
                                                       ctypes.py_object(TimeoutError))
            raise _loader.HandlerError(
                f"loading {cfg.handler} took longer than {self.load_limit:g} s (an import "
                "that hangs?): given up, and interrupted (TimeoutError)")
        if "error" in box:
            raise box["error"]
        loaded: _loader.Loaded = box["loaded"]
        return loaded

    def _load_now(self, cfg: _config.Config) -> _loader.Loaded:
        """One load: the handler, or the handlers= directory's files (each
        file that did not change since the running set keeps its handler,
        when the settings that load them are the same)."""
        hooks = tuple(HOOKS[self.ctx].values())
        if not cfg.handlers:
            return _loader.load(cfg, BASE[self.ctx], self.trusted, hooks)
        prev, running = self.loaded, self.cfg
        same = (prev is not None and running is not None and running.handlers == cfg.handlers
                and running.path == cfg.path and running.venv == cfg.venv)
        return _loader.load_dir(cfg, BASE[self.ctx], self.trusted, hooks,
                                prev if same else None)

    def _try_load(self, initial: bool, bounded: bool = False) -> bool:
        assert self.cfg is not None
        try:
            loaded = self._load(self.cfg, bounded)
        except _loader.HandlerError as e:
            if self.loaded is None:
                self._fail(refusal(PREFIX[self.ctx], e), e.__cause__)
            else:
                say(self.ctx, lib.SPM_LOG_ERROR,
                    f"changed handler refused, the previous one keeps running: {e}")
                self._traceback(e.__cause__)
            return False
        self._take(loaded, initial)
        return True

    def _take(self, loaded: _loader.Loaded, initial: bool) -> None:
        self.loaded = loaded
        self.error = None
        self.refused_signature = None
        verb = "loaded" if initial else "reloaded"
        assert self.cfg is not None
        if not initial:
            lib.spm_stats_reload(self.ctx)
        for note in loaded.notes:
            say(self.ctx, lib.SPM_LOG_ERROR, note)
        if loaded.members:
            say(self.ctx, lib.SPM_LOG_INFO, f"{verb} handlers from {loaded.module_file}: "
                f"{', '.join(m.name for m in loaded.members)}, in this order (hooks: "
                f"{', '.join(self.hook_names()) or 'none'})")
            return
        say(self.ctx, lib.SPM_LOG_INFO, f"{verb} handler {self.cfg.handler} from "
            f"{loaded.module_file} (hooks: {', '.join(self.hook_names()) or 'none'})")

    def hook_names(self) -> list[str]:
        if self.loaded is None:
            return []
        cls, base = type(self.loaded.instance), BASE[self.ctx]
        return [n for n in HOOKS[self.ctx].values() if getattr(cls, n) is not getattr(base, n)]

    def hooks(self) -> int:
        """1 << SPM_HOOK_* for each overridden hook; all of them while no
        handler is loaded, so the calls come and fail closed."""
        if self.loaded is None:
            return ALL_HOOKS
        wanted = set(self.hook_names())
        return sum(1 << bit for bit, n in HOOKS[self.ctx].items() if n in wanted)

    def reload_interval(self) -> float:
        """Seconds between checks of the handler file (and, for job_submit,
        of job_submit_python.conf; with no usable settings, at the default
        reload=); 0: never."""
        if self.cfg is not None:
            return self.cfg.reload
        return _config.DEFAULT_RELOAD if self.settings_path else 0.0

    def maybe_reload(self, force: bool = False, bounded: bool = False) -> None:
        """Pick up a changed handler file, or job_submit_python.conf (at
        most every reload= s).  bounded: the reload loop's call, whose loads
        are given up after load_limit s (see _load)."""
        interval = self.reload_interval()
        if not force and not interval:
            return
        now = time.monotonic()
        if not force and now < self.next_check:
            return
        if not self.reload_lock.acquire(blocking=False):
            return
        try:
            self.next_check = now + interval
            if self.settings_path and self._reload_settings(bounded):
                return
            if self.cfg is None:
                return
            if self.loaded is None:
                self._try_load(initial=True, bounded=bounded)
            else:
                sig = _loader.current_signature(self.cfg, self.loaded)
                if sig == self.loaded.signature or sig == self.refused_signature:
                    return
                if not self._try_load(initial=False, bounded=bounded):
                    self.refused_signature = sig
                    return
            lib.spm_set_hooks(self.ctx, self.hooks())
        finally:
            self.reload_lock.release()

    def _reload_settings(self, bounded: bool = False) -> bool:
        """job_submit: take a changed job_submit_python.conf.  A file that
        reads, parses and whose handler loads replaces the settings and the
        handler together; a bad one is refused (logged once per version)
        and the previous settings and handler keep running, unless there
        were none (then it is the reason every call fails).  True when the
        file had changed."""
        path = self.settings_path
        assert path is not None
        sig = _loader.file_signature(path)
        if sig in (self.settings_sig, self.refused_settings_sig):
            return False
        had = self.loaded is not None
        try:
            text, sig = _loader.read_settings(path, self.trusted)
            cfg = _config.parse_file(path, text, conf_path=self.conf_path,
                                     keys=PLUGIN[self.ctx].py.conf_keys)
            loaded = self._load(cfg, bounded) if had else None
        except (_config.ConfigError, _loader.HandlerError) as e:
            self.refused_settings_sig = sig
            if had:
                say(self.ctx, lib.SPM_LOG_ERROR,
                    f"changed {path} refused, the previous settings and handler keep "
                    f"running: {e}")
                self._traceback(e.__cause__)
            else:
                self.cfg = None
                self._fail(refusal(PREFIX[self.ctx], e))
                lib.spm_ctx_apply_settings(self.ctx, *self.settings(None))
                lib.spm_set_hooks(self.ctx, ALL_HOOKS)
            return True
        self.settings_sig, self.refused_settings_sig = sig, None
        self.cfg = cfg
        say(self.ctx, lib.SPM_LOG_INFO, f"{path} changed: settings reloaded")
        lib.spm_ctx_apply_settings(self.ctx, *self.settings(cfg))
        if loaded is not None:
            self._take(loaded, initial=False)
        else:
            self._try_load(initial=True, bounded=bounded)
        lib.spm_set_hooks(self.ctx, self.hooks())
        return True

    # -- calling --------------------------------------------------------
    def handler(self, what: str) -> Any:
        """The loaded handler, or None (logged) when failing closed."""
        if self.loaded is None:
            say(self.ctx, lib.SPM_LOG_ERROR, f"{what} failed: no usable handler ({self.error})")
            return None
        return self.loaded.instance

    def report(self, what: str, exc: BaseException) -> None:
        roots = self.cfg.roots if self.cfg else ()
        site = _loader.where(exc, roots)
        by = _chain.prefix_of(exc)
        say(self.ctx, lib.SPM_LOG_ERROR,
            f"{what} failed at {site}: {type(exc).__name__}: {exc}", by)
        say(self.ctx, lib.SPM_LOG_ERROR, _loader.format_tb(exc), by)
        self.call_failed(site, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)

    def call_failed(self, site: str, text: str) -> None:
        """The hook call this worker runs failed (stats: it counts as a
        failure, and this is its hook's last error).  site: "file:line" in
        the handler, or ""."""
        lib.spm_stats_error(self.ctx, site.encode("utf-8", "backslashreplace"),
                            text.encode("utf-8", "backslashreplace")[:1024])


def publish_files(c: Context) -> None:
    """handlers=: the per-file figures beside the daemon's stats file (only
    when they changed); the file goes when the plugin no longer runs a
    handlers= set."""
    p = lib.spm_stats_path()
    base = ffi.string(p).decode("utf-8", "surrogateescape") if p else ""
    if not base:
        return
    path = f"{base}{_chain.FILES_SUFFIX}{PLUGIN[c.ctx].kind}"
    loaded = c.loaded
    if loaded is None or not loaded.members:
        if c.published is not None:
            c.published = None
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        return
    try:
        c.published = _chain.publish(path, PREFIX[c.ctx], loaded.module_file, loaded.instance,
                                     c.published)
    except OSError as e:
        if c.published != "":        # said once, until a write succeeds again
            say(c.ctx, lib.SPM_LOG_ERROR, f"stats: cannot write {path}: {e.strerror}; the "
                "handler files' figures are not published")
        c.published = ""


def _reload_loop(c: Context) -> None:
    """One plugin's changed handler file, noticed within `reload=` seconds,
    calls or not (a prep plugin gets no call on `scontrol reconfigure` in
    22.05)."""
    _log.set_prefix(PREFIX[c.ctx])
    while True:
        time.sleep(min(c.reload_interval() or 1.0, 1.0))
        try:
            c.maybe_reload(bounded=True)
        except Exception:
            internal_error(*sys.exc_info())
        try:
            publish_files(c)
        except Exception:
            internal_error(*sys.exc_info())


def _level_loop() -> None:
    """Follow the daemon's log level (scontrol setdebug) every second, on a
    thread of its own: no plugin's reload can hold it up."""
    while True:
        time.sleep(1.0)
        try:
            _log.sync_level(lib)
        except Exception:
            internal_error(*sys.exc_info())


def internal_error(exc_type: Any, exc: Any, tb: Any) -> None:
    """An exception in slurmpy's own code (not in handler code): log it."""
    text = "".join(traceback.format_exception(exc_type, exc, tb)).rstrip()
    lib.spm_log(lib.SPM_LOG_ERROR, _log.prefix().encode(),
                f"internal error in slurmpy bridge:\n{text}".encode("utf-8", "backslashreplace"))
