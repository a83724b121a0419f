"""`make install SLURM_SRC=...` refuses, before building or installing
anything, when that source tree is not the release of the installed
daemons (scripts/check-slurm-version.sh), and names both versions.

The daemons and the trees are stand-ins: a script answering `-V` as
slurmctld does, and a directory with the config.h or slurm_version.h line
the check reads."""
from __future__ import annotations

import os
import subprocess

from .conftest import REPO

CHECK = REPO / "scripts" / "check-slurm-version.sh"


def fake_daemon(tmp_path, version, prefix="slurm"):
    p = tmp_path / "slurmctld"
    p.write_text(f"#!/bin/sh\n[ \"$1\" = -V ] && echo '{prefix} {version}' && exit 0\nexit 2\n")
    p.chmod(0o755)
    return p


def fake_tree(tmp_path, version, config_h=True):
    src = tmp_path / f"slurm-{version}"
    (src / "slurm").mkdir(parents=True)
    major, minor, micro = (int(x) for x in version.split("."))
    (src / "slurm" / "slurm_version.h").write_text(
        f"#define SLURM_VERSION_NUMBER 0x{major:02x}{minor:02x}{micro:02x}\n")
    if config_h:
        (src / "config.h").write_text(f'#define SLURM_VERSION_STRING "{version}"\n')
    return src


def make_install(tmp_path, src, daemon):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAKE")}
    return subprocess.run(
        ["make", "--no-print-directory", "-C", str(REPO), "install", f"SLURM_SRC={src}",
         f"SLURMCTLD={daemon}", f"PLUGINDIR={tmp_path / 'plugindir'}",
         f"BUILD={tmp_path / 'build'}"],
        capture_output=True, text=True, timeout=300, env=env)


def test_make_install_refuses_another_release_before_doing_anything(tmp_path):
    cp = make_install(tmp_path, fake_tree(tmp_path, "25.11.7"),
                      fake_daemon(tmp_path, "22.05.8", prefix="slurm-wlm"))
    assert cp.returncode != 0
    assert "refusing to install" in cp.stderr, cp.stderr
    assert "Slurm 25.11.7" in cp.stderr and "Slurm 22.05.8" in cp.stderr, cp.stderr
    # nothing built, nothing installed
    assert not (tmp_path / "plugindir").exists()
    assert not (tmp_path / "build").exists()


def test_version_from_slurm_version_h_when_no_config_h(tmp_path):
    src = fake_tree(tmp_path, "23.02.8", config_h=False)
    cp = subprocess.run([str(CHECK), str(src), str(fake_daemon(tmp_path, "23.11.11"))],
                        capture_output=True, text=True)
    assert cp.returncode == 1
    assert "slurm_version.h is Slurm 23.02.8" in cp.stderr
    assert "installed daemons are Slurm 23.11.11" in cp.stderr


def test_same_release_passes(tmp_path):
    src = fake_tree(tmp_path, "24.11.5")
    cp = subprocess.run([str(CHECK), str(src), str(fake_daemon(tmp_path, "24.11.5"))],
                        capture_output=True, text=True)
    assert cp.returncode == 0, cp.stderr
    assert "is Slurm 24.11.5, as the installed" in cp.stderr


def test_not_a_source_tree_is_named(tmp_path):
    cp = subprocess.run([str(CHECK), str(tmp_path), str(fake_daemon(tmp_path, "24.11.5"))],
                        capture_output=True, text=True)
    assert cp.returncode == 1
    assert f"{tmp_path}: no SLURM_VERSION_STRING in config.h" in cp.stderr
