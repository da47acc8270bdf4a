#!/usr/bin/env bash
# Post-training quantization of the Fashion-MNIST demo ViT: every preset x calibrator cell is a real
# `qft calibrate` + `qft eval` (test accuracy on the 10,000 test images) of the FP model, printed as a
# Markdown table (FP row first) on stdout; per-cell JSON lines and the YAML of every cell stay in $OUT_DIR.
#
#   benchmarks/ptq_vit.sh                 # from the repository root (any directory works)
#
# The FP model is `qft train --config configs/vit_fmnist.yaml` (15 epochs, ~3 min on a quiet 2-core
# machine), trained once: a run directory that already holds model.safetensors is reused, a partial one
# resumes. Each cell's rules are the preset's (configs/quant/<preset>.yaml) with only the calibrator
# (and percentile) set on every rule. Calibration: quant.calib_batches (8) training batches of 128, in
# order. The calibration file of each cell is written to the run directory by `qft calibrate`
# (overwriting the previous cell's) and copied to $OUT_DIR.
#
# Knobs (environment): QFT_BIN (build/qft), RUN_NAME (vit_fmnist), OUT_DIR (runs/ptq_vit),
# PRESETS ("w8a8 w6a6 w4a4"), CALIBRATORS ("minmax ema percentile:99.99 percentile:99.9
# percentile:99.999 mse omse entropy"; percentile:P sets the percentile), EXTRA (more overrides for
# every command, e.g. "run.threads=2").
set -euo pipefail
cd "$(dirname "$0")/.."
QFT=${QFT_BIN:-build/qft}
RUN=${RUN_NAME:-vit_fmnist}
OUT=${OUT_DIR:-runs/ptq_vit}
PRESETS=${PRESETS:-"w8a8 w6a6 w4a4"}
CALIBRATORS=${CALIBRATORS:-"minmax ema percentile:99.99 percentile:99.9 percentile:99.999 mse omse entropy"}
read -r -a extra <<< "${EXTRA:-}"
base=(--config configs/vit_fmnist.yaml "run.name=$RUN" "${extra[@]}")
mkdir -p "$OUT"
run_root=$("$QFT" config "${base[@]}" | sed -n 's/^  dir: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' | head -1)
run_dir="${run_root:-runs}/$RUN"

json_field() {  # json_field KEY < json line: the number, or empty
    sed -n "s/.*\"$1\": *\([-0-9.eE+]*\).*/\1/p" | tail -1
}
json_error() {
    sed -n 's/.*"error": *"\(.*\)".*/\1/p' | tail -1
}

if [ ! -f "$run_dir/model.safetensors" ]; then
    echo "training the FP model into $run_dir ..." >&2
    "$QFT" train "${base[@]}" > "$OUT/train.json"
fi
"$QFT" eval "${base[@]}" > "$OUT/fp_eval.json"
fp=$(json_field accuracy < "$OUT/fp_eval.json")
echo "FP accuracy $fp" >&2

declare -A acc
for preset in $PRESETS; do
    for cal in $CALIBRATORS; do
        name=${cal%%:*}
        fields="calibrator: $name"
        if [ "$cal" != "$name" ]; then fields="$fields, percentile: ${cal#*:}"; fi
        tag="${preset}_${cal/:/}"
        yaml="$OUT/$tag.yaml"
        # Every rule line `- {pattern: ..., ...}` of the preset gets the calibrator fields.
        sed -E "s/^( *- *\{.*)\}( *)$/\1, $fields}\2/" "configs/quant/$preset.yaml" > "$yaml"
        start=$(date +%s.%N)
        if "$QFT" calibrate "${base[@]}" --config "$yaml" > "$OUT/$tag.calibrate.json" 2> "$OUT/$tag.calibrate.err" &&
            "$QFT" eval "${base[@]}" --config "$yaml" > "$OUT/$tag.eval.json" 2> "$OUT/$tag.eval.err"; then
            cp "$run_dir/calibration.safetensors" "$OUT/$tag.calibration.safetensors"
            a=$(json_field accuracy < "$OUT/$tag.eval.json")
            acc[$tag]=$(awk -v a="$a" -v f="$fp" 'BEGIN { printf "%.4f (%+.2f)", a, 100 * (a - f) }')
        else
            msg=$({ cat "$OUT/$tag.calibrate.json" "$OUT/$tag.eval.json" 2> /dev/null || true; } | json_error)
            acc[$tag]="error: ${msg:-see $OUT/$tag.*.err}"
        fi
        end=$(date +%s.%N)
        printf '%s %s: %s (%.1f s)\n' "$preset" "$cal" "${acc[$tag]}" "$(echo "$end - $start" | bc)" >&2
    done
done

header="| calibrator |"
rule="|---|"
fp_row="| FP (no quantization) |"
for preset in $PRESETS; do
    header="$header ${preset^^} |"
    rule="$rule---:|"
    fp_row="$fp_row $(printf '%.4f' "$fp") |"
done
echo "$header"
echo "$rule"
echo "$fp_row"
for cal in $CALIBRATORS; do
    label=${cal%%:*}
    if [ "$cal" != "$label" ]; then label="$label ${cal#*:}"; fi
    row="| $label |"
    for preset in $PRESETS; do row="$row ${acc[${preset}_${cal/:/}]} |"; done
    echo "$row"
done
