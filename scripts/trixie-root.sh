#!/bin/bash
# A Debian 13 (trixie, Slurm 24.11.5) root on a Debian 12 machine, for
# building and testing the plugins against Slurm 24.11.  Run as root.
#
#   scripts/trixie-root.sh [-r DIR] setup        create or update the root; prints DIR
#   scripts/trixie-root.sh [-r DIR] run CMD...   run CMD in the root (as root), with
#                                                /proc, /dev, /dev/shm and this checkout
#                                                (at the same path) mounted; all of
#                                                them are unmounted when CMD ends.
#                                                The checkout's build/ and .venv/ are
#                                                the root's own there (DIR/var/lib/
#                                                slurmpy/checkout/): nothing the host
#                                                built is used or overwritten.  Make
#                                                the venv in a folder under .venv/
#                                                (a mount point cannot be removed)
#   scripts/trixie-root.sh [-r DIR] umount       unmount what a killed run left behind
#
# DIR defaults to $TRIXIE_ROOT, else /var/tmp/slurmpy-trixie/root.  setup is
# idempotent: each step leaves a stamp in DIR/var/lib/slurmpy, and a root
# that is complete costs a few file tests.  The Slurm source (the upstream
# orig tarball from the trixie pool, fetched through the root's apt sources
# with apt-helper and checked against its SHA-256) is configured in
# DIR/usr/src/slurm-24.11.5, the same way Debian configures its build.
# MIRROR= overrides the Debian mirror (default: the host's apt mirror).
set -euo pipefail

SLURM_VER=24.11.5
ORIG=slurm-wlm_${SLURM_VER}.orig.tar.gz
# as the trixie Sources index lists it
ORIG_SHA256=e1a5547edd212c38b5e3230a284133f777b32746551f094aaa81cc4af375e332
ORIG_TOP=slurm-slurm-24-11-5-1
PKGS="ca-certificates slurmctld slurmd slurm-client slurmdbd mariadb-server libslurm-dev
      python3-dev python3-venv python3-cffi python3-setuptools python3-pytest
      python3-hypothesis gcc make dpkg-dev libmunge-dev procps"
HERE=$(cd "$(dirname "$0")/.." && pwd -P)

root=${TRIXIE_ROOT:-/var/tmp/slurmpy-trixie/root}
if [ "${1:-}" = -r ]; then root=$2; shift 2; fi
cmd=${1:-}; shift || true
[ "$(id -u)" = 0 ] || { echo "trixie-root.sh: run as root" >&2; exit 1; }
root=$(realpath -m "$root")
stamps=$root/var/lib/slurmpy
src=$root/usr/src/slurm-$SLURM_VER

log() { echo "trixie-root: $*" >&2; }

# The host's Debian mirror: the URI apt uses for the host's own suite.
host_mirror() {
    local codename
    codename=$(. /etc/os-release && echo "$VERSION_CODENAME")
    apt-get indextargets --format '$(RELEASE) $(REPO_URI)' 2>/dev/null |
        awk -v c="$codename" '$1 == c { print $2; exit }'
}

mounted() { mountpoint -q "$1"; }

# One setup/run/umount at a time per root: they share the mounts.
lock() {
    mkdir -p "$(dirname "$root")"
    exec 9>"$root.lock"
    flock 9
}

# Mount points under the root, deepest first (for unmounting).
MOUNTS=()
do_umount() {
    local m rc=0
    for m in "$root$HERE/.venv" "$root$HERE/build" "$root$HERE" \
             "$root/dev/shm" "$root/dev" "$root/proc"; do
        if mounted "$m"; then
            umount "$m" || umount -l "$m" || rc=1
        fi
    done
    return $rc
}

do_mount() {
    mounted "$root/proc" || mount -t proc proc "$root/proc"
    mounted "$root/dev" || mount --bind /dev "$root/dev"
    # a tmpfs of our own: the host's /dev/shm is a separate mount that the
    # (non-recursive) bind of /dev does not carry
    mounted "$root/dev/shm" || mount -t tmpfs -o mode=1777,size=256m shm "$root/dev/shm"
    mkdir -p "$root$HERE"
    mounted "$root$HERE" || mount --bind "$HERE" "$root$HERE"
    # The root's own build/ and .venv/ over the checkout's: the two releases
    # never share build products (the host's stay as they are).
    local d
    for d in build .venv; do
        mkdir -p "$HERE/$d" "$stamps/checkout/$d"
        mounted "$root$HERE/$d" || mount --bind "$stamps/checkout/$d" "$root$HERE/$d"
    done
}

in_root() { chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
                HOME=/root LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive "$@"; }

setup() {
    local t0=$SECONDS
    lock
    if [ ! -f "$stamps/debootstrap" ]; then
        local mirror=${MIRROR:-$(host_mirror)}
        [ -n "$mirror" ] || { log "cannot find the host's apt mirror; set MIRROR="; exit 1; }
        command -v debootstrap >/dev/null || {
            log "installing debootstrap on the host"
            apt-get install -y -q --no-install-recommends debootstrap >/dev/null; }
        do_umount
        rm -rf "$root.new"
        mkdir -p "$(dirname "$root")"
        log "debootstrap trixie into $root (about 30 s)"
        debootstrap --variant=minbase --include=ca-certificates trixie "$root.new" "$mirror" \
            > "$(dirname "$root")/debootstrap.log" 2>&1 || {
            log "debootstrap failed: see $(dirname "$root")/debootstrap.log"; exit 1; }
        rm -rf "$root"
        mv "$root.new" "$root"
        mkdir -p "$stamps"
        touch "$stamps/debootstrap"
    fi
    # HTTPS from inside the root trusts what the host trusts.
    if ! cmp -s /etc/ssl/certs/ca-certificates.crt "$root/usr/local/share/ca-certificates/host.crt"; then
        cp /etc/ssl/certs/ca-certificates.crt "$root/usr/local/share/ca-certificates/host.crt"
        in_root update-ca-certificates >/dev/null 2>&1 || true
    fi
    trap do_umount EXIT
    do_mount
    if [ "$(cat "$stamps/packages" 2>/dev/null)" != "$(echo $PKGS)" ]; then
        log "installing packages in the root"
        in_root apt-get update -q >/dev/null
        # daemons must not start inside the root while installing
        printf '#!/bin/sh\nexit 101\n' > "$root/usr/sbin/policy-rc.d"
        chmod 755 "$root/usr/sbin/policy-rc.d"
        in_root apt-get install -y -q --no-install-recommends $PKGS >/dev/null
        echo $PKGS > "$stamps/packages"
    fi
    if [ ! -f "$src/.spm-configured" ]; then
        local mirror tar=$root/usr/src/$ORIG
        mirror=$(awk '$1 == "deb" { print $2; exit }' "$root/etc/apt/sources.list")
        [ -n "$mirror" ] || { log "no deb line in $root/etc/apt/sources.list"; exit 1; }
        if ! echo "$ORIG_SHA256  $tar" | sha256sum -c --status 2>/dev/null; then
            log "fetching pool/main/s/slurm-wlm/$ORIG"
            in_root /usr/lib/apt/apt-helper download-file \
                "${mirror%/}/pool/main/s/slurm-wlm/$ORIG" "/usr/src/$ORIG" "SHA256:$ORIG_SHA256" >/dev/null
        fi
        rm -rf "$src" "$root/usr/src/$ORIG_TOP"
        tar -C "$root/usr/src" -xzf "$tar"
        mv "$root/usr/src/$ORIG_TOP" "$src"
        log "configuring Slurm $SLURM_VER in the root"
        # Debian's options that change what the headers we compile against say
        in_root sh -c "cd /usr/src/slurm-$SLURM_VER && ./configure --prefix=/usr \
            --sysconfdir=/etc/slurm --libdir=/usr/lib/x86_64-linux-gnu \
            --enable-multiple-slurmd > configure.log 2>&1" || {
            log "configure failed: see $src/configure.log"; exit 1; }
        echo "$SLURM_VER" > "$src/.spm-configured"
    fi
    do_umount
    trap - EXIT
    log "root ready in $((SECONDS - t0)) s: $root"
    echo "$root"
}

run() {
    [ -f "$src/.spm-configured" ] || { log "no root in $root: run setup first"; exit 1; }
    lock
    trap do_umount EXIT
    do_mount
    local rc=0
    in_root "$@" || rc=$?
    do_umount
    trap - EXIT
    return $rc
}

case $cmd in
setup) setup ;;
run) [ $# -gt 0 ] || { echo "usage: $0 [-r DIR] run CMD..." >&2; exit 2; }; run "$@" ;;
umount) lock; do_umount ;;
*) sed -n '2,21p' "$0" >&2; exit 2 ;;
esac
