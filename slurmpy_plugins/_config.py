"""Parsing of PrEpParameters / PrioritySiteFactorParameters, and of
job_submit_python.conf.

Grammar of the slurm.conf keys: comma-separated ``key=value`` items::

    handler=<module>:<Class>[,path=<dir>[:<dir>...]][,venv=<dir>]
    [,timeout=<seconds>][,workers=<n>][,reload=<seconds>]

or, instead of handler=, ``handlers=<dir>``: every ``*.py`` file in <dir>, in
file-name order, defines one handler class (_loader.load_dir, _chain).

job_submit_python.conf (beside slurm.conf) has the same keys, one
``key=value`` per line, blank lines and ``#`` comment lines ignored, plus
``on_failure=reject|accept``.  jobcomp_python.conf: the same, without
workers= and on_failure=, plus ``spool=<dir>`` and ``spool_max=<MiB>``
(csrc/dispatch_jobcomp.c reads those two itself, before Python starts).

Every mistake raises :class:`ConfigError` naming the slurm.conf key (or the
file and line) and the offending item; nothing is ignored.
"""
from __future__ import annotations

import dataclasses
import math
import os
import re

__all__ = ["ConfigError", "Config", "parse", "parse_file"]

KEYS = ("handler", "handlers", "path", "venv", "timeout", "workers", "reload")
FILE_KEYS = KEYS + ("on_failure",)
# jobcomp_python.conf: one deliverer (no workers=), and its spool
JC_KEYS = ("handler", "handlers", "path", "venv", "timeout", "reload", "spool", "spool_max")
ON_FAILURE = ("reject", "accept")
_MODULE_RE = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
_CLASS_RE = re.compile(r"^[A-Za-z_]\w*$")


class ConfigError(ValueError):
    """A plugin parameter string that cannot be used."""


@dataclasses.dataclass(frozen=True)
class Config:
    conf_key: str                 # "PrEpParameters" or "PrioritySiteFactorParameters"
    module: str
    cls: str
    path: tuple[str, ...]
    venv: str | None = None
    timeout: float | None = None  # seconds; None: the context's default
    workers: int | None = None
    reload: float = 2.0           # seconds between handler file checks; 0: off
    on_failure: str = "reject"    # job_submit only: "reject" or "accept"
    spool: str | None = None      # jobcomp only: the spool directory (None: the default)
    spool_max: int | None = None  # jobcomp only: the spool's size bound in MiB
    # handlers=<dir> (instead of handler=; module and cls are then ""): a
    # directory of handler files, each its own class, run in file-name order
    handlers: str | None = None

    @property
    def handler(self) -> str:
        """What log lines name: ``module:Class`` or ``handlers=<dir>``."""
        return f"handlers={self.handlers}" if self.handlers else f"{self.module}:{self.cls}"

    @property
    def roots(self) -> tuple[str, ...]:
        """The site's directories, where an error's file:line is looked
        for (_loader.where): path= and the handlers= directory."""
        return self.path + ((self.handlers,) if self.handlers else ())


# The most timeout= and reload= accept: one day.  (The C side keeps the
# timeout in milliseconds in a uint32, which holds about 49 days.)
MAX_SECONDS = 86400
DEFAULT_RELOAD = 2.0    # reload= when not given
MAX_SPOOL_MB = 1 << 20  # spool_max=: 1 TiB


def _seconds(conf_key: str, key: str, value: str, *, allow_zero: bool) -> float:
    try:
        v = float(value)
    except ValueError:
        raise ConfigError(f"{conf_key}: {key}={value!r} is not a number of seconds") from None
    if math.isnan(v) or v < 0 or (v == 0 and not allow_zero):
        raise ConfigError(f"{conf_key}: {key}={value!r} must be a positive number of seconds")
    if v > MAX_SECONDS:
        allowed = (f"from 0 (never) to {MAX_SECONDS}" if allow_zero
                   else f"more than 0 and at most {MAX_SECONDS}")
        raise ConfigError(f"{conf_key}: {key}={value!r} is out of range: it must be "
                          f"{allowed} seconds")
    return v


def parse(params: str | None, *, conf_key: str, conf_path: str | None,
          keys: tuple[str, ...] = KEYS) -> Config:
    """Parse a parameter string.  ``conf_path`` (slurm.conf) gives the
    default ``path``: the directory that holds slurm.conf.  ``keys``: those
    the plugin accepts (its row's conf_keys, _plugins.py)."""
    if params is None or not params.strip():
        raise ConfigError(f"{conf_key} is not set: it needs handler=<module>:<Class>")
    seen: dict[str, tuple[str, str]] = {}
    for item in params.split(","):
        item = item.strip()
        if not item:
            raise ConfigError(f"{conf_key}: empty item in {params!r}")
        _add_item(seen, item, conf_key, keys)
    return _build(seen, conf_key=conf_key, conf_path=conf_path)


def parse_file(path: str, text: str, *, conf_path: str | None,
               keys: tuple[str, ...] = FILE_KEYS) -> Config:
    """Parse a plugin's conf file beside slurm.conf (job_submit_python.conf),
    whose content is ``text`` (read by _loader.read_settings(), which checks
    who can change it).  Errors name the file and the line."""
    seen: dict[str, tuple[str, str]] = {}
    for n, line in enumerate(text.splitlines(), 1):
        item = line.strip()
        if not item or item.startswith("#"):
            continue
        _add_item(seen, item, f"{path}:{n}", keys)
    if not seen:
        raise ConfigError(f"{path}: no settings: it needs handler=<module>:<Class> "
                          "(or handlers=<directory>)")
    return _build(seen, conf_key=path, conf_path=conf_path)


def _add_item(seen: dict[str, tuple[str, str]], item: str, where: str, keys: tuple[str, ...]) -> None:
    key, sep, value = item.partition("=")
    key = key.strip().lower()
    if not sep:
        raise ConfigError(f"{where}: {item!r} is not key=value")
    if key not in keys:
        import difflib
        close = difflib.get_close_matches(key, keys, n=1)
        raise ConfigError(f"{where}: unknown key {key!r} (known keys: {', '.join(keys)})"
                          + (f"; did you mean {close[0]!r}?" if close else ""))
    if key in seen:
        raise ConfigError(f"{where}: key {key!r} given twice (first at {seen[key][1]})"
                          if seen[key][1] != where else f"{where}: key {key!r} given twice")
    seen[key] = (value.strip(), where)


def _build(items: dict[str, tuple[str, str]], *, conf_key: str,
           conf_path: str | None) -> Config:
    seen = {k: v for k, (v, _) in items.items()}
    at = {k: w for k, (_, w) in items.items()}
    handlers = seen.get("handlers")
    module = cls = ""
    if handlers is not None:
        if "handler" in seen:
            raise ConfigError(f"{at['handlers']}: handler= and handlers= are both given "
                              f"(handler= at {at['handler']}): give one, handler=<module>:<Class> "
                              "or handlers=<directory of handler files>")
        if not handlers or not os.path.isabs(handlers):
            raise ConfigError(f"{at['handlers']}: handlers={handlers!r} must be an absolute "
                              "directory (of handler files, run in file-name order)")
        handlers = os.path.normpath(handlers)
    elif "handler" not in seen:
        raise ConfigError(f"{conf_key}: handler=<module>:<Class> (or handlers=<directory>) "
                          "is required")
    else:
        module, sep, cls = seen["handler"].partition(":")
        if not sep or not _MODULE_RE.match(module) or not _CLASS_RE.match(cls):
            raise ConfigError(
                f"{at['handler']}: handler={seen['handler']!r} must be <module>:<Class>, "
                "for example handler=site_prep:Handler")

    if "path" in seen:
        dirs = tuple(seen["path"].split(":"))
        for d in dirs:
            if not d or not os.path.isabs(d):
                raise ConfigError(f"{at['path']}: path entry {d!r} must be an absolute directory")
    elif handlers is not None:
        dirs = ()          # handlers= files import only what path= (or venv=) adds
    elif conf_path:
        dirs = (os.path.dirname(os.path.abspath(conf_path)),)
    else:
        raise ConfigError(f"{conf_key}: no path= given and the slurm.conf location is unknown")

    venv = seen.get("venv")
    if venv is not None and not os.path.isabs(venv):
        raise ConfigError(f"{at['venv']}: venv={venv!r} must be an absolute directory")

    timeout = None
    if "timeout" in seen:
        timeout = _seconds(at["timeout"], "timeout", seen["timeout"], allow_zero=False)

    workers = None
    if "workers" in seen:
        try:
            workers = int(seen["workers"])
        except ValueError:
            workers = -1
        if not 1 <= workers <= 64:
            raise ConfigError(f"{at['workers']}: workers={seen['workers']!r} must be an integer from 1 to 64")

    reload = DEFAULT_RELOAD
    if "reload" in seen:
        reload = _seconds(at["reload"], "reload", seen["reload"], allow_zero=True)

    on_failure = seen.get("on_failure", "reject")
    if on_failure not in ON_FAILURE:
        raise ConfigError(f"{at['on_failure']}: on_failure={on_failure!r} must be "
                          f"{' or '.join(ON_FAILURE)}")

    spool = seen.get("spool")
    if spool is not None and not os.path.isabs(spool):
        raise ConfigError(f"{at['spool']}: spool={spool!r} must be an absolute directory")

    spool_max = None
    if "spool_max" in seen:
        try:
            spool_max = int(seen["spool_max"])
        except ValueError:
            spool_max = 0
        if not 1 <= spool_max <= MAX_SPOOL_MB:
            raise ConfigError(f"{at['spool_max']}: spool_max={seen['spool_max']!r} must be a "
                              f"number of MiB from 1 to {MAX_SPOOL_MB}")

    return Config(conf_key=conf_key, module=module, cls=cls, path=dirs, venv=venv,
                  timeout=timeout, workers=workers, reload=reload, on_failure=on_failure,
                  spool=spool, spool_max=spool_max, handlers=handlers)
