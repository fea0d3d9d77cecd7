#!/usr/bin/env bash
# Runs bank v2 (experiments/bank2/PROTOCOL.md, sections 2-3, 5 and 8) as one queue served by two
# workers (one per core), one torch thread a run, at the lowest priority: a worker takes the next
# sweep as soon as it is free, so no core idles while sweeps are left. Resumable across sessions:
# finished runs are skipped.
#
#   BANK2_TREE=../bank2_wt BANK2_OUT=../bank2_runs bash experiments/bank2/run_all.sh
#   BANK2_TREE=../bank2_wt BANK2_OUT=../bank2_runs bash experiments/bank2/run_all.sh \
#       experiments/bank2/phase_b/queue.txt                  # phase B (written by phase_b.py)
#
# Without a queue file: phase A, the six new settings' sweeps and the re-run of the ten v1
# settings (into $BANK2_OUT/v1): the settings the gap guard holds out first (so that its test,
# experiments/gap_guard, can run before the bank is complete), the longest among them first,
# then the short ones, so that a session's end cuts short a cheap run. A queue line is `SPEC OUT_SUBDIR [critical sweep flags...]`; a
# SPEC missing from BANK2_TREE is read from this checkout (phase B's specs are written after
# the protocol's commit). BANK2_TREE is the frozen worktree of the protocol's commit (`git
# worktree add ../bank2_wt 2e5571d`) whose code and sweeps run (default: this checkout); the
# `critical` on PATH must import that tree's src (PYTHONPATH=$BANK2_TREE/src). Runs a stop
# killed half-way are moved to <folder>/.set_aside/ (critical.sweep.aside) before a sweep.
set -uo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
tree=$(cd "${BANK2_TREE:-$here}" && pwd)
out=${BANK2_OUT:-$tree/../bank2_runs}
mkdir -p "$out" && out=$(cd "$out" && pwd)
# the groups earlier sessions finished, kept in the repository (records.py; keep.sh saves them)
python3 "$here/experiments/bank2/records.py" restore "$out"
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
queue="$out/queue.txt"
if [ $# -gt 0 ]; then
  grep -v '^#' "$1" > "$queue"
else
  for job in bank2/c10_8k bank2/r32_ms bank/vit bank/r20_onecycle bank/r20_long bank/r20 \
    bank/vit_step bank2/r20_noise bank2/r20_ta bank2/osu bank/digits bank/jv bank/bm bank2/ipd; do
    s=${job#*/}
    sub=$s
    [ "${job%%/*}" = bank ] && sub=v1/$s
    echo "experiments/${job%%/*}/sweep_$s.yaml $sub"
  done > "$queue"
fi
cd "$tree"
next() {  # pops the queue's first line under a lock
  flock "$queue.lock" sh -c 'head -n 1 "$1"; sed -i 1d "$1"' _ "$queue"
}
sweep_in() {  # FOLDER SPEC [FLAGS...]: sets the folder's unfinished runs aside, then sweeps
  local folder=$1 spec=$2
  shift 2
  # critical.sweep.aside from this checkout's src (the frozen tree predates it): runs a stop
  # killed half-way would block themselves and every branch off them
  PYTHONPATH="$here/src" python3 - "$folder" << 'PY'
import sys
from pathlib import Path

from critical.sweep.aside import set_aside

for run in set_aside(Path(sys.argv[1])):
    print("set aside (unfinished):", run)
PY
  # a restored trunk's checkpoints that new branches need, trained again (prefix.py)
  nice -n 19 python3 "$here/experiments/bank2/prefix.py" "$spec" "$folder" "$@" &&
    nice -n 19 critical sweep "$spec" --out "$folder" "$@"
}
export -f sweep_in
export here
worker() {
  local line spec sub
  while line=$(next) && [ -n "$line" ]; do
    read -r spec sub flags <<< "$line"
    [ -e "$spec" ] || spec="$here/$spec"
    echo "$(date -Is) worker $1: $line" >> "$out/progress.log"
    mkdir -p "$out/$sub"
    # one sweep at a time in a folder (phase B's branch jobs and whole specs share folders)
    # shellcheck disable=SC2016,SC2086  # "$@" expands in the inner shell; the flags split
    flock "$out/$sub/.sweep.lock" bash -c 'sweep_in "$@"' _ "$out/$sub" "$spec" $flags \
      >> "$out/worker.$1.log" 2>&1
    rc=$?
    echo "$(date -Is) $line done (exit $rc)" >> "$out/progress.log"
  done
}
worker 1 &
sleep 5
worker 2 &
wait
