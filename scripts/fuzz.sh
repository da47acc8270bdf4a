#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, ASan+UBSan) and runs each for the given number of seconds
# (default 20) from its seed corpus. Fails if any target finds a crash or leak.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-20}"
cmake -S . -B build-fuzz -DQFT_CUDA=OFF -DQFT_FUZZ=ON -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=Debug >/dev/null
targets=()
for src in tests/fuzz/fuzz_*.c; do targets+=("$(basename "$src" .c)"); done
cmake --build build-fuzz -j"$(nproc)" --target "${targets[@]}" >/dev/null
passed=0
failed=0
for t in "${targets[@]}"; do
  corpus="tests/fuzz/corpus_${t#fuzz_}"
  work=$(mktemp -d)
  [ -d "$corpus" ] && cp -r "$corpus"/. "$work"/
  log="$work.log"
  if ./build-fuzz/"$t" -max_total_time="$seconds" -print_final_stats=1 "$work" >"$log" 2>&1; then
    echo "$t: $(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$') inputs in ${seconds}s, no crash"
    passed=$((passed + 1))
  else
    echo "$t: FAILED"
    tail -40 "$log"
    failed=$((failed + 1))
  fi
  rm -rf "$work" "$log"
done
echo "fuzz: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
