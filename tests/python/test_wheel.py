"""The pure-Python wheel: built from pyproject.toml, installed into a fresh
venv (python3 -m venv, no system site-packages) with no C shim and no Slurm
library on its path, the examples' tests pass with plain pytest (the kit's
pytest plugin comes in through the pytest11 entry point).  pip fetches
cffi, pytest and the build backend from the package index."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

from .conftest import REPO


def run(*argv, **kw):
    cp = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=600, **kw)
    assert cp.returncode == 0, f"{argv}: {cp.stdout[-3000:]}\n{cp.stderr[-3000:]}"
    return cp


def test_wheel_installs_and_runs_the_examples_tests(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(REPO / "pyproject.toml", src)
    shutil.copytree(REPO / "slurmpy_plugins", src / "slurmpy_plugins",
                    ignore=shutil.ignore_patterns("__pycache__"))   # follows spm_types.h's link
    venv = tmp_path / "venv"
    run("/usr/bin/python3", "-m", "venv", venv)
    py = venv / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "SLURM"))}
    run(py, "-m", "pip", "wheel", "-q", "--no-deps", "-w", tmp_path / "dist", src, env=env)
    wheels = list((tmp_path / "dist").glob("slurmpy_plugins-*-py3-none-any.whl"))
    assert len(wheels) == 1, wheels
    run(py, "-m", "pip", "install", "-q", wheels[0], "pytest", env=env)
    # nothing of the C shim can be reached from there
    probe = run(py, "-c", "import importlib.util as u, slurmpy_plugins as s; "
                "print(u.find_spec('_slurmpy'), s.__file__)", env=env, cwd=tmp_path).stdout
    assert probe.startswith("None ") and str(venv) in probe
    ex = tmp_path / "examples"
    for d in ("node_health", "gpu_policy", "fairshare"):
        shutil.copytree(REPO / "examples" / d, ex / d, ignore=shutil.ignore_patterns("__pycache__"))
    out = run(py, "-m", "pytest", "-q", "-p", "no:cacheprovider", ".", env=env, cwd=ex).stdout
    assert "13 passed" in out, out
    out = run(venv / "bin" / "slurmpy-plugins", "preview", "site-factor", "--handler",
              "fairshare:FairShare", "--path", ex / "fairshare", "--input",
              REPO / "tests/fixtures/slurm_json/24.11.5/squeue.json", "--json", env=env).stdout
    assert '"hook": "site_factor"' in out
