"""Every plugin booting at once in one slurmctld (prep, site_factor and
job_submit, as a site with all three configures them, and as `make demo`
does with two).  Each plugin's boot is its pool's first task; the first
to enter the embedded module runs cffi's one-time init under cffi's own
lock, and that init needs the GIL.  A worker that entered a boot while
holding the GIL waited on that lock while the init waited for the GIL:
slurmctld never came up (seen in `make demo`, fixed in pool.c).  The
plugins are installed as `make install` does: real copies with no
__pycache__, so each import compiles and the window is wide."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from .conftest import BUILD_PLUGINS, ROOT, write_handler

PREP = """
from slurmpy_plugins import PrEpHandler

class Handler(PrEpHandler):
    def prolog_slurmctld(self, job):
        pass
"""

SITE = """
from slurmpy_plugins import SiteFactorHandler

class Factor(SiteFactorHandler):
    def set(self, job):
        return 123
"""

SUBMIT = """
from slurmpy_plugins import JobSubmitHandler

class Policy(JobSubmitHandler):
    def submit(self, job, submit_uid):
        job.comment = "seen"
"""


@pytest.mark.parametrize("plugins", ["prep+site_factor", "prep+site_factor+job_submit"])
def test_plugins_boot_together_and_slurmctld_comes_up(cluster_factory, tmp_path, plugins):
    """job_submit's init() waits for its handler, so with it configured the
    others usually boot after cffi's init; without it, prep's and
    site_factor's boots race (the demo's configuration)."""
    with_js = "job_submit" in plugins
    plugindir = tmp_path / "plugindir"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "install.py"), str(BUILD_PLUGINS),
                    str(plugindir)], check=True, capture_output=True, timeout=300)
    hdir = tmp_path / "handlers"
    for name, src in (("boot_prep", PREP), ("boot_site", SITE), ("boot_submit", SUBMIT)):
        write_handler(hdir, name, textwrap.dedent(src))
    for attempt in range(4):
        c = cluster_factory(name=f"boot{attempt}", plugin_dirs=[str(plugindir)], conf_extra=[
            "PrEpPlugins=prep/python",
            f"PrEpParameters=handler=boot_prep:Handler,path={hdir}",
            "PriorityType=priority/multifactor",
            "PrioritySiteFactorPlugin=site_factor/python",
            f"PrioritySiteFactorParameters=handler=boot_site:Factor,path={hdir}",
            *(["JobSubmitPlugins=python"] if with_js else [])])
        (c.conf_path.parent / "job_submit_python.conf").write_text(
            f"handler=boot_submit:Policy\npath={hdir}\n")
        c.start()          # raises if slurmctld is not up in time
        jid = c.sbatch("--hold")
        job = c.job(jid)
        if with_js:
            assert job["Comment"] == "seen", job
        log = c.ctld_log()
        for line in ("prep/python: loaded handler boot_prep:Handler",
                     "site_factor/python: loaded handler boot_site:Factor",
                     *(["job_submit/python: loaded handler boot_submit:Policy"]
                       if with_js else [])):
            assert line in log, (attempt, line)
        c.stop()
