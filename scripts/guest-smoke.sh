#!/usr/bin/env bash
# Smoke test of a colo Linux guest under QEMU with TCG (no KVM needed): builds colo-guest-init
# (static, musl) and packs it as /init into an initramfs with busybox-static, boots Debian's
# cloud kernel on QEMU's microvm machine with one virtio-console port on a Unix socket, and
# runs the host side (guest-agent/examples/guest_smoke.rs) against it: the job
# `/bin/sh -c 'echo hi; exit 7'` must print "hi" on stdout and exit with 7, and the guest must
# power itself off. Prints sizes and times; exits 0 on success.
#
#   scripts/guest-smoke.sh [--kernel VMLINUZ --modules DIR] [--timeout SECS] [--acpi]
#
# The kernel: the newest one scripts/tcg-host.sh has cached under
# ${COLO_TCG_CACHE:-/var/cache/colo/tcg}/<package>/ (vmlinuz and modules/<version>/), or
# --kernel/--modules. Without QEMU or a kernel it says SKIPPED and exits 0 (fails under
# COLO_REQUIRE_KVM=1). The drivers the guest needs (virtio-mmio, virtio-console) are loaded by
# colo-guest-init from the list /etc/colo/modules when the kernel has them as modules.
# By default the machine runs without ACPI, so QEMU names the virtio-mmio devices on the kernel
# command line (as colo-vmm does); --acpi describes them in ACPI tables instead.
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
acpi=off
while (($#)); do
  case $1 in
    --kernel) kernel=$2; shift 2 ;;
    --modules) modules=$2; shift 2 ;;
    --timeout) timeout=$2; shift 2 ;;
    --acpi) acpi=on; shift ;;
    *) die "unknown option $1 (usage: guest-smoke.sh [--kernel VMLINUZ --modules DIR] [--timeout SECS] [--acpi])" ;;
  esac
done
cd "$(dirname "$0")/.."

command -v qemu-system-x86_64 >/dev/null || skip "qemu-system-x86_64 is missing (apt-get install qemu-system-x86)"
for tool in cpio busybox file; do
  command -v "$tool" >/dev/null || die "$tool is missing; run scripts/install-deps.sh"
done
busybox=$(command -v busybox)
file -L "$busybox" | grep -q 'statically linked' || die "$busybox is not static; install busybox-static"

if [ -z "$kernel" ]; then
  cache=${COLO_TCG_CACHE:-/var/cache/colo/tcg}
  kpkg=$(ls -1 "$cache" 2>/dev/null | grep '^linux-image-' | sort -V | tail -1 || true)
  [ -n "$kpkg" ] && [ -f "$cache/$kpkg/vmlinuz" ] ||
    skip "no cached kernel in $cache (scripts/tcg-host.sh fetches Debian's cloud kernel there), and no --kernel"
  kernel=$cache/$kpkg/vmlinuz
  modules=$(ls -d "$cache/$kpkg"/modules/* | head -1)
fi
[ -f "$kernel" ] || die "--kernel $kernel does not exist"

# The guest's modules, dependencies first, from the kernel's modules.dep; none for a kernel that
# has the drivers built in.
WANTED=(virtio_mmio virtio_console)
load_order=()
declare -A seen=()
resolve() { # resolve REL_PATH: appends REL_PATH after its dependencies
  local rel=$1 deps d
  [ -n "${seen[$rel]:-}" ] && return
  seen[$rel]=1
  deps=$(awk -v m="$rel:" '$1 == m { $1 = ""; print; exit }' "$modules/modules.dep")
  local rev=()
  for d in $deps; do rev=("$d" "${rev[@]}"); done
  for d in "${rev[@]}"; do resolve "$d"; done
  load_order+=("$rel")
}
if [ -n "$modules" ]; then
  for m in "${WANTED[@]}"; do
    if grep -q "/$m\.ko" "$modules/modules.builtin" 2>/dev/null; then
      continue
    fi
    rel=$(grep -o "^[^:]*/$m\.ko[^:]*" "$modules/modules.dep" | head -1 || true)
    [ -n "$rel" ] || die "the kernel has $m neither built in nor as a module ($modules)"
    resolve "$rel"
  done
fi

say "building colo-guest-init (x86_64-unknown-linux-musl, release) and the host side"
export CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-1}
cargo build -q --release -p colo-guest-agent --bin colo-guest-init --target x86_64-unknown-linux-musl
cargo build -q -p colo-guest-agent --example guest_smoke
target=${CARGO_TARGET_DIR:-target}
init_bin=$target/x86_64-unknown-linux-musl/release/colo-guest-init
client=$target/debug/examples/guest_smoke
file "$init_bin" | grep -q 'static' || die "$init_bin is not statically linked"

work=$(mktemp -d "${TMPDIR:-/var/tmp}/colo-guest-smoke.XXXXXX")
qemu_pid=""
cleanup() {
  [ -n "$qemu_pid" ] && kill "$qemu_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
root=$work/root
mkdir -p "$root"/{bin,sbin,dev,proc,sys,tmp,etc/colo,lib/modules}
objcopy --strip-all "$init_bin" "$root/init"
cp "$busybox" "$root/bin/busybox"
for app in $("$busybox" --list); do
  [ -e "$root/bin/$app" ] || ln -s busybox "$root/bin/$app"
done
mknod -m 600 "$root/dev/console" c 5 1 2>/dev/null || say "cannot mknod dev/console (not root?): init reopens it from devtmpfs"
for rel in "${load_order[@]}"; do
  base=$(basename "$rel")
  case $base in
    *.ko) cp "$modules/$rel" "$root/lib/modules/$base" ;;
    *.ko.xz) xz -dc "$modules/$rel" >"$root/lib/modules/${base%.xz}"; base=${base%.xz} ;;
    *.ko.zst) zstd -qdc "$modules/$rel" >"$root/lib/modules/${base%.zst}"; base=${base%.zst} ;;
    *) die "unknown module format: $rel" ;;
  esac
  echo "/lib/modules/$base" >>"$root/etc/colo/modules"
done
(cd "$root" && find . | cpio -o -H newc --quiet) >"$work/initrd"
init_size=$(stat -c %s "$root/init")
initrd_size=$(stat -c %s "$work/initrd")
say "colo-guest-init $init_size bytes (stripped, static); initramfs $initrd_size bytes (newc cpio, uncompressed); modules: ${load_order[*]:-none}"

sock=$work/colo.sock
t0=$(date +%s.%N)
timeout -k 10 "$timeout" qemu-system-x86_64 -accel tcg -M "microvm,acpi=$acpi" -m 256 -smp 2 \
  -nographic -no-reboot -kernel "$kernel" -initrd "$work/initrd" \
  -append "console=ttyS0 panic=-1 loglevel=4" \
  -chardev "socket,id=colo,path=$sock,server=on,wait=on" \
  -device virtio-serial-device -device virtconsole,chardev=colo \
  </dev/null >"$work/console" 2>&1 &
qemu_pid=$!
rc=0
"$client" "$sock" "$timeout" || rc=$?
qemu_rc=0
wait "$qemu_pid" || qemu_rc=$?
qemu_pid=""
t1=$(date +%s.%N)
say "QEMU exited with $qemu_rc after $(awk "BEGIN { printf \"%.1f\", $t1 - $t0 }") s (0: the guest powered off)"
if [ "$rc" != 0 ] || [ "$qemu_rc" != 0 ]; then
  say "last console lines:"
  tr -d '\r' <"$work/console" | tail -40 >&2
  exit 1
fi
grep -a 'colo-guest-init' "$work/console" | tr -d '\r' >&2 || true
say "PASS"
