#!/usr/bin/env bash
# Runs the whole of bank v2's phase A (experiments/bank2/PROTOCOL.md, sections 2-3 and 8): the six
# new settings' sweeps and the re-run of the ten v1 settings (experiments/bank/sweep_*.yaml,
# into $BANK2_OUT/v1), as one queue served by two workers (one per core), one torch thread a
# run, at the lowest priority. A worker takes the next sweep as soon as it is free, so no core
# idles while sweeps are left; cheap settings come first (whole settings finish early), the
# three longest last, started side by side. Resumable across sessions: finished runs are skipped.
#
#   BANK2_TREE=../bank2_wt BANK2_OUT=../bank2_runs bash experiments/bank2/run_all.sh
#
# BANK2_TREE is the frozen worktree of the protocol's commit (`git worktree add ../bank2_wt
# 2e5571d`) whose code and sweeps run (default: this checkout); the `critical` on PATH must
# import that tree's src (PYTHONPATH=$BANK2_TREE/src). Same runs as run.sh, another order.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
tree=$(cd "${BANK2_TREE:-$here/../..}" && pwd)
out=$(mkdir -p "${BANK2_OUT:-$tree/../bank2_runs}" && cd "${BANK2_OUT:-$tree/../bank2_runs}" && pwd)
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
cd "$tree"
queue="$out/queue.txt"
# <bank>/<setting>; the cheapest first (core-hours from PROTOCOL.md 8 and docs/results.md).
printf '%s\n' bank/bm bank/jv bank/digits bank2/ipd bank2/osu bank2/r20_noise bank2/r20_ta \
  bank/vit_step bank/vit bank/r20_onecycle bank/r20_long bank2/c10_8k bank2/r32_ms bank/r20 \
  > "$queue"
next() {  # pops the queue's first line under a lock
  flock "$queue.lock" sh -c 'head -n 1 "$1"; sed -i 1d "$1"' _ "$queue"
}
worker() {
  local job bank s dest
  while job=$(next) && [ -n "$job" ]; do
    bank=${job%%/*} s=${job#*/}
    dest="$out/$s"
    [ "$bank" = bank ] && dest="$out/v1/$s"
    echo "$(date -Is) worker $1: $job" >> "$out/progress.log"
    nice -n 19 critical sweep "experiments/$bank/sweep_$s.yaml" --out "$dest" \
      >> "$out/worker.$1.log" 2>&1
    echo "$(date -Is) $job done (exit $?)" >> "$out/progress.log"
  done
}
worker 1 &
sleep 5
worker 2 &
wait
