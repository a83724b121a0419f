"""UNLIMITED in the real plugin (C host); the kit's side is
tests/python/test_job_submit_unlimited.py."""
from __future__ import annotations

from tests.python.test_job_submit_unlimited import INFINITE, INFINITE16

from .test_job_submit_host import policy, start


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
