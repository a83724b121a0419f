"""pytest plugin of the test kit (entry point ``pytest11``: active once
slurmpy_plugins is installed).  Fixtures:

- ``slurm_kit``: the :mod:`slurmpy_plugins.testing` module (make_job,
  run_prep, ...), so a test needs no import;
- ``load_handler``: ``load_handler("module:Class", path, kind)`` with the
  daemons' loader and permission checks;
- ``squeue_json``: ``squeue_json(path_or_text, states=None)`` -> jobs.
"""
from __future__ import annotations

from types import ModuleType
from typing import Any, Callable

import pytest


@pytest.fixture
def slurm_kit() -> ModuleType:
    from . import testing
    return testing


@pytest.fixture
def load_handler() -> Callable[..., Any]:
    from .testing import load_handler as load
    return load


@pytest.fixture
def squeue_json() -> Callable[..., Any]:
    from .testing import jobs_from_json
    return jobs_from_json
