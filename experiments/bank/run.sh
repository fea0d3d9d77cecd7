#!/usr/bin/env bash
# Runs the detector bank (experiments/bank/PROTOCOL.md) here, in two lanes (one per core), each
# run with one torch thread, at low priority. Resumable: finished runs are skipped.
#   bash experiments/bank/run.sh            # from the project root, in the set-up venv
set -uo pipefail
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
out=${BANK_OUT:-runs/bank}
mkdir -p "$out"
lane() {
  for s in "$@"; do
    nice -n 10 critical sweep "experiments/bank/sweep_$s.yaml" --out "$out/$s" \
      >> "$out/lane.$1.log" 2>&1
    echo "$(date -Is) $s done (exit $?)" >> "$out/progress.log"
  done
}
lane r20 r20_long digits bm &
lane vit r20_onecycle vit_step jv &
wait
