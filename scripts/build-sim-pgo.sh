#!/usr/bin/env bash
# Builds colo-sim for scale runs with profile-guided optimisation (docs/simulation.md, "Scale"):
# the `sim` profile built once instrumented, a short training run (all four modes, 1,000 nodes
# x 1 day: not the benchmark's trace), then built again with the measured profile. Same source,
# same output bytes; only the compiler's layout and inlining choices change.
# Needs llvm-profdata of rustc's own LLVM: `rustup component add llvm-tools`.
# Output: target/pgo/use/sim/colo-sim. Takes about 3 builds of the `sim` profile.
set -euo pipefail
cd "$(dirname "$0")/.."
profdata=$(find "$(rustc --print sysroot)" -name llvm-profdata -type f 2>/dev/null | head -n 1)
if [[ -z "$profdata" ]]; then
    echo "build-sim-pgo: llvm-profdata not found in $(rustc --print sysroot): run" \
        "'rustup component add llvm-tools'" >&2
    exit 1
fi
dir="$PWD/target/pgo"
rm -rf "$dir/profiles" "$dir/train" "$dir/merged.profdata"
mkdir -p "$dir/profiles"
RUSTFLAGS="-Cprofile-generate=$dir/profiles" \
    cargo build --profile sim -p colo-sim --locked --target-dir "$dir/gen"
"$dir/gen/sim/colo-sim" compare --nodes 1000 --days 1 --quiet --no-plots --out "$dir/train" >/dev/null
"$profdata" merge -o "$dir/merged.profdata" "$dir/profiles"
RUSTFLAGS="-Cprofile-use=$dir/merged.profdata" \
    cargo build --profile sim -p colo-sim --locked --target-dir "$dir/use"
echo "$dir/use/sim/colo-sim"
