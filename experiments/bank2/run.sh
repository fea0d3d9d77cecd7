#!/usr/bin/env bash
# Runs bank v2's phase A (experiments/bank2/PROTOCOL.md) in two lanes (one per core), one torch
# thread a run, at the lowest priority, from wherever this checkout is (a frozen worktree of the
# protocol's commit: `git worktree add ../bank2_wt <commit>`), into $BANK2_OUT (default
# ../bank2_runs, outside the repository). Resumable: finished runs are skipped.
#   bash experiments/bank2/run.sh            # from the project root, in the set-up venv
set -uo pipefail
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
out=${BANK2_OUT:-../bank2_runs}
mkdir -p "$out"
lane() {
  local name=$1
  shift
  for s in "$@"; do
    nice -n 19 critical sweep "experiments/bank2/sweep_$s.yaml" --out "$out/$s" \
      >> "$out/lane.$name.log" 2>&1
    echo "$(date -Is) $s done (exit $?)" >> "$out/progress.log"
  done
}
# cheapest settings first, so that whole settings finish early
lane a ipd r20_noise r20_ta r32_ms &
lane b osu c10_8k &
wait
