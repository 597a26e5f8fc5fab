#!/usr/bin/env bash
# The device command for the CARN training issue: train multi-scale CARN (the paper's architecture)
# on T91 + BSD200 within a wall-time budget on one GPU, evaluate on Set5/Set14, and leave the run
# folder and the evaluation under $OUT. Prepare on CPU first: python tools/pack_gpu_data.py,
# then call the device tool with carry ["gpu_data"] and this script, e.g.
#   bash tools/gpu_train_carn.sh 420
# The checkout is used from PYTHONPATH: the device machine has its own torch and no network.
set -euo pipefail
mkdir -p "${OUT:-/tmp/carn_out}"
budget=${1:-420}
out=${OUT:-/tmp/carn_out}   # what comes back: at most 8 files, so the run folder lives beside it
run=/tmp/carn_run
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
python - <<'PY'
import importlib, sys
missing = [m for m in ("torch", "numpy", "PIL", "safetensors", "rich", "matplotlib") if importlib.util.find_spec(m) is None]
if missing:
    sys.exit(f"missing on this machine: {', '.join(missing)}")
import torch
print("torch", torch.__version__, "cuda", torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
PY
python -m carn_mobile.cli.train --model carn --scale multi --data gpu_data/train/T91 gpu_data/train/BSD200 \
    --val gpu_data/benchmark/Set5 --val-every 2000 --checkpoint-every 2000 --log-every 100 \
    --batch-size 64 --patch-size 64 --time-budget "$budget" --lr-schedule cosine \
    --device cuda --bf16 --channels-last --out "$run" --force --no-progress 2>&1 | tee "$out/train.log"
python -c "from carn_mobile.cli.eval import main; main()" --model carn --weights "$run/model.safetensors" \
    --scale 2,3,4 --data gpu_data/benchmark/Set5 gpu_data/benchmark/Set14 --json "$out/eval.json" 2>&1 | tee "$out/eval.log"
cp "$run/model.safetensors" "$run/summary.json" "$run/log.csv" "$run/curves.png" "$out/"
