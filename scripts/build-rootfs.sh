#!/usr/bin/env bash
# Builds an ext4 root filesystem image from a directory (mkfs.ext4 -d), for `colo-vmm --disk`.
#   scripts/build-rootfs.sh DIR IMAGE [SIZE_MIB]     (default 64 MiB)
set -euo pipefail
if [ $# -lt 2 ] || [ ! -d "$1" ]; then
  echo "usage: $0 DIR IMAGE [SIZE_MIB]   (DIR must be a directory)" >&2
  exit 2
fi
dir=$1
image=$2
size=${3:-64}
rm -f "$image"
truncate -s "${size}M" "$image"
mkfs.ext4 -q -F -L colo-root -d "$dir" "$image"
echo "$image"
