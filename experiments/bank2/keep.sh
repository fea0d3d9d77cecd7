#!/usr/bin/env bash
# Beside run_all.sh: every KEEP_EVERY seconds (default 900), packs the bank's runs finished since
# into experiments/bank2/records/ (records.py save) and commits them, that path only, so that a
# session's finished runs outlive its machine. Stops when run_all.sh's workers have ended
# (after one last save).
#   BANK2_OUT=../bank2_runs nohup bash experiments/bank2/keep.sh &
set -uo pipefail
cd "$(dirname "$0")/../.."
out=${BANK2_OUT:-../bank2_runs}
keep() {
  local saved
  saved=$(python3 experiments/bank2/records.py save "$out" | sed 's/^saved: //' | tr '\n' ' ')
  [ -z "$saved" ] && return
  for _ in 1 2 3 4 5; do
    git add experiments/bank2/records &&
      git commit -q -m "bank2 records: runs kept in $saved" -- experiments/bank2/records &&
      return
    sleep 20  # another git command holds the index
  done
}
while pgrep -f "experiments/bank2/run_all.sh" > /dev/null; do
  sleep "${KEEP_EVERY:-900}"
  keep
done
keep
