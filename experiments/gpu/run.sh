#!/usr/bin/env bash
# The prepared GPU run (about 9 minutes on one H100/H200): the monitoring-overhead and data
# benchmarks, then the full-CIFAR-10 sweep of docs/results.md, each under a time box, results in
# $OUT. Needs, next to the repository: data/cifar10_train_jpeg.npz (experiments/gpu/pack.py) and
# .whl/ (wheels of jsonargparse, codecarbon and what they need that the GPU image lacks).
#   bash experiments/gpu/run.sh            # OUT=<dir> BUDGET=<seconds> to change
set -u
OUT=${OUT:-gpu_out}
BUDGET=${BUDGET:-540}
mkdir -p "$OUT"
T0=$(date +%s)
left() { echo $((BUDGET - ($(date +%s) - T0))); }
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:$PWD/src
else
  export PYTHONPATH=$PWD/src
fi
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  python3 -c "import torch, lightning; print('torch', torch.__version__, 'lightning', lightning.__version__, 'cuda', torch.version.cuda)"
  nproc
} > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"
python3 experiments/gpu/unpack.py data/cifar10_train_jpeg.npz /tmp/cifar10/train

# 1. monitoring overhead and data path (issue 13)
timeout 200 bash benchmarks/gpu.sh > "$OUT/bench.txt" 2>&1
tail -n 40 "$OUT/bench.txt"

# 2. the full-CIFAR-10 sweep (issue 12), stopped before the budget runs out
SWEEP=runs/gpu_cifar10_resnet20
timeout $(( $(left) - 45 )) python3 -m critical.sweep experiments/gpu/sweep_cifar10_resnet20.yaml \
  --out "$SWEEP" > "$OUT/sweep.log" 2>&1
tail -n 30 "$OUT/sweep.log"
python3 -m critical.report "$SWEEP" --out "$SWEEP/report" > "$OUT/report.txt" 2>&1
tail -n 60 "$OUT/report.txt"
tar czf "$OUT/sweep.tgz" --exclude='checkpoints' --exclude='events.out.tfevents*' --exclude='*.ckpt' \
  --exclude='*.png' --exclude='*.pdf' "$SWEEP"
echo "done in $(( $(date +%s) - T0 )) s"
