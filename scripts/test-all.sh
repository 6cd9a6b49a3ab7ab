#!/usr/bin/env bash
# Runs every colo test: unit, integration (real KVM, real cgroups), golden files.
# Needs root for the cgroup and KVM tests; without /dev/kvm those tests say SKIPPED loudly
# (or fail, when COLO_REQUIRE_KVM=1 as in CI).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cargo test --workspace --all-targets --locked
cargo test --workspace --doc --locked
