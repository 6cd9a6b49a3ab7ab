#!/usr/bin/env bash
# The systemd check: the shipped colo-agent unit under systemd as PID 1 on cgroup v2, in the TCG
# host (scripts/tcg-host.sh --systemd). The guest boots a Debian 12 root file system made once
# with debootstrap from the Debian archive (cached under ${COLO_TCG_CACHE:-/var/cache/colo/tcg},
# outside the repository) with this tree's colo-agent, colo-monitor, coloctl, unit files and
# scripts/tcg-systemd-guest.sh, which drives the unit there: start (Type=notify), watchdog,
# container jobs in the delegated subtree, `systemctl restart`, stop.
#
# Two roots, one boot each: Debian 12's own systemd (252: no DelegateSubgroup=, so the check
# tests the documented fallback, a restart on an idle node) and bookworm-backports' systemd
# (254 or later: the v2 drop-in is installed, and the check restarts with jobs running and
# tests their re-adoption).
#
#   scripts/tcg-systemd.sh            build (debug), boot each root, check; status 1 if any failed
#   TCG_SYSTEMD_TIMEOUT               each guest's limit in seconds (default 300)
#   TCG_SYSTEMD_ROOTS                 which roots (default "bookworm bookworm-backports")
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "tcg-systemd: $*" >&2; }

if ! command -v qemu-system-x86_64 >/dev/null; then
  exec scripts/tcg-host.sh -- true
fi
command -v debootstrap >/dev/null || { say "debootstrap is missing; run scripts/install-deps.sh"; exit 1; }

# The Debian roots: minbase plus systemd and what the check needs, once per package list.
PACKAGES=systemd,systemd-sysv,dbus,runc,busybox-static,jq,procps
SUITE=bookworm
MIRROR=${COLO_DEBIAN_MIRROR:-http://deb.debian.org/debian}
cache=${COLO_TCG_CACHE:-/var/cache/colo/tcg}

# root_tarball NAME: the cached tarball of root NAME (`bookworm`, or `bookworm-backports`: the
# same with systemd from bookworm-backports), made on first use; its path on stdout.
root_tarball() {
  local name=$1 key tarball tmp t0
  key=$(echo "$SUITE $PACKAGES" | sha256sum | cut -c1-12)
  case $name in
    bookworm) tarball=$cache/debian-$SUITE-systemd-$key.tar ;;
    bookworm-backports) tarball=$cache/debian-$SUITE-backports-systemd-$key.tar ;;
    *) say "unknown root '$name' (bookworm or bookworm-backports)"; return 1 ;;
  esac
  if [ ! -f "$tarball" ]; then
    say "making the Debian root '$name' with debootstrap (once; cached as $tarball)"
    mkdir -p "$cache"
    tmp=$(mktemp -d "$cache/.debootstrap.XXXXXX")
    t0=$(date +%s)
    if ! debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$tmp/root" "$MIRROR" >"$tmp/log" 2>&1; then
      tail -20 "$tmp/log" >&2
      rm -rf "$tmp"
      say "debootstrap failed (log above)"
      return 1
    fi
    if [ "$name" = bookworm-backports ]; then
      echo "deb $MIRROR $SUITE-backports main" >"$tmp/root/etc/apt/sources.list.d/backports.list"
      mount -t proc proc "$tmp/root/proc"
      local ok=0
      { chroot "$tmp/root" apt-get update &&
        DEBIAN_FRONTEND=noninteractive chroot "$tmp/root" apt-get install -y --no-install-recommends \
          -t "$SUITE-backports" systemd systemd-sysv; } >>"$tmp/log" 2>&1 || ok=$?
      umount "$tmp/root/proc"
      if [ $ok != 0 ]; then
        tail -20 "$tmp/log" >&2
        rm -rf "$tmp"
        say "installing systemd from $SUITE-backports failed (log above)"
        return 1
      fi
    fi
    rm -rf "$tmp/root/var/cache/apt/archives/"*.deb "$tmp/root/var/lib/apt/lists/"*
    tar -C "$tmp/root" -cf "$tmp/root.tar" .
    mv "$tmp/root.tar" "$tarball"
    rm -rf "$tmp"
    say "root '$name' made in $(($(date +%s) - t0)) s"
  fi
  echo "$tarball"
}

roots=${TCG_SYSTEMD_ROOTS:-"bookworm bookworm-backports"}
declare -A tarballs
for name in $roots; do
  tarballs[$name]=$(root_tarball "$name")
done

cargo build -p colo-agent -p coloctl --bins --locked >&2
bin=target/debug

work=$(mktemp -d "${TMPDIR:-/var/tmp}/colo-tcg-systemd.XXXXXX")
trap 'rm -rf "$work"' EXIT

adds=()
for b in colo-agent colo-monitor coloctl; do adds+=(--add "$bin/$b:/usr/local/bin/$b"); done
adds+=(--add scripts/tcg-systemd-guest.sh:/usr/local/sbin/colo-systemd-check)
adds+=(--add /usr/share/gocode/src/github.com/containers/common/pkg/seccomp/seccomp.json)

rc=0
summary=()
for name in $roots; do
  root=$work/$name
  mkdir -p "$root"
  tar -C "$root" -xf "${tarballs[$name]}"
  # Installed as docs/operations.md says: binaries in /usr/local/bin, the unit and its slice in
  # /etc/systemd/system, enabled; the v2 drop-in only where systemd has DelegateSubgroup= (254).
  conf=$root/etc/colo
  mkdir -p "$conf" "$root/srv/colo/images" "$root/etc/systemd/system/multi-user.target.wants"
  cp packaging/colo-agent.service packaging/colo.slice "$root/etc/systemd/system/"
  if [ "$name" = bookworm-backports ]; then
    mkdir -p "$root/etc/systemd/system/colo-agent.service.d"
    cp packaging/colo-agent.service.d/cgroup-v2.conf "$root/etc/systemd/system/colo-agent.service.d/"
  fi
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
  say "root '$name': booting"
  t0=$(date +%s)
  status=0
  scripts/tcg-host.sh --systemd "$root" --mem 1536 --timeout "${TCG_SYSTEMD_TIMEOUT:-300}" "${adds[@]}" \
    -- /usr/local/sbin/colo-systemd-check || status=$?
  rm -rf "$root"
  summary+=("root '$name': exit $status, $(($(date +%s) - t0)) s")
  [ $status = 0 ] || rc=1
done
for line in "${summary[@]}"; do say "$line"; done
exit $rc
