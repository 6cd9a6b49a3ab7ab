#!/usr/bin/env bash
# colo's main demo: a short headline benchmark, end to end, in under 2 minutes (after the build).
#
# nginx-light (one worker) serves a small file under a fixed-rate open-loop load; beside it two
# offline MicroVMs burn CPU, first with no limits, then in a static low-weight cgroup, then
# under colo-agent's QoS loop. Prints p50/p99/p99.9, the achieved rate, the VMs' progress and the
# CPU they got, per mode. Run as root on a machine with /dev/kvm and cgroups (v1 or v2), ideally
# quiet (the figures mean little while something else loads the CPUs).
#
#   sudo scripts/demo.sh            # cpu scenario, 20 s per mode
#   DEMO_SCENARIO=memory sudo -E scripts/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
  echo "demo: run as root (it creates cgroups and starts MicroVMs)" >&2
  exit 1
fi
if [ ! -w /dev/kvm ]; then
  echo "demo: /dev/kvm is missing or not writable; colo's MicroVMs need KVM" >&2
  exit 1
fi
scripts/install-deps.sh
echo "demo: building colo-agent, coloctl, colo-vmm and colo-bench (release)..."
cargo build --release --locked -q -p colo-agent -p coloctl -p colo-vmm -p colo-bench
SCENARIO=${DEMO_SCENARIO:-cpu}
SECONDS=0
target/release/colo-bench headline \
  --scenarios "$SCENARIO" \
  --modes alone,unlimited,static,colo \
  --repeats 1 --duration 20 --warmup 3 --rate 3000 \
  --max-steal 1 \
  --out bench-results/demo
echo "demo: done in ${SECONDS} s (results and per-run CSV in bench-results/demo/)"
