"""The shared test harness: what tests/, bench/ and examples/demo.py use to
drive the C test host and real Slurm daemons.

* ``hostdriver``: the Python side of tests/host/spm_host (a fake
  slurmctld/slurmd loading one plugin .so);
* ``slurmcluster``: a throwaway slurmctld/slurmd cluster on loopback;
* ``slurmdbd``: a slurmdbd on a private MariaDB for it;
* ``daemonproc``: starting, watching and stopping those daemons;
* ``slurmpaths``: where the Slurm commands and daemons under test are.

Imported as ``from tests.harness import slurmcluster``: the checkout's root is
on sys.path in pytest (pyproject.toml's ``pythonpath``) and in the dev venv
(``make deps`` writes a .pth file naming it), so bench/ and examples/ import
it without editing sys.path.
"""
