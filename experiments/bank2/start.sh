#!/usr/bin/env bash
# Starts or resumes the bank in the background, in one command, from this checkout's root (after
# the README's set-up): the frozen worktree of the protocol's commit if it is missing, then
# run_all.sh (phase A, or the queue file given) and keep.sh beside it. Safe to call again in a
# later session on a fresh machine: kept runs are restored, finished runs skipped.
#   bash experiments/bank2/start.sh                                  # phase A
#   bash experiments/bank2/start.sh experiments/bank2/phase_b/queue.txt
set -euo pipefail
cd "$(dirname "$0")/../.."
tree=${BANK2_TREE:-../bank2_wt}
out=${BANK2_OUT:-../bank2_runs}
[ -d "$tree/src" ] || git worktree add -f "$tree" 2e5571d
mkdir -p "$out"
tree=$(cd "$tree" && pwd)
out=$(cd "$out" && pwd)
if pgrep -f "experiments/bank2/run_all.sh" > /dev/null; then
  echo "the bank runs already (run_all.sh): see $out/progress.log" >&2
  exit 1
fi
export PATH="$PWD/.venv/bin:$PATH" BANK2_TREE="$tree" BANK2_OUT="$out"
PYTHONPATH="$tree/src" nohup bash experiments/bank2/run_all.sh "$@" >> "$out/run_all.log" 2>&1 &
sleep 2
nohup bash experiments/bank2/keep.sh >> "$out/keep.log" 2>&1 &
echo "started: progress in $out/progress.log, kept runs committed every 15 min"
