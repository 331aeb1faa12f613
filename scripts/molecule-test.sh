#!/usr/bin/env bash
# Run one molecule scenario's whole test sequence from the built collection, keep its output in
# .build/logs/molecule-<scenario>.log, and when it fails print what failed last: molecule's own
# cleanup and destroy output comes after the failure and pushes it out of a CI log's tail.
#   scripts/molecule-test.sh <scenario>
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
scenario=$1
log=$ROOT/.build/logs/molecule-$scenario.log
mkdir -p "$(dirname "$log")"
start=$(date +%s)
(cd .build/collections/ansible_collections/inferops/sglang && molecule test -s "$scenario") 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
echo "== molecule $scenario: rc=$rc in $(( $(date +%s) - start )) s (log: $log)"
if [ "$rc" -ne 0 ]; then
  python3 "$ROOT/scripts/failed-tasks.py" "$log"
fi
exit "$rc"
