#!/usr/bin/env bash
# Builds colo's minimal Linux guest kernel (an ELF vmlinux with a PVH entry) from Debian's
# linux-source-6.1: `make ARCH=x86_64 tinyconfig`, merged with vmm-core/guest/linux/colo.config,
# plus the patches in vmm-core/guest/linux/patches/ (int3 self-test skip for KVM-PVM hosts).
# The result is cached outside the repo, keyed by the hash of the fragment, the patches and the
# source package version: ${COLO_KERNEL_CACHE:-/var/cache/colo/kernels}/<hash>/vmlinux.
# Prints the vmlinux path on stdout (build output goes to stderr).
#   --cached   print the path only if already built (exit 1 otherwise), never build
set -euo pipefail
cd "$(dirname "$0")/.."
here=$PWD
dir=$here/vmm-core/guest/linux
src=/usr/src/linux-source-6.1.tar.xz
if [ ! -f "$src" ]; then
  echo "build-guest-kernel: $src is missing: apt-get install linux-source-6.1 (scripts/install-deps.sh)" >&2
  exit 1
fi
ver=$(dpkg-query -W -f='${Version}' linux-source-6.1)
hash=$( (cat "$dir/colo.config" "$dir"/patches/*.patch; echo "$ver") | sha256sum | cut -c1-16)
cache=${COLO_KERNEL_CACHE:-/var/cache/colo/kernels}
out=$cache/$hash
if [ -f "$out/vmlinux" ]; then
  echo "$out/vmlinux"
  exit 0
fi
if [ "${1:-}" = "--cached" ]; then
  exit 1
fi
mkdir -p "$cache"
build=$(mktemp -d "${TMPDIR:-/var/tmp}/colo-kernel.XXXXXX")
trap 'rm -rf "$build"' EXIT
t0=$SECONDS
echo "build-guest-kernel: unpacking $src ($ver)" >&2
tar -xf "$src" -C "$build" --strip-components=1
cd "$build"
for p in "$dir"/patches/*.patch; do
  patch -p1 --quiet <"$p" >&2
done
make ARCH=x86_64 tinyconfig >/dev/null
scripts/kconfig/merge_config.sh -m .config "$dir/colo.config" >/dev/null
make ARCH=x86_64 olddefconfig >/dev/null
# merge_config drops options whose dependencies are missing without failing: check them.
missing=0
while read -r line; do
  case $line in
    CONFIG_*=y) grep -qx "$line" .config || { echo "build-guest-kernel: $line did not stick" >&2; missing=1; } ;;
  esac
done <"$dir/colo.config"
[ $missing -eq 0 ] || exit 1
echo "build-guest-kernel: compiling with $(nproc) jobs" >&2
make ARCH=x86_64 -j"$(nproc)" vmlinux >&2
mkdir -p "$out"
cp vmlinux "$out/vmlinux.tmp"
cp .config "$out/config"
mv "$out/vmlinux.tmp" "$out/vmlinux"
echo "build-guest-kernel: built in $((SECONDS - t0)) s" >&2
echo "$out/vmlinux"
