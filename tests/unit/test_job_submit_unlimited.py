"""UNLIMITED: Slurm's INFINITE of each field's width, read and written by
job_submit handlers, in the real plugin (C host) and in the kit."""
from __future__ import annotations

import pickle

import pytest

from slurmpy_plugins import UNLIMITED, JobDesc, JobSubmitHandler
from slurmpy_plugins import testing as kit

from .test_job_submit_host import NO_VAL, NO_VAL16, policy, start

INFINITE16, INFINITE, INFINITE64 = 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFFFFFFFFFF


def test_the_plugin_reads_infinite_as_unlimited_and_writes_it_back(make_host, handlers):
    h = start(make_host, handlers)
    policy(handlers, """
import json
from slurmpy_plugins import UNLIMITED
with open(OUT + "/seen.json", "w") as f:
    json.dump({"time_limit": repr(job.time_limit), "core_spec": repr(job.core_spec),
               "is": job.time_limit is UNLIMITED}, f)
job.time_min = UNLIMITED          # uint32: INFINITE
job.priority = UNLIMITED
job.cpus_per_task = 4
if job.name == "cap":
    job.time_limit = 60
""")
    res = h.js_submit(name="j", time_limit=INFINITE, core_spec=INFINITE16)
    assert res["rc"] == 0, res
    seen = (handlers.out / "seen.json").read_text()
    assert seen == '{"time_limit": "UNLIMITED", "core_spec": "UNLIMITED", "is": true}'
    d = res["desc"]
    assert d["time_limit"] == INFINITE and d["time_min"] == INFINITE
    assert d["priority"] == INFINITE and d["core_spec"] == INFINITE16
    assert d["cpus_per_task"] == 4
    res = h.js_submit(name="cap", time_limit=INFINITE)
    assert res["desc"]["time_limit"] == 60 and res["desc"]["time_min"] == INFINITE


def test_unlimited_on_a_field_without_one_is_a_clear_error_in_the_plugin(make_host, handlers):
    h = start(make_host, handlers)
    policy(handlers, """
from slurmpy_plugins import UNLIMITED
job.min_mem_per_node = UNLIMITED
""")
    res = h.js_submit(name="j")
    assert res["rc"] == -1 and "the site's job submission policy failed" in res["err_msg"]
    assert ("ValueError: job.min_mem_per_node cannot be UNLIMITED (Slurm has no unlimited "
            "value for it)") in h.log()


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
