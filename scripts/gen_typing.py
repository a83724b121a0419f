"""Generate slurmpy_plugins/_fields.py: the static types of the record
fields (for mypy and IDEs) from csrc/spm_types.h, through the same
generated classes the daemon uses (the test kit's ABI-mode view of the
header).  At run time the fields are properties made by _records.install()
and _jobdesc.install(); this file only declares them, under TYPE_CHECKING.

    python scripts/gen_typing.py            # rewrite the file
    python scripts/gen_typing.py --check    # exit 1 if it is out of date
"""
from __future__ import annotations

import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from slurmpy_plugins import testing  # noqa: E402  (binds the records to the header)
from slurmpy_plugins import Job, JobDesc, JobEnv, Partition  # noqa: E402

from _generated import write_or_check  # noqa: E402  (scripts/, beside this file)

TARGET = ROOT / "slurmpy_plugins" / "_fields.py"


def _record_type(cls: type, name: str) -> str:
    doc = getattr(cls, name).__doc__ or ""
    if "(int)" in doc:
        return "int"
    if "(str or None)" in doc:
        return "str | None"
    if "(dict" in doc:
        return "dict[str, str]"
    if name == "state":
        return "str"
    if name == "state_flags":
        return "frozenset[str]"
    raise SystemExit(f"gen_typing: no type for {cls.__name__}.{name} ({doc!r})")


def render() -> str:
    out = ['"""Static types of the record fields, generated from csrc/spm_types.h by',
           "scripts/gen_typing.py: do not edit (a unit test checks it is current).",
           "Declarations only (TYPE_CHECKING): the properties are made at import by",
           '_records.install() and _jobdesc.install()."""',
           "from __future__ import annotations", "", "from typing import TYPE_CHECKING", "",
           "if TYPE_CHECKING:", "    from ._jobdesc import Environment, Unlimited", ""]
    for cls, title in ((Job, "JobFields"), (JobEnv, "JobEnvFields")):
        out += ["", f"class {title}:", "    __slots__ = ()", "    if TYPE_CHECKING:"]
        for name in cls.fields():
            out += ["        @property", f"        def {name}(self) -> {_record_type(cls, name)}: ..."]
    out += ["", "class JobDescFields:", "    __slots__ = ()", "    if TYPE_CHECKING:"]
    from slurmpy_plugins import _jobdesc
    for name in JobDesc.fields():
        kind = JobDesc._kinds[name]
        t = {"int": "int | None", "str": "str | None", "strv": "dict[str, str]",
             "strl": "list[str]"}[kind[0]]
        if kind[0] == "int" and kind[3] is not None:
            t = "int | Unlimited | None"
        if kind[0] == "strv" and name not in _jobdesc.READ_ONLY:
            t = "Environment"     # changed item by item, never assigned
        if kind[0] in ("strv", "strl") or name in _jobdesc.READ_ONLY:
            out += ["        @property", f"        def {name}(self) -> {t}: ..."]
        else:
            out += [f"        {name}: {t}"]
    out += ["", "class PartitionFields:", "    __slots__ = ()", "    if TYPE_CHECKING:"]
    p = testing.make_partition("x")
    for name in Partition._fields:
        v = getattr(p, name)
        if name == "allow_uids":
            out += ["        @property", f"        def {name}(self) -> tuple[int, ...] | None: ..."]
            continue
        t = "bool" if isinstance(v, bool) else "str | None" if (v is None and name not in (
            "max_time", "default_time", "max_nodes", "max_cpus_per_node")) or isinstance(v, str) \
            else "int | None" if name in ("max_time", "default_time", "max_nodes",
                                          "max_cpus_per_node") else "int"
        out += ["        @property", f"        def {name}(self) -> {t}: ..."]
    return "\n".join(out) + "\n"


def main() -> int:
    return write_or_check(TARGET, render(), "--check" in sys.argv,
                          "python scripts/gen_typing.py")


if __name__ == "__main__":
    sys.exit(main())
