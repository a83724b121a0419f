#!/bin/sh
# Refuse (exit 1, naming both versions) when the configured Slurm source the
# plugins are built against is not the release of the installed daemons: a
# plugin loads only into the exact release it was built for.
#   scripts/check-slurm-version.sh SLURM_SRC [DAEMON]
# DAEMON (default: slurmctld, else slurmd, on PATH) is asked with -V
# ("slurm 25.11.7", Debian's "slurm-wlm 22.05.8").  The source's version is
# SLURM_VERSION_STRING in SLURM_SRC/config.h, else SLURM_VERSION_NUMBER in
# SLURM_SRC/slurm/slurm_version.h.
set -eu
src=${1:?usage: check-slurm-version.sh SLURM_SRC [DAEMON]}
daemon=${2:-}
die() { echo "check-slurm-version.sh: $*" >&2; exit 1; }

if [ -f "$src/config.h" ]; then
    have=$(sed -n 's/^#define SLURM_VERSION_STRING "\(.*\)"/\1/p' "$src/config.h")
    from=$src/config.h
fi
if [ -z "${have:-}" ] && [ -f "$src/slurm/slurm_version.h" ]; then
    n=$(sed -n 's/^#define SLURM_VERSION_NUMBER \(0x[0-9a-fA-F]*\)/\1/p' "$src/slurm/slurm_version.h")
    [ -n "$n" ] && have=$(printf '%02d.%02d.%d' $((n >> 16 & 255)) $((n >> 8 & 255)) $((n & 255)))
    from=$src/slurm/slurm_version.h
fi
[ -n "${have:-}" ] || die "$src: no SLURM_VERSION_STRING in config.h nor SLURM_VERSION_NUMBER in slurm/slurm_version.h (not a configured Slurm source tree?)"

if [ -z "$daemon" ]; then
    daemon=$(command -v slurmctld || command -v slurmd || true)
    [ -n "$daemon" ] || die "neither slurmctld nor slurmd is installed: cannot tell which Slurm release the plugins must be built for"
fi
out=$("$daemon" -V 2>&1) || die "$daemon -V failed: $out"
installed=$(echo "$out" | awk '{ print $2; exit }')
case $installed in
[0-9]*.[0-9]*.[0-9]*) ;;
*) die "$daemon -V printed '$out': no version in it" ;;
esac
if [ "$installed" != "$have" ]; then
    die "refusing to install: $from is Slurm $have, but the installed daemons are Slurm $installed ($daemon -V); a plugin loads only into the release it was built for: give make install SLURM_SRC=<a configured source tree of Slurm $installed>"
fi
echo "check-slurm-version.sh: $src is Slurm $have, as the installed $daemon" >&2
