"""`slurmpy-plugins check`: the daemons' own loader and checks, run before a
handler reaches a cluster.  The fidelity tests load the same handler in the
C host (the real plugin .so) and require check's message to be the line the
daemon logs."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from .conftest import USER


def run_check(*args) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    return subprocess.run([sys.executable, "-m", "slurmpy_plugins", "check", *args],
                          capture_output=True, text=True, env=env, timeout=60, cwd="/")


def slurm_conf(tmp_path, lines: list[str]):
    p = tmp_path / "slurm.conf"
    p.write_text(f"ClusterName=test  # a comment\nSlurmUser={USER}\n" + "\n".join(lines) + "\n"
                 "NodeName=node1 CPUs=2\nPartitionName=debug Nodes=node1 Default=YES\n")
    return p


def test_check_lists_hooks_and_traps(handlers, tmp_path):
    handlers.write("site", """\
        from slurmpy_plugins import PrEpHandler, SiteFactorHandler
        class P(PrEpHandler):
            def prolog_slurmctld(self, job): pass
            def epilog(self, env): pass
        class F(SiteFactorHandler):
            def update(self, jobs): return {}
        """)
    conf = slurm_conf(tmp_path, [
        "PrEpPlugins=prep/script,prep/python",
        f"PrEpParameters={handlers.params('site:P')}",
        "PriorityType=priority/multifactor",
        "PrioritySiteFactorPlugin=site_factor/python",
        f"PrioritySiteFactorParameters={handlers.params('site:F')}",
    ])
    cp = run_check(str(conf), "--json")
    assert cp.returncode == 0, cp
    report = json.loads(cp.stdout)
    prep, sf = report["plugins"]
    assert prep["loaded"] and sorted(prep["hooks"]) == ["epilog", "prolog_slurmctld"]
    assert "requeues the job" in prep["hooks"]["prolog_slurmctld"]
    assert sf["loaded"] and list(sf["hooks"]) == ["update"]
    traps = "\n".join(report["traps"])
    assert "no Epilog=" in traps
    assert "every compute node" not in traps      # a note: it never fails --strict
    assert any("every compute node" in n for n in report["notes"])
    assert "AccountingStorageType is not set" in traps
    # --strict makes the warnings fail; the text output says the same
    assert run_check(str(conf), "--strict").returncode == 1
    text = run_check(str(conf)).stdout
    assert "OK: handler site:P" in text and "warnings:" in text and text.rstrip().endswith("OK")


def test_check_without_a_slurmpy_plugin_or_slurm_conf(tmp_path):
    conf = slurm_conf(tmp_path, ["PrEpPlugins=prep/script"])
    cp = run_check(str(conf))
    assert cp.returncode == 1 and "configures no slurmpy plugin" in cp.stdout
    cp = run_check(str(tmp_path / "missing.conf"))
    assert cp.returncode == 2 and "cannot read" in cp.stderr
    bad = tmp_path / "bad.conf"
    bad.write_text("PrEpPlugins=prep/python\nthis is not key value\n")
    cp = run_check(str(bad))
    assert cp.returncode == 2 and f"{bad}:2" in cp.stderr


def test_check_follows_include_and_default_path(handlers, tmp_path):
    handlers.write("hh", "from slurmpy_plugins import PrEpHandler\n"
                         "class H(PrEpHandler):\n    def prolog(self, env): pass\n")
    (tmp_path / "prep.conf").write_text(
        f"PrEpPlugins=prep/python\nPrEpParameters={handlers.params('hh:H')}\n")
    conf = slurm_conf(tmp_path, ["Include prep.conf"])
    env_conf = dict(os.environ, SLURM_CONF=str(conf))
    cp = subprocess.run([sys.executable, "-m", "slurmpy_plugins", "check", "--json"],
                        capture_output=True, text=True, env=env_conf, timeout=60, cwd="/")
    assert cp.returncode == 0, cp
    assert json.loads(cp.stdout)["plugins"][0]["hooks"].keys() == {"prolog"}


def test_check_job_submit_lists_its_hooks(handlers, tmp_path):
    handlers.write("policy", "from slurmpy_plugins import JobSubmitHandler\n"
                             "class Policy(JobSubmitHandler):\n"
                             "    def submit(self, job, submit_uid): pass\n")
    conf = slurm_conf(tmp_path, ["JobSubmitPlugins=job_submit/python"])
    (tmp_path / "job_submit_python.conf").write_text(
        f"# the site policy\nhandler=policy:Policy\npath={handlers.path}\n")
    cp = run_check(str(conf), "--json")
    assert cp.returncode == 0, cp
    (p,) = json.loads(cp.stdout)["plugins"]
    assert list(p["hooks"]) == ["submit"] and "Reject" in p["hooks"]["submit"]
    assert p["conf_key"] == str(tmp_path / "job_submit_python.conf")


# -- Lua and shell habits (issue 22 item 7) -----------------------------------------

def js_conf(tmp_path, handlers, body: str):
    handlers.write("policy", "from slurmpy_plugins import JobSubmitHandler, Reject\n"
                             "class Policy(JobSubmitHandler):\n" + body)
    conf = slurm_conf(tmp_path, ["JobSubmitPlugins=python"])
    (tmp_path / "job_submit_python.conf").write_text(
        f"handler=policy:Policy\npath={handlers.path}\n")
    return conf


def problems_of(conf, *args):
    cp = run_check(str(conf), "--json", *args)
    report = json.loads(cp.stdout)
    return cp.returncode, report["problems"], report["notes"]


@pytest.mark.parametrize("name,hint", [
    ("gres", "Lua's gres: here it is job.tres_per_node"),
    ("pn_min_memory", "min_mem_per_node (--mem) or min_mem_per_cpu (--mem-per-cpu)"),
    ("partiton", "did you mean 'partition'?"),
    ("oversubscribe", "here it is job.shared"),
])
def test_check_names_a_misspelled_or_lua_field(handlers, tmp_path, name, hint):
    conf = js_conf(tmp_path, handlers, "    def submit(self, job, submit_uid):\n"
                                       "        self.log_user('x')\n"
                                       f"        if job.{name}:\n            pass\n")
    rc, problems, _ = problems_of(conf)
    assert rc == 1
    (p,) = problems
    assert f"policy.py:5: submit() on the kit's sample job" in p, p
    assert f"job has no field {name!r}" in p and hint in p, p


def test_check_user_name_hint_does_not_point_at_user_id(handlers, tmp_path):
    """user_name (and default_account, default_qos, argv) are Lua job_desc
    names: the hint must not be 'did you mean user_id?'.  Once the field
    table has it, it is a field and check finds nothing."""
    from slurmpy_plugins import _lua
    conf = js_conf(tmp_path, handlers, "    def submit(self, job, submit_uid):\n"
                                       "        job.comment = job.user_name\n")
    rc, problems, _ = problems_of(conf)
    if "user_name" in _lua.record_fields("job_desc"):
        assert rc == 0 and problems == []
    else:
        (p,) = problems
        assert "user_id" not in p.split("has no field")[1].split("pwd.getpwuid")[0], p
        assert "not a field (yet)" in p, p
    for n in ("default_account", "default_qos", "argv"):
        hint = _lua.hint("job_desc", n)
        assert n in _lua.record_fields("job_desc") or "not a field (yet)" in hint, (n, hint)


def test_check_modify_current_lua_field(handlers, tmp_path):
    conf = js_conf(tmp_path, handlers, "    def modify(self, job, current, submit_uid):\n"
                                       "        x = current.total_cpus\n")
    rc, problems, _ = problems_of(conf)
    assert rc == 1
    (p,) = problems
    assert "Job has no field 'total_cpus' (Lua's total_cpus: here it is current.num_cpus" in p


def test_check_a_returned_value_in_submit_is_a_problem(handlers, tmp_path):
    conf = js_conf(tmp_path, handlers, "    def submit(self, job, submit_uid):\n"
                                       "        if job.account is None:\n"
                                       "            return -1\n")
    rc, problems, _ = problems_of(conf)
    assert rc == 1
    (p,) = problems
    assert "policy.py:5: submit() `return -1`" in p and "ACCEPTED" in p, p


def test_check_a_returned_value_found_only_by_running(handlers, tmp_path):
    """The return is computed (no `return <literal>` to read): the sample
    run sees it."""
    conf = js_conf(tmp_path, handlers, "    def submit(self, job, submit_uid):\n"
                                       "        return self.decide(job)\n"
                                       "    def decide(self, job):\n"
                                       "        return -1\n")
    rc, problems, _ = problems_of(conf)
    assert rc == 1
    assert any("submit() `return self.decide(job)`" in p for p in problems), problems
    # one report per hook, not one per sample
    assert len(problems) == 1, problems


def test_check_lua_signature_and_function_name(handlers, tmp_path):
    conf = js_conf(tmp_path, handlers, "    def submit(self, job_desc, part_list, submit_uid):\n"
                                       "        pass\n"
                                       "    def slurm_job_modify(self, a, b, c, d):\n"
                                       "        pass\n")
    rc, problems, notes = problems_of(conf)
    assert rc == 1
    text = "\n".join(problems)
    assert "policy.py:3: submit(job_desc, part_list, submit_uid) cannot take what slurmpy " \
           "passes, submit(job, submit_uid)" in text, text
    assert "slurm_job_modify() is job_submit/lua's name" in text and \
           "define modify(self, job, current, submit_uid)" in text, text
    assert not any("TypeError" in n for n in notes), notes   # not run: it cannot be


def test_check_a_clean_handler_has_no_problem_and_reject_is_a_note(handlers, tmp_path):
    conf = js_conf(tmp_path, handlers, "    def submit(self, job, submit_uid):\n"
                                       "        if job.account is None:\n"
                                       "            raise Reject('give --account')\n")
    rc, problems, notes = problems_of(conf, "--strict")
    assert rc == 0 and problems == []
    assert any("refused: 'give --account'" in n for n in notes), notes


def test_check_epilog_return_0_drains(handlers, tmp_path):
    handlers.write("site", "from slurmpy_plugins import PrEpHandler\n"
                           "class P(PrEpHandler):\n"
                           "    def epilog(self, env):\n"
                           "        return 0\n")
    conf = slurm_conf(tmp_path, ["PrEpPlugins=prep/python", "Epilog=/bin/true",
                                 f"PrEpParameters={handlers.params('site:P')}"])
    rc, problems, _ = problems_of(conf)
    assert rc == 1
    (p,) = problems
    assert "site.py:4: epilog() `return 0`" in p and "drains the node" in p, p


def test_check_strict_passes_a_sound_prep_handler(handlers, tmp_path):
    """--strict in CI: an epilog() with Epilog= set is no warning; that the
    handler must be on every compute node is a note, which never fails."""
    handlers.write("site", "from slurmpy_plugins import PrEpHandler\n"
                           "class P(PrEpHandler):\n"
                           "    def prolog(self, env): pass\n"
                           "    def epilog(self, env): pass\n")
    conf = slurm_conf(tmp_path, ["PrEpPlugins=prep/python", "Epilog=/bin/true",
                                 f"PrEpParameters={handlers.params('site:P')}"])
    cp = run_check(str(conf), "--strict", "--json")
    assert cp.returncode == 0, cp.stdout
    report = json.loads(cp.stdout)
    assert report["traps"] == [] and any("every compute node" in n for n in report["notes"])
    # without Epilog= the 22.05 trap is still a warning, and --strict fails on it
    conf.write_text(conf.read_text().replace("Epilog=/bin/true\n", ""))
    assert run_check(str(conf), "--strict").returncode == 1


def test_check_runs_hooks_on_jobs_from_squeue_json(handlers, tmp_path):
    conf = js_conf(tmp_path, handlers, "    def submit(self, job, submit_uid):\n"
                                       "        if job.account == 'phys':\n"
                                       "            job.gres = 'gpu:1'\n")
    rc, problems, _ = problems_of(conf)      # the kit's sample has no account
    assert rc == 0 and problems == []
    jobs = tmp_path / "squeue.json"
    jobs.write_text(json.dumps({"jobs": [{"job_id": 7, "account": "phys", "user_id": 0,
                                          "job_state": "PENDING", "name": "x"}]}))
    rc, problems, _ = problems_of(conf, "--jobs", str(jobs))
    assert rc == 1
    (p,) = problems
    assert "submit() on JobId=7" in p and "has no field 'gres'" in p, p
    jobs.write_text("{\"jobs\": [")
    cp = run_check(str(conf), "--jobs", str(jobs))
    assert cp.returncode == 2 and f"--jobs {jobs}: " in cp.stderr and "line 1" in cp.stderr


def test_check_class_and_conf_key_did_you_mean(handlers, tmp_path):
    handlers.write("policy", "from slurmpy_plugins import JobSubmitHandler\n"
                             "class Policy(JobSubmitHandler):\n    pass\n")
    conf = slurm_conf(tmp_path, ["JobSubmitPlugins=python"])
    js = tmp_path / "job_submit_python.conf"
    js.write_text(f"handler=policy:Polcy\npath={handlers.path}\n")
    (p,) = json.loads(run_check(str(conf), "--json").stdout)["plugins"]
    assert "has no class 'Polcy' (did you mean 'Policy'?)" in p["error"], p
    js.write_text(f"handler=policy:Policy\npath={handlers.path}\ntimeuot=2\n")
    (p,) = json.loads(run_check(str(conf), "--json").stdout)["plugins"]
    assert "job_submit_python.conf:3: unknown key 'timeuot'" in p["error"] and \
           "did you mean 'timeout'?" in p["error"], p
