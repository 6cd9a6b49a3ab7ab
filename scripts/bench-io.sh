#!/usr/bin/env bash
# colo-vmm's IO path: device cost (vs fio O_DIRECT), end to end from the workload guest,
# rate-limit accuracy, live set_io_limit latency (docs/vmm.md has the tables).
# Installs fio if missing (benchmark-only). Run it when the machine is quiet.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v fio >/dev/null; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends fio
fi
cargo bench -p colo-vmm --bench io_path "$@"
