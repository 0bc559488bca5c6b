#!/usr/bin/env bash
# Put a stock Debian kernel image (vmlinuz only) into a cache dir for the QEMU
# oracle test (tests/integration/test_qemu_oracle.py), without installing it:
# no initramfs, no bootloader hooks, no /vmlinuz symlinks, no systemd upgrade.
#
# Usage: tests/oracle/fetch-kernel.sh [FLAVOUR]
#   FLAVOUR: amd64 (default: the generic, XZ-compressed kernel) or cloud-amd64
#            (smaller download, LZ4-compressed).
# Cache:   $KVMREADY_ORACLE_CACHE, default ${XDG_CACHE_HOME:-~/.cache}/kvmready/oracle
# Prints the path of the vmlinuz on stdout.  Needs apt (Debian/Ubuntu); runs
# `apt-get update` once if the package lists are missing and we are root.
set -euo pipefail

flavour=${1:-amd64}
cache=${KVMREADY_ORACLE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kvmready/oracle}
mkdir -p "$cache"

resolve() {  # the versioned package behind the linux-image-FLAVOUR meta-package
  apt-cache depends --no-recommends --no-suggests "linux-image-$flavour" 2>/dev/null \
    | awk '/Depends: linux-image-/{print $2; exit}'
}

package=$(resolve)
if [ -z "$package" ] && [ "$(id -u)" = 0 ]; then
  apt-get update -qq >&2
  package=$(resolve)
fi
if [ -z "$package" ]; then
  echo "fetch-kernel.sh: apt knows no linux-image-$flavour (run apt-get update?)" >&2
  exit 1
fi

release=${package#linux-image-}
target="$cache/vmlinuz-$release"
if [ -s "$target" ]; then
  echo "$target"
  exit 0
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if [ "$(id -u)" = 0 ] && id _apt >/dev/null 2>&1; then
  chown _apt "$work"  # apt's sandbox user downloads into it (no "unsandboxed" warning)
fi
(cd "$work" && apt-get download -q "$package" >&2)
dpkg-deb --fsys-tarfile "$work"/"$package"_*.deb | tar -x -C "$work" --wildcards './boot/vmlinuz-*'
mv "$work/boot/vmlinuz-$release" "$target.tmp"
mv "$target.tmp" "$target"
echo "$target"
