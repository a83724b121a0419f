"""Tests of node_health.py with the kit (fixture slurm_kit): each outcome is
what slurmd/slurmctld do with the same handler."""
import os

from node_health import NodeHealth


def healthy(tmp_path, **over):
    dev = tmp_path / "dev"
    dev.mkdir(exist_ok=True)
    for i in (0, 1):
        (dev / f"nvidia{i}").touch()
    attrs = dict(SCRATCH=str(tmp_path), MIN_FREE_BYTES=1, REQUIRED_MOUNTS=("/",), DEV=str(dev))
    attrs.update(over)
    return type("Site", (NodeHealth,), attrs)


def test_healthy_node_runs_the_job(slurm_kit, tmp_path):
    env = slurm_kit.make_env(job_id=7, gres_env={"CUDA_VISIBLE_DEVICES": "0,1"})
    out = slurm_kit.run_prep(healthy(tmp_path), "prolog", env)
    assert out.ok and out.action == "success"
    assert out.log == []


def test_full_scratch_drains_the_node(slurm_kit, tmp_path):
    handler = healthy(tmp_path, MIN_FREE_BYTES=1 << 62)
    out = slurm_kit.run_prep(handler, "prolog", slurm_kit.make_env(job_id=8))
    assert out.action == "drain"
    assert out.drain_reason.startswith("prep/python: NodeUnhealthy: JobId=8: ")
    assert any("prolog for JobId=8 failed at" in line and "needs" in line for line in out.log)


def test_missing_mount_drains_the_node(slurm_kit, tmp_path):
    missing = str(tmp_path / "not-a-mount")
    os.mkdir(missing)
    out = slurm_kit.run_prep(healthy(tmp_path, REQUIRED_MOUNTS=("/", missing)), "prolog",
                             slurm_kit.make_env(job_id=9))
    assert out.action == "drain"
    assert any(f"{missing} is not mounted" in line for line in out.log)


def test_gpu_missing_from_dev_drains_the_node(slurm_kit, tmp_path):
    env = slurm_kit.make_env(job_id=10, gres_env={"CUDA_VISIBLE_DEVICES": "0,3"})
    out = slurm_kit.run_prep(healthy(tmp_path), "prolog", env)
    assert out.drain_reason == ("prep/python: NodeUnhealthy: JobId=10: GPU(s) 3 given to the "
                                "job have no device under " + str(tmp_path / "dev"))
    assert any("GPU(s) 3 given to the job have no device" in line for line in out.log)


def test_a_typo_in_the_handler_is_caught(slurm_kit):
    env = slurm_kit.make_env(job_id=1)
    try:
        env.gres_environment
    except AttributeError:
        pass
    else:
        raise AssertionError("JobEnv accepted a misspelled field")
