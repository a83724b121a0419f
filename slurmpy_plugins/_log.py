"""Python ``logging`` (and stray ``print``) into the daemon's own log."""
from __future__ import annotations

import io
import logging
import threading
from typing import Any

__all__ = ["SlurmLogHandler", "install", "prefix", "set_prefix"]

_tls = threading.local()
_DEFAULT_PREFIX = "slurmpy"

# Slurm log_level_t values.  install() takes them from the library
# (spm_types.h SPM_LOG_*, the one definition); these are Slurm's values, for
# use outside a daemon (tests).
ERROR, INFO, VERBOSE, DEBUG, DEBUG2 = 2, 3, 4, 5, 6


def prefix() -> str:
    return getattr(_tls, "prefix", _DEFAULT_PREFIX)


def set_prefix(p: str | None) -> None:
    _tls.prefix = p or _DEFAULT_PREFIX


def slurm_level(levelno: int) -> int:
    if levelno >= logging.ERROR:
        return ERROR
    if levelno >= logging.INFO:   # WARNING is tagged in the text, as Slurm's warning() does
        return INFO
    if levelno >= logging.DEBUG:
        return DEBUG
    return DEBUG2


def python_level(slurm: int) -> int:
    """The lowest Python level that the daemon's log level would show."""
    if slurm >= DEBUG2:
        return 1
    if slurm >= DEBUG:
        return logging.DEBUG
    if slurm >= INFO:
        return logging.INFO
    return logging.ERROR


class SlurmLogHandler(logging.Handler):
    """Sends records to Slurm's log_var() with the plugin prefix; a
    ``warning: `` tag marks WARNING records (Slurm has no such level)."""

    def __init__(self, ffi: Any, lib: Any) -> None:
        super().__init__()
        self._ffi, self._lib = ffi, lib

    def emit(self, record: logging.LogRecord) -> None:
        try:
            msg = self.format(record)
            if record.levelno == logging.WARNING:
                msg = "warning: " + msg
            for line in msg.splitlines() or [""]:
                self._lib.spm_log(slurm_level(record.levelno), prefix().encode(),
                                  line.encode("utf-8", "backslashreplace"))
        except Exception:  # logging must never raise into a handler
            self.handleError(record)


class _LogWriter(io.TextIOBase):
    """sys.stdout/sys.stderr replacement: one log line per text line.

    Handlers print from several worker threads at once, and print() makes
    several write() calls per line, so each thread collects its own partial
    line: lines of different threads are never mixed.  A partial line (no
    newline yet) is logged by that thread's next newline or flush(); one
    left when its thread ends is not logged."""

    def __init__(self, lib: Any, level: int) -> None:
        self._lib, self._level = lib, level
        self._tls = threading.local()   # .pending: the thread's partial line

    def writable(self) -> bool:
        return True

    def write(self, s: str) -> int:
        if not isinstance(s, str):
            raise TypeError(f"write() argument must be str, not {type(s).__name__}")
        *lines, rest = (getattr(self._tls, "pending", "") + s).split("\n")
        self._tls.pending = rest
        for line in lines:
            self._emit(line)
        return len(s)

    def flush(self) -> None:
        rest = getattr(self._tls, "pending", "")
        if rest:
            self._tls.pending = ""
            self._emit(rest)

    def _emit(self, line: str) -> None:
        self._lib.spm_log(self._level, prefix().encode(),
                          line.encode("utf-8", "backslashreplace"))


def install(ffi: Any, lib: Any) -> None:
    import sys
    global ERROR, INFO, VERBOSE, DEBUG, DEBUG2
    ERROR, INFO, VERBOSE, DEBUG, DEBUG2 = (lib.SPM_LOG_ERROR, lib.SPM_LOG_INFO,
                                           lib.SPM_LOG_VERBOSE, lib.SPM_LOG_DEBUG,
                                           lib.SPM_LOG_DEBUG2)
    root = logging.getLogger()
    if not any(isinstance(h, SlurmLogHandler) for h in root.handlers):
        h = SlurmLogHandler(ffi, lib)
        h.setFormatter(logging.Formatter("%(name)s: %(message)s"))
        root.addHandler(h)
    sync_level(lib)
    sys.stdout = _LogWriter(lib, INFO)
    sys.stderr = _LogWriter(lib, ERROR)


def sync_level(lib: Any) -> None:
    """Follow the daemon's log level (it changes with scontrol setdebug)."""
    logging.getLogger().setLevel(python_level(lib.spm_log_level()))
