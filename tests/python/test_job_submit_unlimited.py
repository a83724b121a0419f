"""UNLIMITED: Slurm's INFINITE of each field's width, read and written by
job_submit handlers, in the real plugin (C host) and in the kit."""
from __future__ import annotations

import pickle

import pytest

from slurmpy_plugins import UNLIMITED, JobDesc, JobSubmitHandler
from slurmpy_plugins import testing as kit

NO_VAL, NO_VAL16 = 0xFFFFFFFE, 0xFFFE   # as tests/host/test_job_submit_host.py

INFINITE16, INFINITE, INFINITE64 = 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFFFFFFFFFF


class Cap(JobSubmitHandler):
    def submit(self, job, submit_uid):
        if job.time_limit is not None and job.time_limit > 24 * 60:   # UNLIMITED is > any int
            job.time_limit = 24 * 60
        if job.name == "forever":
            job.time_limit = UNLIMITED


def test_the_kit_builds_reads_and_writes_unlimited():
    desc = kit.make_job_desc(time_limit=UNLIMITED, name="x")
    assert desc.time_limit is UNLIMITED and desc.as_dict()["time_limit"] is UNLIMITED
    out = kit.run_submit(Cap, desc)
    assert out.accepted and out.changes == {"time_limit": 1440}
    out = kit.run_submit(Cap, kit.make_job_desc(time_limit=5, name="forever"))
    assert out.changes == {"time_limit": UNLIMITED}
    # the width of each field: INFINITE16 / INFINITE / INFINITE64 in the C record
    d = kit.make_job_desc(core_spec=UNLIMITED, time_min=UNLIMITED)
    assert (d._c.core_spec, d._c.time_min) == (INFINITE16, INFINITE)
    assert kit.make_job_desc().time_limit is None and kit.make_job_desc()._c.time_limit == NO_VAL
    assert kit.make_job_desc()._c.core_spec == NO_VAL16


@pytest.mark.parametrize("field", ["min_mem_per_node", "min_mem_per_cpu", "begin_time",
                                   "deadline"])
def test_fields_without_an_unlimited_refuse_it(field):
    with pytest.raises(ValueError, match=rf"job.{field} cannot be UNLIMITED"):
        kit.make_job_desc(**{field: UNLIMITED})


def test_a_wrong_type_names_unlimited_where_the_field_takes_it():
    with pytest.raises(TypeError, match=r"job.time_limit must be an int, UNLIMITED or None, "
                                        r"not float"):
        kit.make_job_desc(time_limit=1.5)
    with pytest.raises(ValueError, match=r"from 0 to 4294967293 \(or UNLIMITED, or None"):
        kit.make_job_desc(time_limit=INFINITE)
    with pytest.raises(TypeError, match=r"job.begin_time must be an int or None, not str"):
        kit.make_job_desc(begin_time="now")


def test_unlimited_is_one_value_that_orders_above_every_number():
    assert repr(UNLIMITED) == str(UNLIMITED) == "UNLIMITED"
    assert pickle.loads(pickle.dumps(UNLIMITED)) is UNLIMITED
    assert UNLIMITED > 10**30 and 10**30 < UNLIMITED and UNLIMITED >= UNLIMITED
    assert not UNLIMITED < 5 and not UNLIMITED > UNLIMITED
    assert min(UNLIMITED, 60) == 60 and UNLIMITED != INFINITE and UNLIMITED == UNLIMITED
    with pytest.raises(TypeError):
        UNLIMITED + 1
    with pytest.raises(TypeError):
        UNLIMITED < "x"
    assert "time_limit" in JobDesc.fields()
