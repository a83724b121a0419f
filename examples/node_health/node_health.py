"""Node-health prolog (prep/python): refuse to start a job on a node that
is not fit for it.  A failing prolog drains the node with this handler's
message as the reason (`sinfo -R`: "prep/python: NodeUnhealthy: JobId=8:
/scratch has ..."; the traceback is in slurmd's log), and the job is
requeued.

slurm.conf:
    PrEpPlugins=prep/python
    PrEpParameters=handler=node_health:NodeHealth,path=/etc/slurm/handlers

Checks, each configurable by subclassing (see test_node_health.py):
- free space on SCRATCH of at least MIN_FREE_BYTES;
- every path of REQUIRED_MOUNTS is a mount point;
- every GPU the job was given (CUDA_VISIBLE_DEVICES, set by the gres/gpu
  plugin in the job's GRES environment) has its device file under DEV.
"""
from __future__ import annotations

import os
import shutil

from slurmpy_plugins import JobEnv, PrEpHandler


class NodeUnhealthy(RuntimeError):
    """The node should not run jobs; the message says why."""


class NodeHealth(PrEpHandler):
    SCRATCH = "/tmp"
    MIN_FREE_BYTES = 1 << 30
    REQUIRED_MOUNTS: tuple[str, ...] = ("/proc",)
    DEV = "/dev"

    def prolog(self, env: JobEnv) -> None:
        problems = self.problems(env)
        if problems:
            raise NodeUnhealthy(f"JobId={env.job_id}: " + "; ".join(problems))

    def problems(self, env: JobEnv) -> list[str]:
        out = []
        try:
            free = shutil.disk_usage(self.SCRATCH).free
        except OSError as e:
            out.append(f"scratch {self.SCRATCH} unusable: {e.strerror}")
        else:
            if free < self.MIN_FREE_BYTES:
                out.append(f"scratch {self.SCRATCH} has {free >> 20} MiB free, "
                           f"needs {self.MIN_FREE_BYTES >> 20} MiB")
        for m in self.REQUIRED_MOUNTS:
            if not os.path.ismount(m):
                out.append(f"{m} is not mounted")
        missing = [d for d in self.gpus(env)
                   if not os.path.exists(os.path.join(self.DEV, f"nvidia{d}"))]
        if missing:
            out.append(f"GPU(s) {','.join(missing)} given to the job have no device "
                       f"under {self.DEV}")
        return out

    @staticmethod
    def gpus(env: JobEnv) -> list[str]:
        """The GPU indexes the job got on this node (from its GRES environment)."""
        value = env.gres_env.get("CUDA_VISIBLE_DEVICES", "")
        return [d for d in value.split(",") if d.strip()]
