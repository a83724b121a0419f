"""spank/python on real slurmctld/slurmd (issue 21, "Done when"): the
handler's option shows in `srun --help` and `sbatch --help`, its value
reaches user_init from srun and from sbatch, setenv reaches the task, a
raising hook fails the step with its message in slurmd's log, and Python
starts only in the processes whose context has a hook (slurmstepd here,
never srun or sbatch)."""
from __future__ import annotations

import pathlib

import pytest

from .conftest import BUILD_PLUGINS, read_calls, wait_calls, write_handler

# user_init records what it saw (and in which program it runs) and sets
# SPM_SPANK_TAG for the tasks; it raises while RAISE exists.  Each import
# appends the importing program's name (/proc/self/comm) to IMPORTS.
HANDLER = '''
import json, os
from slurmpy_plugins import SpankHandler, SpankOption

CALLS, RAISE, IMPORTS = {calls!r}, {raise_!r}, {imports!r}

with open(IMPORTS, "a") as f:
    f.write(open("/proc/self/comm").read().strip() + "\\n")


def record(**rec):
    fd = os.open(CALLS, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps(rec) + "\\n").encode())
    finally:
        os.close(fd)


class Tag(SpankHandler):
    options = [
        SpankOption("spm-tag", arg="TAG", help="slurmpy spank test: a tag for the step"),
        SpankOption("spm-flag", arg=None, help="slurmpy spank test: a flag"),
    ]

    def user_init(self, spank):
        record(hook="user_init", context=spank.context, tag=spank.option("spm-tag"),
               flag=spank.option("spm-flag"), job_id=spank.job_id, step_id=spank.step_id,
               uid=spank.uid, gid=spank.gid, home=spank.getenv("SPM_SPANK_IN"))
        if os.path.exists(RAISE):
            raise RuntimeError("the tag service says no")
        spank.setenv("SPM_SPANK_TAG", "tag-%s" % spank.option("spm-tag"))
'''


@pytest.fixture
def spank_cluster(cluster_factory, tmp_path):
    so = BUILD_PLUGINS / "spank_python.so"
    if not so.exists():
        pytest.fail(f"{so} is missing: run `make build` first")
    hdir = tmp_path / "handlers"
    c = cluster_factory(plugin_dirs=[str(BUILD_PLUGINS)])
    c.calls, c.raise_, c.imports = (tmp_path / "calls.jsonl", tmp_path / "raise.flag",
                                    tmp_path / "imports.txt")
    write_handler(hdir, "tag", HANDLER.format(calls=str(c.calls), raise_=str(c.raise_),
                                              imports=str(c.imports)))
    (c.workdir / "plugstack.conf").write_text(
        f"required {so} handler=tag:Tag path={hdir}\n")
    c.start()
    return c


def _step_calls(c, job_id: int) -> list[dict]:
    return [r for r in read_calls(c.calls) if r["job_id"] == job_id]


def test_options_in_srun_and_sbatch_help_without_python(spank_cluster):
    c = spank_cluster
    for cmd in ("srun", "sbatch", "salloc"):
        out = c.run(cmd, "--help").stdout
        assert "--spm-tag=TAG" in out and "a tag for the step" in out, (cmd, out)
        assert "--spm-flag" in out, (cmd, out)
    # the options came from the module's text: no process imported it
    assert not c.imports.exists(), c.imports.read_text()


def test_srun_option_reaches_user_init_and_setenv_reaches_the_task(spank_cluster):
    c = spank_cluster
    cp = c.run("srun", "--spm-tag=abc", "--spm-flag", "printenv", "SPM_SPANK_TAG",
               env={"SPM_SPANK_IN": "from-srun"})
    assert cp.stdout.strip() == "tag-abc"
    recs = read_calls(c.calls)
    assert len(recs) == 1, recs
    r = recs[0]
    assert r["hook"] == "user_init" and r["context"] == "remote"
    assert r["tag"] == "abc" and r["flag"] is True
    assert r["uid"] == 0 and r["gid"] == 0 and r["home"] == "from-srun"
    assert isinstance(r["job_id"], int) and r["job_id"] > 0 and r["step_id"] == 0
    # not given: None (and setenv still reaches the task)
    cp = c.run("srun", "printenv", "SPM_SPANK_TAG")
    assert cp.stdout.strip() == "tag-None"
    last = read_calls(c.calls)[-1]
    assert last["tag"] is None and last["flag"] is None
    # Python started in slurmstepd only, never in srun
    names = set(c.imports.read_text().split())
    assert names == {"slurmstepd"}, names


def test_sbatch_option_reaches_the_batch_step(spank_cluster):
    c = spank_cluster
    job = c.sbatch("--spm-tag=xyz", "--spm-flag", wrap="printenv SPM_SPANK_TAG")
    c.wait_job(job, ("COMPLETED",), timeout=60)
    recs = wait_calls(c.calls, lambda rs: any(r["job_id"] == job for r in rs),
                      what="user_init of the batch step", cluster=c)
    mine = [r for r in recs if r["job_id"] == job]
    assert [(r["tag"], r["flag"], r["context"]) for r in mine] == [("xyz", True, "remote")]
    assert c.job_output(job).strip() == "tag-xyz"
    assert set(c.imports.read_text().split()) == {"slurmstepd"}


def test_a_raising_hook_fails_the_step_with_its_message_logged(spank_cluster):
    c = spank_cluster
    c.raise_.write_text("")
    offset = c.log_offset("slurmd")
    cp = c.run("srun", "--spm-tag=no", "printenv", "SPM_SPANK_TAG", check=False)
    # the task never ran: its launch failed (22.05's srun still exits 0
    # for a launch failure: the refusal is in its stderr, not its status)
    assert cp.stdout == "", cp
    assert "task 0 launch failed" in cp.stderr, cp.stderr
    # the user sees the message on the terminal (slurmstepd's errors before
    # the launch go to srun) ...
    assert "user_init failed: user_init: RuntimeError: the tag service says no" in cp.stderr
    c.wait_for_log(r"spank/python: user_init failed: user_init: RuntimeError: "
                   r"the tag service says no", "slurmd", since=offset)
    # ... and the traceback, through the handler's frame, is in slurmd's log
    log = pathlib.Path(c.slurmd_log_path).read_text()[offset:]
    assert 'tag.py", line' in log and "in user_init" in log, log
    # the step failed after the hook ran (it is the hook that refused it)
    assert [r["tag"] for r in read_calls(c.calls)] == ["no"]
