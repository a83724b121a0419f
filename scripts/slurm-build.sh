#!/bin/bash
# Build and install one upstream Slurm release into a prefix cached by the
# tarball's checksum, for running real daemons of that release (make test-X,
# make demo-X).  Run as root.
#
#   scripts/slurm-build.sh VERSION      e.g. 26.05.3; prints the cache directory
#
# The tarball is $SLURM_TARBALLS/slurm-VERSION.tar.xz (default ../shared/slurm
# beside the checkout), checked against SHA256SUMS in the same folder before
# anything is unpacked.  Nothing is downloaded.  Layout, under
# $SLURM_CACHE (default /var/cache/slurmpy):
#
#   VERSION-SHA12/src/      the configured source (the plugins build against it;
#                           .spm-configured once configure has finished)
#   VERSION-SHA12/prefix/   the installed Slurm: sbin/slurmctld, sbin/slurmd,
#                           sbin/slurmstepd, sbin/slurmdbd, bin/sbatch ...,
#                           lib/slurm/*.so (PluginDir), lib/slurm/libslurmfull.so
#
# prefix/ only ever appears whole: make install goes into a staging folder
# beside it (DESTDIR) that is renamed onto prefix/ when it is complete, so a
# killed build leaves no half-installed prefix, and the next run resumes the
# (incremental) build in src/.  A second run finds prefix/ and only checks it.
# One run at a time per release (flock on VERSION-SHA12.lock).
#
# configure: the prefix is the cache's own (the binaries find libslurmfull
# and their plugins there), plus the options of Debian's build that change
# the headers (--enable-multiple-slurmd: several slurmd on one machine).
# make -j$SLURM_JOBS (default 2) over src/ only (no docs, no contribs).
set -euo pipefail

HERE=$(cd "$(dirname "$0")/.." && pwd -P)
ver=${1:?usage: slurm-build.sh VERSION}
tarballs=${SLURM_TARBALLS:-$HERE/../shared/slurm}
cache_root=${SLURM_CACHE:-/var/cache/slurmpy}
jobs=${SLURM_JOBS:-2}
log() { echo "slurm-build: $*" >&2; }

tar=$tarballs/slurm-$ver.tar.xz
sums=$tarballs/SHA256SUMS
[ -f "$tar" ] || { log "no $tar"; exit 1; }
[ -f "$sums" ] || { log "no $sums"; exit 1; }
want=$(awk -v f="slurm-$ver.tar.xz" '$2 == f || $2 == "*"f { print $1 }' "$sums")
[ -n "$want" ] || { log "$sums lists no slurm-$ver.tar.xz"; exit 1; }
key=$ver-${want:0:12}
cache=$cache_root/$key
src=$cache/src
prefix=$cache/prefix

mkdir -p "$cache_root"
exec 9>"$cache.lock"
flock 9

if [ -x "$prefix/sbin/slurmctld" ] && [ -f "$prefix/.spm-installed" ]; then
    echo "$cache"; exit 0
fi

t0=$SECONDS
got=$(sha256sum "$tar" | awk '{ print $1 }')
[ "$got" = "$want" ] || { log "$tar: SHA-256 $got, SHA256SUMS says $want"; exit 1; }

if [ ! -f "$src/.spm-configured" ]; then
    rm -rf "$src" "$cache/unpack"
    mkdir -p "$cache/unpack"
    tar -C "$cache/unpack" -xJf "$tar"
    mv "$cache/unpack/slurm-$ver" "$src"
    rmdir "$cache/unpack"
    log "configuring Slurm $ver in $src"
    (cd "$src" && ./configure --prefix="$prefix" --sysconfdir="$prefix/etc" \
        --enable-multiple-slurmd --disable-slurmrestd --disable-sview \
        > configure.log 2>&1) || { log "configure failed: see $src/configure.log"; exit 1; }
    echo "$ver $want" > "$src/.spm-configured"
    log "configured in $((SECONDS - t0)) s"
fi
# what the suite needs that configure only builds when it finds the library
for need in "HAVE_MYSQL libmariadb-dev accounting_storage/mysql (slurmdbd)" \
            "HAVE_LUA liblua5.3-dev job_submit/lua"; do
    set -- $need
    grep -q "^#define $1 1" "$src/config.h" || {
        log "configure did not find $2: no $3 (apt-get install $2, then remove $src)"; exit 1; }
done

t1=$SECONDS
log "building Slurm $ver (make -j$jobs in $src/src; about 4 min on 2 CPUs)"
make -C "$src/src" -j"$jobs" > "$src/make.log" 2>&1 || {
    tail -30 "$src/make.log" >&2; log "make failed: see $src/make.log"; exit 1; }
log "built in $((SECONDS - t1)) s"

t2=$SECONDS
stage=$cache/stage
rm -rf "$stage"
make -C "$src/src" install DESTDIR="$stage" > "$src/install.log" 2>&1 || {
    tail -30 "$src/install.log" >&2; log "make install failed: see $src/install.log"; exit 1; }
for f in sbin/slurmctld sbin/slurmd sbin/slurmstepd sbin/slurmdbd bin/sbatch bin/srun \
         bin/scontrol bin/squeue bin/sprio bin/sinfo bin/sacct bin/sacctmgr bin/scancel \
         lib/slurm/libslurmfull.so lib/slurm/auth_none.so lib/slurm/cred_none.so \
         lib/slurm/select_cons_tres.so lib/slurm/accounting_storage_slurmdbd.so \
         lib/slurm/accounting_storage_mysql.so lib/slurm/prep_script.so \
         lib/slurm/priority_multifactor.so lib/slurm/job_submit_lua.so; do
    [ -e "$stage$prefix/$f" ] || { log "make install left no $f"; exit 1; }
done
echo "$ver $want" > "$stage$prefix/.spm-installed"
rm -rf "$prefix"
mv "$stage$prefix" "$prefix"
rm -rf "$stage"
log "installed in $((SECONDS - t2)) s; Slurm $ver ready in $prefix ($((SECONDS - t0)) s in all)"
echo "$cache"
