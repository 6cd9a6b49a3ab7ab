#!/usr/bin/env bash
# Installs the Debian packages colo's tests, benchmarks and demo need (idempotent).
# Used by scripts/test-all.sh, scripts/demo.sh and .ci/run.
set -euo pipefail
PKGS=(
  time            # /usr/bin/time -v for memory/CPU figures
  pkg-config          # colo-sim: plotters' font-kit finds fontconfig through it
  libfontconfig1-dev  # colo-sim: plotters (font-kit) links fontconfig and freetype
  fonts-dejavu-core   # colo-sim: a sans-serif font for the plot labels (tests write plots)
  systemd         # systemd-analyze verify of packaging/colo-agent.service (agent tests)
  openssl         # test CA and certificates for the agent's TCP+TLS listener (agent tests)
  e2fsprogs       # mkfs.ext4 -d: rootfs images for colo-vmm's Linux boot test
  linux-source-6.1 # source of colo's minimal guest kernel (scripts/build-guest-kernel.sh)
  build-essential # compiler and make for the guest kernel
  flex            # guest kernel build
  bison           # guest kernel build
  bc              # guest kernel build
  libelf-dev      # guest kernel build (objtool)
  patch           # guest kernel patches (vmm-core/guest/linux/patches)
  xz-utils        # unpacking linux-source-6.1
  nginx-light     # the online service of the QoS benchmarks and scripts/demo.sh
  stress-ng       # the control row of the headline benchmark (plain-process hogs)
  util-linux      # chrt (SCHED_IDLE for the control row's hogs)
  python3-venv    # the venv of scripts/validate-deploy.sh's pinned tools (below)
  runc            # the OCI runtime of container jobs (agent tests, benchmarks)
  busybox-static  # the root filesystem of the container tests
  qemu-system-x86 # the TCG test host (scripts/tcg-host.sh): a real cgroup v2 kernel, no KVM needed
  cpio            # the TCG host's initramfs
  file            # the TCG host tells ELF files (their libraries come along) from others
  jq              # the TCG suites pick test binaries out of cargo's JSON messages
  debootstrap     # the Debian root of the systemd check in the TCG host (scripts/tcg-systemd.sh)
  golang-github-containers-common-dev # containers-common's default seccomp profile (seccomp.json)
)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO=sudo
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# kubernetes-validate (and its dependencies), pinned in scripts/deploy-tools.txt, in a venv of its
# own: scripts/validate-deploy.sh checks deploy/kubernetes/ against Kubernetes' OpenAPI schemas
# with it. Reinstalled only when the pins change.
TOOLS=${COLO_DEPLOY_TOOLS:-/var/cache/colo/deploy-tools}
PINS="$(dirname "$0")/deploy-tools.txt"
if ! cmp -s "$PINS" "$TOOLS/pins.txt" 2>/dev/null; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO rm -rf "$TOOLS"
  $SUDO /usr/bin/python3 -m venv "$TOOLS"
  $SUDO "$TOOLS/bin/pip" install --quiet --disable-pip-version-check --no-deps -r "$PINS"
  $SUDO cp "$PINS" "$TOOLS/pins.txt"
fi

# The static musl target of colo's in-guest agent (colo-guest-init, scripts/build-guest-image.sh).
if ! rustup target list --installed 2>/dev/null | grep -qx x86_64-unknown-linux-musl; then
  rustup target add x86_64-unknown-linux-musl
fi

# cargo-fuzz (libFuzzer) for scripts/fuzz.sh, CI's fuzz stage: it builds the targets of fuzz/ on
# the stable toolchain (docs/fuzzing.md); installed once per version.
CARGO_FUZZ_VERSION=0.13.2
if ! cargo fuzz --version 2>/dev/null | grep -q "$CARGO_FUZZ_VERSION"; then
  cargo install --locked --quiet cargo-fuzz --version "=$CARGO_FUZZ_VERSION"
fi
