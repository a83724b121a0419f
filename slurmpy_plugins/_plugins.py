"""THE Python side of the plugin table: one row per plugin, for what only
Python knows (the handler base class, the keys its conf accepts, the test
kit's entry points, the slurm.conf key that selects it).

What C knows comes from C's table (csrc/spm_plugins.h: name, conf source,
hooks, default time limit, daemons, default workers) through ``lib``: the
daemon's compiled spm_plugins[]/spm_hooks[], or the test kit's parse of the
same text (_abi).  :func:`rows` joins the two and refuses a mismatch with an
error naming both files; tests/host/test_plugin_table.py ties them further
(the C compiler's table against _abi's parse, hooks against base classes,
kit entry points against the testing module).
"""
from __future__ import annotations

import dataclasses
from typing import Any

from . import _config
from ._handlers import JobCompHandler, JobSubmitHandler, PrEpHandler, SiteFactorHandler, SpankHandler

__all__ = ["Plugin", "Row", "PLUGINS", "TableError", "rows", "by_kind"]

C_TABLE = "csrc/spm_plugins.h"
PY_TABLE = "slurmpy_plugins/_plugins.py"


class TableError(RuntimeError):
    """The C and Python plugin tables disagree."""


@dataclasses.dataclass(frozen=True)
class Plugin:
    kind: str                      # testing's kind=; the C row's name is f"{kind}/python"
    base: type                     # what a handler subclasses
    conf_keys: tuple[str, ...]     # the keys its parameters / conf file accept
    kit: tuple[str, ...]           # slurmpy_plugins.testing's entry points for its hooks
    selected_by: str               # the slurm.conf key that names the plugin
    selected_list: bool            # that key is a comma-separated list (else one value)


PLUGINS: tuple[Plugin, ...] = (
    Plugin("prep", PrEpHandler, _config.KEYS, ("run_prep",), "PrEpPlugins", True),
    Plugin("site_factor", SiteFactorHandler, _config.KEYS, ("run_set", "run_update"),
           "PrioritySiteFactorPlugin", False),
    Plugin("job_submit", JobSubmitHandler, _config.FILE_KEYS, ("run_submit", "run_modify"),
           "JobSubmitPlugins", True),
    Plugin("jobcomp", JobCompHandler, _config.JC_KEYS, ("run_job_end", "run_job_start"),
           "JobCompType", False),
    # spank: its arguments are its plugstack.conf line (PlugStackConfig
    # names that file; not a key that selects it: check reads the line).
    Plugin("spank", SpankHandler, ("handler", "handlers", "path", "timeout"), ("run_spank",),
           "PlugStackConfig",
           False),
)


@dataclasses.dataclass(frozen=True)
class Row:
    """One plugin, both sides joined."""
    py: Plugin
    ctx: int                       # SPM_CTX_*
    name: str                      # "prep/python": plugin_type and log prefix
    conf_key: str | None           # its parameters' slurm.conf key, or None
    conf_file: str | None          # its conf file beside slurm.conf, or None
    default_timeout_ms: int        # or lib.SPM_TIMEOUT_PROLOG_EPILOG
    daemons: int                   # 1 << SPM_DAEMON_* where init() boots it
    default_workers: int
    hooks: dict[int, str]          # SPM_HOOK_* -> method name

    @property
    def kind(self) -> str:
        return self.py.kind

    @property
    def base(self) -> type:
        return self.py.base

    @property
    def conf_source(self) -> str:
        """What error messages name: the slurm.conf key, or the file name."""
        source = self.conf_key or self.conf_file
        assert source is not None
        return source

    def selected(self, conf_value: str | None) -> bool:
        """slurm.conf's `selected_by` value names this plugin."""
        items = (conf_value or "").split(",") if self.py.selected_list else [conf_value or ""]
        prefix = self.name.removesuffix("python")
        return any(v.strip().removeprefix(prefix) == "python" for v in items)


def _s(ffi: Any, p: Any) -> str | None:
    return ffi.string(p).decode() if p else None


def rows(ffi: Any, lib: Any) -> dict[int, Row]:
    """Every plugin by SPM_CTX_*: lib's spm_plugins[]/spm_hooks[] joined
    with PLUGINS.  Raises TableError when a row of one side has none on the
    other, or a C hook is not a method of the row's base class."""
    by_kind = {p.kind: p for p in PLUGINS}
    if len(by_kind) != len(PLUGINS):
        raise TableError(f"{PY_TABLE}: PLUGINS names a kind twice")
    hooks: dict[int, dict[int, str]] = {}
    for n in range(lib.SPM_HOOK_COUNT):
        h = lib.spm_hooks[n]
        name = _s(ffi, h.name)
        if h.hook != n or name is None or not 0 <= h.ctx < lib.SPM_CTX_COUNT:
            raise TableError(f"{C_TABLE}: spm_hooks[{n}] is not the row of SPM_HOOK = {n} "
                             f"(hook {h.hook}, ctx {h.ctx}, name {name!r})")
        hooks.setdefault(int(h.ctx), {})[n] = name
    out: dict[int, Row] = {}
    for ctx in range(lib.SPM_CTX_COUNT):
        c = lib.spm_plugins[ctx]
        name = _s(ffi, c.name) or ""
        kind = name.removesuffix("/python")
        if c.ctx != ctx or not name.endswith("/python"):
            raise TableError(f"{C_TABLE}: spm_plugins[{ctx}] is not the row of SPM_CTX = {ctx} "
                             f"(ctx {c.ctx}, name {name!r})")
        py = by_kind.pop(kind, None)
        if py is None:
            raise TableError(f"{C_TABLE}: plugin {name!r} has no row in {PY_TABLE} PLUGINS "
                             f"(kind {kind!r})")
        conf_key, conf_file = _s(ffi, c.conf_key), _s(ffi, c.conf_file)
        if (conf_key is None) == (conf_file is None):
            raise TableError(f"{C_TABLE}: plugin {name!r} needs exactly one conf source "
                             f"(a slurm.conf key or a conf file), has {conf_key!r}, {conf_file!r}")
        for n, method in hooks.get(ctx, {}).items():
            if not callable(getattr(py.base, method, None)):
                raise TableError(f"{C_TABLE}: hook {method!r} of {name!r} is not a method of "
                                 f"{py.base.__name__} ({PY_TABLE})")
        out[ctx] = Row(py=py, ctx=ctx, name=name, conf_key=conf_key, conf_file=conf_file,
                       default_timeout_ms=int(c.default_timeout_ms), daemons=int(c.daemons),
                       default_workers=int(c.default_workers), hooks=hooks.get(ctx, {}))
    if by_kind:
        raise TableError(f"{PY_TABLE}: PLUGINS row(s) {sorted(by_kind)} have no row in {C_TABLE}")
    return out


def by_kind(table: dict[int, Row], kind: str) -> Row:
    for r in table.values():
        if r.kind == kind:
            return r
    raise KeyError(f"no plugin of kind {kind!r} (known: {', '.join(r.kind for r in table.values())})")
