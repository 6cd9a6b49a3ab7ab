#!/usr/bin/env bash
# Smoke test of a colo Linux guest under QEMU with TCG (no KVM needed): builds the guest image
# with scripts/build-guest-image.sh (colo-guest-init, static, musl, as /init in an initramfs with
# busybox-static and the kernel's modules), boots Debian's cloud kernel on QEMU's microvm machine with one virtio-console port on a Unix socket, and
# runs the host side (guest-agent/examples/guest_smoke.rs) against it, twice: the job
# `/bin/sh -c 'echo hi; exit 7'` from the initramfs, then a job in a root file system on a
# read-only virtio disk (ext4 under the guest's overlay) that checks its marker file, writes
# /tmp and its host name. Each must print "hi" on stdout and exit with 7, and the guest must
# end itself (QEMU exits 0). A third job names a command that does not exist: the guest must
# report that as Error, then end. Prints sizes and times; exits 0 on success.
#
#   scripts/guest-smoke.sh [--kernel KERNEL [--modules DIR]] [--timeout SECS] [--no-acpi] [--keep]
#
# The kernel: the newest one scripts/tcg-host.sh has cached under
# ${COLO_TCG_CACHE:-/var/cache/colo/tcg}/<package>/ (vmlinuz and modules/<version>/), or
# --kernel/--modules. Without QEMU or a kernel it says SKIPPED and exits 0 (fails under
# COLO_REQUIRE_KVM=1). The drivers the guest needs (virtio-mmio, virtio-console, virtio-blk,
# overlay) are loaded by colo-guest-init from the list /etc/colo/modules when the kernel has them
# as modules. The image is cached (see build-guest-image.sh).
# The machine describes its virtio-mmio devices in ACPI tables (Debian's cloud kernel lacks
# CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES); --no-acpi names them on the kernel command line instead
# (microvm's auto-kernel-cmdline), as colo-vmm does, for a kernel built that way such as colo's
# own (scripts/build-guest-kernel.sh; no --modules). Without ACPI the guest ends with a restart
# (-no-reboot makes that QEMU's exit), through a triple fault (reboot=t; microvm has no i8042).
# --keep leaves the console logs and the root disk in the work folder it names.
set -euo pipefail

say() { echo "guest-smoke: $*" >&2; }
die() {
  say "$*"
  exit 1
}
skip() {
  [ "${COLO_REQUIRE_KVM:-}" = 1 ] && die "$* (COLO_REQUIRE_KVM=1 demands this test)"
  echo "*** SKIPPED guest-smoke: $* ***" >&2
  exit 0
}

kernel=""
modules=""
timeout=600
acpi=on
keep=""
while (($#)); do
  case $1 in
    --kernel) kernel=$2; shift 2 ;;
    --modules) modules=$2; shift 2 ;;
    --timeout) timeout=$2; shift 2 ;;
    --no-acpi) acpi=off; shift ;;
    --keep) keep=1; shift ;;
    *) die "unknown option $1 (usage: guest-smoke.sh [--kernel KERNEL [--modules DIR]] [--timeout SECS] [--no-acpi] [--keep])" ;;
  esac
done
cd "$(dirname "$0")/.."

command -v qemu-system-x86_64 >/dev/null || skip "qemu-system-x86_64 is missing (apt-get install qemu-system-x86)"
command -v busybox >/dev/null || die "busybox is missing; run scripts/install-deps.sh"

# The guest image: colo-guest-init as /init, busybox and the kernel's modules
# (scripts/build-guest-image.sh; status 3 when no kernel is cached).
image_args=()
[ -n "$kernel" ] && image_args+=(--kernel "$kernel")
[ -n "$modules" ] && image_args+=(--modules "$modules")
image_rc=0
image=$(scripts/build-guest-image.sh "${image_args[@]}") || image_rc=$?
[ "$image_rc" = 3 ] && skip "no cached kernel (scripts/tcg-host.sh fetches Debian's cloud kernel), and no --kernel"
[ "$image_rc" = 0 ] || die "scripts/build-guest-image.sh failed (status $image_rc)"
declare -A img=()
while IFS='=' read -r k v; do img[$k]=$v; done <<<"$image"
kernel=${img[KERNEL]}
initrd=${img[INITRAMFS]}
say "colo-guest-init ${img[INIT_BYTES]} bytes (stripped, static); initramfs ${img[INITRAMFS_BYTES]} bytes (newc cpio, uncompressed); modules: ${img[MODULES]:-none}"

say "building the host side"
export CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-1}
cargo build -q -p colo-guest-agent --example guest_smoke
client=${CARGO_TARGET_DIR:-target}/debug/examples/guest_smoke

work=$(mktemp -d "${TMPDIR:-/var/tmp}/colo-guest-smoke.XXXXXX")
qemu_pid=""
cleanup() {
  [ -n "$qemu_pid" ] && kill "$qemu_pid" 2>/dev/null || true
  if [ -n "$keep" ]; then say "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

# Under TCG the guest's TSC is the host's. Give the kernel its rate: without a reference
# (microvm has no HPET or ACPI PM timer) it marks the TSC unstable and calibrates against timer
# ticks, which stalled the boot on a loaded host; no_timer_check skips the IO-APIC timer test.
tsc_khz=$(awk -F: '/^cpu MHz/ { printf "%d", $2 * 1000; exit }' /proc/cpuinfo)
append="console=ttyS0 panic=-1 no_timer_check${tsc_khz:+ tsc_early_khz=$tsc_khz}"
[ "$acpi" = on ] || append+=" reboot=t"
# The job's root for the second run: busybox and a marker on a read-only ext4 disk.
disk_root=$work/disk-root
mkdir -p "$disk_root"/{bin,dev,proc,sys,tmp}
busybox=$(command -v busybox)
cp "$busybox" "$disk_root/bin/busybox"
for app in $("$busybox" --list); do
  [ -e "$disk_root/bin/$app" ] || ln -s busybox "$disk_root/bin/$app"
done
echo colo >"$disk_root/colo-root-marker"
truncate -s 16M "$work/root.img"
mkfs.ext4 -q -F -d "$disk_root" "$work/root.img"

# boot NAME CLIENT_ARGS... -- QEMU_ARGS...: boots the guest, runs the host side against it.
boot() {
  local name=$1 client_args=() qemu_args=() rc=0 qemu_rc=0 t0 t1 sock
  shift
  while (($#)) && [ "$1" != -- ]; do client_args+=("$1"); shift; done
  shift
  qemu_args=("$@")
  sock=$work/$name.sock
  say "$name: booting"
  t0=$(date +%s.%N)
  timeout -k 10 "$timeout" qemu-system-x86_64 -accel tcg -M "microvm,acpi=$acpi,pit=on,pic=on,rtc=on" \
    -m 256 -smp 2 -nographic -no-reboot -kernel "$kernel" -initrd "$initrd" -append "$append" \
    -chardev "socket,id=colo,path=$sock,server=on,wait=on" \
    -device virtio-serial-device -device virtconsole,chardev=colo "${qemu_args[@]}" \
    </dev/null >"$work/$name.console" 2>&1 &
  qemu_pid=$!
  "$client" "$sock" "$timeout" "${client_args[@]}" | sed "s/^guest-smoke:/guest-smoke: $name:/" >&2 ||
    rc=${PIPESTATUS[0]}
  wait "$qemu_pid" || qemu_rc=$?
  qemu_pid=""
  t1=$(date +%s.%N)
  say "$name: QEMU exited with $qemu_rc after $(awk "BEGIN { printf \"%.1f\", $t1 - $t0 }") s (0: the guest powered off, or restarted without ACPI)"
  if [ "$rc" != 0 ] || [ "$qemu_rc" != 0 ]; then
    say "$name: last console lines:"
    tr -d '\r' <"$work/$name.console" | tail -40 >&2
    exit 1
  fi
  grep -a 'colo-guest-init' "$work/$name.console" | tr -d '\r' | sed "s/^/  /" >&2 || true
}

boot initramfs --
boot rootdisk --root /dev/vda -- \
  -drive "file=$work/root.img,if=none,id=root,format=raw,readonly=on" -device virtio-blk-device,drive=root
boot failure --missing-command --
say "PASS"
