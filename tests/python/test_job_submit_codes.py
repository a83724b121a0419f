"""Reject(code=...) in the kit: the code by name or number, and the errors
a bad one raises.  The plugin's side (the C host) and the table's checks
against Slurm's source are tests/host/test_job_submit_codes.py."""
from __future__ import annotations

import pytest

from slurmpy_plugins import JobSubmitHandler, Reject
from slurmpy_plugins import testing as kit

from .conftest import UID

# what the user sees when a handler raises (dispatch_job_submit.c _answer())
GENERIC = ("job_submit/python: request refused: the site's job submission policy failed "
           "(an administrator can find the error in slurmctld's log)")


class Policy(JobSubmitHandler):
    def submit(self, job, submit_uid):
        self.log_user("first")
        if job.account == "byname":
            raise Reject("account byname has no allocation", code="ESLURM_INVALID_ACCOUNT")
        if job.account == "bynumber":
            raise Reject("by number", code=2045)
        if job.account == "empty":
            raise Reject("")
        if job.account == "typo":
            raise Reject("x", code="ESLURM_INVALD_ACCOUNT")
        if job.account == "nocode":
            raise Reject("no code")


def test_the_kits_outcome_carries_the_code():
    out = kit.run_submit(Policy, kit.make_job_desc(account="byname"))
    assert (out.accepted, out.message, out.code, out.code_name) == \
        (False, "first\naccount byname has no allocation", 2045, "ESLURM_INVALID_ACCOUNT")
    assert (f"job_submit/python: submit() for a job of uid {UID} rejected by the handler "
            "(ESLURM_INVALID_ACCOUNT): account byname has no allocation") in out.log
    out = kit.run_submit(Policy, kit.make_job_desc(account="bynumber"))
    assert (out.code, out.code_name, out.message) == (2045, "ESLURM_INVALID_ACCOUNT",
                                                      "first\nby number")
    out = kit.run_submit(Policy, kit.make_job_desc(account="nocode"))
    assert (out.accepted, out.code, out.code_name) == (False, -1, None)
    out = kit.run_submit(Policy, kit.make_job_desc(account="empty"))
    assert (out.accepted, out.message, out.code) == (False, "first", -1)
    out = kit.run_submit(Policy, kit.make_job_desc(account="typo"))
    assert (out.accepted, out.message, out.code) == (False, "first\n" + GENERIC, -1)
    assert any("(did you mean 'ESLURM_INVALID_ACCOUNT'?)" in line for line in out.log)
    out = kit.run_submit(Policy, kit.make_job_desc(account="fine"))
    assert (out.accepted, out.message, out.code, out.code_name) == (True, "first", 0, None)


@pytest.mark.parametrize("code, error", [
    ("ESLURM_INVALD_ACCOUNT", r"Reject\(code='ESLURM_INVALD_ACCOUNT'\): not an error code of "
                              r"slurm_errno.h \(Slurm 22.05.8 to .*\) \(did you mean "
                              r"'ESLURM_INVALID_ACCOUNT'\?\)"),
    ("invalid_account", r"did you mean 'ESLURM_INVALID_ACCOUNT'"),
    (99999, r"Reject\(code=99999\): not an error code of slurm_errno.h"),
    (0, r"Reject\(code=0\): not an error code"),
])
def test_a_bad_code_is_a_clear_error(code, error):
    with pytest.raises(ValueError, match=error):
        Reject("text", code=code)


@pytest.mark.parametrize("code", [True, 2045.0, b"ESLURM_INVALID_ACCOUNT"])
def test_a_code_of_another_type_is_a_type_error(code):
    with pytest.raises(TypeError, match=r"Reject\(code=...\) takes an error code name \(str\) "
                                        r"or number \(int\), not "):
        Reject("text", code=code)
