"""Tests of gpu_policy.py with the kit: accepted / refused with the message
sbatch prints / changed fields, as slurmctld's job_submit/python decides."""
from gpu_policy import GpuPolicy


def test_cpu_job_in_cpu_partition_is_untouched(slurm_kit):
    out = slurm_kit.run_submit(GpuPolicy, slurm_kit.make_job_desc(partition="debug"))
    assert out.accepted and out.changes == {} and out.message is None


def test_gpu_job_gets_a_default_time_limit(slurm_kit):
    job = slurm_kit.make_job_desc(partition="gpu", tres_per_node="gres/gpu:1")
    out = slurm_kit.run_submit(GpuPolicy, job)
    assert out.accepted
    assert out.changes == {"time_limit": 60}
    assert out.message == "gpu policy: no --time given, using 60 minutes"
    assert job.time_limit is None        # the request given stays as it was


def test_gpu_partition_without_gpu_is_refused(slurm_kit):
    out = slurm_kit.run_submit(GpuPolicy, slurm_kit.make_job_desc(partition="gpu"))
    assert not out.accepted
    assert out.message.startswith("partition gpu is for GPU jobs")
    assert out.changes == {}


def test_gpu_outside_gpu_partition_is_refused(slurm_kit):
    job = slurm_kit.make_job_desc(partition="debug", tres_per_node="gres/gpu:2")
    out = slurm_kit.run_submit(GpuPolicy, job)
    assert (out.accepted, out.message) == (False, "GPU jobs go to partition(s) gpu (-p gpu)")


def test_too_long_gpu_job_is_refused(slurm_kit):
    job = slurm_kit.make_job_desc(partition="gpu", tres_per_node="gres/gpu:1", time_limit=2000)
    out = slurm_kit.run_submit(GpuPolicy, job)
    assert out.message == "GPU jobs may run at most 1440 minutes"
