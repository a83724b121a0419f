"""spank/python on real slurmctld/slurmd (issue 21, "Done when"): the
handler's option shows in `srun --help` and `sbatch --help`, its value
reaches user_init from srun and from sbatch, setenv reaches the task, a
raising hook fails the step with its message in slurmd's log, and Python
starts only in the processes whose context has a hook (slurmstepd here,
never srun or sbatch)."""
from __future__ import annotations

import os
import pathlib
import pwd
import shutil
import subprocess
import sys
import tempfile

import pytest

from tests.harness.slurmcluster import Cluster, slurm_at_least

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


# Every hook in every context: init_post_opt and exit run in srun too
# (Python starts there), task_init in each task's child of slurmstepd.
FULL_HANDLER = '''
import json, os
from slurmpy_plugins import SpankHandler, SpankOption

CALLS = {calls!r}


def record(spank, hook, **rec):
    rec.update(hook=hook, context=spank.context, tag=spank.option("spm-tag"),
               comm=open("/proc/self/comm").read().strip(), pid=os.getpid())
    fd = os.open(CALLS, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps(rec) + "\\n").encode())
    finally:
        os.close(fd)


class Full(SpankHandler):
    options = [SpankOption("spm-tag", arg="TAG", help="slurmpy spank test: a tag")]

    def init_post_opt(self, spank):
        record(spank, "init_post_opt")

    def task_init(self, spank):
        try:
            spank.prepend_argv(["/usr/bin/env", "SPM_PREPENDED=yes"])
            prepended = "yes"
        except NotImplementedError as e:
            prepended = str(e)
        record(spank, "task_init", task_id=spank.task_id, global_id=spank.task_global_id,
               argv=spank.argv, prepended=prepended)
        spank.setenv("SPM_TASK_TAG", "t%s-%s" % (spank.task_id, spank.option("spm-tag")))

    def exit(self, spank):
        record(spank, "exit")
'''


def test_every_context_and_task_init_in_each_task(cluster_factory, tmp_path):
    # (the interpreter in srun, and what it takes from the user's
    # environment: test_srun_as_a_user_...)
    so = BUILD_PLUGINS / "spank_python.so"
    hdir, calls = tmp_path / "handlers", tmp_path / "calls.jsonl"
    write_handler(hdir, "full", FULL_HANDLER.format(calls=str(calls)))
    c = cluster_factory(plugin_dirs=[str(BUILD_PLUGINS)])
    (c.workdir / "plugstack.conf").write_text(f"required {so} handler=full:Full path={hdir}\n")
    c.start()
    cp = c.run("srun", "-n2", "--spm-tag=q", "printenv", "SPM_TASK_TAG", "SPM_PREPENDED",
               check=False)
    # prepend_argv: Slurm 23.11+ runs `env SPM_PREPENDED=yes printenv ...`;
    # before, printenv finds no SPM_PREPENDED and exits 1
    prepends = slurm_at_least(23, 11)
    assert cp.returncode == (0 if prepends else 1), cp
    assert sorted(cp.stdout.split()) == sorted(["t0-q", "t1-q"] + ["yes", "yes"] * prepends), cp
    recs = wait_calls(calls, lambda rs: sum(r["hook"] == "exit" for r in rs) >= 2,
                      what="exit in srun and in slurmstepd", cluster=c)
    by = {}
    for r in recs:
        by.setdefault((r["hook"], r["comm"]), []).append(r)
    # srun: init_post_opt and exit, local context, the option's value
    [local] = by[("init_post_opt", "srun")]
    assert local["context"] == "local" and local["tag"] == "q"
    assert [r["context"] for r in by[("exit", "srun")]] == ["local"]
    # slurmstepd: init_post_opt and exit (remote), task_init once per task,
    # each in its own process (the task's child), with its task ids
    assert [r["context"] for r in by[("init_post_opt", "slurmstepd")]] == ["remote"]
    tasks = [r for r in recs if r["hook"] == "task_init"]
    assert sorted((r["task_id"], r["global_id"], r["tag"]) for r in tasks) == \
        [(0, 0, "q"), (1, 1, "q")]
    for r in tasks:
        assert r["argv"] == ["printenv", "SPM_TASK_TAG", "SPM_PREPENDED"], r
        assert r["prepended"] == "yes" if prepends else "Slurm 23.11 or later" in r["prepended"]
    assert len({r["pid"] for r in tasks}) == 2
    assert by[("exit", "slurmstepd")][0]["tag"] == "q"


SCRIPT_HANDLER = '''
import json, os
from slurmpy_plugins import SpankHandler, SpankOption

CALLS = {calls!r}


class Script(SpankHandler):
    options = [SpankOption("spm-tag", arg="TAG", help="slurmpy spank test: a tag")]

    def _record(self, hook, spank):
        rec = dict(hook=hook, context=spank.context, tag=spank.option("spm-tag"),
                   job_id=spank.job_id, uid=spank.uid, euid=os.geteuid(),
                   comm=open("/proc/self/comm").read().strip())
        fd = os.open(CALLS, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, (json.dumps(rec) + "\\n").encode())
        finally:
            os.close(fd)

    def job_prolog(self, spank):
        self._record("job_prolog", spank)

    def job_epilog(self, spank):
        self._record("job_epilog", spank)

    def local_user_init(self, spank):
        self._record("local_user_init", spank)
'''


def test_job_prolog_and_epilog_see_the_jobs_option_local_user_init_in_srun(
        cluster_factory, tmp_path):
    so = BUILD_PLUGINS / "spank_python.so"
    hdir, calls = tmp_path / "handlers", tmp_path / "calls.jsonl"
    write_handler(hdir, "script", SCRIPT_HANDLER.format(calls=str(calls)))
    c = cluster_factory(plugin_dirs=[str(BUILD_PLUGINS)])
    (c.workdir / "plugstack.conf").write_text(
        f"required {so} handler=script:Script path={hdir}\n")
    c.start()
    job = c.sbatch("--spm-tag=pp", wrap="true")
    c.wait_job(job, ("COMPLETED",), timeout=60)
    recs = wait_calls(calls, lambda rs: {"job_prolog", "job_epilog"} <= {r["hook"] for r in rs},
                      what="job_prolog and job_epilog", cluster=c)
    for hook in ("job_prolog", "job_epilog"):
        [r] = [r for r in recs if r["hook"] == hook]
        assert (r["context"], r["tag"], r["job_id"], r["euid"]) == ("job_script", "pp", job, 0), r
    # local_user_init: srun only (sbatch has no such call)
    assert "local_user_init" not in {r["hook"] for r in recs}
    c.run("srun", "--spm-tag=lu", "true")
    recs = wait_calls(calls, lambda rs: any(r["hook"] == "local_user_init" for r in rs),
                      what="local_user_init in srun", cluster=c)
    [lu] = [r for r in recs if r["hook"] == "local_user_init"]
    assert (lu["context"], lu["tag"], lu["comm"]) == ("local", "lu", "srun"), lu


HANG_HANDLER = '''
import os, time
from slurmpy_plugins import SpankHandler

HANG = {hang!r}


class Hang(SpankHandler):
    def user_init(self, spank):
        while os.path.exists(HANG):
            time.sleep(0.05)
'''


def test_a_hung_hook_is_cut_off_at_timeout(cluster_factory, tmp_path):
    so = BUILD_PLUGINS / "spank_python.so"
    hdir, hang = tmp_path / "handlers", tmp_path / "hang.flag"
    write_handler(hdir, "hang", HANG_HANDLER.format(hang=str(hang)))
    c = cluster_factory(plugin_dirs=[str(BUILD_PLUGINS)])
    (c.workdir / "plugstack.conf").write_text(
        f"required {so} handler=hang:Hang path={hdir} timeout=1\n")
    c.start()
    hang.write_text("")
    offset = c.log_offset("slurmd")
    # `sleep 30` would still be running if the hook's failure did not stop
    # the launch; the hook itself would hang for ever
    cp = c.run("srun", "sleep", "30", check=False, timeout=25)
    assert "task 0 launch failed" in cp.stderr, cp
    c.wait_for_log(r"spank/python: user_init failed: it did not return within timeout=1000 ms",
                   "slurmd", since=offset)
    hang.unlink()


SECOND_HANDLER = '''
from slurmpy_plugins import SpankHandler, SpankOption


class Second(SpankHandler):
    options = [SpankOption("spm-second", arg="X", help="slurmpy spank test: the second handler")]

    def user_init(self, spank):
        # runs after Tag's user_init (the line's order): sees its setenv
        spank.setenv("SPM_SECOND", "%s+%s" % (spank.getenv("SPM_SPANK_TAG"),
                                              spank.option("spm-second")))
'''


def test_one_line_serves_two_handlers(cluster_factory, tmp_path):
    so = BUILD_PLUGINS / "spank_python.so"
    hdir = tmp_path / "handlers"
    calls, raise_, imports = tmp_path / "calls.jsonl", tmp_path / "raise.flag", tmp_path / "i"
    write_handler(hdir, "tag", HANDLER.format(calls=str(calls), raise_=str(raise_),
                                              imports=str(imports)))
    write_handler(hdir, "second", SECOND_HANDLER)
    c = cluster_factory(plugin_dirs=[str(BUILD_PLUGINS)])
    (c.workdir / "plugstack.conf").write_text(
        f"required {so} handler=tag:Tag handler=second:Second path={hdir}\n")
    c.start()
    out = c.run("srun", "--help").stdout
    assert "--spm-tag=TAG" in out and "--spm-second=X" in out, out
    cp = c.run("srun", "--spm-tag=a", "--spm-second=b", "printenv", "SPM_SECOND")
    assert cp.stdout.strip() == "tag-a+b"
    # the first handler's failure ends the hook: the second never runs
    raise_.write_text("")
    cp = c.run("srun", "--spm-tag=a", "--spm-second=b", "printenv", "SPM_SECOND", check=False)
    assert cp.stdout == "" and "the tag service says no" in cp.stderr, cp


def test_handlers_dir_runs_every_file_in_order(cluster_factory, tmp_path):
    """handlers=DIR: the same two handlers as files of one directory; their
    options come from each file's text (no Python in srun --help)."""
    so = BUILD_PLUGINS / "spank_python.so"
    hdir = tmp_path / "spank.d"
    calls, raise_, imports = tmp_path / "calls.jsonl", tmp_path / "raise.flag", tmp_path / "i"
    write_handler(hdir, "10-tag", HANDLER.format(calls=str(calls), raise_=str(raise_),
                                                 imports=str(imports)))
    write_handler(hdir, "20-second", SECOND_HANDLER)
    c = cluster_factory(plugin_dirs=[str(BUILD_PLUGINS)])
    (c.workdir / "plugstack.conf").write_text(f"required {so} handlers={hdir}\n")
    c.start()
    out = c.run("srun", "--help").stdout
    assert "--spm-tag=TAG" in out and "--spm-second=X" in out, out
    assert not imports.exists()
    cp = c.run("srun", "--spm-tag=a", "--spm-second=b", "printenv", "SPM_SECOND")
    assert cp.stdout.strip() == "tag-a+b"
    raise_.write_text("")
    cp = c.run("srun", "--spm-tag=a", "--spm-second=b", "printenv", "SPM_SECOND", check=False)
    assert cp.stdout == "" and "the tag service says no" in cp.stderr, cp
    assert "10-tag.py" in cp.stderr, cp.stderr


# srun as an ordinary user: local_user_init runs in srun (Python starts
# there, as the user) and nowhere else.  The same trust checks as in the
# daemons, and an isolated interpreter: nothing from the user's PYTHON*
# variables or user site-packages.
USER_HANDLER = '''
import json, os, site, sys
from slurmpy_plugins import SpankHandler

CALLS = {calls!r}


class User(SpankHandler):
    def local_user_init(self, spank):
        rec = dict(euid=os.geteuid(), comm=open("/proc/self/comm").read().strip(),
                   path=sys.path, isolated=sys.flags.isolated, user_site=site.ENABLE_USER_SITE,
                   evil=sorted(m for m in sys.modules if m.startswith("evil")))
        with open(CALLS, "a") as f:
            f.write(json.dumps(rec) + "\\n")
'''


@pytest.fixture
def user_base():
    """A directory an ordinary user can reach (pytest's tmp_path is under
    a 0700 directory): the cluster's slurm.conf, plugstack.conf and the
    handlers live here."""
    base = pathlib.Path(tempfile.mkdtemp(prefix="spm-spank-user-"))
    os.chmod(base, 0o755)
    try:
        yield base
    finally:
        shutil.rmtree(base)


def test_srun_as_a_user_refuses_untrusted_handler_files_and_ignores_the_users_python(
        user_base):
    so = BUILD_PLUGINS / "spank_python.so"
    nobody = pwd.getpwnam("nobody")
    base = user_base
    out = base / "out"                      # the hook, as nobody, writes here
    out.mkdir()
    os.chown(out, nobody.pw_uid, nobody.pw_gid)
    calls, marker = out / "calls.jsonl", out / "evil-ran"
    # what the user's environment offers Python in srun; each would write
    # the marker if it ran
    evil = base / "evil"
    home = base / "home"
    user_site = home / ".local" / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" \
        / "site-packages"
    user_site.mkdir(parents=True)
    evil.mkdir()
    plant = f"open({str(marker)!r}, 'a').write(__name__ + '\\n')\n"
    for f in (evil / "sitecustomize.py", evil / "evil.py", evil / "startup.py",
              user_site / "usercustomize.py", user_site / "evil_user.py"):
        f.write_text(plant)
    (user_site / "evil.pth").write_text("import evil_user\n")
    for p in [home, *home.rglob("*")]:
        os.chown(p, nobody.pw_uid, nobody.pw_gid)
    user_env = {"HOME": str(home), "PYTHONPATH": str(evil),
                "PYTHONSTARTUP": str(evil / "startup.py"), "PYTHONUSERBASE": str(home / ".local"),
                "PYTHONHOME": str(evil)}

    c = Cluster(base / "cluster", plugin_dirs=[str(BUILD_PLUGINS)])
    try:
        c.start()

        def srun_as_nobody(hdir: pathlib.Path) -> subprocess.CompletedProcess:
            (c.workdir / "plugstack.conf").write_text(
                f"required {so} handler=user_h:User path={hdir}\n")
            env = dict(c.client_env(), USER="nobody", LOGNAME="nobody", **user_env)
            return subprocess.run(["srun", "true"], env=env, cwd="/tmp", user=nobody.pw_uid,
                                  group=nobody.pw_gid, extra_groups=[], capture_output=True,
                                  text=True, timeout=120)

        def handler_dir(name: str) -> tuple[pathlib.Path, pathlib.Path]:
            hdir = base / name
            return hdir, write_handler(hdir, "user_h", USER_HANDLER.format(calls=str(calls)))

        # a trusted handler runs in srun as nobody, in an interpreter that
        # took nothing from the user's environment
        ok_dir, _ = handler_dir("trusted")
        cp = srun_as_nobody(ok_dir)
        assert cp.returncode == 0, cp
        [rec] = read_calls(calls)
        assert (rec["euid"], rec["comm"]) == (nobody.pw_uid, "srun"), rec
        assert rec["isolated"] == 1 and not rec["user_site"] and rec["evil"] == [], rec
        assert not any(p.startswith((str(evil), str(home))) for p in rec["path"]), rec["path"]
        assert not marker.exists(), marker.read_text()

        # each refused in srun, naming the file or directory and why
        refused = {}
        d, f = handler_dir("group-writable-file")
        os.chmod(f, 0o664)
        refused["a group-writable file"] = (d, [f"refusing handler file {f}",
                                                "writable by group or others (mode 0664)"])
        d, f = handler_dir("user-owned-file")
        os.chown(f, nobody.pw_uid, nobody.pw_gid)
        refused["a file owned by nobody"] = (d, [f"refusing handler file {f}",
                                                 f"owned by uid {nobody.pw_uid}"])
        d, f = handler_dir("world-writable-dir")
        os.chmod(d, 0o777)
        refused["a world-writable directory"] = (d, [f"{d}", "writable by group or others "
                                                     "(mode 0777)"])
        d, f = handler_dir("user-owned-dir")
        os.chown(d, nobody.pw_uid, nobody.pw_gid)
        refused["a directory owned by nobody"] = (d, [f"{d}", f"owned by uid {nobody.pw_uid}"])
        for what, (hdir, expect) in refused.items():
            cp = srun_as_nobody(hdir)
            assert cp.returncode != 0, (what, cp)
            assert "spank/python: local_user_init failed: the handler cannot be loaded" in \
                cp.stderr, (what, cp.stderr)
            for text in expect:
                assert text in cp.stderr, (what, text, cp.stderr)
        # none of them ran
        assert len(read_calls(calls)) == 1, read_calls(calls)
        assert not marker.exists(), marker.read_text()
    finally:
        c.stop()
