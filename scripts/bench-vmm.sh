#!/usr/bin/env bash
# colo-vmm against QEMU microvm on the workload guest (docs/vmm.md has the table).
# Installs QEMU if missing (benchmark-only package, not needed by the tests).
# Run it when the machine is quiet (`uptime` load below 1).
#
# Two colo-vmm builds, back to back in one alternating run (e.g. before and after a change):
#   COLO_VMM_BIN=new/colo-vmm COLO_BENCH_BASELINE=old/colo-vmm scripts/bench-vmm.sh
# COLO_VMM_BIN names the colo-vmm measured (default: the one cargo builds here);
# COLO_BENCH_BASELINE names a second colo-vmm measured in QEMU's place (QEMU is then not needed).
# COLO_BENCH_PAIRS (default 20) and COLO_BENCH_ROUNDS (default 5) set the number of runs.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${COLO_BENCH_BASELINE:-}" ] && ! command -v qemu-system-x86_64 >/dev/null; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends qemu-system-x86
fi
cargo bench -p colo-vmm --bench vmm_vs_qemu "$@"
