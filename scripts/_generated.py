"""The one --check/write step of the scripts that generate a committed file
(gen_errno.py, gen_lua_doc.py, gen_typing.py)."""
from __future__ import annotations

import pathlib
import sys


def write_or_check(target: pathlib.Path, text: str, check: bool, remake: str) -> int:
    """check: 0 if `target` holds `text`, else 1 with a line saying to run
    `remake`; otherwise write `text` to `target` and return 0."""
    if check:
        if not target.exists() or target.read_text() != text:
            print(f"{target} is out of date: run {remake}", file=sys.stderr)
            return 1
        return 0
    target.write_text(text)
    return 0
