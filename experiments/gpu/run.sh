#!/usr/bin/env bash
# The prepared GPU run (about 9 minutes on one H100/H200): the monitoring-overhead and data
# benchmarks of issue #13, then the full-CIFAR-10 sweep of docs/results.md, each under a time
# box; results in $OUT. Needs, next to the repository: data/cifar10_train_jpeg.npz (made by
# experiments/gpu/pack.py) and .whl/ (wheels of jsonargparse, codecarbon and what they need
# that the GPU image lacks).
#   bash experiments/gpu/run.sh
#   DEVICE=cpu SPEC=<small spec> BUDGET=300 bash experiments/gpu/run.sh    # a dry run on CPU
set -u
OUT=${OUT:-gpu_out}
BUDGET=${BUDGET:-560}
DEVICE=${DEVICE:-cuda}
SPEC=${SPEC:-experiments/gpu/sweep_cifar10_resnet20.yaml}
SWEEP=${SWEEP:-runs/gpu_cifar10_resnet20}
source "$(dirname "$0")/_setup.sh"
if [ ! -d /tmp/cifar10/train ]; then
  python3 experiments/gpu/unpack.py data/cifar10_train_jpeg.npz /tmp/cifar10/train
fi

# 1. monitoring overhead (both models, 391 and 100 steps/epoch, host-sync check), data path
if [ "$DEVICE" = cuda ]; then
  timeout 160 python3 benchmarks/monitor_overhead.py --suite --device cuda --sync-debug \
    --repeats 1 > "$OUT/bench.txt" 2>&1
  timeout 45 python3 benchmarks/data_throughput.py --device cuda --data /tmp/cifar10/train \
    --repeats 1 > "$OUT/data.txt" 2>&1
else
  python3 benchmarks/monitor_overhead.py --quick > "$OUT/bench.txt" 2>&1
  python3 benchmarks/data_throughput.py --quick --data /tmp/cifar10/train > "$OUT/data.txt" 2>&1
fi
grep -h "SUMMARY\|Error\|error" "$OUT/bench.txt" "$OUT/data.txt" | tail -n 20
echo "benchmarks done at $(( $(date +%s) - T0 )) s"

# 2. the full-CIFAR-10 sweep (issue #12), stopped before the budget runs out
timeout $(( $(left) - 35 )) python3 -m critical.sweep "$SPEC" --out "$SWEEP" > "$OUT/sweep.log" 2>&1
finish_sweep
