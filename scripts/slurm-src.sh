#!/bin/sh
# Fetch and configure the Slurm source that matches the installed Slurm
# packages (the plugin must be built against exactly that version).
#   scripts/slurm-src.sh DESTDIR   -> prints the configured source directory
# Debian 12: `apt-get source slurm-wlm=<installed version>`.  Where the
# mirror no longer serves that revision's .dsc (Debian 13's point releases),
# the upstream tarball it names, which is served, is fetched instead through
# apt (its SHA-256 checked against the Sources index) and configured the
# same way: the plugins only need the upstream headers and config.h.
set -eu
dest=$1
ver=$(dpkg-query -W -f='${Version}' slurmctld 2>/dev/null || true)
[ -n "$ver" ] || { echo "slurm-src.sh: slurmctld is not installed (run make deps)" >&2; exit 1; }
upstream=${ver%%-*}
tree="$dest/slurm-wlm-$upstream"
if [ -f "$tree/.spm-configured" ] && [ "$(cat "$tree/.spm-configured")" = "$ver" ]; then
    echo "$tree"; exit 0
fi
# apt-get source needs a deb-src entry: copy the machine's own apt source
# (deb822 debian.sources on Debian 12/13 installs; a one-line sources.list
# on debootstrapped roots).
if ! grep -rqs '^Types:.*deb-src' /etc/apt/sources.list.d/ && \
   ! grep -rqs '^deb-src' /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null; then
    src=/etc/apt/sources.list.d/debian.sources
    if [ -f "$src" ]; then
        sed 's/^Types: deb$/Types: deb-src/' "$src" > /etc/apt/sources.list.d/slurmpy-deb-src.sources
    elif grep -qs '^deb ' /etc/apt/sources.list; then
        sed -n 's/^deb /deb-src /p' /etc/apt/sources.list > /etc/apt/sources.list.d/slurmpy-deb-src.list
    else
        echo "slurm-src.sh: no apt source to copy a deb-src entry from" >&2; exit 1
    fi
    apt-get update -q >&2
fi
mkdir -p "$dest"
rm -rf "$tree"
if ! (cd "$dest" && apt-get source -q "slurm-wlm=$ver" >&2); then
    echo "slurm-src.sh: apt-get source failed; fetching the upstream tarball of $ver instead" >&2
    line=$(apt-get source --print-uris -q "slurm-wlm=$ver" | grep "\.orig\.tar\.[a-z0-9]*' ") || {
        echo "slurm-src.sh: the Sources index names no orig tarball for slurm-wlm=$ver" >&2; exit 1; }
    uri=$(echo "$line" | awk '{ gsub("\047", "", $1); print $1 }')
    name=$(echo "$line" | awk '{ print $2 }')
    hash=$(echo "$line" | awk '{ print $4 }')
    case $hash in SHA256:*) ;; *) echo "slurm-src.sh: no SHA256 for $name in the Sources index" >&2; exit 1 ;; esac
    /usr/lib/apt/apt-helper download-file "$uri" "$dest/$name" "$hash" >&2
    top=$(tar -tf "$dest/$name" | head -1 | cut -d/ -f1)
    rm -rf "${dest:?}/$top"
    tar -C "$dest" -xf "$dest/$name"
    [ "$dest/$top" = "$tree" ] || mv "$dest/$top" "$tree"
fi
# Debian's options that change what the headers we compile against say.
(cd "$tree" && ./configure --prefix=/usr --sysconfdir=/etc/slurm \
    --libdir=/usr/lib/x86_64-linux-gnu --enable-multiple-slurmd >"$dest/configure.log" 2>&1) || {
    echo "slurm-src.sh: configure failed, see $dest/configure.log" >&2; exit 1; }
echo "$ver" > "$tree/.spm-configured"
echo "$tree"
