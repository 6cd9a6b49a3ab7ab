#!/usr/bin/env bash
# Runs every colo test: unit, integration (real KVM, real cgroups), golden files.
# Needs root for the cgroup and KVM tests; without /dev/kvm those tests say SKIPPED loudly
# (or fail, when COLO_REQUIRE_KVM=1 as in CI).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
# colo's minimal Linux guest kernel for colo-vmm's Linux boot test; cached outside the repo, so
# this builds (~3-5 min on 2 cores) only when its config fragment or patches change.
COLO_GUEST_KERNEL=$(scripts/build-guest-kernel.sh)
export COLO_GUEST_KERNEL
# --no-fail-fast: one failing test binary must not hide the results of the others.
rc=0
cargo test --workspace --all-targets --locked --no-fail-fast || rc=$?
cargo test --workspace --doc --locked --no-fail-fast || rc=$?
# The cgroup v2 suite in a QEMU (TCG) guest, a real v2 kernel whatever this host runs: the
# agent's cgroup and container tests there (scripts/tcg-v2-suite.sh: about 5 minutes on an idle
# 2-core host, twice that beside a CPU hog; the limit only catches a hung guest).
TCG_SUITE_TIMEOUT=900 scripts/tcg-v2-suite.sh || rc=$?
# And the shipped systemd unit under systemd as PID 1 on cgroup v2 in the same kind of guest
# (scripts/tcg-systemd.sh: systemd 252 and 254, one guest each, about 2 minutes apiece when idle).
TCG_SYSTEMD_TIMEOUT=360 scripts/tcg-systemd.sh || rc=$?
# Programs in Linux guests end to end (coloctl -> agent -> channel -> in-guest agent -> outcome)
# with the guest under QEMU/TCG behind a test-only colo-vmm stand-in (scripts/guest-e2e.sh: about
# a minute once built; it boots colo's kernel built above, the one colo-vmm boots).
scripts/guest-e2e.sh || rc=$?
# deploy/kubernetes/ against Kubernetes' OpenAPI schemas (kubernetes-validate, pinned).
scripts/validate-deploy.sh || rc=$?
exit "$rc"
