#!/usr/bin/env bash
# colo-vmm against QEMU microvm on the workload guest (docs/vmm.md has the table).
# Installs QEMU if missing (benchmark-only package, not needed by the tests).
# Run it when the machine is quiet (`uptime` load below 1).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v qemu-system-x86_64 >/dev/null; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends qemu-system-x86
fi
cargo bench -p colo-vmm --bench vmm_vs_qemu "$@"
