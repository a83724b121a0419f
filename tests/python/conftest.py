"""Fixtures for the tests of the pure-Python package, what the wheel holds:
the handler API, the records, the test kit, `check`, config and log.

They need slurmpy_plugins (from the wheel, or the checkout through
pyproject.toml's pythonpath), pytest and hypothesis, and nothing else: no
build, no Slurm, no root.  `make test-python` runs them against the wheel
installed in a fresh venv, as an unprivileged user.  The tests that need the
build, the C test host, Slurm's source or root are in tests/host.

* ``REPO``: the source tree, read for test data only (tests/fixtures/,
  examples/, csrc/spm_types.h, the sources test_wheel builds): $SPM_SOURCE_TREE,
  else the checkout this directory is in.  With $SPM_TEST_INSTALLED=1 (make
  test-python), slurmpy_plugins imported from inside it is an error.
* ``handlers``: a handler directory (0755) with ``write(module, source)``
  (0644 files, atomic os.replace) and an ``out`` directory where handlers
  dump what they saw as JSON.  ``spmtest_rec.py`` (see RECORDER) is always
  present in it.  tests/host/conftest.py uses the same one.
"""
from __future__ import annotations

import json
import os
import pathlib
import pwd
import textwrap
import time

import pytest

REPO = pathlib.Path(os.environ.get("SPM_SOURCE_TREE")
                    or pathlib.Path(__file__).resolve().parents[2])


#: The user the tests run as: root under make test, nobody under make
#: test-python.  The slurm.conf the check tests write names it SlurmUser, so
#: that check trusts the handler files it owns (the daemon trusts root and
#: SlurmUser); the kit's requests are this user's.
USER = pwd.getpwuid(os.geteuid()).pw_name
UID = os.geteuid()


def pytest_configure(config):
    if os.environ.get("SPM_TEST_INSTALLED") == "1":
        import slurmpy_plugins
        where = pathlib.Path(slurmpy_plugins.__file__).resolve()
        if where.is_relative_to(REPO.resolve()):
            raise pytest.UsageError(f"SPM_TEST_INSTALLED=1 but slurmpy_plugins is "
                                    f"imported from the source tree ({where})")


RECORDER = '''\
import json, os, threading

def plain(rec):
    """A record (Job / JobEnv) as JSON-able data."""
    d = rec.as_dict()
    if "state_flags" in d:
        d["state_flags"] = sorted(d["state_flags"])
    return d

def dump(path, obj):
    """Write obj as JSON, atomically (readers never see half a file)."""
    tmp = "%s.tmp.%d" % (path, threading.get_ident())
    with open(tmp, "w") as f:
        json.dump(obj, f)
    os.replace(tmp, path)

def append(path, obj):
    """Append one JSON line (for counting calls)."""
    with open(path, "a") as f:
        f.write(json.dumps(obj) + "\\n")
'''


class HandlerDir:
    """A loader-acceptable handler directory plus an output directory."""

    def __init__(self, root: pathlib.Path) -> None:
        self.path = root / "handlers"
        self.path.mkdir(mode=0o755)
        os.chmod(self.path, 0o755)
        self.out = root / "out"
        self.out.mkdir(mode=0o755)
        self.write("spmtest_rec", RECORDER)

    def write(self, module: str, source: str, mode: int = 0o644,
              mtime_bump: bool = True) -> pathlib.Path:
        """Write <module>.py with `source` (dedented; {out} is replaced by
        the output directory) atomically with os.replace."""
        path = self.path / (module + ".py")
        text = textwrap.dedent(source).replace("{out}", str(self.out))
        tmp = self.path / (".%s.tmp" % module)
        tmp.write_text(text)
        os.chmod(tmp, mode)
        if mtime_bump and path.exists():
            # a replacement must look different even on coarse clocks
            st = path.stat()
            t = max(time.time(), st.st_mtime + 1)
            os.utime(tmp, (t, t))
        os.replace(tmp, path)
        return path

    def params(self, handler: str, **keys) -> str:
        """A PrEpParameters-style string with path= set to this dir."""
        items = ["handler=%s" % handler, "path=%s" % self.path]
        items += ["%s=%s" % (k, v) for k, v in keys.items()]
        return ",".join(items)

    def read(self, name: str, timeout: float = 10.0):
        """Wait for out/<name> and return its JSON content."""
        p = self.out / name
        deadline = time.monotonic() + timeout
        while not p.exists():
            if time.monotonic() > deadline:
                raise AssertionError("handler never wrote %s" % p)
            time.sleep(0.01)
        return json.loads(p.read_text())

    def lines(self, name: str):
        p = self.out / name
        if not p.exists():
            return []
        return [json.loads(x) for x in p.read_text().splitlines() if x]


@pytest.fixture
def handlers(tmp_path):
    return HandlerDir(tmp_path)


