#!/usr/bin/env bash
# Issue 19's prepared GPU run (about 10 minutes on one H100/H200; see docs/results.md): full
# CIFAR-10, ResNet-20, k = 3, 100 epochs, one seed: always-k3, k1 and the library's default
# detector first, then the v0.2 rule and the oracle's fixed cuts until the time box ends (the
# sweep is resumable: call again to continue). Results in $OUT. Needs, next to the repository:
# data/cifar10_train_jpeg.npz (experiments/gpu/pack.py) and .whl/ (as experiments/gpu/run.sh).
#   bash experiments/gpu/run_long.sh
#   SPEC=<a small CPU spec> BUDGET=300 bash experiments/gpu/run_long.sh   # a dry run on CPU
set -u
OUT=${OUT:-gpu_out}
BUDGET=${BUDGET:-570}
SPEC=${SPEC:-experiments/gpu/sweep_cifar10_resnet20_long.yaml}
SWEEP=${SWEEP:-runs/gpu_cifar10_resnet20_long}
source "$(dirname "$0")/_setup.sh"
if [ ! -d /tmp/cifar10/train ] && [ -f data/cifar10_train_jpeg.npz ]; then
  python3 experiments/gpu/unpack.py data/cifar10_train_jpeg.npz /tmp/cifar10/train
fi
# 1. the baselines and the default detector's branch, 2. the rest, within the time box
timeout $(( $(left) - 60 )) python3 -m critical.sweep "$SPEC" --out "$SWEEP" \
  --only always-k3 --only k1 --only detector:default > "$OUT/sweep.log" 2>&1
timeout $(( $(left) - 35 )) python3 -m critical.sweep "$SPEC" --out "$SWEEP" >> "$OUT/sweep.log" 2>&1
finish_sweep
