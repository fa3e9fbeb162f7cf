#!/usr/bin/env bash
# Every GPU figure of BENCHMARKS.md and docs/study.md in one call on a machine with a CUDA GPU, PyTorch and
# Triton (run from the repository root; results under $OUT, default out/gpu):
#   1. train_speed.py in fp32 and in TF32: fused loss checked against autograd, ms/step of naive, single,
#      batched (fused and autograd), then 151 seeds x 10 000 epochs, wall time and final test accuracy;
#   2. `quadlens reproduce --seeds 0-150` (training, then explain + bound in 8 local processes).
# If the fused loss fails, the study still runs through autograd (QUADLENS_NO_FUSED=1).
set -uo pipefail
OUT=${OUT:-out/gpu}
mkdir -p "$OUT"
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  $PY -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
  nproc; } 2>&1 | tee "$OUT/machine.txt"
speed() {  # precision, time limit
  timeout "$2" $PY benchmarks/train_speed.py --devices cuda --batch 151 --full-run --precision "$1" \
    --json "$OUT/train_speed_$1.json" 2>&1 | tee -a "$OUT/train_speed.log"
}
if speed highest 200; then
  speed high 150
else
  echo "fused loss failed: the study trains through autograd" | tee -a "$OUT/train_speed.log"
  export QUADLENS_NO_FUSED=1
fi
STUDY=/tmp/study151
start=$(date +%s)
timeout 420 $PY -m quadlens.cli reproduce --seeds 0-150 --device cuda --workers 8 --out "$STUDY" > "$OUT/study.log" 2>&1
echo "reproduce: rc=$? in $(( $(date +%s) - start )) s" | tee -a "$OUT/study.log"
tail -30 "$OUT/study.log"
cp "$STUDY/summary.json" "$STUDY/models.csv" "$STUDY/distributions.png" "$OUT/" 2>/dev/null
ls -la "$OUT"
