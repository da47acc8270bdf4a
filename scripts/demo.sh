#!/usr/bin/env bash
# The main job on the embedded default, end to end on Fashion-MNIST:
#   1. trains the fp32 ViT (configs/vit_fmnist.yaml, 15 epochs; skipped when runs/vit_fmnist already
#      holds a finished run: delete it to retrain),
#   2. post-training quantization to W4A4 (configs/quant/w4a4.yaml): qft calibrate + qft eval,
#   3. quantization-aware fine-tuning to W4A4 with LSQ (configs/vit_fmnist_qat_w4a4.yaml, 3 epochs),
# and prints a summary JSON line last. Extra key=value arguments apply to every step.
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build -DQFT_CUDA=OFF -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)" >/dev/null

field() { python3 -c 'import json,sys; v=json.loads(sys.argv[1]).get(sys.argv[2]); print("null" if v is None else v)' "$1" "$2"; }

echo "== 1/3 FP training (configs/vit_fmnist.yaml)" >&2
fp=$(build/qft train --config configs/vit_fmnist.yaml "$@" | tail -n 1)
echo "$fp"
echo "== 2/3 PTQ W4A4: calibrate + eval" >&2
build/qft calibrate --config configs/vit_fmnist.yaml --config configs/quant/w4a4.yaml "$@" | tail -n 1
ptq=$(build/qft eval --config configs/vit_fmnist.yaml --config configs/quant/w4a4.yaml "$@" | tail -n 1)
echo "$ptq"
echo "== 3/3 QAT W4A4 (configs/vit_fmnist_qat_w4a4.yaml)" >&2
# Start from the model the FP step exported (its run directory holds model.safetensors).
fp_model="$(dirname "$(dirname "$(field "$fp" checkpoint)")")/model.safetensors"
qat=$(build/qft train --config configs/vit_fmnist.yaml --config configs/vit_fmnist_qat_w4a4.yaml \
    model.init_from="$fp_model" "$@" | tail -n 1)
echo "$qat"
printf '{"command": "demo", "ok": true, "fp_accuracy": %s, "ptq_w4a4_accuracy": %s, "qat_w4a4_accuracy": %s}\n' \
    "$(field "$fp" eval_accuracy)" "$(field "$ptq" accuracy)" "$(field "$qat" eval_accuracy)"
