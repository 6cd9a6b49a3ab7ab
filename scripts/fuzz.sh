#!/usr/bin/env bash
# Coverage-guided fuzzing of colo's parsers and device models (cargo-fuzz, libFuzzer; the
# targets are in fuzz/fuzz_targets/, the table of runs in docs/fuzzing.md).
#
#   scripts/fuzz.sh ci                    build every target, replay its committed corpus and
#                                         fuzz ${FUZZ_CI_SECONDS:-30} s more (CI's stage; one
#                                         target per CPU at a time, ${FUZZ_CI_JOBS:-nproc})
#   scripts/fuzz.sh run TARGET SECONDS    one long run; new inputs go to fuzz/work/TARGET
#   scripts/fuzz.sh cmin TARGET           minimise fuzz/work/TARGET + the corpus into the corpus
#   scripts/fuzz.sh seed                  write the seed inputs (config/examples/, the wire
#                                         cases, protobuf text in fuzz/seeds/) into the corpora
#   scripts/fuzz.sh list                  the targets
#
# Engine: libFuzzer through cargo-fuzz on the stable toolchain with `--sanitizer none` and debug
# assertions (overflow checks): see docs/fuzzing.md for why. A crash leaves its input in
# fuzz/artifacts/TARGET/ and fails the command; replay it with
# `cargo fuzz run --sanitizer none --debug-assertions TARGET fuzz/artifacts/TARGET/crash-...`.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
export CARGO_INCREMENTAL=0

FLAGS=(--sanitizer none --debug-assertions)
# Per input: 10 s is a hang; 1 GiB of RSS is a leak or an allocation the guest or client chose.
LIBFUZZER=(-timeout=10 -rss_limit_mb=1024 -print_final_stats=1)

need_cargo_fuzz() {
  if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz: cargo-fuzz is missing: run scripts/install-deps.sh (or cargo install cargo-fuzz --locked)" >&2
    exit 1
  fi
}

targets() { cargo fuzz list; }

# Builds live in a cache beside cargo-machete's (CI runs on a clean clone), so only the colo
# crates that changed are rebuilt (a cold build of every dependency with coverage
# instrumentation takes 7 to 12 minutes on two cores; docs/fuzzing.md).
use_cache() {
  local cache=${COLO_FUZZ_TARGET_DIR:-/var/cache/colo/fuzz-target}
  if mkdir -p "$cache" 2>/dev/null && [[ -w $cache ]]; then
    FLAGS+=(--target-dir "$cache")
  fi
}

case "${1:-}" in
  ci)
    need_cargo_fuzz
    seconds=${FUZZ_CI_SECONDS:-30}
    use_cache
    t0=$SECONDS
    cargo fuzz build "${FLAGS[@]}"
    echo "fuzz: built every target in $((SECONDS - t0)) s"
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    # The targets run side by side, one per CPU (FUZZ_CI_JOBS): each is one libFuzzer
    # process, so two cores fuzz two targets in the time of one.
    mapfile -t all < <(targets)
    parallel=${FUZZ_CI_JOBS:-$(nproc)}
    fuzz_one() {
      local t=$1
      # New inputs land in the scratch directory (the first one), never in the committed corpus.
      if cargo fuzz run "${FLAGS[@]}" "$t" "$work/$t" "corpus/$t" -- \
        "${LIBFUZZER[@]}" -max_total_time="$seconds" >"$work/$t.log" 2>&1; then
        echo ok >"$work/$t.status"
      else
        echo failed >"$work/$t.status"
      fi
    }
    for t in "${all[@]}"; do
      mkdir -p "$work/$t" "corpus/$t"
      while (($(jobs -rp | wc -l) >= parallel)); do wait -n || true; done
      echo "=== fuzz $t: replay corpus/$t ($(find "corpus/$t" -type f | wc -l) inputs) + ${seconds} s"
      fuzz_one "$t" &
    done
    wait
    failed=()
    for t in "${all[@]}"; do
      echo "--- $t"
      grep -E '^#[0-9]+[[:space:]]+(INITED|DONE)|^stat::(number_of_executed_units|peak_rss_mb)' "$work/$t.log" || true
      if [[ $(cat "$work/$t.status" 2>/dev/null) != ok ]]; then
        tail -n 60 "$work/$t.log" >&2
        echo "fuzz: $t failed; its input is in fuzz/artifacts/$t/" >&2
        failed+=("$t")
      fi
    done
    if ((${#failed[@]})); then
      echo "fuzz: ${#failed[@]} target(s) failed: ${failed[*]}" >&2
      exit 1
    fi
    echo "fuzz: all targets passed in $((SECONDS - t0)) s"
    ;;
  run)
    need_cargo_fuzz
    use_cache
    t=${2:?usage: scripts/fuzz.sh run TARGET SECONDS}
    seconds=${3:?usage: scripts/fuzz.sh run TARGET SECONDS}
    mkdir -p "work/$t" "corpus/$t"
    exec cargo fuzz run "${FLAGS[@]}" "$t" "work/$t" "corpus/$t" -- \
      "${LIBFUZZER[@]}" -max_total_time="$seconds"
    ;;
  cmin)
    need_cargo_fuzz
    use_cache
    t=${2:?usage: scripts/fuzz.sh cmin TARGET}
    mkdir -p "work/$t"
    cp -n "corpus/$t"/* "work/$t/" 2>/dev/null || true
    rm -rf "corpus/$t" && mkdir -p "corpus/$t"
    # A set cover of the edges, not of hit counts (-use_counters=0), with inputs cut to 1 KiB (a
    # virtio guest needs its buffers past 4 KiB: 8 KiB): the committed corpora stay at tens of
    # KiB for a few percent of the edges.
    max_len=1024
    [[ $t == virtio_blk || $t == virtio_console ]] && max_len=8192
    cargo fuzz run "${FLAGS[@]}" "$t" "corpus/$t" "work/$t" -- -set_cover_merge=1 -use_counters=0 \
      -max_len="$max_len" "${LIBFUZZER[@]}"
    echo "fuzz: corpus/$t: $(find "corpus/$t" -type f | wc -l) inputs, $(cat "corpus/$t"/* | wc -c) bytes"
    ;;
  seed)
    python3 seeds/seed_corpora.py
    ;;
  list)
    need_cargo_fuzz
    targets
    ;;
  *)
    sed -n '2,18p' "$0" >&2
    exit 2
    ;;
esac
