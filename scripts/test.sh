#!/usr/bin/env bash
# Builds qft and runs every test (ctest: C unit/golden tests, CLI tests), then a short libFuzzer run
# of each parser. Run from anywhere; needs scripts/setup.sh to have run once.
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null  # CUDA backend too when nvcc exists
cmake --build build -j"$(nproc)"
(cd build && ctest --output-on-failure -j1)
bash scripts/fuzz.sh 20
