#!/usr/bin/env bash
# Checks the source tree's shape (CI runs it): no import circle between subsystems, no Rust file
# over 600 lines, no comment pointing outside the repository (scripts/check_structure.py), and no
# declared dependency that a crate does not use (cargo-machete, pinned, installed on first use
# under /var/cache/colo/tools).
set -euo pipefail
cd "$(dirname "$0")/.."
MACHETE_VERSION=0.9.2
TOOLS=/var/cache/colo/tools
rc=0
python3 scripts/check_structure.py || rc=1
if [[ ! -x $TOOLS/bin/cargo-machete ]] || ! "$TOOLS/bin/cargo-machete" --version | grep -q "$MACHETE_VERSION"; then
  echo "check-structure: installing cargo-machete $MACHETE_VERSION into $TOOLS (once)"
  CARGO_TARGET_DIR=$TOOLS/build cargo install --locked --quiet --root "$TOOLS" \
    cargo-machete --version "=$MACHETE_VERSION"
  rm -rf "$TOOLS/build"
fi
# Its default mode reads every .rs file of each crate, build.rs included (--with-metadata does not
# read build scripts, and so reports their build-dependencies as unused).
if "$TOOLS/bin/cargo-machete"; then
  echo "check-structure: cargo-machete found no unused dependency"
else
  echo "check-structure: cargo-machete found unused dependencies (above): use them or remove them"
  rc=1
fi
exit "$rc"
