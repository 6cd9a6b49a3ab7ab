#!/usr/bin/env bash
# Builds colo's Linux guest image: an initramfs whose /init is colo-guest-init (crate
# colo-guest-agent, built static for x86_64-unknown-linux-musl, stripped), with busybox-static
# (its applets as links in /bin, for the jobs' convenience: /bin/sh) and the kernel modules the
# guest needs when the kernel has its drivers as modules (virtio_mmio, virtio_console,
# virtio_blk, overlay, each after its dependencies, listed in load order in /etc/colo/modules).
# Job root file systems come from block images, not from this initramfs.
#
#   scripts/build-guest-image.sh [--kernel KERNEL [--modules DIR]]
#
# The kernel: --kernel, with --modules when its drivers are modules (colo's own kernel from
# scripts/build-guest-kernel.sh has them built in and needs none: the image then has no
# modules); else the newest one scripts/tcg-host.sh has cached under
# ${COLO_TCG_CACHE:-/var/cache/colo/tcg}/<package>/ (vmlinuz, modules/<version>/: Debian's cloud
# kernel).
#
# Prints KEY=VALUE lines on stdout (absolute paths; nothing else goes to stdout):
#   KERNEL=<the kernel to boot>          INITRAMFS=<the newc cpio, uncompressed>
#   INIT_BYTES=<stripped colo-guest-init> INITRAMFS_BYTES=<the initramfs>
#   MODULES=<modules packed, comma-separated, load order; empty when none>
# The image is cached under ${COLO_GUEST_IMAGE_DIR:-target/guest-image}/<key>/ (the key hashes
# colo-guest-init, busybox, the kernel's path and modules and this script), so a second run only
# rebuilds colo-guest-init (cargo: a no-op when unchanged) and hashes. Older keys are removed.
# <key>/kernel names the kernel the image was built for (testkit's stand-in test pairs them).
# Exit status: 0 built (or cached); 3 no kernel found (callers say SKIPPED); 1 anything else.
set -euo pipefail

say() { echo "build-guest-image: $*" >&2; }
die() {
  say "$*"
  exit 1
}

kernel=""
modules=""
while (($#)); do
  case $1 in
    --kernel) kernel=$2; shift 2 ;;
    --modules) modules=$2; shift 2 ;;
    *) die "unknown option $1 (usage: build-guest-image.sh [--kernel KERNEL [--modules DIR]])" ;;
  esac
done
cd "$(dirname "$0")/.."

for tool in cpio busybox file objcopy sha256sum; do
  command -v "$tool" >/dev/null || die "$tool is missing; run scripts/install-deps.sh"
done
busybox=$(command -v busybox)
file -L "$busybox" | grep -q 'statically linked' || die "$busybox is not static; install busybox-static"

if [ -z "$kernel" ]; then
  cache=${COLO_TCG_CACHE:-/var/cache/colo/tcg}
  kpkg=$(ls -1 "$cache" 2>/dev/null | grep '^linux-image-' | sort -V | tail -1 || true)
  if [ -z "$kpkg" ] || [ ! -f "$cache/$kpkg/vmlinuz" ]; then
    say "no cached kernel in $cache (scripts/tcg-host.sh fetches Debian's cloud kernel there), and no --kernel"
    exit 3
  fi
  kernel=$cache/$kpkg/vmlinuz
  modules=$(ls -d "$cache/$kpkg"/modules/* | head -1)
fi
[ -f "$kernel" ] || die "--kernel $kernel does not exist"
[ -z "$modules" ] || [ -d "$modules/kernel" ] || die "--modules $modules has no kernel/ folder"
kernel=$(realpath "$kernel")

say "building colo-guest-init (x86_64-unknown-linux-musl, release)"
export CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-1}
cargo build -q --locked --release -p colo-guest-agent --bin colo-guest-init --target x86_64-unknown-linux-musl
target=${CARGO_TARGET_DIR:-target}
init_bin=$target/x86_64-unknown-linux-musl/release/colo-guest-init
file "$init_bin" | grep -q 'static' || die "$init_bin is not statically linked"

out_root=${COLO_GUEST_IMAGE_DIR:-target/guest-image}
mkdir -p "$out_root"
out_root=$(realpath "$out_root")
key=$( {
  sha256sum "$init_bin" "$busybox" "$0"
  echo "kernel=$kernel"
  echo "modules=$modules"
  [ -z "$modules" ] || find "$modules/kernel" -name '*.ko*' -printf '%P %s\n' | sort
} | sha256sum | cut -c1-16)
out=$out_root/$key

if [ ! -f "$out/initramfs.cpio" ] || [ ! -f "$out/image.env" ] || [ ! -f "$out/kernel" ]; then
  work=$(mktemp -d "$out_root/.build.XXXXXX")
  trap 'rm -rf "$work"' EXIT
  root=$work/root
  mkdir -p "$root"/{bin,sbin,dev,proc,sys,tmp,etc/colo,lib/modules}
  objcopy --strip-all "$init_bin" "$root/init"
  cp "$busybox" "$root/bin/busybox"
  for app in $("$busybox" --list); do
    [ -e "$root/bin/$app" ] || ln -s busybox "$root/bin/$app"
  done
  mknod -m 600 "$root/dev/console" c 5 1 2>/dev/null ||
    say "cannot mknod dev/console (not root?): init reopens it from devtmpfs"
  # The guest's modules, each after its dependencies (read from the module's own .modinfo, as
  # the package has no modules.dep); none when the kernel has the drivers built in.
  WANTED=(virtio_mmio virtio_console virtio_blk overlay)
  declare -A seen=()
  loaded=()
  module_file() { # module_file NAME: its file under $modules (names may use - or _)
    find "$modules/kernel" \( -name "$1.ko*" -o -name "${1//_/-}.ko*" \) -print -quit
  }
  resolve() { # resolve NAME: puts NAME and what it depends on into the initramfs, in load order
    local name=$1 src dst d
    [ -n "${seen[$name]:-}" ] && return
    seen[$name]=1
    grep -qE "/(${name}|${name//_/-})\.ko" "$modules/modules.builtin" 2>/dev/null && return
    src=$(module_file "$name")
    [ -n "$src" ] || die "the kernel has $name neither built in nor as a module (under $modules)"
    dst=$root/lib/modules/$name.ko
    case $src in
      *.ko) cp "$src" "$dst" ;;
      *.ko.xz) xz -dc "$src" >"$dst" ;;
      *.ko.zst) zstd -qdc "$src" >"$dst" ;;
      *) die "unknown module format: $src" ;;
    esac
    for d in $(objcopy -O binary -j .modinfo "$dst" /dev/stdout | tr '\0' '\n' | sed -n 's/^depends=//p' | tr ',' ' '); do
      resolve "$d"
    done
    echo "/lib/modules/$name.ko" >>"$root/etc/colo/modules"
    loaded+=("$name")
  }
  if [ -n "$modules" ]; then
    for m in "${WANTED[@]}"; do resolve "$m"; done
  fi
  (cd "$root" && find . | cpio -o -H newc --quiet) >"$work/initramfs.cpio"
  {
    echo "INIT_BYTES=$(stat -c %s "$root/init")"
    echo "INITRAMFS_BYTES=$(stat -c %s "$work/initramfs.cpio")"
    echo "MODULES=$(IFS=,; echo "${loaded[*]}")"
  } >"$work/image.env"
  echo "$kernel" >"$work/kernel"
  rm -rf "$out" "$root"
  mv "$work" "$out"
  trap - EXIT
  # Older images (other keys) are of no further use.
  find "$out_root" -mindepth 1 -maxdepth 1 -type d ! -name "$key" ! -name ".*" -exec rm -rf {} +
  say "built $out"
else
  say "cached $out"
fi

echo "KERNEL=$kernel"
echo "INITRAMFS=$out/initramfs.cpio"
cat "$out/image.env"
