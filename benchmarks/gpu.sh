#!/usr/bin/env bash
# The GPU benchmarks of issue #13, as experiments/gpu/run.sh calls them (about 2-3 minutes on one
# H100/H200): monitoring overhead of the four metric callbacks (cifar_resnet20 fp32 batch 128 and
# resnet18_cifar bf16 batch 256, 391 and 100 steps/epoch, host-sync check), then the data path.
#   bash benchmarks/gpu.sh            # DEVICE=cpu EXTRA=--quick for a smoke run here
set -u
DEVICE=${DEVICE:-cuda}
EXTRA=${EXTRA:-}
if [ -n "$EXTRA" ]; then
  python3 benchmarks/monitor_overhead.py --device "$DEVICE" $EXTRA
else
  python3 benchmarks/monitor_overhead.py --suite --device "$DEVICE" --sync-debug --repeats 1
fi
DATA=${DATA:-/tmp/cifar10/train}  # real CIFAR-10 JPEGs when unpacked there, else generated images
if [ -d "$DATA" ]; then DATA_ARG=(--data "$DATA"); else DATA_ARG=(); fi
python3 benchmarks/data_throughput.py --device "$DEVICE" "${DATA_ARG[@]}" ${EXTRA:+--quick}
