# Sourced by the prepared GPU scripts (run.sh, run_long.sh): the time box, the wheels the GPU
# image lacks (.whl/), PYTHONPATH, the environment written to $OUT/env.txt, and finish_sweep (the sweep's log tail,
# report and files into $OUT). Expects OUT and BUDGET to be set (SWEEP for finish_sweep).
mkdir -p "$OUT"
T0=$(date +%s)
left() { echo $((BUDGET - ($(date +%s) - T0))); }
export PYTHONUNBUFFERED=1
if [ -d .whl ] && [ -z "${SKIP_WHEELS:-}" ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site \
    .whl/*.whl 2>&1 | tail -n 3
  export PYTHONPATH=/tmp/site:$PWD/src
else
  export PYTHONPATH=$PWD/src
fi
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null
  python3 -c "import torch, lightning, jsonargparse; print('torch', torch.__version__, 'lightning', lightning.__version__, 'cuda', torch.version.cuda, 'jsonargparse', jsonargparse.__version__)"
  python3 -c "import codecarbon; print('codecarbon', codecarbon.__version__)"
  echo "cpus $(nproc)"
} > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"
finish_sweep() {
  tail -n 25 "$OUT/sweep.log"
  timeout 30 python3 -m critical.report "$SWEEP" --out "$SWEEP/report" --no-plots > "$OUT/report.txt" 2>&1
  cp "$SWEEP/report/summary.md" "$OUT/summary.md" 2>/dev/null
  tar czf "$OUT/sweep.tgz" --exclude='checkpoints' --exclude='events.out.tfevents*' \
    --exclude='*.ckpt' --exclude='*.png' --exclude='*.pdf' --exclude='logs' "$SWEEP" 2>/dev/null
  echo "done in $(( $(date +%s) - T0 )) s"
}
