"""spank/python: one SPANK hook call, shared by the daemon's bridge and the
test kit (``testing.run_spank``).

SPANK is reached only through a backend: in a Slurm process the C call
struct's functions (spank_python.c), in the kit dicts.  The plugstack.conf
line is parsed here; the handler is loaded once per process with the
daemons' loader and its permission checks.
"""
from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from . import _config, _loader
from ._handlers import SpankHandler, SpankOption

__all__ = ["Spank", "SpankArgs", "parse_args", "scan_source", "run", "check_declared"]

log = logging.getLogger("slurmpy_plugins.spank")

# What the plugstack.conf line reads itself; every other key=value is the
# handler's own (Spank.args).
KEYS = ("handler", "handlers", "path", "timeout")
# Keys of the other plugins that spank/python does not implement: refused,
# never passed on silently as the handler's own.
UNSUPPORTED = ("venv", "workers", "reload")

# SPM_HOOK_SP_* in spm_types.h, by method name (the C table's rows).
HOOKS = ("init", "init_post_opt", "local_user_init", "user_init", "task_init_privileged",
         "task_init", "task_post_fork", "task_exit", "exit", "job_prolog", "job_epilog",
         "slurmd_exit")

# SPM_SP_* item numbers (spm_types.h) by attribute name.
ITEMS = {
    "job_id": 0, "step_id": 1, "uid": 2, "gid": 3, "nnodes": 4, "nodeid": 5,
    "local_task_count": 6, "total_task_count": 7, "task_id": 8, "task_global_id": 9,
    "task_pid": 10, "array_id": 11, "array_task_id": 12,
}


@dataclasses.dataclass(frozen=True)
class SpankArgs:
    cfgs: tuple[_config.Config, ...]   # one per handler=, in the line's order
    extra: Mapping[str, str]

    @property
    def cfg(self) -> _config.Config:
        return self.cfgs[0]


def parse_args(args: Sequence[str]) -> SpankArgs:
    """The plugstack.conf line's arguments (after the plugin's path)."""
    where = "plugstack.conf spank_python.so"
    items: dict[str, tuple[str, str]] = {}
    handlers: list[str] = []
    extra: dict[str, str] = {}
    for a in args:
        key, sep, value = a.partition("=")
        if not sep or not key:
            raise _config.ConfigError(f"{where}: argument {a!r} is not key=value")
        if key in UNSUPPORTED:
            raise _config.ConfigError(f"{where}: {key}= is not supported by spank/python")
        if key == "handler":
            if value in handlers:
                raise _config.ConfigError(f"{where}: handler={value} given twice")
            handlers.append(value)
        elif key in KEYS:
            if key in items:
                raise _config.ConfigError(f"{where}: {key}= given twice")
            items[key] = (value, where)
        else:
            extra[key] = value
    if "handlers" in items:
        if handlers:
            raise _config.ConfigError(f"{where}: handler= and handlers= are both given: give "
                                      "handler=<module>:<Class> (one or more) or "
                                      "handlers=<directory of handler files>")
        # one set: every file of the directory, in file-name order
        return SpankArgs(cfgs=(_config._build(items, conf_key=where, conf_path=None),),
                         extra=extra)
    if "path" not in items:
        raise _config.ConfigError(f"{where}: path=DIR is required (the handler's directory)")
    if not handlers:
        raise _config.ConfigError(f"{where}: handler=<module>:<Class> (or handlers=<directory>) "
                                  "is required")
    # _build checks each handler= and timeout= as for the other plugins
    cfgs = tuple(_config._build({**items, "handler": (h, where)}, conf_key=where, conf_path=None)
                 for h in handlers)
    return SpankArgs(cfgs=cfgs, extra=extra)


# The same reading of the module file as spank_python.c's (no Python in
# srun/sbatch): SpankOption(...) calls written with plain string literals,
# and `def <hook>(` for the hooks it defines.
_STR = r"""(?:"((?:[^"\\\n]|\\.)*)"|'((?:[^'\\\n]|\\.)*)')"""
_OPT = re.compile(r"(?<!\w)SpankOption\(\s*" + _STR +
                  r"((?:\s*,\s*\w+\s*=\s*(?:None|" + _STR + r"))*)\s*,?\s*\)")
_DEF = re.compile(r"(?<!\S)def[ \t]+(\w+)[ \t]*\(")
_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_KW = re.compile(r"(\w+)\s*=\s*(?:(None)|" + _STR + ")")


def _unescape(s: str) -> str:
    return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), s)


def scan_source(text: str) -> tuple[list[SpankOption], set[str]]:
    """What spank_python.c reads of a handler module: its options (first
    declaration of each name) and the hooks it defines."""
    opts: dict[str, SpankOption] = {}
    for m in _OPT.finditer(text):
        name = _unescape(m.group(1) if m.group(1) is not None else m.group(2))
        kw: dict[str, str | None] = {}
        for k in _KW.finditer(m.group(3)):
            s = k.group(3) if k.group(3) is not None else k.group(4)
            kw[k.group(1)] = None if k.group(2) else _unescape(s)
        if (set(kw) - {"arg", "help"} or name in opts or not _NAME.fullmatch(name)
                or ("help" in kw and kw["help"] is None)):
            continue
        opts[name] = SpankOption(name, arg=kw.get("arg"), help=kw.get("help") or "")
    hooks = {m.group(1) for m in _DEF.finditer(text)} & set(HOOKS)
    return list(opts.values()), hooks


def check_declared(cls: type, module_file: str) -> None:
    """Refuse a handler class that spank_python.c would read otherwise:
    options it would not register, hooks it would never call."""
    with open(module_file, encoding="utf-8") as f:
        scanned, hooks = scan_source(f.read())
    declared = list(getattr(cls, "options", ()) or ())
    for o in declared:
        if not isinstance(o, SpankOption):
            raise _loader.HandlerError(f"{module_file}: {cls.__name__}.options holds {o!r}, "
                                       "not a SpankOption")
    if sorted(declared, key=lambda o: o.name) != sorted(scanned, key=lambda o: o.name):
        raise _loader.HandlerError(
            f"{module_file}: {cls.__name__}.options is {declared!r} but spank_python.so reads "
            f"{scanned!r} from the file: write each as SpankOption(\"name\", arg=\"VALUE\" or "
            "None, help=\"text\") with string literals, in this module")
    for h in HOOKS:
        if getattr(cls, h) is not getattr(SpankHandler, h) and h not in hooks:
            raise _loader.HandlerError(
                f"{module_file}: {cls.__name__}.{h} is not defined as `def {h}(` in this "
                "module, so spank_python.so never calls it")


class Backend(Protocol):
    def get_item(self, item: int) -> int | None: ...
    def getenv(self, name: str) -> str | None: ...
    def setenv(self, name: str, value: str, overwrite: bool) -> bool: ...
    def unsetenv(self, name: str) -> bool: ...
    def option(self, name: str) -> tuple[int, str | None]: ...
    def argv(self) -> list[str] | None: ...
    def prepend_argv(self, args: Sequence[str]) -> int: ...


class SpankError(RuntimeError):
    """A SPANK call that failed (not available in this context)."""


class Spank:
    """What a hook gets: its context, the options, the job's environment
    and the items SPANK offers in this context (None where it offers none)."""

    def __init__(self, backend: Backend, context: str, args: Mapping[str, str]) -> None:
        self._b = backend
        self.context = context
        self.args = dict(args)

    def option(self, name: str) -> str | bool | None:
        """The option's value; True for a flag; None when not given."""
        state, value = self._b.option(name)
        if state < 0:
            raise KeyError(f"--{name} is not an option of this handler (its options list)")
        if state == 0:
            return None
        return True if value is None else value

    def getenv(self, name: str, default: str | None = None) -> str | None:
        value = self._b.getenv(name)
        return default if value is None else value

    def setenv(self, name: str, value: str, overwrite: bool = True) -> None:
        if not self._b.setenv(name, str(value), overwrite):
            raise SpankError(f"spank_setenv({name!r}) failed in context {self.context!r}")

    def unsetenv(self, name: str) -> None:
        if not self._b.unsetenv(name):
            raise SpankError(f"spank_unsetenv({name!r}) failed in context {self.context!r}")

    @property
    def argv(self) -> list[str] | None:
        """The step's command and arguments (remote context), else None."""
        return self._b.argv()

    def prepend_argv(self, args: Sequence[str]) -> None:
        """Run the task as ``args + argv`` (``task_init``; Slurm 23.11 and
        later, spank_prepend_task_argv)."""
        args = [str(a) for a in args]
        if not args:
            return
        rc = self._b.prepend_argv(args)
        if rc == -2:
            raise NotImplementedError("prepend_argv needs Slurm 23.11 or later "
                                      "(spank_prepend_task_argv)")
        if rc != 0:
            raise SpankError(f"spank_prepend_task_argv failed in context {self.context!r} "
                             "(only task_init may prepend)")

    def _item(self, name: str) -> int | None:
        return self._b.get_item(ITEMS[name])

    job_id = property(lambda self: self._item("job_id"))
    step_id = property(lambda self: self._item("step_id"))
    uid = property(lambda self: self._item("uid"))
    gid = property(lambda self: self._item("gid"))
    nnodes = property(lambda self: self._item("nnodes"))
    nodeid = property(lambda self: self._item("nodeid"))
    local_task_count = property(lambda self: self._item("local_task_count"))
    total_task_count = property(lambda self: self._item("total_task_count"))
    task_id = property(lambda self: self._item("task_id"))
    task_global_id = property(lambda self: self._item("task_global_id"))
    task_pid = property(lambda self: self._item("task_pid"))
    array_id = property(lambda self: self._item("array_id"))
    array_task_id = property(lambda self: self._item("array_task_id"))


def _message(e: BaseException, roots: tuple[str, ...]) -> str:
    return f"{type(e).__name__}: {e} ({_loader.where(e, roots)})"


def run(handler: Any, hook: str, spank: Spank, roots: tuple[str, ...] = (),
        sites: list[str] | None = None) -> str | None:
    """Call the hook; None when it returned, else the failure message (the
    traceback is logged; its ``file:line`` appended to `sites`, for stats)."""
    method = getattr(handler, hook, None)
    if method is None:
        return None
    try:
        method(spank)
    except BaseException as e:   # SystemExit too: a failed hook, never the process's exit
        log.error("%s raised:\n%s", hook, _loader.format_tb(e))
        if sites is not None:
            sites.append(_loader.where(e, roots))
        return f"{hook}: {_message(e, roots)}"
    return None


# ---- inside a Slurm process (the bridge) ----

_loaded: dict[str, tuple[list[Any], SpankArgs] | str] = {}


class _CBackend:
    def __init__(self, ffi: Any, call: Any) -> None:
        self._ffi, self._c = ffi, call

    def get_item(self, item: int) -> int | None:
        out = self._ffi.new("int64_t *")
        return int(out[0]) if self._c.get_item(self._c.sp, item, out) == 0 else None

    def getenv(self, name: str) -> str | None:
        out = self._ffi.new("char **")
        rc = self._c.getenv(self._c.sp, name.encode(), out)
        if rc == 1:
            return None
        if rc != 0:
            raise SpankError(f"spank_getenv({name!r}) failed")
        try:
            return str(self._ffi.string(out[0]).decode("utf-8", "surrogateescape"))
        finally:
            self._c.free_str(out[0])

    def setenv(self, name: str, value: str, overwrite: bool) -> bool:
        return bool(self._c.setenv(self._c.sp, name.encode(),
                                   value.encode("utf-8", "surrogateescape"),
                                   1 if overwrite else 0) == 0)

    def unsetenv(self, name: str) -> bool:
        return bool(self._c.unsetenv(self._c.sp, name.encode()) == 0)

    def option(self, name: str) -> tuple[int, str | None]:
        out = self._ffi.new("const char **")
        state = int(self._c.option(self._c.sp, name.encode(), out))
        value = self._ffi.string(out[0]).decode("utf-8", "surrogateescape") if out[0] else None
        return state, value

    def argv(self) -> list[str] | None:
        argc, argv = self._ffi.new("int *"), self._ffi.new("const char ***")
        if self._c.get_argv(self._c.sp, argc, argv) != 0 or argv[0] == self._ffi.NULL:
            return None
        return [self._ffi.string(argv[0][i]).decode("utf-8", "surrogateescape")
                for i in range(argc[0])]

    def prepend_argv(self, args: Sequence[str]) -> int:
        keep = [self._ffi.new("char[]", a.encode("utf-8", "surrogateescape")) for a in args]
        arr = self._ffi.new("const char *[]", keep + [self._ffi.NULL])
        return int(self._c.prepend_argv(self._c.sp, len(args), arr))


def call(ffi: Any, lib: Any, c: Any) -> int:
    """spm_py_spank(): SPM_PY_OK, or SPM_PY_FAILED (a hook raised) or
    SPM_PY_UNLOADED (the handler cannot load) with c.msg filled."""
    text = ffi.string(c.args).decode("utf-8", "surrogateescape")
    hook = HOOKS[c.hook - lib.SPM_HOOK_SP_INIT]
    context = ffi.string(c.context).decode()
    entry = _loaded.get(text)
    if entry is None:
        try:
            sa = parse_args([a for a in text.split("\n") if a])
            trusted = {0, int(c.slurm_user_id)}
            entry = ([_loader.load(cfg, SpankHandler, trusted, HOOKS).instance
                      for cfg in sa.cfgs], sa)
        except (_config.ConfigError, _loader.HandlerError) as e:
            log.error("%s", e)
            entry = str(e)
        _loaded[text] = entry
    status = int(lib.SPM_PY_FAILED)
    if isinstance(entry, str):
        msg: str | None = f"the handler cannot be loaded: {entry}"
        status = int(lib.SPM_PY_UNLOADED)
    else:
        handlers, sa = entry
        spank = Spank(_CBackend(ffi, c), context, sa.extra)
        msg = None
        sites: list[str] = []
        for handler in handlers:          # in the line's order; the first failure ends it
            msg = run(handler, hook, spank, sa.cfg.roots, sites)
            if msg is not None:
                break
        if sites:
            site = sites[-1].encode("utf-8", "backslashreplace")[:len(c.where) - 1]
            ffi.memmove(c.where, site + b"\0", len(site) + 1)
    if msg is None:
        return int(lib.SPM_PY_OK)
    raw = msg.encode("utf-8", "backslashreplace")[:len(c.msg) - 1]
    ffi.memmove(c.msg, raw + b"\0", len(raw) + 1)
    return status
