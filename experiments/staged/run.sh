#!/usr/bin/env bash
# The staged-reduction study (experiments/staged/PROTOCOL.md): for each setting whose bank-v2
# phase A has finished, copies bank v2's always-k3 runs into this study's folder (run folders
# copied, per-epoch checkpoints hard-linked: the bank's folders are never written) and trains
# the study's branches off them, one setting after another, one torch thread, nice 19.
# Resumable: finished runs are skipped, unfinished ones trained again (--retry-unfinished).
# Exits non-zero while a setting's phase A or a run is not finished.
#   BANK2_OUT=../bank2_runs STAGED_OUT=../staged_runs bash experiments/staged/run.sh [SETTING...]
set -uo pipefail
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
bank=${BANK2_OUT:-../bank2_runs}
out=${STAGED_OUT:-../staged_runs}
[ $# -gt 0 ] || set -- ipd osu r20_noise r20_ta
status=0
for s in "$@"; do
  trunks=("$bank/$s"/*-always-k3-s[012])
  if [ "${#trunks[@]}" -ne 3 ] || [ ! -e "${trunks[0]}" ]; then
    echo "$s: not all three always-k3 runs under $bank/$s (bank v2's phase A first)" >&2
    status=1
    continue
  fi
  mkdir -p "$out/$s/checkpoints"
  for t in "${trunks[@]}"; do
    name=$(basename "$t")                      # <model>-E<budget>-always-k3-s<seed>
    ckpt="${name/-always-k3-/-}"                 # <model>-E<budget>-s<seed>
    if ! python -c "import sys; from critical.runfiles import run_status as r
sys.exit(not r(sys.argv[1]).complete)" "$t"; then
      echo "$s: $name has not finished; run again later" >&2
      status=1
      continue 2
    fi
    [ -e "$out/$s/$name" ] || cp -a "$t" "$out/$s/$name"
    [ -e "$out/$s/checkpoints/$ckpt" ] || cp -al "$bank/$s/checkpoints/$ckpt" "$out/$s/checkpoints/"
  done
  nice -n 19 critical sweep "experiments/staged/sweep_$s.yaml" --out "$out/$s" \
    --retry-unfinished >> "$out/sweep.$s.log" 2>&1
  rc=$?
  echo "$(date -Is) $s done (exit $rc)" >> "$out/progress.log"
  [ $rc -eq 0 ] || status=$rc
done
exit $status
