"""`slurmpy-plugins stats` on a real cluster: jobs run through prep/python
and job_submit/python, then the console script, with SLURM_CONF naming the
test cluster's slurm.conf, shows their counts (--json) and a valid
Prometheus text exposition (--openmetrics, checked by a strict parser)."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time

from .test_job_submit import js_cluster  # noqa: F401  (the fixture)

HANDLER = """\
from slurmpy_plugins import JobSubmitHandler, PrEpHandler


class Policy(JobSubmitHandler):
    def submit(self, job, submit_uid):
        job.comment = "seen"


class Prep(PrEpHandler):
    def prolog_slurmctld(self, job):
        pass

    def epilog_slurmctld(self, job):
        pass
"""
NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
SAMPLE = re.compile(rf'^({NAME})(\{{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\n"])*"'
                    rf'(?:,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\n"])*")*)?\}})? '
                    r'(-?[0-9.e+-]+|\+Inf|NaN)$')
SUFFIXES = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_count", "_sum")}


def parse_openmetrics(text: str) -> dict[str, list[tuple[str, str, float]]]:
    """Strict: every family TYPE then HELP, once; samples only of the
    family just declared, with its type's suffixes; ends with # EOF."""
    assert text.endswith("# EOF\n"), text[-200:]
    lines = text[:-len("# EOF\n")].splitlines()
    families: dict[str, list[tuple[str, str, float]]] = {}
    cur = typ = None
    i = 0
    while i < len(lines):
        line = lines[i]
        m = re.fullmatch(rf"# TYPE ({NAME}) (counter|gauge|histogram)", line)
        if m:
            cur, typ = m.groups()
            assert cur not in families, f"family {cur} twice"
            assert lines[i + 1].startswith(f"# HELP {cur} ") and len(lines[i + 1]) > len(
                f"# HELP {cur} "), lines[i + 1]
            families[cur] = []
            i += 2
            continue
        assert not line.startswith("#"), f"stray comment: {line!r}"
        m = SAMPLE.match(line)
        assert m, f"not a sample: {line!r}"
        assert cur is not None and typ is not None
        name = m.group(1)
        assert any(name == cur + s for s in SUFFIXES[typ]), f"{name} in family {cur} ({typ})"
        families[cur].append((name, m.group(2) or "", float(m.group(3))))
        i += 1
    return families


def _stats(c, *args):
    env = dict(os.environ, SLURM_CONF=str(c.conf_path))
    cp = subprocess.run([sys.executable, "-m", "slurmpy_plugins", "stats", *args], env=env, capture_output=True, text=True,
                        timeout=60)
    assert cp.returncode == 0, cp.stderr
    return cp.stdout


def test_stats_show_the_jobs_calls(js_cluster, tmp_path):  # noqa: F811
    c, _ = js_cluster("", handler_source=HANDLER, conf_extra=[
        "PrEpPlugins=prep/python",
        f"PrEpParameters=handler=site_submit:Prep,path={tmp_path / 'handlers'}"])
    jobs = [c.sbatch(wrap="true") for _ in range(3)]
    for j in jobs:
        c.wait_job(j)

    def ctld():
        [d] = [d for d in json.loads(_stats(c, "--json"))["daemons"]
               if d["daemon"] == "slurmctld" and d["state"] == "running"
               and d["pid"] == c.ctld_pid]
        return d, {(h["plugin"], h["hook"]): h for h in d["hooks"]}

    deadline = time.monotonic() + 30
    while True:     # epilog_slurmctld answers after the job is COMPLETED
        d, hooks = ctld()
        ep = hooks.get(("prep/python", "epilog_slurmctld"))
        if (ep and ep["calls"] == 3) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    sub = hooks[("job_submit/python", "submit")]
    assert (sub["calls"], sub["ok"], sub["failed"]) == (3, 3, 0)
    for hook in ("prolog_slurmctld", "epilog_slurmctld"):
        h = hooks[("prep/python", hook)]
        assert (h["calls"], h["ok"], h["failed"], h["timeouts"]) == (3, 3, 0, 0), h
        assert h["last_error"] is None and 0 < h["p50_us"] <= h["max_us"]
    assert d["plugins"]["prep/python"]["loads"] >= 1

    fams = parse_openmetrics(_stats(c, "--openmetrics"))
    calls = {(lab, v) for _, lab, v in fams["slurmpy_hook_calls"]}
    assert any('plugin="job_submit/python",hook="submit"' in lab and v == 3 for lab, v in calls)
    buckets = [s for s in fams["slurmpy_hook_latency_seconds"]
               if 'hook="prolog_slurmctld"' in s[1] and f'pid="{d["pid"]}"' in s[1]]
    assert buckets and buckets[-2][0] == "slurmpy_hook_latency_seconds_bucket" \
        and 'le="+Inf"' in buckets[-2][1] and buckets[-2][2] == 3
