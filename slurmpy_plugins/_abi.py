"""The shim's records and constants outside a daemon, for the test kit,
``check`` and ``preview``: cffi in ABI mode reads the same header the C
compiler and the daemon's cffi read (csrc/spm_types.h, shipped in the
package as ``spm_types.h``), so the field list and every ``SPM_*`` constant
stay defined once; the plugin and hook tables (spm_plugins[], spm_hooks[])
are parsed from the text C builds them from (csrc/spm_plugins.h, shipped as
``spm_plugins.h``).  Nothing is compiled and no Slurm library is loaded.

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

__all__ = ["ffi", "lib", "HEADER", "TABLE", "TableError", "parse_table", "LogSink", "log_line"]

HEADER = resources.files(__package__).joinpath("spm_types.h").read_text(encoding="utf-8")

ffi = cffi.FFI()
ffi.cdef(HEADER)
_consts = ffi.dlopen(None)   # only the header's #define constants are read from it


TABLE_FILE = "spm_plugins.h"
TABLE = resources.files(__package__).joinpath(TABLE_FILE).read_text(encoding="utf-8")


class TableError(ValueError):
    """csrc/spm_plugins.h does not follow its grammar (the message names the
    line)."""


_STR = r'"([^"\\]*)"'
_ROWS = {
    "SPM_PLUGIN_KEY": re.compile(
        rf"SPM_PLUGIN_KEY\((\w+), {_STR}, {_STR}, (\w+), (\w+), ([\w |]+), (\d+)\) \\$"),
    "SPM_PLUGIN_FILE": re.compile(
        rf"SPM_PLUGIN_FILE\((\w+), {_STR}, {_STR}, (\w+), ([\w |]+), (\d+)\) \\$"),
    "SPM_HOOK_ROW": re.compile(rf"SPM_HOOK_ROW\((\w+), (\w+), {_STR}\) \\$"),
}


def _const(where: str, name: str) -> int:
    if name.isdigit():
        return int(name)
    value = getattr(_consts, name, None) if name.startswith("SPM_") else None
    if not isinstance(value, int):
        raise TableError(f"{where}: {name!r} is not a number or an SPM_* constant of spm_types.h")
    return value


def parse_table(text: str, where: str = TABLE_FILE) -> tuple[list[dict[str, Any]],
                                                             list[dict[str, Any]]]:
    """The rows of csrc/spm_plugins.h as C builds spm_plugins[] and
    spm_hooks[] from them (log.c): (plugins by SPM_CTX_*, hooks by
    SPM_HOOK_*).  Every SPM_CTX_* / SPM_HOOK_* gets exactly one row."""
    plugins: list[dict[str, Any] | None] = [None] * _consts.SPM_CTX_COUNT
    hooks: list[dict[str, Any] | None] = [None] * _consts.SPM_HOOK_COUNT

    def slot(rows: list[Any], at: str, kind: str, name: str) -> int:
        n = _const(at, f"SPM_{kind}_{name}")
        if not 0 <= n < len(rows):
            raise TableError(f"{at}: SPM_{kind}_{name} = {n} is outside 0..SPM_{kind}_COUNT-1")
        if rows[n] is not None:
            raise TableError(f"{at}: SPM_{kind}_{name} has a row already")
        return n

    for lineno, line in enumerate(text.splitlines(), 1):
        body = line.strip()
        tag = body.split("(", 1)[0]
        if not line.startswith("\t") or tag not in _ROWS:
            continue
        at = f"{where}:{lineno}"
        m = _ROWS[tag].fullmatch(body)
        if m is None:
            raise TableError(f"{at}: not a {tag}(...) row of the grammar at the top of the "
                             f"file: {body!r}")
        g = m.groups()
        if tag == "SPM_HOOK_ROW":
            n = slot(hooks, at, "HOOK", g[0])
            hooks[n] = {"hook": n, "ctx": _const(at, f"SPM_CTX_{g[1]}"), "name": g[2]}
            continue
        n = slot(plugins, at, "CTX", g[0])
        key, conf_file = (g[2], None) if tag == "SPM_PLUGIN_KEY" else (None, g[2])
        rest = g[4:] if tag == "SPM_PLUGIN_KEY" else g[3:]
        daemons = 0
        for d in rest[1].split("|"):
            daemons |= _const(at, d.strip())
        plugins[n] = {"ctx": n, "name": g[1], "conf_key": key, "conf_file": conf_file,
                      "default_timeout_ms": _const(at, rest[0]), "daemons": daemons,
                      "default_workers": int(rest[2])}
    for rows, kind in ((plugins, "CTX"), (hooks, "HOOK")):
        missing = [i for i, r in enumerate(rows) if r is None]
        if missing:
            raise TableError(f"{where}: no row for SPM_{kind}_* = {missing} "
                             f"(SPM_{kind}_COUNT is {len(rows)})")
    return [r for r in plugins if r], [r for r in hooks if r]


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
    the strings handed to C.  In a struct's spm_arena_t * field (as in
    spm_js_call_t) it goes as `ptr`, a handle the stand-in's spm_arena_*
    functions turn back into the arena."""

    def __init__(self) -> None:
        self.keep: list[Any] = []
        self._handle = ffi.new_handle(self)
        self.ptr = ffi.cast("spm_arena_t *", self._handle)


def _arena(arena: Any) -> _Arena:
    if isinstance(arena, _Arena):
        return arena
    obj = ffi.from_handle(ffi.cast("void *", arena))
    assert isinstance(obj, _Arena)
    return obj


class _Lib:
    """The embedded library's interface (csrc/spm_types.h) for the kit."""

    def __init__(self) -> None:
        self._tls = threading.local()
        # spm_plugins[] / spm_hooks[] as log.c makes them, from the same text
        plugins, hooks = parse_table(TABLE)
        self._keep: list[Any] = []
        self.spm_plugins = ffi.new("spm_plugin_t[]", len(plugins))
        for c, row in zip(self.spm_plugins, plugins):
            for k, v in row.items():
                setattr(c, k, self._str(v) if k in ("name", "conf_key", "conf_file") else v)
        self.spm_hooks = ffi.new("spm_hook_t[]", len(hooks))
        for c, row in zip(self.spm_hooks, hooks):
            c.hook, c.ctx, c.name = row["hook"], row["ctx"], self._str(row["name"])
        self.default_sink = LogSink(_consts.SPM_LOG_INFO)

    def _str(self, s: str | None) -> Any:
        if s is None:
            return ffi.NULL
        p = ffi.new("char[]", s.encode())
        self._keep.append(p)
        return p

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
        _arena(arena).keep.append(p)
        return p

    def spm_arena_strv(self, arena: Any, n: int) -> Any:
        p = ffi.new("char *[]", n + 1)
        _arena(arena).keep.append(p)
        return p

    def spm_set_hooks(self, ctx: int, hooks: int) -> None:
        pass

    def spm_stats_error(self, ctx: int, where: bytes, text: bytes) -> None:
        pass   # the kit keeps no stats

    def spm_stats_reload(self, ctx: int) -> None:
        pass

    def spm_stats_path(self) -> Any:
        return ffi.NULL   # the kit publishes no stats files

    def spm_lazy_load(self, lazy: Any, job: Any) -> int:
        # the kit's records are full copies (strings_loaded = 1)
        raise RuntimeError("the kit's records have no lazy strings")

    def spm_boot_failure(self, text: bytes) -> None:
        self.sink.add(_consts.SPM_LOG_ERROR, "slurmpy",
                      "Python bridge failed to start: " + text.decode("utf-8", "backslashreplace"))


lib = _Lib()
Arena = _Arena
