"""Reading slurm.conf the way slurmctld does, for the keys this project
uses: ``Key=Value`` items separated by blanks, case-insensitive keys,
``#`` comments, ``Include`` files (relative to slurm.conf's directory), and
the per-entity lines (NodeName=, PartitionName=, ...) kept apart."""
from __future__ import annotations

import os
import shlex

__all__ = ["SlurmConf", "SlurmConfError", "read", "default_path"]

# Lines whose first key names an entity: their items belong to it.
_ENTITY_KEYS = {"nodename", "partitionname", "frontendname", "nodeset",
                "downnodes", "switchname"}


class SlurmConfError(ValueError):
    """slurm.conf cannot be read; the message names the file and line."""


class SlurmConf:
    def __init__(self, path: str) -> None:
        self.path = path
        self.values: dict[str, str] = {}          # lower-case key -> value
        self.where: dict[str, str] = {}           # lower-case key -> file:line
        self.entities: list[dict[str, str]] = []  # NodeName=/PartitionName= lines

    def get(self, key: str, default: str | None = None) -> str | None:
        return self.values.get(key.lower(), default)

    @property
    def dir(self) -> str:
        return os.path.dirname(os.path.abspath(self.path))


def default_path() -> str:
    """The slurm.conf Slurm would read: $SLURM_CONF, else /etc/slurm/slurm.conf."""
    return os.environ.get("SLURM_CONF") or "/etc/slurm/slurm.conf"


def _strip_comment(line: str) -> str:
    out, i = [], 0
    while i < len(line):
        c = line[i]
        if c == "\\" and i + 1 < len(line) and line[i + 1] == "#":
            out.append("#")
            i += 2
            continue
        if c == "#":
            break
        out.append(c)
        i += 1
    return "".join(out).strip()


def _read_into(conf: SlurmConf, path: str, depth: int) -> None:
    if depth > 10:
        raise SlurmConfError(f"{path}: Include nested more than 10 deep")
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise SlurmConfError(f"cannot read {path}: {e.strerror}") from None
    for n, raw in enumerate(lines, 1):
        line = _strip_comment(raw)
        if not line:
            continue
        where = f"{path}:{n}"
        if line.split(None, 1)[0].lower() == "include":
            target = line.split(None, 1)[1].strip() if " " in line else ""
            if not target:
                raise SlurmConfError(f"{where}: Include without a file")
            if not os.path.isabs(target):
                target = os.path.join(conf.dir, target)
            _read_into(conf, target, depth + 1)
            continue
        try:
            tokens = shlex.split(line, posix=True)
        except ValueError as e:
            raise SlurmConfError(f"{where}: {e}") from None
        items = []
        for tok in tokens:
            key, sep, value = tok.partition("=")
            if not sep or not key:
                raise SlurmConfError(f"{where}: {tok!r} is not Key=Value")
            items.append((key.strip().lower(), value.strip()))
        if items[0][0] in _ENTITY_KEYS:
            conf.entities.append(dict(items))
            continue
        for key, value in items:
            conf.values[key] = value
            conf.where[key] = where


def read(path: str) -> SlurmConf:
    conf = SlurmConf(path)
    _read_into(conf, path, 0)
    return conf
