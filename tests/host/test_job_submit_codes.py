"""Reject(text, code=...): Slurm's error codes by name or number, in the
real plugin (C host: what job_submit() returns) and in the kit; the
tables they come from (slurm_errno.h of the release under test)."""
from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest

from slurmpy_plugins import _slurm_errno

from .conftest import REPO
from .test_job_submit_host import policy, start

SLURM_SRC = pathlib.Path(os.environ.get("SLURM_SRC", ""))
ESLURM_INVALID_ACCOUNT = 2045   # slurm_errno.h, the same in every release since 2.x


def _release_codes() -> dict[str, int]:
    """The release under test: its slurm_errno.h read as the build reads
    it, values from gcc (scripts/gen_errno.py)."""
    if not (SLURM_SRC / "config.h").is_file():
        pytest.fail(f"SLURM_SRC={SLURM_SRC!s} is not a configured Slurm source tree "
                    "(make test sets it)")
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        import gen_errno
    finally:
        sys.path.remove(str(REPO / "scripts"))
    return gen_errno.codes(SLURM_SRC)


def test_the_plugin_returns_rejects_code_by_name_and_number(make_host, handlers):
    h = start(make_host, handlers)
    policy(handlers, """
self.log_user("first")
if job.account == "byname":
    raise Reject("account byname has no allocation", code="ESLURM_INVALID_ACCOUNT")
if job.account == "bynumber":
    raise Reject("by number", code=2045)
if job.account == "empty":
    raise Reject("", code="ESLURM_INVALID_ACCOUNT")
raise Reject("no code")
""")
    res = h.js_submit(account="byname", comment="orig")
    assert res["rc"] == ESLURM_INVALID_ACCOUNT
    assert res["err_msg"] == "first\naccount byname has no allocation"
    assert res["desc"]["comment"] == "orig"
    assert ("submit() for a job of uid 0 rejected by the handler (ESLURM_INVALID_ACCOUNT): "
            "account byname has no allocation") in h.log()
    res = h.js_submit(account="bynumber")
    assert res["rc"] == ESLURM_INVALID_ACCOUNT and res["err_msg"] == "first\nby number"
    # Reject(""): no empty line after the handler's lines, and still refused with the code
    res = h.js_submit(account="empty")
    assert res["rc"] == ESLURM_INVALID_ACCOUNT and res["err_msg"] == "first"
    # no code: SLURM_ERROR, as before
    res = h.js_submit(account="other")
    assert res["rc"] == -1 and res["err_msg"] == "first\nno code"


def test_an_unknown_code_fails_the_handler_and_the_log_names_it(make_host, handlers):
    h = start(make_host, handlers)
    policy(handlers, 'raise Reject("x", code="ESLURM_INVALD_ACCOUNT")\n')
    res = h.js_submit()
    assert res["rc"] == -1
    assert "the site's job submission policy failed" in res["err_msg"]
    log = h.log()
    assert "not an error code of slurm_errno.h of Slurm " in log
    assert "(did you mean 'ESLURM_INVALID_ACCOUNT'?)" in log


def test_the_plugins_table_is_the_release_s_slurm_errno_h(make_host, handlers):
    """In the daemon, Reject's names and numbers are those of the Slurm
    release the plugin was built against (csrc/errno.c)."""
    h = start(make_host, handlers)
    policy(handlers, """
import json
from slurmpy_plugins import _errno
with open(OUT + "/codes.json", "w") as f:
    json.dump(_errno._codes, f)
with open(OUT + "/where.json", "w") as f:
    json.dump(_errno._where, f)
""")
    assert h.js_submit()["rc"] == 0
    codes = json.loads((handlers.out / "codes.json").read_text())
    assert codes == _release_codes()
    version = (SLURM_SRC / "config.h").read_text().split('SLURM_VERSION_STRING "')[1].split('"')[0]
    assert json.loads((handlers.out / "where.json").read_text()) == \
        f"slurm_errno.h of Slurm {version}"


def test_the_kits_table_holds_the_release_under_test():
    """_slurm_errno.py (the kit's table, generated from every supported
    release) has every code of the release under test, with its value."""
    release = _release_codes()
    assert {n: _slurm_errno.CODES.get(n) for n in release} == release


def test_the_kits_table_is_current():
    """scripts/gen_errno.py over the trees it was made from gives the same
    file (skipped where those trees are not all present)."""
    trees = {}
    for t in (SLURM_SRC, *sorted(pathlib.Path("/var/cache/slurmpy").glob("*/src"))):
        if (t / "config.h").is_file():
            text = (t / "config.h").read_text()
            trees.setdefault(text.split('SLURM_VERSION_STRING "')[1].split('"')[0], t)
    if set(trees) != set(_slurm_errno.RELEASES):
        pytest.skip(f"the trees of {sorted(set(_slurm_errno.RELEASES) - set(trees))} are not here")
    have = trees.values()
    cp = subprocess.run([sys.executable, "scripts/gen_errno.py", "--check", *map(str, have)],
                        cwd=REPO, capture_output=True, text=True)
    assert cp.returncode == 0, cp.stderr
