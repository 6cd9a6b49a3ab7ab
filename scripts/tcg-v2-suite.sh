#!/usr/bin/env bash
# The cgroup v2 suite: colo-agent's tests that touch real cgroups, run as root in the TCG host
# (scripts/tcg-host.sh), whose /sys/fs/cgroup is a real cgroup2 mount with every controller
# delegated. This machine may be cgroup v1; the agent detects v2 in the guest by itself.
#
# Built here (debug profile): colo-agent, colo-monitor and coloctl (the tests start them), the
# agent's unit tests (the cgroup layer and the QoS loop) and its `containers` and `qos_loop`
# integration tests. There is no KVM inside TCG: the tests that need it skip loudly.
#   TCG_SUITE_TIMEOUT  the guest's limit in seconds (default 600)
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v qemu-system-x86_64 >/dev/null; then
  # tcg-host.sh says SKIPPED (or fails under COLO_REQUIRE_KVM=1); no need to build first.
  exec scripts/tcg-host.sh -- true
fi

cargo build -p colo-agent -p coloctl --bins --locked >&2
json=$(cargo test -p colo-agent --no-run --locked --lib --test containers --test qos_loop \
  --message-format=json 2>/dev/null)
exe() {
  echo "$json" | jq -r --arg kind "$1" --arg name "$2" \
    'select(.reason == "compiler-artifact" and .profile.test and .executable != null
       and .target.kind[0] == $kind and .target.name == $name) | .executable' | tail -1
}
lib=$(exe lib colo_agent)
containers=$(exe test containers)
qos=$(exe test qos_loop)
for e in "$lib" "$containers" "$qos"; do
  [ -x "$e" ] || { echo "tcg-v2-suite: a test binary was not built ($e)" >&2; exit 1; }
done
bin=$(dirname "$(dirname "$lib")")
adds=()
for b in colo-agent colo-monitor coloctl; do adds+=(--add "$bin/$b"); done
for e in "$lib" "$containers" "$qos"; do adds+=(--add "$e"); done
# The default seccomp profile of container jobs (containers-common's).
adds+=(--add /usr/share/gocode/src/github.com/containers/common/pkg/seccomp/seccomp.json)

# In the guest: each binary one test at a time (they share the host lock anyway; --nocapture
# shows the loud skips of the tests that need KVM), its output
# and a summary line with its time; the status is 1 if any binary failed.
read -r -d '' guest <<'EOF' || true
rc=0
run() {
  name=$1
  shift
  t0=$(cut -d' ' -f1 /proc/uptime)
  # Streamed (a guest that runs out of time still shows how far it got), status kept.
  { "$@" --test-threads=1 --nocapture; echo $? >/tmp/status; } 2>&1 | tee /tmp/out
  [ "$(cat /tmp/status)" = 0 ] || rc=1
  t1=$(cut -d' ' -f1 /proc/uptime)
  echo "TCG-SUITE $name: $(grep '^test result' /tmp/out | tail -1); $(grep -c 'SKIPPED' /tmp/out) skip lines; $(awk "BEGIN {print $t1 - $t0}") s"
}
EOF
# Timing tests that expect a real CPU: under TCG's emulation a 300 ms window may hold no time
# slice of the burner they watch (it passes on some runs, fails on others).
timing_skip="--skip qos::monitor::collector::tests::the_node_and_a_service_in_a_real_cgroup"
echo "*** SKIPPED under TCG (timing on an emulated CPU): qos::monitor::collector::tests::the_node_and_a_service_in_a_real_cgroup ***" >&2
# Emulation is 10-50x slower than this machine, and the guest's files live in its RAM: sandboxes
# get longer to start, and the batch-program test sorts 20 MB instead of 200.
guest="$guest
export COLO_TEST_START_TIMEOUT=120s COLO_TEST_SORT_MB=20"
guest="$guest
run lib $lib host::cgroup qos:: $timing_skip
run containers $containers
run qos_loop $qos
exit \$rc"
scripts/tcg-host.sh --timeout "${TCG_SUITE_TIMEOUT:-600}" "${adds[@]}" -- "$guest"
