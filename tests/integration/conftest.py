"""Fixtures for tests that run our plugins inside real daemons."""
from __future__ import annotations

import json
import os
import pathlib
import textwrap
import time

import pytest

from tests.harness.slurmdbd import APT_PACKAGES, SlurmDBD

ROOT = pathlib.Path(__file__).resolve().parents[2]
# the build under test: build/plugins, or another ($SPM_PLUGIN_DIR, set by
# `make test BUILD=...`, e.g. build/26.05.3/plugins for make test-26.05)
BUILD_PLUGINS = pathlib.Path(os.environ.get("SPM_PLUGIN_DIR") or ROOT / "build" / "plugins")


def write_handler(directory: pathlib.Path, module: str, source: str) -> pathlib.Path:
    """Write a handler module the way an admin would: root-owned, not
    writable by group/others (the loader refuses anything looser)."""
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o755)
    path = directory / f"{module}.py"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(textwrap.dedent(source))
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)   # a new inode: the reload check sees the change
    return path


def read_calls(path: pathlib.Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def wait_calls(calls: pathlib.Path, predicate, timeout: float = 30.0, *, what: str = "",
               cluster=None) -> list[dict]:
    """read_calls(calls) once predicate holds for it; AssertionError after
    timeout, naming `what` and, given the cluster, its daemons' log tails."""
    deadline = time.monotonic() + timeout
    while True:
        recs = read_calls(calls)
        if predicate(recs):
            return recs
        if time.monotonic() > deadline:
            tails = "\n" + cluster.log_tails() if cluster is not None else ""
            raise AssertionError(f"handler calls never satisfied the test"
                                 f"{' (' + what + ')' if what else ''}: {recs}{tails}")
        time.sleep(0.2)


# A handler that appends one JSON line per call; {calls} and extra code are
# filled in by the tests.
RECORDING_HANDLER = '''
import json, os, time
from slurmpy_plugins import PrEpHandler

CALLS = {calls!r}

def record(hook, rec, **extra):
    line = json.dumps(dict(hook=hook, t=time.time(), job_id=rec.job_id,
                           fields={{k: v for k, v in rec.as_dict().items()
                                    if isinstance(v, (int, str, type(None)))}},
                           **extra), ensure_ascii=False)
    fd = os.open(CALLS, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\\n").encode("utf-8", "surrogateescape"))
    finally:
        os.close(fd)

class Handler(PrEpHandler):
{body}
'''

ALL_HOOKS_BODY = '''
    def prolog(self, env):
        record("prolog", env)
    def epilog(self, env):
        record("epilog", env)
    def prolog_slurmctld(self, job):
        record("prolog_slurmctld", job)
    def epilog_slurmctld(self, job):
        record("epilog_slurmctld", job)
'''


@pytest.fixture
def prep_cluster(cluster_factory, tmp_path):
    """make(body, conf_extra=(), **kw) -> (cluster, calls_path): a started
    cluster with PrEpPlugins=prep/python and a recording handler whose
    class body is `body` (indented 4 spaces)."""
    if not (BUILD_PLUGINS / "prep_python.so").exists():
        pytest.fail("build/plugins/prep_python.so is missing: run `make build` first")

    def make(body: str = ALL_HOOKS_BODY, conf_extra=(), epilog: bool = True,
             module: str = "site_prep", params: str = "", start: bool = True, **kw):
        hdir = tmp_path / "handlers"
        calls = tmp_path / "calls.jsonl"
        write_handler(hdir, module, RECORDING_HANDLER.format(calls=str(calls), body=body))
        conf = ["PrEpPlugins=prep/python",
                f"PrEpParameters=handler={module}:Handler,path={hdir}{params}"]
        if epilog:
            conf.append("Epilog=/bin/true")
        c = cluster_factory(plugin_dirs=[str(BUILD_PLUGINS)],
                            conf_extra=conf + list(conf_extra), **kw)
        c.handler_dir = hdir
        if start:
            c.start()
        return c, calls

    return make


@pytest.fixture(scope="session")
def dbd(tmp_path_factory):
    """One throwaway slurmdbd + MariaDB for the session (site_factor
    update() needs SlurmDBD accounting in 22.05, see test_site_factor.py)."""
    missing = SlurmDBD.missing()
    if missing:
        pytest.fail(f"slurmdbd tests need {', '.join(missing)}: "
                    f"apt-get install {' '.join(APT_PACKAGES)}")
    d = SlurmDBD(tmp_path_factory.mktemp("dbd"))
    try:
        d.start()
        yield d
    finally:
        d.stop()
