#!/bin/sh
# Build the plugin unit-test host (tests/host/spm_host.c).
#
# usage: tests/host/build.sh [--asan] [SLURM_SRC] [OUT]
#   env: SLURM_SRC (default /tmp/setup/slurm-wlm-22.05.8, a ./configure'd tree
#        of the SAME version as the installed libslurmfull), OUT (default
#        <repo>/build/host/spm_host, or .../spm_host.asan with --asan),
#        SLURM_LIBDIR (default /usr/lib/x86_64-linux-gnu/slurm-wlm),
#        CC (default cc), CFLAGS (extra flags, appended last),
#        EXTRA_SRC (more C files compiled in, that add verbs through
#        spm_host.h: bench/bench_host.c builds the bench's host this way).
#
# Normal build (what this runs):
#   cc -std=gnu11 -g -O2 -Wall -Wextra -Wno-unused-parameter \
#      -Wno-missing-field-initializers -Wno-sign-compare -pthread \
#      -DHAVE_CONFIG_H -I$SLURM_SRC -I$SLURM_SRC/slurm \
#      -o spm_host spm_host.c -rdynamic \
#      -L$SLURM_LIBDIR -lslurmfull -Wl,-rpath,$SLURM_LIBDIR -ldl -lpthread
# ASan build: the same plus
#      -O1 -fsanitize=address,undefined -fno-omit-frame-pointer
#      -fno-sanitize-recover=undefined
# (libslurmfull itself is not instrumented; its malloc/free still go through
# the ASan allocator, so leaks and use-after-free of xmalloc'd job records
# are detected).
#
# -rdynamic is essential: the plugin resolves job_list, find_job_record,
# conf, lock_slurmctld, job_common_env_vars, slurmscriptd_run_prepilog, ...
# from the executable exactly as it does inside slurmctld / slurmd.
set -eu

asan=0
if [ "${1:-}" = "--asan" ]; then
	asan=1
	shift
fi

here=$(cd "$(dirname "$0")" && pwd)
outdir=$(cd "$here/../.." && pwd)/build/host
SLURM_SRC=${1:-${SLURM_SRC:-/tmp/setup/slurm-wlm-22.05.8}}
if [ $asan = 1 ]; then
	OUT=${2:-${OUT:-$outdir/spm_host.asan}}
else
	OUT=${2:-${OUT:-$outdir/spm_host}}
fi
SLURM_LIBDIR=${SLURM_LIBDIR:-/usr/lib/x86_64-linux-gnu/slurm-wlm}
CC=${CC:-cc}
EXTRA_CFLAGS=${CFLAGS:-}
EXTRA_SRC=${EXTRA_SRC:-}

if [ ! -f "$SLURM_SRC/config.h" ] || [ ! -f "$SLURM_SRC/slurm/slurm.h" ]; then
	echo "build.sh: $SLURM_SRC is not a configured Slurm source tree" \
	     "(config.h / slurm/slurm.h missing)" >&2
	exit 1
fi
if [ ! -e "$SLURM_LIBDIR/libslurmfull.so" ]; then
	echo "build.sh: $SLURM_LIBDIR/libslurmfull.so not found" >&2
	exit 1
fi

opt="-O2"
san=""
if [ $asan = 1 ]; then
	opt="-O1"
	san="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined"
fi

mkdir -p "$(dirname "$OUT")"
set -x
# shellcheck disable=SC2086
$CC -std=gnu11 -g $opt -Wall -Wextra -Wno-unused-parameter \
	-Wno-missing-field-initializers -Wno-sign-compare -pthread $san \
	-DHAVE_CONFIG_H -I"$SLURM_SRC" -I"$SLURM_SRC/slurm" $EXTRA_CFLAGS \
	-o "$OUT" "$here/spm_host.c" $EXTRA_SRC -rdynamic \
	-L"$SLURM_LIBDIR" -lslurmfull -Wl,-rpath,"$SLURM_LIBDIR" -ldl -lpthread
