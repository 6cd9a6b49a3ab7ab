#!/usr/bin/env bash
# The systemd check: the shipped colo-agent unit under systemd as PID 1 on cgroup v2, in the TCG
# host (scripts/tcg-host.sh --systemd). The guest boots a Debian 12 root file system made once
# with debootstrap from the Debian archive (cached under ${COLO_TCG_CACHE:-/var/cache/colo/tcg},
# outside the repository) with this tree's colo-agent, colo-monitor, coloctl, unit files and
# scripts/tcg-systemd-guest.sh, which drives the unit there: start (Type=notify), watchdog,
# container jobs in the delegated subtree, `systemctl restart` with re-adoption, stop.
#
#   scripts/tcg-systemd.sh            build (debug), boot, check; exit status of the check
#   TCG_SYSTEMD_TIMEOUT               the guest's limit in seconds (default 300)
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "tcg-systemd: $*" >&2; }

if ! command -v qemu-system-x86_64 >/dev/null; then
  exec scripts/tcg-host.sh -- true
fi
command -v debootstrap >/dev/null || { say "debootstrap is missing; run scripts/install-deps.sh"; exit 1; }

# The Debian root: minbase plus systemd and what the check needs, once per package list.
PACKAGES=systemd,systemd-sysv,dbus,runc,busybox-static,jq,procps
SUITE=bookworm
MIRROR=${COLO_DEBIAN_MIRROR:-http://deb.debian.org/debian}
cache=${COLO_TCG_CACHE:-/var/cache/colo/tcg}
key=$(echo "$SUITE $PACKAGES" | sha256sum | cut -c1-12)
tarball=$cache/debian-$SUITE-systemd-$key.tar
if [ ! -f "$tarball" ]; then
  say "making the Debian $SUITE root with debootstrap (once; cached as $tarball)"
  mkdir -p "$cache"
  tmp=$(mktemp -d "$cache/.debootstrap.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  t0=$(date +%s)
  debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$tmp/root" "$MIRROR" >"$tmp/log" 2>&1 ||
    { tail -20 "$tmp/log" >&2; say "debootstrap failed (log above)"; exit 1; }
  rm -rf "$tmp/root/var/cache/apt/archives/"*.deb "$tmp/root/var/lib/apt/lists/"*
  tar -C "$tmp/root" -cf "$tmp/root.tar" .
  mv "$tmp/root.tar" "$tarball"
  rm -rf "$tmp"
  trap - EXIT
  say "debootstrap took $(($(date +%s) - t0)) s"
fi

cargo build -p colo-agent -p coloctl --bins --locked >&2
bin=target/debug

work=$(mktemp -d "${TMPDIR:-/var/tmp}/colo-tcg-systemd.XXXXXX")
trap 'rm -rf "$work"' EXIT
root=$work/root
mkdir -p "$root"
tar -C "$root" -xf "$tarball"

# Installed as docs/operations.md says: binaries in /usr/local/bin, the unit and its slice in
# /etc/systemd/system, enabled; the v2 drop-in only where systemd has DelegateSubgroup= (254).
conf=$root/etc/colo
mkdir -p "$conf" "$root/srv/colo/images" "$root/etc/systemd/system/multi-user.target.wants"
cp packaging/colo-agent.service packaging/colo.slice "$root/etc/systemd/system/"
ln -sf /etc/systemd/system/colo-agent.service "$root/etc/systemd/system/multi-user.target.wants/"
cp config/examples/policy.yaml "$conf/policy.yaml"
cat >"$conf/agent.yaml" <<'EOF'
node:
  name: tcg-systemd
offline:
  image_roots:
    - path: /srv/colo/images
  # Emulated CPUs: runc takes seconds to create a container here.
  start_timeout: 120s
  stop_grace: 3s
policy:
  paths: [/etc/colo/policy.yaml]
EOF

adds=()
for b in colo-agent colo-monitor coloctl; do adds+=(--add "$bin/$b:/usr/local/bin/$b"); done
adds+=(--add scripts/tcg-systemd-guest.sh:/usr/local/sbin/colo-systemd-check)
adds+=(--add /usr/share/gocode/src/github.com/containers/common/pkg/seccomp/seccomp.json)
adds+=(--add packaging/colo-agent.service.d/cgroup-v2.conf:/usr/local/share/colo/cgroup-v2.conf)

scripts/tcg-host.sh --systemd "$root" --mem 1536 --timeout "${TCG_SYSTEMD_TIMEOUT:-300}" "${adds[@]}" \
  -- /usr/local/sbin/colo-systemd-check
