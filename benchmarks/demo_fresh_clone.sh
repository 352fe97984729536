#!/usr/bin/env bash
# Time `make demo` on a fresh clone of this repository: set-up (venv + install) and the run,
# separately, against the 10-minute budget.
# Usage: bash benchmarks/demo_fresh_clone.sh
# The clone's `git status` must stay clean after the demo. The demo trains one seed, so its board
# is not published (leaderboard/RULES.md asks for three: qpebench run "seeds=[0,1,2]", then
# qpebench leaderboard publish RUN).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
git clone -q "$repo" "$work/qpebench"
cd "$work/qpebench"
t0=$(date +%s.%N)
make .venv/.installed >"$work/setup.log" 2>&1
t1=$(date +%s.%N)
make demo >"$work/demo.log" 2>&1
t2=$(date +%s.%N)
grep -E "^run .* finished|fit [0-9]+ s" "$work/demo.log" || true
grep -E "^  (static_cnn|early_fusion) seed 0 +id_test" "$work/demo.log" || true
dirty=$(git status --porcelain)
if [ -n "$dirty" ]; then
  echo "make demo modified the checkout:"; echo "$dirty"; exit 1
fi
echo "git status after make demo: clean"
python3 - "$t0" "$t1" "$t2" <<'PY'
import sys
t0, t1, t2 = map(float, sys.argv[1:])
setup, run, total = t1 - t0, t2 - t1, t2 - t0
print(f"set-up {setup:6.0f} s   run {run:6.0f} s   total {total:6.0f} s")
print(f"total / 600 s budget = {total / 600:.2f}   run / set-up = {run / setup:.1f}")
PY
