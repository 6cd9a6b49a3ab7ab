#!/usr/bin/env bash
# End-to-end test of the agent's Linux-job path with the guest under QEMU (TCG): builds the guest
# image (scripts/build-guest-image.sh), the test-only colo-vmm-standin (which the agent starts
# where it would start colo-vmm, and which runs the guest in QEMU; docs/vmm.md, "A stand-in for
# colo-vmm under QEMU"), colo-agent and coloctl, then runs the agent's `linux_jobs` test with
#
#   COLO_GUEST_E2E_KERNEL     the kernel to boot
#   COLO_GUEST_E2E_INITRAMFS  the guest image (colo-guest-init as /init, busybox, any modules)
#   COLO_VMM_STANDIN          target/debug/colo-vmm-standin
#
# (absolute paths). The kernel is colo's own, the one colo-vmm boots, when
# scripts/build-guest-kernel.sh has built it (a PVH vmlinux, drivers built in: the stand-in runs
# it without ACPI, the devices on the command line as colo-vmm names them); else, saying so,
# Debian's cloud kernel from scripts/tcg-host.sh (with ACPI and modules); or --kernel (with
# --modules when its drivers are modules). Prints one summary line (PASS or FAIL, wall time) and
# exits non-zero on failure. Without qemu-system-x86_64 or any kernel it says SKIPPED and exits 0
# (fails under COLO_REQUIRE_KVM=1), like scripts/guest-smoke.sh.
#
#   scripts/guest-e2e.sh [--kernel KERNEL [--modules DIR]] [-- TEST_ARGS...]
#
# TEST_ARGS go to the test binary after `--nocapture --test-threads 1` (e.g. a test name).
set -euo pipefail

say() { echo "guest-e2e: $*" >&2; }
die() {
  say "$*"
  exit 1
}
skip() {
  [ "${COLO_REQUIRE_KVM:-}" = 1 ] && die "$* (COLO_REQUIRE_KVM=1 demands this test)"
  echo "*** SKIPPED guest-e2e: $* ***" >&2
  exit 0
}

image_args=()
test_args=()
while (($#)); do
  case $1 in
    --kernel) image_args+=(--kernel "$2"); shift 2 ;;
    --modules) image_args+=(--modules "$2"); shift 2 ;;
    --) shift; test_args=("$@"); break ;;
    *) die "unknown option $1 (usage: guest-e2e.sh [--kernel KERNEL [--modules DIR]] [-- TEST_ARGS...])" ;;
  esac
done
cd "$(dirname "$0")/.."
t0=$(date +%s.%N)

command -v qemu-system-x86_64 >/dev/null || skip "qemu-system-x86_64 is missing (apt-get install qemu-system-x86)"

if [ ${#image_args[@]} = 0 ]; then
  # Never builds the kernel here (that takes both cores for about 15 minutes).
  if colo_kernel=$(scripts/build-guest-kernel.sh --cached); then
    image_args=(--kernel "$colo_kernel")
  else
    say "colo's guest kernel is not built (scripts/build-guest-kernel.sh builds it): falling back to Debian's cloud kernel"
  fi
fi
image_rc=0
image=$(scripts/build-guest-image.sh "${image_args[@]}") || image_rc=$?
[ "$image_rc" = 3 ] && skip "no cached kernel (scripts/tcg-host.sh fetches Debian's cloud kernel), and no --kernel"
[ "$image_rc" = 0 ] || die "scripts/build-guest-image.sh failed (status $image_rc)"
declare -A img=()
while IFS='=' read -r k v; do img[$k]=$v; done <<<"$image"
say "guest image ${img[INITRAMFS]} (${img[INITRAMFS_BYTES]} bytes), kernel ${img[KERNEL]}"

say "building colo-vmm-standin, colo-agent and coloctl"
export CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-1}
cargo build -q -p colo-testkit --bin colo-vmm-standin -p colo-agent -p coloctl --locked
target=$(realpath "${CARGO_TARGET_DIR:-target}")

export COLO_GUEST_E2E_KERNEL=${img[KERNEL]}
export COLO_GUEST_E2E_INITRAMFS=${img[INITRAMFS]}
export COLO_VMM_STANDIN=$target/debug/colo-vmm-standin
[ -x "$COLO_VMM_STANDIN" ] || die "$COLO_VMM_STANDIN was not built"

rc=0
cargo test -p colo-agent --test linux_jobs --locked -- --nocapture --test-threads 1 "${test_args[@]}" || rc=$?
wall=$(awk "BEGIN { printf \"%.1f\", $(date +%s.%N) - $t0 }")
if [ "$rc" = 0 ]; then
  echo "guest-e2e: PASS in $wall s" >&2
else
  echo "guest-e2e: FAIL (cargo test status $rc) in $wall s" >&2
fi
exit "$rc"
