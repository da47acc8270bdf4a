#!/usr/bin/env bash
# The main job on the embedded default: builds qft and trains the fp32 ViT on Fashion-MNIST
# (configs/vit_fmnist.yaml). Extra key=value arguments are passed through as overrides.
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build -DQFT_CUDA=OFF -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)" >/dev/null
exec build/qft train --config configs/vit_fmnist.yaml "$@"
