#!/usr/bin/env bash
# Train on a lent GPU inside one device call, resuming from a carried checkpoint, and hand the
# checkpoint and the learning curve back through $OUT.
#
# On the development machine (paths are git-ignored, so they travel with `carry`):
#   data_cache/train.pt   featurised dataset (format 2, RDKit-free; `confgf-fast build-qm9`)
#   runs/gpu.pt           checkpoint to resume (optional; absent = fresh model of $PRESET)
# device run: carry ["data_cache/train.pt", "runs/gpu.pt"], command:
#   TRAIN_SECONDS=480 bash bench/gpu_train.sh
# then copy $OUT/gpu.pt back to runs/gpu.pt (and $OUT/curve.jsonl appended to runs/gpu.jsonl).
# The GPU image has torch but no RDKit: training from a .pt dataset needs none.
set -u -o pipefail
cd "$(dirname "$0")/.." || exit 1
PY="${PYTHON:-python3}"
OUT="${OUT:-runs/out}"
mkdir -p "$OUT"
DATA="${DATA:-data_cache/train.pt}"
CKPT_IN="${CKPT_IN:-runs/gpu.pt}"
PRESET="${PRESET:-paper}"
TRAIN_SECONDS="${TRAIN_SECONDS:-480}"
STEPS="${STEPS:-2000000}"
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$OUT/device.txt"
resume=()
if [ -f "$CKPT_IN" ]; then resume=(--resume "$CKPT_IN"); fi
# Plain python -m: the package imports without being built (the ops fall back to the reference).
PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" "$PY" -m confgf_fast.cli train --data "$DATA" --out "$OUT/gpu.pt" \
  --preset "$PRESET" --device cuda --steps "$STEPS" --time-limit "$TRAIN_SECONDS" \
  --val-every 2000 --save-every 2000 --log "$OUT/curve.jsonl" "${resume[@]}" -q 2>&1 | tail -20 | tee "$OUT/train.log"
