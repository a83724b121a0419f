# slurmpy_plugins - see README.md.  Run as root on Debian 12.
SHELL      := /bin/bash
# The interpreter the plugins embed: the site's own (Debian's, from
# python3-dev), never a virtualenv.  The build/test venv is made from it.
PYTHON     ?= /usr/bin/python3
VENV       ?= .venv
PY         := $(VENV)/bin/python
BUILD      := build
PLUGINS    := $(BUILD)/plugins
CORE       := $(PLUGINS)/slurmpy
PLUGINDIR  ?= /usr/lib/x86_64-linux-gnu/slurm-wlm
SLURM_SRC  ?= $(shell test -x scripts/slurm-src.sh && dpkg-query -W slurmctld >/dev/null 2>&1 && scripts/slurm-src.sh $(CURDIR)/$(BUILD)/slurm-src 2>/dev/null)
CFLAGS     ?= -O2 -g
PYTEST_ARGS ?=
# test files/dirs instead of the target's default (tests, tests/host tests/python, ...)
TESTS ?=
# what `make unit`, `make asan` and `make releases` run: tests/host (the C host,
# the build, Slurm's source, root) and tests/python (the package alone)
UNIT_TESTS := tests/host tests/python
# WHEEL_TEST=0: `make test` leaves out test-python (the release targets do:
# the wheel does not depend on the Slurm release)
WHEEL_TEST ?= 1
# extra `python -m venv` options (the trixie root uses Debian's cffi/pytest/
# hypothesis: --system-site-packages)
VENV_ARGS  ?=

# SLURM_BUILD_PKGS: what Slurm's configure looks for to build the parts the
# suite uses (slurmdbd's MariaDB plugin, job_submit/lua, serializer/json for
# squeue --json) when a release is built from its tarball (make test-25.11 &
# co.).  Installed before anything configures a tarball (make releases too):
# configure only finds what is installed when it runs.
SLURM_BUILD_PKGS := libmariadb-dev liblua5.3-dev libjson-c-dev
APT_PKGS := slurmctld slurmd slurm-client libslurm-dev libmunge-dev dpkg-dev gcc make \
            python3-dev python3-venv slurmdbd mariadb-server $(SLURM_BUILD_PKGS)

CSRC_CORE := $(wildcard csrc/*.c) csrc/jobdesc_fields.h csrc/spm_plugins.h \
             csrc/spm.h csrc/compat.h csrc/spm_types.h csrc/spm_bridge.h csrc/libslurmpy.map build_ffi.py

.PHONY: all deps build install install-check test unit integration demo bench asan clean FORCE releases test-python \
        trixie-root test-24.11 unit-24.11 demo-24.11 typecheck wheel deb deb-24.11

all: build

## deps: Debian packages, the matching Slurm source, a venv with cffi/pytest/hypothesis
deps: $(VENV)/.deps-ok
	@test -n "$(SLURM_SRC)" || scripts/slurm-src.sh $(CURDIR)/$(BUILD)/slurm-src

# $(VENV)/.base-python names the interpreter the venv was made from (what
# build_ffi.py bakes into libslurmpy.so); the venv is remade when PYTHON
# resolves to another one.  $(VENV)/.python-request only changes when the
# PYTHON given to make does, so that changing it re-runs this recipe.
$(VENV)/.deps-ok: pyproject.toml Makefile $(VENV)/.python-request
	@missing=$$(for p in $(APT_PKGS); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "deps: installing $$missing"; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	fi
	@base=$$($(PYTHON) -I -c 'import sys; sys.exit(f"{sys.executable} is a virtualenv (sys.prefix {sys.prefix}); PYTHON= must name a base interpreter") if sys.prefix != sys.base_prefix else print(sys.executable)') || exit 1; \
	if [ ! -x $(PY) ] || [ "$$(cat $(VENV)/.base-python 2>/dev/null)" != "$$base" ]; then \
	  echo "deps: creating $(VENV) from $$base"; \
	  rm -rf $(VENV) && $$base -m venv $(VENV_ARGS) $(VENV) && echo "$$base" > $(VENV)/.base-python && \
	  echo '$(PYTHON)' > $(VENV)/.python-request; \
	fi
	$(PY) -m pip install -q --disable-pip-version-check 'cffi>=1.16' 'setuptools>=65' 'pytest>=7' 'hypothesis>=6'
	@# the checkout's root on the venv's path: bench/ and examples/demo.py import
	@# the shared harness (tests.harness) and bench.parts without editing sys.path
	purelib=$$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])') && \
	  echo '$(CURDIR)' > $$purelib/slurmpy-checkout.pth
	test -n "$(SLURM_SRC)" || scripts/slurm-src.sh $(CURDIR)/$(BUILD)/slurm-src >/dev/null
	touch $@

$(VENV)/.python-request: FORCE
	@mkdir -p $(VENV)
	@echo '$(PYTHON)' | cmp -s - $@ || echo '$(PYTHON)' > $@

## build: libslurmpy.so (cffi embedding) + one .so per plugin + the staged Python dir
# one plugin .so per csrc/*_python.c (a row of csrc/spm_plugins.h each)
PLUGIN_SOS := $(patsubst csrc/%.c,$(PLUGINS)/%.so,$(wildcard csrc/*_python.c))
build: $(VENV)/.deps-ok $(PLUGIN_SOS) $(CORE)/python/.staged

$(CORE)/libslurmpy.so: $(CSRC_CORE) $(VENV)/.deps-ok
	SLURM_SRC=$(SLURM_SRC) SPM_BASE_PYTHON="$$(cat $(VENV)/.base-python)" \
	  SPM_CFLAGS="$(SPM_CFLAGS)" SPM_LDFLAGS="$(SPM_LDFLAGS)" $(PY) build_ffi.py $(CORE)

$(PLUGINS)/%.so: csrc/%.c csrc/spm.h csrc/compat.h csrc/spm_types.h csrc/spm_bridge.h csrc/plugin.map $(CORE)/libslurmpy.so
	gcc $(CFLAGS) $(SPM_CFLAGS) -Wall -fPIC -shared -I csrc -I $(SLURM_SRC) -o $@.tmp $< \
	  -L $(CORE) -l:libslurmpy.so -Wl,-rpath,'$$ORIGIN/slurmpy' \
	  -Wl,--version-script=csrc/plugin.map -Wl,-z,nodelete $(SPM_LDFLAGS)
	mv -f $@.tmp $@

# spank_python.so links no libslurmpy.so (so no libpython): every srun,
# sbatch and slurmstepd loads it, and it dlopens slurmpy/libslurmpy.so only
# for a hook the handler defines.
$(PLUGINS)/spank_python.so: csrc/spank_python.c csrc/spm.h csrc/compat.h csrc/spm_types.h csrc/spm_bridge.h csrc/plugin.map $(CORE)/libslurmpy.so
	gcc $(CFLAGS) $(SPM_CFLAGS) -Wall -fPIC -shared -I csrc -I $(SLURM_SRC) -o $@.tmp $< \
	  -Wl,--version-script=csrc/plugin.map -Wl,-z,nodelete $(SPM_LDFLAGS)
	mv -f $@.tmp $@

# The embedded interpreter imports slurmpy_plugins and _cffi_backend from
# <dir of libslurmpy.so>/python, whatever the daemon's environment.  The
# package is a symlink here (tests see edits at once); install.py copies it.
$(CORE)/python/.staged: $(VENV)/.deps-ok FORCE
	mkdir -p $(CORE)/python
	ln -sfn $(CURDIR)/slurmpy_plugins $(CORE)/python/slurmpy_plugins
	@# never write over a .so in place: a daemon that has it mapped would crash
	src=$$($(PY) -c 'import _cffi_backend; print(_cffi_backend.__file__)'); \
	dst=$(CORE)/python/$$(basename $$src); \
	cmp -s $$src $$dst || { cp $$src $$dst.tmp && mv -f $$dst.tmp $$dst; }
	touch $@

## install: into Slurm's PluginDir, atomically (rename), idempotent.  Refuses,
## before installing anything, when SLURM_SRC is not the release of the
## installed daemons (SLURMCTLD=path/to/slurmctld: which daemons; default
## slurmctld, else slurmd, on PATH)
SLURMCTLD ?=
install: install-check build
	$(PY) scripts/install.py $(PLUGINS) $(PLUGINDIR)

install-check:
	@scripts/check-slurm-version.sh '$(SLURM_SRC)' $(SLURMCTLD)

## deb: dist/slurmpy-plugins_<ours>+slurm<release>_<arch>.deb holding what
## install installs, Depends pinned to the installed Slurm package's exact
## version (scripts/deb.py); refused for a Slurm no package installed
deb: install-check build
	$(PY) scripts/deb.py $(PLUGINS) $(PLUGINDIR) dist --slurm-version $(SLURM_VERSION)

## deb-24.11 (on Debian 12): `make deb` in the Debian 13 root (into dist/)
deb-24.11: trixie-root
	scripts/trixie-root.sh -r $(TRIXIE_ROOT) run $(TRIXIE_MAKE) deb

## test: unit tests (tests/host: C host, no daemons; tests/python) + integration tests
## (real slurmctld/slurmd), then test-python (a whole run only)
# The tests use the plugins and the C host of this BUILD (build/ unless told).
TEST_ENV = SLURM_SRC=$(SLURM_SRC) SPM_PLUGIN_DIR=$(abspath $(PLUGINS)) \
           SPM_HOST_BUILD_DIR=$(abspath $(BUILD))/host
# A whole run (no TESTS=, no PYTEST_ARGS=) leaves its results in
# $(BUILD)/junit-<version>.xml: make releases shows them for this release
# instead of running the unit suite again (scripts/releases.py).
SLURM_VERSION = $(shell sed -n 's/^\#define SLURM_VERSION_STRING "\(.*\)"/\1/p' $(SLURM_SRC)/config.h 2>/dev/null)
JUNIT = $(if $(TESTS)$(PYTEST_ARGS),,--junitxml=$(BUILD)/junit-$(SLURM_VERSION).xml)
test: build
	$(TEST_ENV) $(PY) -m pytest -ra $(JUNIT) $(PYTEST_ARGS) $(or $(TESTS),tests)
	$(if $(TESTS)$(PYTEST_ARGS)$(filter-out 1,$(WHEEL_TEST)),,$(MAKE) --no-print-directory test-python)

unit: build
	$(TEST_ENV) $(PY) -m pytest -ra $(JUNIT) $(PYTEST_ARGS) $(or $(TESTS),$(UNIT_TESTS))

## test-python: the wheel (make wheel) installed in a fresh venv and tests/python
## run against it as an unprivileged user (nobody; SPM_TEST_USER=), HOME under
## /tmp: no build, no Slurm, no root (scripts/test-python.sh)
test-python: wheel
	scripts/test-python.sh "$$(ls -t dist/slurmpy_plugins-*.whl | head -1)" $(PYTHON)

## releases: libslurmpy, the plugins and the C test host built against each
## Slurm release from 22.05.8 to 26.05.3 (scripts/slurm-release.sh configures
## each tarball once, cached by its SHA-256), the unit suite run in the host
## against each; one table.  RELEASES="25.11.7 26.05.3" for some of them.
SLURM_TARBALLS ?= $(abspath $(CURDIR)/../shared/slurm)
RELEASES ?=
# e.g. --build-only (build, run no suite), --rerun (run current suites again)
RELEASES_ARGS ?=
releases: $(VENV)/.deps-ok
	$(PY) scripts/releases.py --base-src $(SLURM_SRC) --tarballs $(SLURM_TARBALLS) \
	  --venv $(VENV) $(if $(RELEASES),--only $(RELEASES)) $(RELEASES_ARGS) \
	  --reuse 22.05.8=$(BUILD)/junit-22.05.8.xml \
	  --reuse 24.11.5=$(TRIXIE_ROOT)/var/lib/slurmpy/checkout/build/junit-24.11.5.xml \
	  --reuse $(RELEASE_25.11)=$(BUILD)/$(RELEASE_25.11)/junit-$(RELEASE_25.11).xml \
	  --reuse $(RELEASE_26.05)=$(BUILD)/$(RELEASE_26.05)/junit-$(RELEASE_26.05).xml

integration: build
	$(TEST_ENV) $(PY) -m pytest -ra $(PYTEST_ARGS) $(or $(TESTS),tests/integration)

## test-24.11 (on Debian 12): the same `make test`, run as root inside a
## Debian 13 root (scripts/trixie-root.sh) against its Slurm 24.11.5 daemons,
## with its Python 3.13 and Debian's cffi/pytest/hypothesis.  The root has its
## own build/ and .venv/ over the checkout's, so both releases' builds coexist.
TRIXIE_ROOT ?= /var/tmp/slurmpy-trixie/root
TRIXIE_SLURM_SRC := /usr/src/slurm-24.11.5
# (no SLURM_BUILD_PKGS there: the root builds no Slurm)
TRIXIE_MAKE = make -C $(CURDIR) VENV=.venv/trixie VENV_ARGS=--system-site-packages \
              SLURM_SRC=$(TRIXIE_SLURM_SRC) PYTHON=/usr/bin/python3 SLURM_BUILD_PKGS= WHEEL_TEST=0
trixie-root:
	scripts/trixie-root.sh -r $(TRIXIE_ROOT) setup >/dev/null

test-24.11: trixie-root
	scripts/trixie-root.sh -r $(TRIXIE_ROOT) run $(TRIXIE_MAKE) test PYTEST_ARGS='$(PYTEST_ARGS)' TESTS='$(TESTS)'

## demo-24.11 (on Debian 12): `make demo` against Slurm 24.11.5 in the root
demo-24.11: trixie-root
	scripts/trixie-root.sh -r $(TRIXIE_ROOT) run $(TRIXIE_MAKE) demo

unit-24.11: trixie-root
	scripts/trixie-root.sh -r $(TRIXIE_ROOT) run $(TRIXIE_MAKE) unit PYTEST_ARGS='$(PYTEST_ARGS)' TESTS='$(TESTS)'

## test-25.11, test-26.05 (and demo-, unit-, integration-): the same `make test`
## / `make demo` against real daemons of an upstream release, built from its
## tarball in $(SLURM_TARBALLS) (SHA256SUMS checked) into a prefix cached by
## its checksum, $(SLURMPY_CACHE)/<version>-<sha12>/prefix (scripts/slurm-build.sh;
## built once, reused by every later run and target).  Our plugins and the C
## test host build against that release's configured source into
## build/<version>/ and link its libslurmfull; the harness runs the prefix's
## daemons and client commands (SLURM_PREFIX, tests/harness/slurmpaths.py).  The demo
## installs the plugins into the prefix's own PluginDir (lib/slurm), as a site
## would.  The host's Python serves.
SLURMPY_CACHE  ?= /var/cache/slurmpy
SLURM_JOBS     ?= 2
RELEASE_25.11  := 25.11.7
RELEASE_26.05  := 26.05.3
RELEASE_TARGETS := $(foreach r,25.11 26.05,test-$(r) demo-$(r) unit-$(r) integration-$(r))
.PHONY: slurm-build-deps $(RELEASE_TARGETS) $(addprefix slurm-,25.11 26.05)

slurm-build-deps:
	@missing=$$(for p in $(SLURM_BUILD_PKGS); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "slurm-build-deps: installing $$missing"; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	fi

## slurm-25.11, slurm-26.05: only build (or find) the cached Slurm install
$(addprefix slurm-,25.11 26.05): slurm-%: slurm-build-deps
	SLURM_TARBALLS=$(SLURM_TARBALLS) SLURMPY_CACHE=$(SLURMPY_CACHE) SLURM_JOBS=$(SLURM_JOBS) \
	  scripts/slurm-build.sh $(RELEASE_$*)

$(RELEASE_TARGETS): slurm-build-deps $(VENV)/.deps-ok
	@set -e; what=$(firstword $(subst -, ,$@)); rel=$(RELEASE_$(lastword $(subst -, ,$@))); \
	cache=$$(SLURM_TARBALLS=$(SLURM_TARBALLS) SLURMPY_CACHE=$(SLURMPY_CACHE) SLURM_JOBS=$(SLURM_JOBS) \
	         scripts/slurm-build.sh $$rel); \
	echo "$@: Slurm $$rel from $$cache/prefix"; \
	$(MAKE) --no-print-directory $$what BUILD=$(BUILD)/$$rel SLURM_SRC=$$cache/src \
	  SLURM_PREFIX=$$cache/prefix SLURM_LIBDIR=$$cache/prefix/lib/slurm \
	  PLUGINDIR=$$cache/prefix/lib/slurm SLURMCTLD=$$cache/prefix/sbin/slurmctld \
	  PYTEST_ARGS='$(PYTEST_ARGS)' TESTS='$(TESTS)' WHEEL_TEST=0

## demo: a throwaway single-node cluster on loopback running the example handlers
demo: install
	$(PY) examples/demo.py

## asan: the shim and the C test host under AddressSanitizer+UBSan, unit tests
ASAN_FLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer
asan: $(VENV)/.deps-ok
	$(MAKE) build BUILD=$(BUILD)/asan SLURM_SRC=$(SLURM_SRC) \
	  SPM_CFLAGS="$(ASAN_FLAGS)" SPM_LDFLAGS="-fsanitize=address,undefined"
	SLURM_SRC=$(SLURM_SRC) SPM_PLUGIN_DIR=$(BUILD)/asan/plugins SPM_TEST_ASAN=1 \
	  $(PY) -m pytest -ra $(PYTEST_ARGS) $(or $(TESTS),$(UNIT_TESTS))

## typecheck: mypy --strict over the package and the examples' handlers, from a
## throwaway venv (build/typecheck-venv; mypy is not a project dependency)
TYPECHECK_VENV := $(BUILD)/typecheck-venv
typecheck:
	test -x $(TYPECHECK_VENV)/bin/mypy || { $(PYTHON) -m venv $(TYPECHECK_VENV) && \
	  $(TYPECHECK_VENV)/bin/pip install -q --disable-pip-version-check mypy 'cffi>=1.16' pytest; }
	$(PY) scripts/gen_typing.py --check
	$(TYPECHECK_VENV)/bin/mypy --strict slurmpy_plugins examples/node_health/node_health.py \
	  examples/gpu_policy/gpu_policy.py examples/fairshare/fairshare.py

## wheel: the pure-Python wheel (handler API, records, testing, check, preview)
## into dist/; the C shim is `make build` / `make install`
wheel: $(VENV)/.deps-ok
	$(PY) -m pip wheel -q --disable-pip-version-check --no-deps -w dist .
	rm -rf slurmpy_plugins.egg-info

## bench: speed and memory figures (bench/results/): the parts on this
## machine's Slurm, then the cluster and step parts against Slurm 24.11.5 in
## the Debian 13 root (built there first); BENCH_ARGS=--quick to iterate
BENCH_ARGS ?=
bench: build trixie-root
	scripts/trixie-root.sh -r $(TRIXIE_ROOT) run $(TRIXIE_MAKE) build
	$(PY) bench/run.py --trixie-root $(TRIXIE_ROOT) --trixie-python $(CURDIR)/.venv/trixie/bin/python \
	  --trixie-slurm-src $(TRIXIE_SLURM_SRC) $(BENCH_ARGS)

clean:
	rm -rf $(BUILD)/plugins $(BUILD)/host $(BUILD)/asan $(BUILD)/releases $(BUILD)/$(RELEASE_25.11) $(BUILD)/$(RELEASE_26.05)
