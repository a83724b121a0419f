"""GPU policy (job_submit/python): GPU partitions are for GPU jobs.

job_submit_python.conf (beside slurm.conf):
    handler=gpu_policy:GpuPolicy
    path=/etc/slurm/handlers

- a job in a GPU partition must ask for a GPU (--gres=gpu:N or --gpus...);
- a job asking for GPUs outside a GPU partition is refused;
- a GPU job with no time limit gets DEFAULT_MINUTES, and one over
  MAX_MINUTES is refused; the user is told about the default.
"""
from __future__ import annotations

from slurmpy_plugins import JobDesc, JobSubmitHandler, Reject


def _wants_gpu(*specs: str | None) -> bool:
    return any(s and "gpu" in s for s in specs)


class GpuPolicy(JobSubmitHandler):
    GPU_PARTITIONS = frozenset({"gpu"})
    DEFAULT_MINUTES = 60
    MAX_MINUTES = 24 * 60

    def submit(self, job: JobDesc, submit_uid: int) -> None:
        gpu = _wants_gpu(job.tres_per_node, job.tres_per_job, job.tres_per_task,
                         job.tres_per_socket)
        in_gpu_part = job.partition is not None and \
            bool(set(job.partition.split(",")) & self.GPU_PARTITIONS)
        if in_gpu_part and not gpu:
            raise Reject(f"partition {job.partition} is for GPU jobs: ask for a GPU "
                         "(--gres=gpu:1) or use another partition")
        if gpu and not in_gpu_part:
            raise Reject(f"GPU jobs go to partition(s) {', '.join(sorted(self.GPU_PARTITIONS))}"
                         " (-p gpu)")
        if not gpu:
            return
        if job.time_limit is None:
            job.time_limit = self.DEFAULT_MINUTES
            self.log_user(f"gpu policy: no --time given, using {self.DEFAULT_MINUTES} minutes")
        elif job.time_limit > self.MAX_MINUTES:
            raise Reject(f"GPU jobs may run at most {self.MAX_MINUTES} minutes")
