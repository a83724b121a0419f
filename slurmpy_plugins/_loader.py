"""Loading, checking and hot-reloading a site's handler class.

Everything the handler runs from the site's directories (``path=``, the
``venv=`` site-packages and the directories its ``.pth`` files add) runs as
root inside the daemon.  So, as sshd does with key files, each such file is
refused unless root or SlurmUser alone could have written it:

* the file, and every directory from ``/`` down to it, both on the path as
  found and on its real path (symlinks resolved), is owned by root or
  SlurmUser and not writable by group or others.  A sticky directory such as
  ``/tmp`` may be world-writable: others cannot replace the trusted-owned
  entry below it, and that entry is checked in turn;
* the check happens before any of the file's code runs: a guard first in
  ``sys.meta_path`` checks every module found under those directories,
  parent packages (``pkg/__init__.py``) included;
* source is read from the file descriptor that was checked and compiled
  here.  Bytecode (``__pycache__/*.pyc``) is never read nor written, so a
  planted ``.pyc`` never runs.  Extension modules get the same file and
  directory checks before they are loaded.
"""
from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import os
import stat
import sys
import threading
import traceback
from dataclasses import dataclass
from typing import Any

from ._config import Config
from ._handlers import SiteFactorHandler

__all__ = ["HandlerError", "Loaded", "load", "where", "file_signature", "check_safe",
           "format_tb", "dir_listing", "current_signature"]


class HandlerError(Exception):
    """The handler cannot be used; the message names file:line and cause."""


@dataclass
class Loaded:
    instance: Any
    module_file: str
    signature: tuple[Any, ...]
    fields: tuple[str, ...] | None = None    # SiteFactorHandler.fields, checked
    # handlers=<dir>: its handler files, in order (instance runs them,
    # _chain.build); module_file is the directory, signature its listing
    members: tuple[Any, ...] = ()
    notes: tuple[str, ...] = ()     # load_dir: files refused or dropped by a reload


def where(exc: BaseException, roots: tuple[str, ...] = ()) -> str:
    """``file:line`` where an exception came from: the innermost frame in a
    file under one of ``roots`` (the site's handler directories) if there
    is one, else the innermost frame; for a SyntaxError, the offending
    source line."""
    if isinstance(exc, SyntaxError) and exc.filename:
        return f"{exc.filename}:{exc.lineno}"
    from ._chain import SITE
    site = getattr(exc, SITE, None)
    if isinstance(site, str):
        return site
    tb = traceback.extract_tb(exc.__traceback__)
    dirs = tuple(os.path.join(os.path.abspath(r), "") for r in roots)
    mine = [f for f in tb if dirs and os.path.abspath(f.filename).startswith(dirs)]
    frames = mine or list(tb)
    if not frames:
        return "?"
    return f"{frames[-1].filename}:{frames[-1].lineno}"


def format_tb(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc)).rstrip()


def _signature_of(st: os.stat_result) -> tuple[Any, ...]:
    return (st.st_mtime_ns, st.st_size, st.st_ino, st.st_dev)


def file_signature(path: str) -> tuple[Any, ...]:
    """What tells a changed file: its stat signature, or ("missing", errno)
    when it cannot be stat'ed (a file that comes back is a change too)."""
    try:
        return _signature_of(os.stat(path))
    except OSError as e:
        return ("missing", e.errno)


# -- what makes a file or directory unsafe ------------------------------

def _fault(st: os.stat_result, path: str, trusted: set[int] | frozenset[int],
           sticky_ok: bool = False) -> str | None:
    """Why someone other than root/SlurmUser could change ``path`` (whose
    stat is ``st``), or None.  ``sticky_ok``: a sticky directory may be
    writable by others (they cannot replace the entries they do not own)."""
    if st.st_uid not in trusted:
        return (f"owned by uid {st.st_uid}; it must be owned by root or SlurmUser "
                f"(uid {', '.join(map(str, sorted(trusted)))})")
    sticky = sticky_ok and stat.S_ISDIR(st.st_mode) and st.st_mode & stat.S_ISVTX
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not sticky:
        return (f"writable by group or others (mode {stat.S_IMODE(st.st_mode):04o}); "
                f"run chmod go-w {path}")
    return None


def _refusal(what: str, target: str, fault: str, offender: str | None = None) -> HandlerError:
    """``refusing <what> <target>: [<offender> is ]<fault>``."""
    subject = f"{offender} is " if offender else ""
    return HandlerError(f"refusing {what} {target}: {subject}{fault}")


def check_safe(path: str, trusted_uids: set[int], what: str) -> None:
    """Refuse one file or directory (not its parents) that someone other
    than root/SlurmUser could change."""
    try:
        st = os.stat(path)
    except OSError as e:
        raise HandlerError(f"{what} {path}: {e.strerror}") from None
    fault = _fault(st, path, trusted_uids)
    if fault:
        raise _refusal(what, path, fault)


def _parents(path: str) -> list[str]:
    """The directories from / down to path's parent: /a/b/c -> /, /a, /a/b."""
    out, d = [], os.path.dirname(path)
    while True:
        out.append(d)
        up = os.path.dirname(d)
        if up == d:
            return out[::-1]
        d = up


def _stat_for_check(d: str, follow: bool, what: str, target: str) -> os.stat_result:
    try:
        return os.stat(d) if follow else os.lstat(d)
    except OSError as e:
        inner = "" if d == target else f"{d}: "
        raise HandlerError(f"{what} {target}: {inner}{e.strerror}") from None


def _check_parents(path: str, real: str, trusted: Any, what: str, target: str) -> None:
    """Every directory above ``real`` (the resolved path: lstat, so a
    component that became a symlink since realpath() is refused), then those
    above ``path`` as given that are not among them (stat: a symlinked
    component is judged by what it points to, and its own directory is on
    the list too)."""
    real_dirs = _parents(real)
    for d in real_dirs:
        st = _stat_for_check(d, False, what, target)
        if stat.S_ISLNK(st.st_mode):
            raise _refusal(what, target, "a symlink that appeared while it was checked",
                           f"directory {d}")
        fault = _fault(st, d, trusted, sticky_ok=True)
        if fault:
            raise _refusal(what, target, fault, f"directory {d}")
    seen = set(real_dirs)
    for d in _parents(os.path.abspath(path)):
        if d in seen:
            continue
        fault = _fault(_stat_for_check(d, True, what, target), d, trusted, sticky_ok=True)
        if fault:
            raise _refusal(what, target, fault, f"directory {d}")


def check_dir(path: str, trusted: Any, what: str, target: str | None = None) -> None:
    """Refuse a directory unless it and every directory above it are safe."""
    target = target or path
    real = os.path.realpath(path)
    _check_parents(path, real, trusted, what, target)
    st = _stat_for_check(real, False, what, target)
    if not stat.S_ISDIR(st.st_mode):
        raise HandlerError(f"{what} {target}: not a directory")
    fault = _fault(st, real, trusted)
    if fault:
        offender = None if real == os.path.abspath(path) else f"its target {real}"
        raise _refusal(what, target, fault, offender)


def check_file(path: str, trusted: Any, what: str) -> None:
    """Refuse a file (by name) unless it and its directories are safe.  For
    files that cannot be read from a checked descriptor (extension modules):
    the directory checks make sure that nobody but root/SlurmUser can
    replace it, or re-point a symlink to it, before it is loaded."""
    real = os.path.realpath(path)
    _check_parents(path, real, trusted, what, path)
    _check_file_stat(_stat_for_check(real, False, what, path), path, real, trusted, what)


def _check_file_stat(st: os.stat_result, path: str, real: str, trusted: Any, what: str) -> None:
    if not stat.S_ISREG(st.st_mode):
        raise HandlerError(f"{what} {path}: not a regular file")
    fault = _fault(st, real, trusted)
    if fault:
        offender = None if real == os.path.abspath(path) else f"its target {real}"
        raise _refusal(what, path, fault, offender)


def read_trusted(path: str, trusted: Any, what: str) -> tuple[bytes, os.stat_result]:
    """The content of a file that passed the checks, read from the very
    descriptor whose owner and mode were checked (no swap in between)."""
    real = os.path.realpath(path)
    _check_parents(path, real, trusted, what, path)
    try:
        fd = os.open(real, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as e:
        raise HandlerError(f"{what} {path}: {e.strerror}") from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        _check_file_stat(st, path, real, trusted, what)
        try:
            return f.read(), st
        except OSError as e:
            raise HandlerError(f"{what} {path}: {e.strerror}") from None


SETTINGS_WHAT = "job_submit/python settings"


def read_settings(path: str, trusted: Any) -> tuple[str, tuple[Any, ...]]:
    """job_submit_python.conf, read from a descriptor that passed the
    handler files' checks (it names the code slurmctld runs: owned by root
    or SlurmUser, not writable by group or others, nor is any directory
    above it).  Returns its text and its signature (file_signature())."""
    try:
        data, st = read_trusted(path, trusted, SETTINGS_WHAT)
    except HandlerError as e:
        if not os.path.lexists(path):
            raise HandlerError(f"cannot read {path}: No such file or directory (job_submit/python "
                               "needs it: one key=value per line, at least "
                               "handler=<module>:<Class>)") from None
        raise HandlerError(str(e)) from None
    return data.decode("utf-8", "surrogateescape"), _signature_of(st)


# -- the import guard ---------------------------------------------------

def _compile(source: bytes, path: str) -> Any:
    """compile(), with every failure a SyntaxError or a HandlerError that
    names `path`.  A NUL byte (the zero-filled blocks a crash during a
    write can leave) is a SyntaxError at its line on every Python: 3.11's
    compile() raises ValueError there, 3.12+ a SyntaxError of its own
    wording."""
    nul = source.find(b"\0")
    if nul >= 0:
        line = source.count(b"\n", 0, nul) + 1
        raise SyntaxError("the file contains a NUL byte (Python source cannot; a crash "
                          "during a write can leave zero-filled blocks in a file)",
                          (path, line, nul - source.rfind(b"\n", 0, nul), None))
    try:
        return compile(source, path, "exec", dont_inherit=True)
    except SyntaxError:
        raise
    except Exception as e:  # ValueError, RecursionError, MemoryError: not SyntaxError
        raise HandlerError(f"{path}: cannot compile: {type(e).__name__}: {e}") from e


class _CheckedSourceLoader(importlib.machinery.SourceFileLoader):
    """Runs a module's source as read by read_trusted(); never bytecode."""

    def __init__(self, fullname: str, path: str, trusted: frozenset[int], what: str) -> None:
        super().__init__(fullname, path)
        self._trusted, self._what = trusted, what

    def code_and_signature(self) -> Any:
        """Check, read and compile: raises HandlerError or SyntaxError
        before any of the module's code has run."""
        source, st = read_trusted(self.path, self._trusted, self._what)
        return _compile(source, self.path), _signature_of(st)

    def get_code(self, fullname: str) -> Any:
        return self.code_and_signature()[0]


class _CheckedExtensionLoader(importlib.machinery.ExtensionFileLoader):
    """Loads an extension module only after check_file()."""

    def __init__(self, fullname: str, path: str, trusted: frozenset[int], what: str) -> None:
        super().__init__(fullname, path)
        self._trusted, self._what = trusted, what

    def create_module(self, spec: Any) -> Any:
        check_file(self.path, self._trusted, self._what)
        return super().create_module(spec)


def _checked_spec(spec: Any, trusted: frozenset[int], what: str) -> Any:
    """``spec`` with a loader that checks before it runs anything."""
    loader = spec.loader
    if isinstance(loader, importlib.machinery.SourceFileLoader):
        cls: Any = _CheckedSourceLoader
    elif isinstance(loader, importlib.machinery.ExtensionFileLoader):
        cls = _CheckedExtensionLoader
    else:   # SourcelessFileLoader: a .pyc with no .py beside it
        raise _refusal(what, spec.origin, "not Python source; only .py source and "
                       "extension modules are loaded from handler directories")
    return importlib.util.spec_from_file_location(
        spec.name, spec.origin, loader=cls(spec.name, spec.origin, trusted, what),
        submodule_search_locations=spec.submodule_search_locations)


class _Guard:
    """First in sys.meta_path: a module that the normal path search finds
    under a guarded directory is loaded through a checking loader.  (A
    meta path finder needs only find_spec; importlib.abc.MetaPathFinder
    would import importlib.resources, pathlib and tempfile into every
    process that loads a handler.)"""

    def __init__(self) -> None:
        self._roots: tuple[tuple[str, frozenset[int]], ...] = ()
        self._lock = threading.Lock()

    def guard(self, directory: str, trusted: Any) -> None:
        trusted = frozenset(trusted)
        with self._lock:
            new = [(os.path.join(os.path.abspath(d), ""), trusted)
                   for d in {directory, os.path.realpath(directory)}]
            self._roots = tuple(new) + tuple(r for r in self._roots if r not in new)

    def _trusted_for(self, origin: str) -> frozenset[int] | None:
        for path in (os.path.abspath(origin), os.path.realpath(origin)):
            for root, trusted in self._roots:
                if path.startswith(root):
                    return trusted
        return None

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if not self._roots:
            return None
        # builtin and frozen modules come first, as without the guard
        if (importlib.machinery.BuiltinImporter.find_spec(fullname) is not None
                or importlib.machinery.FrozenImporter.find_spec(fullname) is not None):
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path, target)
        if spec is None or not spec.has_location or not spec.origin:
            return None     # not found, or a namespace package (no code of its own)
        trusted = self._trusted_for(spec.origin)
        if trusted is None:
            return None     # not from the site's directories: the normal finders
        return _checked_spec(spec, trusted, "module file")


_guard = _Guard()


def _install_guard() -> _Guard:
    """Put the guard first in sys.meta_path (again, if code the handler ran
    inserted a finder before it); never absent from it in between."""
    if not sys.meta_path or sys.meta_path[0] is not _guard:
        sys.meta_path.insert(0, _guard)
        for i in range(len(sys.meta_path) - 1, 0, -1):
            if sys.meta_path[i] is _guard:
                del sys.meta_path[i]
    return _guard


# -- path= and venv= ----------------------------------------------------

def _prepare_path(cfg: Config, trusted: set[int]) -> None:
    for d in cfg.path:
        check_dir(d, trusted, "handler directory")
    guard = _install_guard()
    for d in cfg.path:
        guard.guard(d, trusted)
    for d in reversed(cfg.path):
        if d not in sys.path:
            sys.path.insert(0, d)
    if cfg.venv:
        _add_venv(cfg.venv, trusted, guard)


def _add_venv(venv: str, trusted: set[int], guard: _Guard) -> None:
    check_dir(venv, trusted, "venv")
    want = f"python{sys.version_info.major}.{sys.version_info.minor}"
    sp = os.path.join(venv, "lib", want, "site-packages")
    if not os.path.isdir(sp):
        raise HandlerError(
            f"venv {venv} has no lib/{want}/site-packages: it must be a virtualenv "
            f"made with Python {sys.version_info.major}.{sys.version_info.minor}, "
            "the Python this plugin was built with")
    check_dir(sp, trusted, "venv site-packages")
    guard.guard(sp, trusted)
    if sp in sys.path:
        return
    # every .pth file is checked and read before any of them runs
    pths = [(p, _pth_text(p, trusted)) for p in _pth_files(sp)]
    sys.path.append(sp)
    try:
        for p, text in pths:
            _run_pth(p, text, sp, trusted, guard)
    except BaseException:
        sys.path.remove(sp)     # so that the next load tries again
        raise


def _pth_files(sitedir: str) -> list[str]:
    """The .pth files site.addsitedir() would process, in its order."""
    try:
        names = os.listdir(sitedir)
    except OSError as e:
        raise HandlerError(f"venv site-packages {sitedir}: {e.strerror}") from None
    return [os.path.join(sitedir, n) for n in sorted(names)
            if n.endswith(".pth") and not n.startswith(".")]


def _pth_text(pth: str, trusted: Any) -> str:
    data = read_trusted(pth, trusted, "venv .pth file")[0]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise HandlerError(f"venv .pth file {pth}: not UTF-8 ({e.reason} at byte "
                           f"{e.start})") from None


def _run_pth(pth: str, text: str, sitedir: str, trusted: Any, guard: _Guard) -> None:
    """What site.addpackage() does with one .pth file: ``import`` lines run,
    other lines name directories appended to sys.path if they exist.  Those
    directories are checked and guarded like site-packages.  (Keep the name
    ``sitedir``: old setuptools -nspkg.pth lines read it from their calling
    frame, sys._getframe(1).f_locals['sitedir'], as in site.addpackage.)"""
    for n, line in enumerate(text.splitlines(), 1):
        if line.startswith("#") or not line.strip():
            continue
        if line.startswith(("import ", "import\t")):
            try:
                exec(compile(line, pth, "exec", dont_inherit=True), {})
            except HandlerError:
                raise
            except BaseException as e:
                raise HandlerError(f"{pth}:{n}: running this .pth line failed: "
                                   f"{type(e).__name__}: {e}") from e
            continue
        d = os.path.abspath(os.path.join(sitedir, line.rstrip()))
        if d in sys.path or not os.path.exists(d):
            continue
        check_dir(d, trusted, "directory", target=f"{d} (line {n} of {pth})")
        guard.guard(d, trusted)
        sys.path.append(d)


# -- the handler module -------------------------------------------------

def _import_failure(e: BaseException, name: str, roots: tuple[str, ...]) -> HandlerError:
    if isinstance(e, SyntaxError):
        return HandlerError(f"{where(e)}: syntax error: {e.msg}")
    return HandlerError(f"{where(e, roots)}: importing {name} failed: "
                        f"{type(e).__name__}: {e}")


def _import_parent(name: str, cfg: Config) -> Any:
    """Import the handler's parent package (through the guard)."""
    try:
        return importlib.import_module(name)
    except HandlerError:
        raise
    except BaseException as e:  # any import-time failure, even SystemExit
        raise _import_failure(e, name, cfg.path) from e


def _handler_spec(cfg: Config, trusted: set[int]) -> Any:
    top = cfg.module.split(".")[0]
    spec = importlib.machinery.PathFinder.find_spec(top, list(cfg.path))
    if spec is None:
        raise HandlerError(
            f"module {cfg.module!r} not found in path {':'.join(cfg.path)} "
            f"(from handler={cfg.handler} in {cfg.conf_key})")
    if "." in cfg.module:
        parent = _import_parent(cfg.module.rpartition(".")[0], cfg)
        spec = importlib.machinery.PathFinder.find_spec(
            cfg.module, getattr(parent, "__path__", None) or [])
        if spec is None:
            raise HandlerError(f"module {cfg.module!r} not found")
    origin = spec.origin
    if not spec.has_location or not origin or not os.path.isfile(origin):
        raise HandlerError(f"module {cfg.module!r} has no source file (origin={origin})")
    spec = _checked_spec(spec, frozenset(trusted), "handler file")
    if not isinstance(spec.loader, _CheckedSourceLoader):
        raise HandlerError(f"{origin}: the handler module must be Python source (.py)")
    return spec


def load(cfg: Config, base: type, trusted_uids: set[int],
         hooks: tuple[str, ...] = ()) -> Loaded:
    """Import cfg.module afresh (without touching the running handler),
    check and instantiate cfg.cls.  Raises HandlerError, and nothing else:
    every failure to load is the handler's error (the daemons and `check`
    report it as such), never an exception out of the loader.  With
    handlers=<dir>: load_dir() with no previous set (`hooks`: the plugin's
    hook names, from the plugin table)."""
    if cfg.handlers:
        return load_dir(cfg, base, trusted_uids, hooks, None)
    found: list[str] = []
    try:
        return _load(cfg, base, trusted_uids, found)
    except HandlerError:
        raise
    except Exception as e:
        what = found[0] if found else f"module {cfg.module!r}"
        raise HandlerError(f"{what}: loading {cfg.handler} failed: "
                           f"{type(e).__name__}: {e}") from e


def _load(cfg: Config, base: type, trusted_uids: set[int], found: list[str]) -> Loaded:
    _prepare_path(cfg, trusted_uids)
    spec = _handler_spec(cfg, trusted_uids)
    found.append(spec.origin)
    try:
        code, signature = spec.loader.code_and_signature()
    except SyntaxError as e:
        raise _import_failure(e, cfg.module, cfg.path) from e
    module = importlib.util.module_from_spec(spec)
    # As in a normal import, the module is in sys.modules while it runs
    # (dataclasses, typing.get_type_hints, pickle look it up there); a
    # refused module gives the previous one its place back.
    previous = sys.modules.get(spec.name)
    sys.modules[spec.name] = module
    try:
        instance = _instantiate(cfg, base, code, module, spec.origin)
    except BaseException:
        if previous is None:
            sys.modules.pop(spec.name, None)
        else:
            sys.modules[spec.name] = previous
        raise
    return Loaded(instance=instance, module_file=spec.origin, signature=signature,
                  fields=_declared_fields(type(instance), spec.origin, cfg.handler))


def _declared_fields(cls: type, origin: str, label: str) -> tuple[str, ...] | None:
    """A SiteFactorHandler's `fields`, checked now (at load), so that a
    misspelled name is a load error naming it (`origin`: `label`.fields),
    not a failure in update(); as the JobList takes them: job_id first."""
    if not issubclass(cls, SiteFactorHandler):
        return None
    try:
        from . import _records   # site_factor only: other plugins' loads import no records
        return _records.declared_fields(cls.fields)
    except ValueError as e:
        raise HandlerError(f"{origin}: {label}.fields: {e}") from None


def _instantiate(cfg: Config, base: type, code: Any, module: Any, origin: str) -> Any:
    try:
        exec(code, module.__dict__)
    except BaseException as e:  # any import-time failure, even SystemExit
        raise _import_failure(e, cfg.module, cfg.path) from e
    cls = getattr(module, cfg.cls, None)
    if cls is None:
        import difflib
        classes = [n for n, v in vars(module).items()
                   if isinstance(v, type) and issubclass(v, base) and v is not base]
        close = difflib.get_close_matches(cfg.cls, classes, n=1) or \
            ([classes[0]] if len(classes) == 1 else [])
        raise HandlerError(f"{origin}: module {cfg.module} has no class {cfg.cls!r}"
                           + (f" (did you mean {close[0]!r}?)" if close else ""))
    if not isinstance(cls, type) or not issubclass(cls, base):
        raise HandlerError(
            f"{origin}: {cfg.handler} is not a subclass of slurmpy_plugins.{base.__name__}")
    try:
        return cls()
    except BaseException as e:
        raise HandlerError(f"{where(e, cfg.path)}: {cfg.handler}() failed: "
                           f"{type(e).__name__}: {e}") from e


# -- handlers=<dir> -----------------------------------------------------

HANDLER_SUFFIX = ".py"


def dir_listing(directory: str) -> tuple[tuple[str, tuple[Any, ...]], ...]:
    """The handler files of a handlers= directory, in the order they run
    (file name, as sorted() orders str): ((name, file_signature()), ...).
    Names starting with "." (editors' and rsync's temporary files) are not
    handler files.  A directory that cannot be listed: (("", ("missing",
    errno)),), a change like any other."""
    try:
        names = sorted(n for n in os.listdir(directory)
                       if n.endswith(HANDLER_SUFFIX) and not n.startswith("."))
    except OSError as e:
        return (("", ("missing", e.errno)),)
    return tuple((n, file_signature(os.path.join(directory, n))) for n in names)


def current_signature(cfg: Config, loaded: Loaded) -> tuple[Any, ...]:
    """What tells that the running handler's files changed: the handler
    file's signature, or the handlers= directory's listing."""
    if cfg.handlers:
        return dir_listing(cfg.handlers)
    return file_signature(loaded.module_file)


def _stem(name: str) -> str:
    return name[:-len(HANDLER_SUFFIX)]


def _load_member(cfg: Config, base: type, trusted: Any, kind: str, name: str) -> Any:
    """One handler file: checked, read from the checked descriptor, run as
    a module of its own (``<kind>_handlers.<stem>`` in sys.modules), its
    one subclass of `base` instantiated.  Raises HandlerError naming the
    file (and its line)."""
    from ._chain import Member
    assert cfg.handlers is not None
    path = os.path.join(cfg.handlers, name)
    source, st = read_trusted(path, trusted, "handler file")
    try:
        code = _compile(source, path)
    except SyntaxError as e:
        raise HandlerError(f"{where(e)}: syntax error: {e.msg}") from e
    modname = f"{kind}_handlers.{_stem(name)}"
    spec = importlib.util.spec_from_loader(modname, loader=None, origin=path)
    module = importlib.util.module_from_spec(spec)   # type: ignore[arg-type]
    module.__file__ = path
    previous = sys.modules.get(modname)
    sys.modules[modname] = module
    try:
        try:
            exec(code, module.__dict__)
        except BaseException as e:  # any import-time failure, even SystemExit
            raise HandlerError(f"{where(e, cfg.roots)}: loading {path} failed: "
                               f"{type(e).__name__}: {e}") from e
        classes = [v for v in vars(module).values()
                   if isinstance(v, type) and issubclass(v, base) and v is not base
                   and v.__module__ == modname]
        if len(classes) != 1:
            found = (f"{len(classes)}: {', '.join(c.__name__ for c in classes)}" if classes
                     else "none")
            raise HandlerError(
                f"{path}: a handler file defines exactly one subclass of "
                f"slurmpy_plugins.{base.__name__} (found {found}); shared code belongs in "
                "a module on path=")
        cls = classes[0]
        try:
            instance = cls()
        except BaseException as e:
            raise HandlerError(f"{where(e, cfg.roots)}: {path}: {cls.__name__}() failed: "
                               f"{type(e).__name__}: {e}") from e
        _declared_fields(cls, path, cls.__name__)
    except BaseException:
        if previous is None:
            sys.modules.pop(modname, None)
        else:
            sys.modules[modname] = previous
        raise
    return Member(name=name, path=path, instance=instance, signature=_signature_of(st),
                  prefix=f"{kind}/python[{_stem(name)}]")


def load_dir(cfg: Config, base: type, trusted_uids: set[int], hooks: tuple[str, ...],
             previous: Loaded | None) -> Loaded:
    """handlers=<dir>: every handler file, each loaded and checked on its
    own.  Returns the new set; its `notes` say what was refused or dropped
    (one message each, for the log).

    With no previous set (boot, or nothing was running) every file must
    load: one that does not is the HandlerError (naming every file that
    failed), and the plugin fails closed, as it does for a handler= that
    does not load.  With a previous set, a file that did not change keeps
    its handler, a changed file that does not load keeps its previous
    version (a new one is not added), a removed file's handler is dropped;
    a directory left with no handler files is refused whole."""
    try:
        return _load_dir(cfg, base, trusted_uids, hooks, previous)
    except HandlerError:
        raise
    except Exception as e:
        raise HandlerError(f"handlers directory {cfg.handlers}: loading failed: "
                           f"{type(e).__name__}: {e}") from e


def _load_dir(cfg: Config, base: type, trusted: set[int], hooks: tuple[str, ...],
              previous: Loaded | None) -> Loaded:
    from . import _chain
    directory = cfg.handlers
    assert directory is not None
    if not hooks:
        raise HandlerError(f"handlers={directory}: the plugin's hooks are unknown (internal)")
    from ._plugins import PLUGINS
    kind = next((p.kind for p in PLUGINS if p.base is base), base.__name__)
    _prepare_path(cfg, trusted)
    check_dir(directory, trusted, "handlers directory")
    listing = dir_listing(directory)
    if listing and listing[0][0] == "":
        raise HandlerError(f"handlers directory {directory}: cannot be listed")
    if not listing:
        raise HandlerError(f"handlers directory {directory} has no handler files (*.py)"
                           + ("; the previous handlers keep running" if previous else ""))
    old = {m.name: m for m in (previous.members if previous else ())}
    members, errors, notes = [], [], []
    for name, sig in listing:
        kept = old.pop(name, None)
        if kept is not None and kept.signature == sig:
            members.append(kept)
            continue
        try:
            members.append(_load_member(cfg, base, trusted, kind, name))
        except HandlerError as e:
            if previous is None:
                errors.append(e)
            elif kept is not None:
                members.append(kept)
                notes.append(f"changed handler file {name} refused, its previous version "
                             f"keeps running: {e}")
            else:
                notes.append(f"new handler file {name} refused, not run until it loads: {e}")
    for name in old:
        notes.append(f"handler file {name} removed from {directory}: its handler no longer runs")
    if errors:
        first = errors[0]
        more = "".join(f"; {e}" for e in errors[1:])
        raise HandlerError(f"{first}{more}") from first.__cause__
    instance = _chain.build(base, hooks, tuple(members))
    return Loaded(instance=instance, module_file=directory, signature=listing,
                  fields=_declared_fields(type(instance), directory, cfg.handler),
                  members=tuple(members), notes=tuple(notes))
