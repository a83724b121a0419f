"""Slurm's error codes by name, for ``Reject(text, code=...)``.

In a daemon the table is the one libslurmpy.so was built with: the
members of slurm_err_t in slurm/slurm_errno.h of that Slurm release
(csrc/errno.c; :func:`install` reads it).  Outside a daemon (the test
kit, ``check``, ``preview``) it is _slurm_errno.CODES, generated from the
headers of every release the project builds against (scripts/gen_errno.py):
a name only a newer release has is accepted there, and refused by a
daemon of an older release.
"""
from __future__ import annotations

import difflib
from typing import Any

from . import _slurm_errno

__all__ = ["resolve", "install", "name_of"]

_codes: dict[str, int] = dict(_slurm_errno.CODES)
_where = (f"slurm_errno.h (Slurm {_slurm_errno.RELEASES[0]} to "
          f"{_slurm_errno.RELEASES[-1]})")


def _names_by_value(codes: dict[str, int]) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for name, value in codes.items():
        out.setdefault(value, []).append(name)
    return out


_by_value = _names_by_value(_codes)


def install(ffi: Any, lib: Any) -> None:
    """In a daemon: use the table of the Slurm release it was built with."""
    global _codes, _where, _by_value
    codes: dict[str, int] = {}
    name = ffi.new("char **")
    i = 0
    while True:
        value = lib.spm_errno_entry(i, name)
        if name[0] == ffi.NULL:
            break
        codes[ffi.string(name[0]).decode()] = int(value)
        i += 1
    _codes = codes
    _by_value = _names_by_value(codes)
    _where = f"slurm_errno.h of Slurm {ffi.string(lib.spm_slurm_release()).decode()}"


def name_of(value: int) -> str | None:
    """The name of a code (None if the table has none, or several)."""
    names = _by_value.get(value, [])
    return names[0] if len(names) == 1 else None


def resolve(code: Any) -> int:
    """The number of an error code given by name ("ESLURM_INVALID_ACCOUNT")
    or by number (2045); ValueError/TypeError naming the problem."""
    if isinstance(code, str):
        value = _codes.get(code)
        if value is None:
            close = difflib.get_close_matches(code.upper(), _codes, n=1, cutoff=0.7)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"Reject(code={code!r}): not an error code of {_where}{hint}")
        return value
    if isinstance(code, int) and not isinstance(code, bool):
        if code not in _by_value:
            raise ValueError(f"Reject(code={code}): not an error code of {_where} "
                             "(give a name such as 'ESLURM_INVALID_ACCOUNT', or its number)")
        return int(code)
    raise TypeError(f"Reject(code=...) takes an error code name (str) or number (int), "
                    f"not {type(code).__name__}")
