#!/usr/bin/env bash
# Phase B of the bank (written by experiments/bank/phase_b.py): two lanes, 1 thread each.
set -uo pipefail
cd "$(dirname "$0")/../../.."
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
out=${BANK_OUT:-runs/bank}
lane() {
  for s in "$@"; do
    nice -n 10 critical sweep "experiments/bank/phase_b/$s.yaml" --out "$out/${s%%_e[0-9]*}" \
      >> "$out/lane_b.$1.log" 2>&1
    echo "$(date -Is) phase B $s done (exit $?)" >> "$out/progress.log"
  done
}
lane bm jv r20_e40 r20_onecycle vit_e40 &
lane digits r20_e15 r20_long vit_e15 vit_step &
wait
