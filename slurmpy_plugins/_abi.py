"""The shim's records and constants outside a daemon, for the test kit,
``check`` and ``preview``: cffi in ABI mode reads the same header the C
compiler and the daemon's cffi read (csrc/spm_types.h, shipped in the
package as ``spm_types.h``), so the field list and every ``SPM_*`` constant
stay defined once.  Nothing is compiled and no Slurm library is loaded.

:data:`lib` stands in for the embedded library: its ``SPM_*`` constants are
the header's; the C services the bridge calls (``spm_log``,
``spm_arena_strdup``, ...) are done in Python here, and ``spm_log`` hands
each line to the current :class:`LogSink` as the daemon's log would show it.
"""
from __future__ import annotations

import re
import threading
from importlib import resources
from typing import Any

import cffi  # type: ignore[import-untyped]

__all__ = ["ffi", "lib", "HEADER", "LogSink", "log_line"]

HEADER = resources.files(__package__).joinpath("spm_types.h").read_text(encoding="utf-8")

ffi = cffi.FFI()
ffi.cdef(HEADER)
_consts = ffi.dlopen(None)   # only the header's #define constants are read from it


def _hook_tables() -> tuple[list[str], list[int], list[str]]:
    """spm_hook_names, spm_hook_ctx and spm_ctx_names (csrc/log.c) from the
    header's constant names: SPM_HOOK_SF_SET -> "set" in SPM_CTX_SITE_FACTOR,
    SPM_HOOK_JS_SUBMIT -> "submit" in SPM_CTX_JOB_SUBMIT, the others in
    SPM_CTX_PREP; SPM_CTX_PREP -> "prep/python"."""
    names = [""] * _consts.SPM_HOOK_COUNT
    ctxs = [0] * _consts.SPM_HOOK_COUNT
    groups = {"SF_": _consts.SPM_CTX_SITE_FACTOR, "JS_": _consts.SPM_CTX_JOB_SUBMIT}
    for m in re.finditer(r"^#define SPM_HOOK_(\w+) (\d+)$", HEADER, re.M):
        name, n = m.group(1), int(m.group(2))
        if name == "COUNT":
            continue
        ctx = _consts.SPM_CTX_PREP
        for tag, c in groups.items():
            if name.startswith(tag):
                name, ctx = name[len(tag):], c
        names[n], ctxs[n] = name.lower(), ctx
    ctx_names = [""] * _consts.SPM_CTX_COUNT
    for m in re.finditer(r"^#define SPM_CTX_(\w+) (\d+)$", HEADER, re.M):
        if m.group(1) != "COUNT":
            ctx_names[int(m.group(2))] = f"{m.group(1).lower()}/python"
    return names, ctxs, ctx_names


def log_line(level: int, prefix: str, msg: str) -> str:
    """A line as the daemon's log shows it (Slurm adds ``error: ``)."""
    tag = "error: " if level <= _consts.SPM_LOG_ERROR else ""
    return f"{tag}{prefix}: {msg}"


class LogSink:
    """Collects the daemon log lines of one kit call (thread-local)."""

    def __init__(self, level: int) -> None:
        self.level = level
        self.lines: list[str] = []
        self.lock = threading.Lock()

    def add(self, level: int, prefix: str, msg: str) -> None:
        level = min(max(level, _consts.SPM_LOG_ERROR), _consts.SPM_LOG_DEBUG2)
        if level > self.level:
            return
        with self.lock:
            self.lines.append(log_line(level, prefix, msg))


class _Arena:
    """What the kit passes where C passes an spm_arena_t: it keeps alive
    the strings handed to C."""

    def __init__(self) -> None:
        self.keep: list[Any] = []


class _Lib:
    """The embedded library's interface (csrc/spm_types.h) for the kit."""

    def __init__(self) -> None:
        self._tls = threading.local()
        names, ctxs, ctx_names = _hook_tables()
        self.spm_hook_names = [ffi.new("char[]", n.encode()) for n in names]
        self.spm_hook_ctx = ctxs
        self.spm_ctx_names = [ffi.new("char[]", n.encode()) for n in ctx_names]
        self.default_sink = LogSink(_consts.SPM_LOG_INFO)

    def __getattr__(self, name: str) -> Any:
        if not name.startswith("SPM_"):
            raise AttributeError(f"the kit's lib has no {name!r}")
        value = getattr(_consts, name)
        setattr(self, name, value)
        return value

    # -- the C services ----------------------------------------------------
    @property
    def sink(self) -> LogSink:
        return getattr(self._tls, "sink", None) or self.default_sink

    def set_sink(self, sink: LogSink | None) -> None:
        self._tls.sink = sink

    def spm_log(self, level: int, prefix: bytes, msg: bytes) -> None:
        self.sink.add(level, prefix.decode("utf-8", "backslashreplace"),
                      msg.decode("utf-8", "backslashreplace"))

    def spm_log_level(self) -> int:
        return self.sink.level

    def spm_arena_ref(self, arena: Any) -> None:
        pass

    def spm_arena_unref(self, arena: Any) -> None:
        pass

    def spm_arena_strdup(self, arena: Any, s: bytes) -> Any:
        p = ffi.new("char[]", s)
        arena.keep.append(p)
        return p

    def spm_set_hooks(self, ctx: int, hooks: int) -> None:
        pass

    def spm_lazy_load(self, lazy: Any, job: Any) -> int:
        # the kit's records are full copies (strings_loaded = 1)
        raise RuntimeError("the kit's records have no lazy strings")

    def spm_boot_failure(self, text: bytes) -> None:
        self.sink.add(_consts.SPM_LOG_ERROR, "slurmpy",
                      "Python bridge failed to start: " + text.decode("utf-8", "backslashreplace"))


lib = _Lib()
Arena = _Arena
