"""The kit's job_submit requests look like sbatch's: make_job_desc()'s
defaults, run_submit()/run_modify()'s submit_uid, log_user()'s format."""
from __future__ import annotations

import os

import pytest

from slurmpy_plugins import JobSubmitHandler, Reject
from slurmpy_plugins import testing as kit

# what the user sees when a handler raises (dispatch_job_submit.c _answer())
GENERIC = ("job_submit/python: request refused: the site's job submission policy failed "
           "(an administrator can find the error in slurmctld's log)")


class Seen(JobSubmitHandler):
    def submit(self, job, submit_uid):
        self.log_user("uid %d name %s", submit_uid, job.name)
        if submit_uid == 0:
            raise Reject("root only path taken")

    def modify(self, job, current, submit_uid):
        self.log_user("modify by %d", submit_uid)


def test_make_job_desc_is_what_sbatch_wrap_sends():
    d = kit.make_job_desc()
    assert (d.user_id, d.group_id) == (os.getuid(), os.getgid())
    assert d.name == "wrap" and d.work_dir == os.getcwd() and d.std_in == "/dev/null"
    assert d.script.startswith("#!/bin/sh\n") and d.submit_line == "sbatch --wrap=true"
    assert d.min_cpus == 1 and d.time_limit is None and d.partition is None
    assert d.environment["PWD"] == os.getcwd()
    assert kit.make_job_desc(name="x", user_id=1234).as_dict() == \
        dict(d.as_dict(), name="x", user_id=1234)
    bare = kit.make_job_desc(bare=True, time_limit=5)
    assert bare.name is None and bare.user_id is None and bare.script is None
    assert bare.time_limit == 5


def test_submit_uid_defaults_to_the_requests_user():
    out = kit.run_submit(Seen, kit.make_job_desc(user_id=1234, name="mine"))
    assert out.accepted and out.message == "uid 1234 name mine"
    out = kit.run_submit(Seen, kit.make_job_desc(user_id=1234), submit_uid=0)
    assert not out.accepted and out.message.endswith("root only path taken")
    out = kit.run_submit(Seen, kit.make_job_desc(bare=True))
    assert out.message.startswith(f"uid {os.getuid()} name None")


def test_run_modify_takes_a_bare_request_and_the_owner_as_submit_uid():
    out = kit.run_modify(Seen, kit.make_job_desc(bare=True, time_limit=5),
                         kit.make_job(job_id=3, user_id=1234))
    assert out.accepted and out.message == "modify by 1234"
    with pytest.raises(ValueError, match=r"run_modify\(\): the request has a script, which "
                                         r"scontrol update never sends: make it with "
                                         r"make_job_desc\(bare=True"):
        kit.run_modify(Seen, kit.make_job_desc(time_limit=5), kit.make_job(job_id=3))


class Fmt(JobSubmitHandler):
    def submit(self, job, submit_uid):
        self.log_user("100% literal, no args")
        self.log_user("%d SU left on %s", 40, "phys")
        self.log_user("%(acct)s has %(n)d SU", {"acct": "chem", "n": 7})
        if job.name == "few":
            self.log_user("%s and %s", "one")
        if job.name == "type":
            self.log_user("%d SU", "many")
        if job.name == "key":
            self.log_user("%(x)s", {"y": 1})


def test_log_user_formats_as_logging_does():
    out = kit.run_submit(Fmt, kit.make_job_desc())
    assert out.accepted
    assert out.message == "100% literal, no args\n40 SU left on phys\nchem has 7 SU"


@pytest.mark.parametrize("name, error", [
    ("few", "ValueError: log_user('%s and %s', 'one'): the arguments do not fit the format: "
            "not enough arguments for format string"),
    ("type", "ValueError: log_user('%d SU', 'many'): the arguments do not fit the format: "
             "%d format: a real number is required, not str"),
    ("key", "ValueError: log_user('%(x)s', {'y': 1}): the arguments do not fit the format: "
            "no key 'x'"),
])
def test_a_bad_log_user_format_is_a_clear_error(name, error):
    out = kit.run_submit(Fmt, kit.make_job_desc(name=name))
    assert not out.accepted and out.message.endswith(GENERIC)
    assert any(line.endswith(error) for line in out.log), out.log
