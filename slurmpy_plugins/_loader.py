"""Loading, checking and hot-reloading a site's handler class."""
from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import site
import stat
import sys
import traceback
from dataclasses import dataclass
from typing import Any

from ._config import Config

__all__ = ["HandlerError", "Loaded", "load", "where", "file_signature", "check_safe"]


class HandlerError(Exception):
    """The handler cannot be used; the message names file:line and cause."""


@dataclass
class Loaded:
    instance: Any
    module_file: str
    signature: tuple


def where(exc: BaseException, roots: tuple[str, ...] = ()) -> str:
    """``file:line`` where an exception came from: the innermost frame in a
    file under one of ``roots`` (the site's handler directories) if there
    is one, else the innermost frame; for a SyntaxError, the offending
    source line."""
    if isinstance(exc, SyntaxError) and exc.filename:
        return f"{exc.filename}:{exc.lineno}"
    tb = traceback.extract_tb(exc.__traceback__)
    dirs = tuple(os.path.join(os.path.abspath(r), "") for r in roots)
    mine = [f for f in tb if dirs and os.path.abspath(f.filename).startswith(dirs)]
    frame = (mine or tb or [None])[-1]
    return f"{frame.filename}:{frame.lineno}" if frame else "?"


def format_tb(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc)).rstrip()


def file_signature(path: str) -> tuple:
    st = os.stat(path)
    return (st.st_mtime_ns, st.st_size, st.st_ino, st.st_dev)


def check_safe(path: str, trusted_uids: set[int], what: str) -> None:
    """Refuse files and directories that someone other than root/SlurmUser
    could change (as sshd refuses loose key files)."""
    try:
        st = os.stat(path)
    except OSError as e:
        raise HandlerError(f"{what} {path}: {e.strerror}") from None
    if st.st_uid not in trusted_uids:
        raise HandlerError(
            f"refusing {what} {path}: owned by uid {st.st_uid}; it must be owned by "
            f"root or SlurmUser (uid {', '.join(map(str, sorted(trusted_uids)))})")
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise HandlerError(
            f"refusing {what} {path}: writable by group or others "
            f"(mode {stat.S_IMODE(st.st_mode):04o}); run chmod go-w {path}")


def _find_spec(cfg: Config):
    top = cfg.module.split(".")[0]
    spec = importlib.machinery.PathFinder.find_spec(top, list(cfg.path))
    if spec is None:
        raise HandlerError(
            f"module {cfg.module!r} not found in path {':'.join(cfg.path)} "
            f"(from handler={cfg.handler} in {cfg.conf_key})")
    if "." in cfg.module:
        for d in cfg.path:
            if d not in sys.path:
                sys.path.insert(0, d)
        spec = importlib.util.find_spec(cfg.module)
        if spec is None:
            raise HandlerError(f"module {cfg.module!r} not found")
    return spec


def _prepare_path(cfg: Config, trusted: set[int]) -> None:
    for d in cfg.path:
        check_safe(d, trusted, "handler directory")
    for d in reversed(cfg.path):
        if d not in sys.path:
            sys.path.insert(0, d)
    if cfg.venv:
        _add_venv(cfg.venv, trusted)


def _add_venv(venv: str, trusted: set[int]) -> None:
    check_safe(venv, trusted, "venv")
    want = f"python{sys.version_info.major}.{sys.version_info.minor}"
    sp = os.path.join(venv, "lib", want, "site-packages")
    if not os.path.isdir(sp):
        raise HandlerError(
            f"venv {venv} has no lib/{want}/site-packages: it must be a virtualenv "
            f"made with Python {sys.version_info.major}.{sys.version_info.minor}, "
            "the Python this plugin was built with")
    if sp not in sys.path:
        site.addsitedir(sp)


def load(cfg: Config, base: type, trusted_uids: set[int]) -> Loaded:
    """Import cfg.module afresh (without touching the running handler),
    check and instantiate cfg.cls.  Raises HandlerError."""
    _prepare_path(cfg, trusted_uids)
    spec = _find_spec(cfg)
    origin = spec.origin
    if not origin or not os.path.isfile(origin):
        raise HandlerError(f"module {cfg.module!r} has no source file (origin={origin})")
    check_safe(origin, trusted_uids, "handler file")
    signature = file_signature(origin)
    module = importlib.util.module_from_spec(spec)
    # As in a normal import, the module is in sys.modules while it runs
    # (dataclasses, typing.get_type_hints, pickle look it up there); a
    # refused module gives the previous one its place back.
    previous = sys.modules.get(spec.name)
    sys.modules[spec.name] = module
    try:
        instance = _instantiate(cfg, base, spec, module, origin)
    except BaseException:
        if previous is None:
            sys.modules.pop(spec.name, None)
        else:
            sys.modules[spec.name] = previous
        raise
    return Loaded(instance=instance, module_file=origin, signature=signature)


def _instantiate(cfg: Config, base: type, spec, module, origin: str):
    try:
        spec.loader.exec_module(module)
    except SyntaxError as e:
        raise HandlerError(f"{where(e)}: syntax error: {e.msg}") from e
    except BaseException as e:  # any import-time failure, even SystemExit
        raise HandlerError(f"{where(e, cfg.path)}: importing {cfg.module} failed: "
                           f"{type(e).__name__}: {e}") from e
    cls = getattr(module, cfg.cls, None)
    if cls is None:
        raise HandlerError(f"{origin}: module {cfg.module} has no class {cfg.cls!r}")
    if not isinstance(cls, type) or not issubclass(cls, base):
        raise HandlerError(
            f"{origin}: {cfg.handler} is not a subclass of slurmpy_plugins.{base.__name__}")
    try:
        return cls()
    except BaseException as e:
        raise HandlerError(f"{where(e, cfg.path)}: {cfg.handler}() failed: "
                           f"{type(e).__name__}: {e}") from e
