#!/bin/sh
# Fetch and configure the Slurm source that matches the installed Slurm
# packages (the plugin must be built against exactly that version).
#   scripts/slurm-src.sh DESTDIR   -> prints the configured source directory
set -eu
dest=$1
ver=$(dpkg-query -W -f='${Version}' slurmctld 2>/dev/null || true)
[ -n "$ver" ] || { echo "slurm-src.sh: slurmctld is not installed (run make deps)" >&2; exit 1; }
upstream=${ver%%-*}
tree="$dest/slurm-wlm-$upstream"
if [ -f "$tree/.spm-configured" ] && [ "$(cat "$tree/.spm-configured")" = "$ver" ]; then
    echo "$tree"; exit 0
fi
# apt-get source needs a deb-src entry: copy the machine's own deb822 file.
if ! grep -rqs '^Types:.*deb-src' /etc/apt/sources.list.d/ && \
   ! grep -qs '^deb-src' /etc/apt/sources.list 2>/dev/null; then
    src=/etc/apt/sources.list.d/debian.sources
    [ -f "$src" ] || { echo "slurm-src.sh: no $src to copy a deb-src entry from" >&2; exit 1; }
    sed 's/^Types: deb$/Types: deb-src/' "$src" > /etc/apt/sources.list.d/slurmpy-deb-src.sources
    apt-get update -q >&2
fi
mkdir -p "$dest"
rm -rf "$tree"
(cd "$dest" && apt-get source -q "slurm-wlm=$ver" >&2)
(cd "$tree" && ./configure --prefix=/usr --sysconfdir=/etc/slurm \
    --libdir=/usr/lib/x86_64-linux-gnu >"$dest/configure.log" 2>&1) || {
    echo "slurm-src.sh: configure failed, see $dest/configure.log" >&2; exit 1; }
echo "$ver" > "$tree/.spm-configured"
echo "$tree"
