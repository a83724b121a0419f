"""Example spank/python handler: an sbatch/srun option that reaches the job.

plugstack.conf:
    required /usr/lib/x86_64-linux-gnu/slurm-wlm/spank_python.so handler=demo_spank:DemoTag path=/etc/slurm/handlers
"""
from slurmpy_plugins import SpankHandler, SpankOption


class DemoTag(SpankHandler):
    options = [SpankOption("demo-tag", arg="TAG", help="a tag the job sees as $DEMO_TAG")]

    def user_init(self, spank):
        tag = spank.option("demo-tag")
        spank.setenv("DEMO_TAG", tag if tag is not None else "untagged")
