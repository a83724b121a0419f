#!/bin/bash
# Build and install one upstream Slurm release into a prefix cached by the
# tarball's checksum, for running real daemons of that release (make test-X,
# make demo-X).  Run as root.
#
#   scripts/slurm-build.sh VERSION      e.g. 26.05.3; prints the cache directory
#
# The tarball is $SLURM_TARBALLS/slurm-VERSION.tar.xz (default ../shared/slurm
# beside the checkout).  scripts/slurm-release.sh configure checks it against
# SHA256SUMS in the same folder and configures it once (nothing is
# downloaded); this script builds and installs that same configured tree, so
# the plugins built against its headers match the daemons.  Layout, under
# $SLURMPY_CACHE (default /var/cache/slurmpy), see slurm-release.sh:
#
#   VERSION-SHA12/src/      the configured source (the plugins build against it)
#   VERSION-SHA12/prefix/   the installed Slurm (configure's --prefix):
#                           sbin/slurmctld, sbin/slurmd, sbin/slurmstepd,
#                           sbin/slurmdbd, bin/sbatch ..., lib/slurm/*.so
#                           (PluginDir), lib/slurm/libslurmfull.so
#   VERSION-SHA12/build.log, install.log
#
# prefix/ only ever appears whole: make install goes into a staging folder
# (DESTDIR) whose copy of the prefix is renamed onto prefix/ once complete
# and checked, so a killed build leaves no half-installed prefix, and the
# next run resumes the (incremental) build in src/.  A second run finds
# prefix/.spm-installed and only checks it.  One build at a time per release
# (flock on VERSION-SHA12.lock, the lock slurm-release.sh takes).
# make -j$SLURM_JOBS (default 2) over src/ only (no docs, no contribs).
set -euo pipefail

HERE=$(cd "$(dirname "$0")/.." && pwd -P)
ver=${1:?usage: slurm-build.sh VERSION}
tarballs=${SLURM_TARBALLS:-$HERE/../shared/slurm}
jobs=${SLURM_JOBS:-2}
log() { echo "slurm-build: $*" >&2; }

tar=$tarballs/slurm-$ver.tar.xz
t0=$SECONDS
# checks the SHA-256 (every run), configures once; prints CACHE/KEY/src
src=$("$HERE/scripts/slurm-release.sh" configure "$tar")
cache=$(dirname "$src")
prefix=$cache/prefix
sha=$(cat "$cache/.configured")
# what the suite runs; an install without one of them is built again
REQUIRED="sbin/slurmctld sbin/slurmd sbin/slurmstepd sbin/slurmdbd bin/sbatch bin/srun
    bin/scontrol bin/squeue bin/sprio bin/sinfo bin/sacct bin/sacctmgr bin/scancel
    lib/slurm/libslurmfull.so lib/slurm/auth_none.so lib/slurm/cred_none.so
    lib/slurm/select_cons_tres.so lib/slurm/accounting_storage_slurmdbd.so
    lib/slurm/accounting_storage_mysql.so lib/slurm/prep_script.so
    lib/slurm/priority_multifactor.so lib/slurm/job_submit_lua.so lib/slurm/serializer_json.so"
installed() {
    [ "$(cat "$prefix/.spm-installed" 2>/dev/null)" = "$ver $sha" ] || return 1
    local f
    for f in $REQUIRED; do [ -e "$prefix/$f" ] || return 1; done
}
if installed; then echo "$cache"; exit 0; fi

exec 9>"$cache.lock"
flock 9
if installed; then echo "$cache"; exit 0; fi

# What the suite needs that configure only builds when it finds the library
# (make deps installs them; see SLURM_BUILD_PKGS in the Makefile):
#   define      package          what
needs="HAVE_MYSQL  libmariadb-dev   accounting_storage/mysql(slurmdbd)
HAVE_LUA    liblua5.3-dev    job_submit/lua
HAVE_JSON   libjson-c-dev    serializer/json(squeue_--json)"
missing() {
    echo "$needs" | while read -r def pkg what; do
        grep -q "^#define $def 1" "$src/config.h" || echo "$def $pkg $what"
    done
}
if [ -n "$(missing)" ]; then
    # A tree configured before those packages were installed (by
    # slurm-release.sh for make releases, say): configure again in place,
    # with the same options, now that they are installed (make then rebuilds
    # what the new config.h changes).
    if echo "$needs" | while read -r def pkg what; do
           dpkg-query -W -f='${Status}\n' "$pkg" 2>/dev/null | grep -q '^install ok installed' || exit 1
       done; then
        log "$src was configured without $(missing | awk '{ print $2 }' | xargs): configuring it again (same options)"
        (cd "$src" && ./config.status --recheck > "$cache/reconfigure.log" 2>&1 &&
            ./config.status >> "$cache/reconfigure.log" 2>&1) || {
            log "configure failed: see $cache/reconfigure.log"; exit 1; }
    fi
    if [ -n "$(missing)" ]; then
        missing | while read -r def pkg what; do
            log "$src/config.h has no $def: configure did not find $pkg, so no ${what//_/ } (apt-get install $pkg)"
        done
        exit 1
    fi
fi

t1=$SECONDS
log "building Slurm $ver (make -j$jobs in $src/src; about 4 min on 2 CPUs)"
make -C "$src/src" -j"$jobs" > "$cache/build.log" 2>&1 || {
    tail -30 "$cache/build.log" >&2; log "make failed: see $cache/build.log"; exit 1; }
log "built in $((SECONDS - t1)) s"

t2=$SECONDS
stage=$cache/stage
rm -rf "$stage"
make -C "$src/src" install DESTDIR="$stage" > "$cache/install.log" 2>&1 || {
    tail -30 "$cache/install.log" >&2; log "make install failed: see $cache/install.log"; exit 1; }
for f in $REQUIRED; do
    [ -e "$stage$prefix/$f" ] || { log "make install left no $f"; exit 1; }
done
echo "$ver $sha" > "$stage$prefix/.spm-installed"
rm -rf "$prefix"
mv "$stage$prefix" "$prefix"
rm -rf "$stage"
log "installed in $((SECONDS - t2)) s; Slurm $ver ready in $prefix ($((SECONDS - t0)) s in all)"
echo "$cache"
