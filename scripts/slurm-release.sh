#!/bin/bash
# Configure an upstream Slurm release once, into a cache keyed by the
# tarball's SHA-256, so that every checkout on the machine reuses it.
#
#   scripts/slurm-release.sh configure TARBALL [SUMS]
#        check TARBALL's SHA-256 against SUMS (a sha256sum file, default
#        SHA256SUMS beside TARBALL; or "SHA256:<hex>"), unpack it and run
#        ./configure in CACHE/<version>-<sha12>/src once; print that dir.
#        A second run only checks the stamp (and the checksum) and prints it.
#   scripts/slurm-release.sh host-libs TREE
#        build what the C unit-test host needs in a tree configured by the
#        above (libslurmfull.so with what it links in, Slurm's prep/script
#        and site_factor/none plugins; not all of Slurm); print the dir
#        (CACHE/<key>/hostlib) that holds them.
#   scripts/slurm-release.sh debian-orig VERSION
#        fetch Debian's orig tarball of slurm-wlm VERSION (24.11.5: Debian
#        13's) from the pool of the host's Debian mirror with apt-helper,
#        checked against the SHA-256 the trixie Sources index lists; print
#        its path (in CACHE/dl/).  Reuses the trixie root's copy if present.
#   scripts/slurm-release.sh dir TARBALL [SUMS]
#        print the cache dir configure would use, configured or not.
#
# CACHE is $SLURM_CACHE (or $SLURMPY_CACHE), default /var/cache/slurmpy.  The tree is
# configured with Debian's options that change what the headers say
# (--sysconfdir=/etc/slurm --enable-multiple-slurmd) and
# --prefix=CACHE/<version>-<sha12>/prefix, so that `make -j2 && make install`
# in the same tree gives a whole Slurm in that prefix.  Stamps:
#   CACHE/<key>/.configured      sha256 of the tarball, written after configure
#   CACHE/<key>/configure.log
#   CACHE/<key>/.host-libs       written after the host-libs build
# One process at a time per key (flock CACHE/<key>.lock).
set -euo pipefail

CACHE=${SLURM_CACHE:-${SLURMPY_CACHE:-/var/cache/slurmpy}}
JOBS=${JOBS:-2}

die() { echo "slurm-release.sh: $*" >&2; exit 1; }
log() { echo "slurm-release.sh: $*" >&2; }

# Debian's orig tarballs this script knows: version -> sha256 (as the
# Sources index of the Debian release that ships it lists it).
declare -A DEBIAN_ORIG_SHA256=(
    [24.11.5]=e1a5547edd212c38b5e3230a284133f777b32746551f094aaa81cc4af375e332
)

# version of a tarball, from its name: slurm-23.02.8.tar.xz, slurm-wlm_24.11.5.orig.tar.gz
tar_version() {
    local b
    b=$(basename "$1")
    b=${b#slurm-wlm_}
    b=${b#slurm-}
    b=${b%%.orig.tar.*}
    b=${b%%.tar.*}
    [[ $b =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "$1: cannot tell the Slurm version from the file name"
    echo "$b"
}

# expected sha256 of TARBALL from SUMS
expected_sha() {
    local tarball=$1 sums=${2:-}
    [ -n "$sums" ] || sums=$(dirname "$tarball")/SHA256SUMS
    case $sums in
    SHA256:*) echo "${sums#SHA256:}" ;;
    *)
        [ -f "$sums" ] || die "$sums: no such checksum file (for $tarball)"
        local h
        h=$(awk -v n="$(basename "$tarball")" '{ f = $2; sub(/^\*/, "", f) } f == n { print $1; exit }' "$sums")
        [ -n "$h" ] || die "$sums lists no checksum for $(basename "$tarball")"
        echo "$h"
        ;;
    esac
}

# check the tarball's checksum; print it
verify() {
    local tarball=$1 want got
    [ -f "$tarball" ] || die "$tarball: no such file"
    want=$(expected_sha "$@")
    got=$(sha256sum "$tarball" | awk '{ print $1 }')
    [ "$got" = "$want" ] || die "$tarball: SHA-256 $got, but ${2:-SHA256SUMS} says $want"
    echo "$got"
}

# the configured tree's version (config.h) must be the tarball's
check_version() {
    local have
    have=$(awk '$2 == "SLURM_VERSION_STRING" { gsub("\"", "", $3); print $3 }' "$1/config.h")
    [ "$have" = "$2" ] || die "$1/config.h: SLURM_VERSION_STRING is '$have', the tarball's name says $2"
}

key_dir() { echo "$CACHE/$(tar_version "$1")-${2:0:12}"; }

cmd_dir() {
    local sha
    sha=$(verify "$@")
    key_dir "$1" "$sha"
}

cmd_configure() {
    local tarball=$1 sha dir ver
    tarball=$(realpath "$tarball")
    sha=$(verify "$tarball" "${2:-}")
    ver=$(tar_version "$tarball")
    dir=$(key_dir "$tarball" "$sha")
    mkdir -p "$CACHE"
    exec 8>"$dir.lock"
    flock 8
    if [ "$(cat "$dir/.configured" 2>/dev/null)" = "$sha" ] && [ -f "$dir/src/config.h" ]; then
        echo "$dir/src"; return
    fi
    # A tree configured here by something else (configure interrupted
    # before the stamp, or another script): adopt it when it was configured
    # with the options that matter (a build may be under way in it), never
    # remove it.  Only a dir without config.status is unpacked afresh.
    if [ -x "$dir/src/config.status" ]; then
        local opts
        opts=$("$dir/src/config.status" --config 2>/dev/null || true)
        if [ -f "$dir/src/config.h" ] && [ -f "$dir/src/slurm/slurm_version.h" ] &&
            [[ $opts == *--enable-multiple-slurmd* && $opts == *"--prefix=$dir/"* ]]; then
            check_version "$dir/src" "$ver"
            log "adopting $dir/src, configured with $opts"
            echo "$sha" > "$dir/.configured"
            echo "$dir/src"; return
        fi
        die "$dir/src is configured ($opts) but not by this script, or configure did not finish; remove $dir to start afresh"
    fi
    local t0=$SECONDS top
    log "unpacking $(basename "$tarball") into $dir/src"
    rm -rf "$dir"
    mkdir -p "$dir/unpack"
    tar -C "$dir/unpack" -xf "$tarball"
    top=$(ls "$dir/unpack")
    [ "$(echo "$top" | wc -l)" = 1 ] || die "$tarball: more than one top-level entry"
    mv "$dir/unpack/$top" "$dir/src"
    rmdir "$dir/unpack"
    log "configuring Slurm $ver (log: $dir/configure.log)"
    (cd "$dir/src" && ./configure --prefix="$dir/prefix" --sysconfdir=/etc/slurm \
        --enable-multiple-slurmd >"$dir/configure.log" 2>&1) ||
        die "configure of $ver failed: see $dir/configure.log"
    check_version "$dir/src" "$ver"
    echo "$sha" > "$dir/.configured"
    log "Slurm $ver configured in $((SECONDS - t0)) s"
    echo "$dir/src"
}

# What the C unit-test host (tests/host) links and loads, built in a tree
# configured above, into CACHE/<key>/hostlib/ (symlinks into the tree):
# libslurmfull.so, and Slurm's own prep/script and site_factor/none plugins
# (site_factor/example from 23.11; tests/host/test_host_smoke.py runs them).  src/api/Makefile builds what
# libslurmfull.la links in itself (its convenience libs have
# `cd dir && make lib` rules: src/common, src/interfaces, ...); its linker
# script is a target of its own that libslurmfull.la does not depend on.
cmd_host_libs() {
    local tree dir lib
    tree=$(realpath "$1")
    dir=$(dirname "$tree")
    lib=$dir/hostlib
    [ -f "$dir/.configured" ] || die "$tree: not configured by slurm-release.sh configure"
    exec 8>"$dir.lock"
    flock 8
    if [ -f "$dir/.host-libs" ] && [ -e "$lib/libslurmfull.so" ]; then
        echo "$lib"; return
    fi
    local t0=$SECONDS map sf
    log "building libslurmfull, prep/script, site_factor/none in $tree (log: $dir/host-libs.log)"
    map=$(printf 'spm-print-map:\n\t@echo $(FULL_VERSION_SCRIPT)\n' |
        make -s --no-print-directory -C "$tree/src/api" -f Makefile -f - spm-print-map)
    make -C "$tree/src/api" -j"$JOBS" $map libslurmfull.la >"$dir/host-libs.log" 2>&1 ||
        die "building libslurmfull failed: see $dir/host-libs.log"
    make -C "$tree/src/plugins/prep/script" -j"$JOBS" >>"$dir/host-libs.log" 2>&1 ||
        die "building prep/script failed: see $dir/host-libs.log"
    # site_factor/none is gone in 23.11: site_factor/example does as little
    sf=none
    [ -d "$tree/src/plugins/site_factor/none" ] || sf=example
    make -C "$tree/src/plugins/site_factor/$sf" -j"$JOBS" >>"$dir/host-libs.log" 2>&1 ||
        die "building site_factor/$sf failed: see $dir/host-libs.log"
    rm -rf "$lib"
    mkdir -p "$lib"
    ln -s "$tree/src/api/.libs/libslurmfull.so" "$lib/libslurmfull.so"
    ln -s "$tree/src/plugins/prep/script/.libs/prep_script.so" "$lib/prep_script.so"
    ln -s "$tree/src/plugins/site_factor/$sf/.libs/site_factor_$sf.so" "$lib/site_factor_$sf.so"
    for f in "$lib"/*.so; do [ -e "$f" ] || die "$f: not built"; done
    echo "$((SECONDS - t0)) s" > "$dir/.host-libs"
    log "host libs built in $((SECONDS - t0)) s"
    echo "$lib"
}

host_mirror() {
    local codename
    codename=$(. /etc/os-release && echo "$VERSION_CODENAME")
    apt-get indextargets --format '$(RELEASE) $(REPO_URI)' 2>/dev/null |
        awk -v c="$codename" '$1 == c { print $2; exit }'
}

cmd_debian_orig() {
    local ver=$1 sha name out mirror trixie
    sha=${DEBIAN_ORIG_SHA256[$ver]:-}
    [ -n "$sha" ] || die "no known Debian orig tarball for slurm-wlm $ver (known: ${!DEBIAN_ORIG_SHA256[*]})"
    name=slurm-wlm_${ver}.orig.tar.gz
    out=$CACHE/dl/$name
    mkdir -p "$CACHE/dl"
    if echo "$sha  $out" | sha256sum -c --status 2>/dev/null; then echo "$out"; return; fi
    trixie=${TRIXIE_ROOT:-/var/tmp/slurmpy-trixie/root}/usr/src/$name
    if echo "$sha  $trixie" | sha256sum -c --status 2>/dev/null; then
        cp "$trixie" "$out.tmp" && mv -f "$out.tmp" "$out"
        echo "$out"; return
    fi
    mirror=${MIRROR:-$(host_mirror)}
    [ -n "$mirror" ] || die "cannot tell the host's Debian mirror (apt-get indextargets); set MIRROR="
    log "fetching pool/main/s/slurm-wlm/$name from $mirror"
    /usr/lib/apt/apt-helper download-file "${mirror%/}/pool/main/s/slurm-wlm/$name" \
        "$out" "SHA256:$sha" >&2 || die "fetching $name failed"
    echo "$out"
}

cmd=${1:-}
shift || true
case $cmd in
configure) [ $# -ge 1 ] || die "usage: configure TARBALL [SUMS]"; cmd_configure "$@" ;;
dir) [ $# -ge 1 ] || die "usage: dir TARBALL [SUMS]"; cmd_dir "$@" ;;
host-libs) [ $# = 1 ] || die "usage: host-libs TREE"; cmd_host_libs "$1" ;;
debian-orig) [ $# = 1 ] || die "usage: debian-orig VERSION"; cmd_debian_orig "$1" ;;
*) sed -n '2,/^set -/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
