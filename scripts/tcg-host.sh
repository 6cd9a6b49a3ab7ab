#!/usr/bin/env bash
# A throw-away cgroup v2 test host: boots Debian's cloud kernel under QEMU with TCG (no KVM
# needed) from an initramfs holding busybox-static, runc, the files given with --add (ELF files
# with the shared libraries ldd finds) and a scratch virtio disk; mounts cgroup2 at
# /sys/fs/cgroup with every controller enabled in the root's cgroup.subtree_control, runs
# COMMAND there as root (sh -c, cwd /) and powers off.
#
# With --systemd ROOTFS the guest boots ROOTFS (a directory holding a Debian root file system
# with systemd, e.g. made by debootstrap) from the virtio disk with systemd as PID 1 instead:
# the --add files go into that root, and COMMAND runs in a oneshot unit once the system is up.
# ROOTFS is changed (the unit and the files are written into it): pass a throw-away copy.
#
# Prints COMMAND's output (serial console) on stdout and exits with its status; the harness's
# own lines (boot and run times) go to stderr. 124 when the guest does not finish in time.
# Without qemu-system-x86_64 it says SKIPPED and exits 0, or fails under COLO_REQUIRE_KVM=1.
#
#   scripts/tcg-host.sh [--add PATH[:GUEST_PATH]]... [--timeout SECS] [--mem MIB]
#                       [--systemd ROOTFS] -- COMMAND
#
# The kernel (linux-image-cloud-amd64's versioned package, from apt) is fetched once into
# ${COLO_TCG_CACHE:-/var/cache/colo/tcg}/<version>/. Files keep their host path in the guest
# unless GUEST_PATH is given; ELF files are copied without debug info. The scratch disk is
# /dev/vda (ext4) mounted at /var/tmp, a real block device for io.max.
set -euo pipefail

say() { echo "tcg-host: $*" >&2; }
die() {
  say "$*"
  exit 1
}

adds=()
timeout=600
mem=1024
systemd_root=""
while (($#)); do
  case $1 in
    --add) adds+=("$2"); shift 2 ;;
    --timeout) timeout=$2; shift 2 ;;
    --mem) mem=$2; shift 2 ;;
    --systemd) systemd_root=$2; shift 2 ;;
    --) shift; break ;;
    *) die "unknown option $1 (usage: tcg-host.sh [--add PATH[:GUEST_PATH]]... [--timeout SECS] [--mem MIB] -- COMMAND)" ;;
  esac
done
(($#)) || die "no COMMAND given (usage: tcg-host.sh [--add PATH]... -- COMMAND)"
command=$*

if ! command -v qemu-system-x86_64 >/dev/null; then
  if [ "${COLO_REQUIRE_KVM:-}" = 1 ]; then
    die "qemu-system-x86_64 is missing but COLO_REQUIRE_KVM=1 demands the TCG host; run scripts/install-deps.sh"
  fi
  echo "*** SKIPPED tcg-host: qemu-system-x86_64 is missing (apt-get install qemu-system-x86) ***" >&2
  exit 0
fi
for tool in cpio busybox runc mkfs.ext4 ldd; do
  command -v "$tool" >/dev/null || die "$tool is missing; run scripts/install-deps.sh"
done
busybox=$(command -v busybox)
file -L "$busybox" | grep -q 'statically linked' || die "$busybox is not static; install busybox-static"

# The virtio disk stack, in load order (the cloud kernel builds them as modules).
MODULES=(
  drivers/virtio/virtio_ring.ko
  drivers/virtio/virtio.ko
  drivers/virtio/virtio_pci_legacy_dev.ko
  drivers/virtio/virtio_pci_modern_dev.ko
  drivers/virtio/virtio_pci.ko
  drivers/block/virtio_blk.ko
)

# The kernel: once per package version, unpacked (vmlinuz and lib/modules) into the cache.
cache=${COLO_TCG_CACHE:-/var/cache/colo/tcg}
kpkg=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
if [ -z "$kpkg" ]; then
  # No apt metadata (offline): the newest kernel already cached.
  kpkg=$(ls -1 "$cache" 2>/dev/null | grep '^linux-image-' | sort -V | tail -1 || true)
fi
[ -n "$kpkg" ] || die "cannot name linux-image-cloud-amd64's kernel package: apt-get update, or fill $cache"
kdir=$cache/$kpkg
if [ ! -f "$kdir/vmlinuz" ]; then
  say "fetching $kpkg into $kdir"
  mkdir -p "$cache"
  dl=$(mktemp -d "$cache/.fetch.XXXXXX")
  (cd "$dl" && apt-get download -q "$kpkg" >&2 2>/dev/null) || { rm -rf "$dl"; die "apt-get download $kpkg failed"; }
  dpkg-deb -x "$dl"/*.deb "$dl/x"
  mkdir -p "$dl/k"
  cp "$dl"/x/boot/vmlinuz-* "$dl/k/vmlinuz"
  mv "$dl"/x/lib/modules "$dl/k/modules"
  rm -rf "$kdir"
  mv "$dl/k" "$kdir"
  rm -rf "$dl"
fi
kmods=$(ls -d "$kdir"/modules/*/kernel)

work=$(mktemp -d "${TMPDIR:-/var/tmp}/colo-tcg.XXXXXX")
trap 'rm -rf "$work"' EXIT
initramfs=$work/root
mkdir -p "$initramfs"/{bin,sbin,etc,proc,sys,dev,tmp,run,root,newroot,var/tmp,lib/modules,colo-tcg}
# Where the --add files and COMMAND go: the initramfs, or the systemd root on the disk.
root=$initramfs
if [ -n "$systemd_root" ]; then
  [ -x "$systemd_root/lib/systemd/systemd" ] || die "--systemd $systemd_root: no lib/systemd/systemd there"
  root=$(realpath "$systemd_root")
  mkdir -p "$root/colo-tcg" "$root/etc/systemd/system/default.target.wants"
fi

# Copies one file to GUEST_PATH inside the root; ELF files lose their debug info and bring
# their shared libraries (and the loader) along.
copy_file() {
  local src=$1 dst=$root$2
  mkdir -p "$(dirname "$dst")"
  if file -L "$src" | grep -q ' ELF '; then
    objcopy --strip-debug "$src" "$dst" 2>/dev/null || cp -L "$src" "$dst"
    chmod --reference="$src" "$dst"
    local lib
    for lib in $(ldd "$src" 2>/dev/null | grep -o '/[^ ]*' || true); do
      [ -e "$root$lib" ] || { mkdir -p "$root$(dirname "$lib")"; cp -L "$lib" "$root$lib"; }
    done
  else
    cp -L "$src" "$dst"
  fi
}

add() {
  local src=${1%%:*} dst=${1#*:}
  [ "$dst" != "$1" ] || dst=$src
  [ -e "$src" ] || die "--add $1: $src does not exist"
  src=$(realpath "$src")
  case $dst in /*) ;; *) dst=$(realpath -m "$dst") ;; esac
  if [ -d "$src" ]; then
    local f
    while IFS= read -r f; do copy_file "$f" "$dst${f#"$src"}"; done < <(find "$src" -type f)
  else
    copy_file "$src" "$dst"
  fi
}

cp "$busybox" "$initramfs/bin/busybox"
for m in "${MODULES[@]}"; do cp "$kmods/$m" "$initramfs/lib/modules/"; done
printf '%s\n' "${MODULES[@]##*/}" >"$initramfs/colo-tcg/modules"
if [ -z "$systemd_root" ]; then
  add "$(command -v runc):/usr/sbin/runc"
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$root/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
  printf '127.0.0.1 localhost\n::1 localhost\n' >"$root/etc/hosts"
else
  touch "$initramfs/colo-tcg/systemd"
  # COMMAND in a oneshot unit once the system is up, its output on the serial console, then
  # power off; no login prompt on that console.
  cat >"$root/colo-tcg/run" <<'EOF'
#!/bin/sh
exec >/dev/ttyS0 2>&1
echo "COLO-TCG-BEGIN uptime=$(cut -d' ' -f1 /proc/uptime) controllers=$(tr ' ' , </sys/fs/cgroup/cgroup.subtree_control)"
cd /
sh -c "$(cat /colo-tcg/command)" </dev/null
rc=$?
echo "COLO-TCG-EXIT $rc uptime=$(cut -d' ' -f1 /proc/uptime)"
sync
systemctl poweroff --force --force
EOF
  chmod 755 "$root/colo-tcg/run"
  cat >"$root/etc/systemd/system/colo-tcg.service" <<'EOF'
[Unit]
Description=colo TCG host: the test command
After=multi-user.target
[Service]
Type=oneshot
ExecStart=/colo-tcg/run
EOF
  ln -sf /etc/systemd/system/colo-tcg.service "$root/etc/systemd/system/default.target.wants/"
  ln -sf /lib/systemd/system/multi-user.target "$root/etc/systemd/system/default.target"
  for u in serial-getty@ttyS0.service getty@tty1.service; do
    ln -sf /dev/null "$root/etc/systemd/system/$u"
  done
fi
for a in "${adds[@]}"; do add "$a"; done
printf '%s\n' "$command" >"$root/colo-tcg/command"

cat >"$initramfs/init" <<'EOF'
#!/bin/busybox sh
# Stage 1 (on the initramfs): copy the root into a tmpfs and switch to it, so that runc can
# pivot_root (the initramfs itself cannot be pivoted away from). Stage 2: set up and run.
/bin/busybox --install -s /bin
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root
if [ -f /colo-tcg/systemd ]; then
  # The root file system is on the disk, and systemd is its init.
  mount -t proc proc /proc
  mount -t devtmpfs devtmpfs /dev
  for m in $(cat /colo-tcg/modules); do insmod "/lib/modules/$m"; done
  for i in $(seq 50); do [ -b /dev/vda ] && break; sleep 0.2; done
  mount -t ext4 /dev/vda /newroot || { echo "tcg-host: cannot mount /dev/vda"; poweroff -f; }
  umount /dev /proc
  exec switch_root /newroot /lib/systemd/systemd
fi
if [ "$1" != stage2 ]; then
  mount -t tmpfs -o mode=0755 tmpfs /newroot
  for d in /*; do
    case $d in /newroot|/proc|/sys|/dev) mkdir -p "/newroot$d" ;; *) cp -a "$d" /newroot/ ;; esac
  done
  exec switch_root /newroot /init stage2
fi
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
mount -t tmpfs -o mode=1777 tmpfs /tmp
mount -t tmpfs -o mode=0755 tmpfs /run
mount -t cgroup2 -o nsdelegate cgroup2 /sys/fs/cgroup
for c in $(cat /sys/fs/cgroup/cgroup.controllers); do
  echo "+$c" >/sys/fs/cgroup/cgroup.subtree_control
done
for m in $(cat /colo-tcg/modules); do insmod "/lib/modules/$m"; done
for i in 1 2 3 4 5 6 7 8 9 10; do [ -b /dev/vda ] && break; sleep 0.2; done
[ -b /dev/vda ] && mount -t ext4 /dev/vda /var/tmp
chmod 1777 /var/tmp
ip link set lo up
hostname colo-tcg
echo "COLO-TCG-BEGIN uptime=$(cut -d' ' -f1 /proc/uptime) controllers=$(cat /sys/fs/cgroup/cgroup.subtree_control | tr ' ' ,)"
cd /
sh -c "$(cat /colo-tcg/command)" </dev/null 2>&1
rc=$?
echo "COLO-TCG-EXIT $rc uptime=$(cut -d' ' -f1 /proc/uptime)"
umount /var/tmp 2>/dev/null
poweroff -f
EOF
chmod 755 "$initramfs/init"

(cd "$initramfs" && find . | cpio -o -H newc --quiet) >"$work/initrd"
if [ -n "$systemd_root" ]; then
  # The root and 1 GiB to spare (the agent's state, images, job files).
  truncate -s "$(($(du -sm "$root" | cut -f1) + 1024))M" "$work/disk"
  mkfs.ext4 -q -F -d "$root" "$work/disk"
  append="console=ttyS0 quiet loglevel=3 panic=-1 systemd.show_status=0 systemd.unified_cgroup_hierarchy=1"
else
  truncate -s 256M "$work/disk"
  mkfs.ext4 -q -F "$work/disk"
  append="console=ttyS0 quiet loglevel=3 panic=-1"
fi
say "initramfs $(du -m "$work/initrd" | cut -f1) MiB; booting $kpkg (TCG, ${mem} MiB, 2 vCPUs, ${timeout}s limit)"

t0=$(date +%s.%N)
rc=0
timeout -k 10 "$timeout" qemu-system-x86_64 -accel tcg -M q35 -cpu max -m "$mem" -smp 2 -nographic \
  -nic none -no-reboot -kernel "$kdir/vmlinuz" -initrd "$work/initrd" \
  -append "$append rdinit=/init" \
  -drive "file=$work/disk,format=raw,if=virtio,cache=unsafe" \
  </dev/null >"$work/console" 2>&1 || rc=$?
t1=$(date +%s.%N)
# Firmware and kernel escape sequences may share a line with a marker: cut them off.
tr -d '\r' <"$work/console" | sed 's/.*\(COLO-TCG-\(BEGIN\|EXIT\) \)/\1/' >"$work/console.txt"
if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
  sed -n '/^COLO-TCG-BEGIN/,$p' "$work/console.txt" | grep -v '^COLO-TCG-BEGIN\|^qemu-system-x86_64: terminating' || true
  say "the guest did not finish within ${timeout}s; last console lines:"
  tail -20 "$work/console.txt" >&2
  exit 124
fi
begin=$(grep -m1 '^COLO-TCG-BEGIN' "$work/console.txt" || true)
end=$(grep -m1 '^COLO-TCG-EXIT' "$work/console.txt" || true)
if [ -z "$begin" ] || [ -z "$end" ]; then
  say "the guest stopped (qemu status $rc) before COMMAND finished; console:"
  tail -40 "$work/console.txt" >&2
  exit 1
fi
sed -n '/^COLO-TCG-BEGIN/,/^COLO-TCG-EXIT/p' "$work/console.txt" | sed '1d;$d'
status=$(echo "$end" | awk '{print $2}')
boot=${begin#*uptime=}
boot=${boot%% *}
done_at=${end#*uptime=}
say "$(echo "$begin" | sed 's/^COLO-TCG-BEGIN //'); boot ${boot}s (guest uptime when COMMAND started), COMMAND $(echo "$done_at - $boot" | bc)s, wall $(echo "$t1 - $t0" | bc)s, exit $status"
exit "$status"
