#!/usr/bin/env bash
# Phase B of the bank (written by experiments/bank/phase_b.py): two lanes, 1 thread each;
# every setting's detector branches first (--only), then the whole specs (matched k = 1).
set -uo pipefail
cd "$(dirname "$0")/../../.."
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
out=${BANK_OUT:-runs/bank}
job() {
  nice -n 10 critical sweep "experiments/bank/phase_b/$1.yaml" --out "$out/$2" "${@:4}" \
    >> "$out/lane_b.$3.log" 2>&1
  echo "$(date -Is) phase B $1 ${*:4} done (exit $?)" >> "$out/progress.log"
}
(
  job bm bm 0 --only detector:default --only detector:left_out
  job jv jv 0 --only detector:default --only detector:left_out
  job r20_e40 r20 0 --only detector:default --only detector:left_out
  job r20_onecycle r20_onecycle 0 --only detector:default --only detector:left_out
  job vit_e40 vit 0 --only detector:default --only detector:left_out
  job bm bm 0
  job jv jv 0
  job r20_e40 r20 0
  job r20_onecycle r20_onecycle 0
  job vit_e40 vit 0
) &
(
  job digits digits 1 --only detector:default --only detector:left_out
  job r20_e15 r20 1 --only detector:default --only detector:left_out
  job r20_long r20_long 1 --only detector:default --only detector:left_out
  job vit_e15 vit 1 --only detector:default --only detector:left_out
  job vit_step vit_step 1 --only detector:default --only detector:left_out
  job digits digits 1
  job r20_e15 r20 1
  job r20_long r20_long 1
  job vit_e15 vit 1
  job vit_step vit_step 1
) &
wait
