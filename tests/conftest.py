"""Generic pytest fixtures for slurmpy_plugins tests.

Only generic plumbing lives here; feature-specific fixtures belong in the
test modules (or a conftest.py next to them).
"""

from __future__ import annotations

import signal

import pytest


from tests.harness.slurmcluster import Cluster


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "integration: starts a real slurmctld/slurmd (slow, needs root)")
    # A runner's timeout usually sends SIGTERM, which would kill pytest
    # without fixture teardown and leave slurm daemons behind: turn it into
    # KeyboardInterrupt so cluster_factory's teardown still stops them.
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _sigterm_to_interrupt)


def _sigterm_to_interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


@pytest.fixture
def cluster_factory(tmp_path):
    """Return ``make(**Cluster_kwargs) -> Cluster`` (not started).

    Each cluster gets its own directory under tmp_path; every cluster made
    is stopped at teardown, even when the test failed.  Call ``.start()``
    (or use it as a context manager) yourself.
    """
    made: list[Cluster] = []

    def make(name: str | None = None, **kwargs) -> Cluster:
        workdir = tmp_path / (name or f"cluster{len(made)}")
        c = Cluster(workdir, **kwargs)
        made.append(c)
        return c

    yield make
    errors = []
    for c in reversed(made):
        try:
            c.stop()
        except Exception as e:  # keep stopping the others
            errors.append(f"{c!r}: {e}")
    if errors:
        raise RuntimeError("failed to stop clusters: " + "; ".join(errors))
