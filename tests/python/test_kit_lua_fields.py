"""Issue 22 in the kit: the fields a port from job_submit/lua reads
(user_name, default_account, default_qos, argv), the writable
environment, and usable_partitions (Lua's part_list rule)."""
from __future__ import annotations

import pytest

from slurmpy_plugins import JobSubmitHandler, Reject, testing


class Seen(JobSubmitHandler):
    def submit(self, job, submit_uid):
        self.seen = (job.user_name, job.default_account, job.default_qos, job.argv)
        self.usable = sorted(self.usable_partitions)
        self.all = sorted(self.partitions)

    def modify(self, job, current, submit_uid):
        self.usable = sorted(self.usable_partitions)


def test_looked_up_fields_as_given_and_their_defaults():
    h = Seen()
    job = testing.make_job_desc(user_name="alice", default_account="physics",
                                default_qos="normal", argv=["/home/alice/run.sh", "x"])
    assert testing.run_submit(h, job).accepted
    assert h.seen == ("alice", "physics", "normal", ["/home/alice/run.sh", "x"])
    # sbatch --wrap by the caller, without accounting
    import os
    import pwd
    assert testing.run_submit(h, testing.make_job_desc()).accepted
    assert h.seen == (pwd.getpwuid(os.getuid()).pw_name, None, None, [])


def test_make_job_desc_checks_argv():
    with pytest.raises(TypeError, match="job.argv must be a list of str"):
        testing.make_job_desc(argv="run.sh")
    with pytest.raises(TypeError, match="job.argv must be a list of str"):
        testing.make_job_desc(argv=["a", 1])


class Env(JobSubmitHandler):
    def submit(self, job, submit_uid):
        job.environment["FOO"] = "bar"
        del job.environment["REMOVE_ME"]


def test_environment_changes_are_in_the_outcome():
    job = testing.make_job_desc(environment={"REMOVE_ME": "1", "KEEP": "2"})
    out = testing.run_submit(Env(), job)
    assert out.accepted
    assert out.changes == {"environment": {"KEEP": "2", "FOO": "bar"}}
    assert dict(job.environment) == {"REMOVE_ME": "1", "KEEP": "2"}   # yours is left alone


class EnvThenReject(JobSubmitHandler):
    def submit(self, job, submit_uid):
        job.environment["FOO"] = "bar"
        raise Reject("no")


def test_a_refusal_drops_environment_changes():
    out = testing.run_submit(EnvThenReject(), testing.make_job_desc())
    assert not out.accepted and out.changes == {}


def test_environment_of_a_request_without_one_cannot_change():
    job = testing.make_job_desc(bare=True, name="x")       # srun/salloc: no environment
    out = testing.run_submit(Env(), job)
    assert not out.accepted
    assert any("job.environment: this request carries no environment" in line
               for line in out.log), out.log


def test_environment_is_not_assignable():
    job = testing.make_job_desc()
    with pytest.raises(AttributeError, match=r"job.environment cannot be assigned"):
        job.environment = {}


def _parts():
    return [testing.make_partition("open"),
            testing.make_partition("grp", allow_uids=[1000, 1001]),
            testing.make_partition("nobody", allow_uids=[]),
            testing.make_partition("rootonly", flags=testing.lib.SPM_PART_FLAG_ROOT_ONLY),
            testing.make_partition("noroot", flags=testing.lib.SPM_PART_FLAG_NO_ROOT)]


@pytest.mark.parametrize("user_id, submit_uid, usable", [
    (1000, 1000, ["grp", "noroot", "open"]),
    (1002, 1002, ["noroot", "open"]),
    (1002, 0, ["noroot", "open", "rootonly"]),         # root submits for her
    (0, 0, ["grp", "nobody", "open", "rootonly"]),     # root: all but NoRoot
])
def test_usable_partitions_follow_luas_part_list(user_id, submit_uid, usable):
    h = Seen()
    out = testing.run_submit(h, testing.make_job_desc(user_id=user_id),
                             submit_uid=submit_uid, partitions=_parts())
    assert out.accepted
    assert h.usable == usable
    assert h.all == ["grp", "nobody", "noroot", "open", "rootonly"]


def test_modify_filters_for_the_jobs_owner():
    h = Seen()
    current = testing.make_job(user_id=1001)
    out = testing.run_modify(h, testing.make_job_desc(bare=True, time_limit=5), current,
                             submit_uid=0, partitions=_parts())
    assert out.accepted and h.usable == ["grp", "noroot", "open", "rootonly"]


def test_allow_uids_reads_as_a_tuple_or_none():
    assert testing.make_partition("a").allow_uids is None
    assert testing.make_partition("a", allow_uids=[]).allow_uids == ()
    assert testing.make_partition("a", allow_uids=[5, 6]).allow_uids == (5, 6)
    with pytest.raises(ValueError, match="partition.allow_uids"):
        testing.make_partition("a", allow_uids=[-1])


def test_usable_partitions_only_during_a_call():
    with pytest.raises(RuntimeError, match="during a submit"):
        Seen().usable_partitions
