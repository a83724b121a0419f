#!/usr/bin/env bash
# scripts/test-python.sh WHEEL [PYTHON]: tests/python against WHEEL installed
# in a fresh venv (made from PYTHON, default /usr/bin/python3, with pytest and
# hypothesis from the index), run as an unprivileged user ($SPM_TEST_USER,
# default nobody) with HOME in a scratch directory: no build, no Slurm, no
# root, and slurmpy_plugins from the wheel only (SPM_TEST_INSTALLED=1: the
# suite refuses to run on the checkout's copy).  The tests read their data
# (tests/fixtures, examples/, the sources test_wheel builds) from this
# checkout, which must be readable by that user.  Run as root (make
# test-python).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
[ $# -ge 1 ] || { echo "usage: $0 WHEEL [PYTHON]" >&2; exit 2; }
wheel=$(readlink -f "$1")
python=${2:-/usr/bin/python3}
user=${SPM_TEST_USER:-nobody}
[ "$(id -u)" -eq 0 ] || { echo "$0: run as root (the tests run as $user)" >&2; exit 2; }
[ -f "$wheel" ] || { echo "$0: no wheel $wheel (make wheel)" >&2; exit 2; }

work=$(mktemp -d /tmp/slurmpy-test-python.XXXXXX)
trap 'rm -rf "$work"' EXIT
# a copy of the tests, away from the checkout (pytest puts a test directory's
# parent on sys.path; the checkout's would hold slurmpy_plugins)
cp -r "$repo/tests/python" "$work/python"
find "$work/python" -name __pycache__ -prune -exec rm -rf {} +
cp "$wheel" "$work/"
chown -R "$user:" "$work"
echo "test-python: $(basename "$wheel") in a fresh venv, tests/python as $user (HOME=$work)"
runuser -u "$user" -- env -i PATH=/usr/local/bin:/usr/bin:/bin HOME="$work" LANG=C.UTF-8 \
    SPM_SOURCE_TREE="$repo" SPM_TEST_INSTALLED=1 PYTHON="$python" WHEEL="$(basename "$wheel")" \
    PYTEST_ADDOPTS="${PYTEST_ADDOPTS:-}" \
    bash -c 'set -euo pipefail; cd "$HOME"
             "$PYTHON" -m venv venv
             venv/bin/pip install -q --disable-pip-version-check --no-cache-dir \
                 "./$WHEEL" "pytest>=7" "hypothesis>=6"
             exec venv/bin/python -m pytest -ra -p no:cacheprovider python'
