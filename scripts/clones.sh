#!/usr/bin/env bash
# Measures code clones over colo's Rust sources with jscpd (pinned, from npm; installed on first
# use under /var/cache/colo/tools/jscpd) at its default thresholds (a clone is at least 5 lines and
# 50 tokens). Prints each clone pair and the totals; the JSON report goes to ${1:-target/clones}.
set -euo pipefail
cd "$(dirname "$0")/.."
JSCPD_VERSION=4.0.5
DIR=/var/cache/colo/tools/jscpd
OUT=${1:-target/clones}
if [[ ! -x $DIR/node_modules/.bin/jscpd ]] || ! grep -q "\"version\": \"$JSCPD_VERSION\"" "$DIR/node_modules/jscpd/package.json"; then
  mkdir -p "$DIR"
  npm install --prefix "$DIR" --no-audit --no-fund --silent "jscpd@$JSCPD_VERSION"
fi
"$DIR/node_modules/.bin/jscpd" --format rust --ignore "**/target/**" --reporters json \
  --output "$OUT" --silent . >/dev/null
python3 - "$OUT/jscpd-report.json" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
for c in report["duplicates"]:
    a, b = c["firstFile"], c["secondFile"]
    print(f'{c["lines"]:4} lines  {a["name"]}:{a["start"]}  {b["name"]}:{b["start"]}')
t = report["statistics"]["total"]
print(f'jscpd: {t["clones"]} clones, {t["duplicatedLines"]} duplicated lines of {t["lines"]} '
      f'({t["percentage"]} %) in {t["sources"]} files')
PY
