#!/usr/bin/env bash
# Fake quantization through the CLI: `qft quant-sites` shows the rule each site matched, `qft
# calibrate` writes the calibration state, `qft eval` quantizes with it (and refuses a state made
# under other rules), and quantization-aware training learns LSQ scales, resumes bit for bit and
# evaluates to the same figures afterwards.
source "$(dirname "$0")/lib.sh" "$@"
need_fmnist
cd "$WORK" || exit 1

BASE=("${TINY[@]}" train.steps=6 train.checkpoint_every=3)
RUNS=$WORK/runs
W4A4=(--config "$REPO_DIR/configs/quant/w4a4.yaml")
LSQ='quant.rules=[{pattern: "patch_embed.*", bits: 8}, {pattern: "*.weight", bits: 4, granularity: channel, learn: lsq}, {pattern: "*.input", bits: 4, symmetric: false, signed: false, learn: lsq_plus}, {pattern: "*.attn.probs", kind: log_sqrt2, bits: 4}]'

# ---- quant-sites ----
qft_run quant-sites "${BASE[@]}" "${W4A4[@]}"
expect_ok "quant-sites with the W4A4 preset"
check "quant-sites lists 19 sites of the 1-layer ViT" test "$(json_field sites)" = 19
check "W4A4 enables 13 of them (weights, linear inputs, probabilities)" test "$(json_field enabled)" = 13
check "layers.0.fc1.weight matched rule 5 (int4 per channel)" \
    grep -Eq '^layers\.0\.fc1\.weight +weight +32x16 +5 +int4 signed symmetric per-channel' "$OUT"
check "layers.0.ln1.output matched no rule (fp)" grep -Eq '^layers\.0\.ln1\.output +output .* - +fp$' "$OUT"
check "patch_embed.weight stays 8-bit (rule 1)" grep -Eq '^patch_embed\.weight +weight +16x49 +1 +int8' "$OUT"
qft_run quant-sites "${BASE[@]}" 'quant.rules=[{pattern: "*.ln1.output", kind: log2}]'
expect_error "a log kind on a LayerNorm output" quant-sites 1 "applies to attention probabilities only" \
    "layers.0.ln1.output"
qft_run quant-sites "${BASE[@]}" 'quant.rules=[{pattern: "*.resid1.output", learn: lsq}]'
expect_error "learn on a stream tensor" quant-sites 1 "learn lsq is for linear weights and inputs"
qft_run quant-sites "${BASE[@]}" 'quant.rules=[{pattern: "*.fc2.weight", granularity: group, group_size: 5}]'
expect_error "a group size that does not divide the channels" quant-sites 1 "group_size 5 does not divide"

# ---- PTQ: train FP, calibrate, evaluate quantized ----
qft_run train "${BASE[@]}" run.name=fp
expect_ok "train the FP model"
FP_ACC=$(json_field eval_accuracy)
qft_run eval "${BASE[@]}" "${W4A4[@]}" run.name=fp
expect_error "eval with rules before calibration" eval 1 "no calibration state" "qft calibrate"
qft_run calibrate "${BASE[@]}" "${W4A4[@]}" run.name=fp quant.calib_batches=3
expect_ok "calibrate W4A4 on 3 batches"
check "calibrate: 13 sites, 3 batches, 96 examples" \
    test "$(json_field sites)" = 13 -a "$(json_field batches)" = 3 -a "$(json_field examples)" = 96
check "calibration.safetensors written" test -s "$RUNS/fp/calibration.safetensors"
qft_run eval "${BASE[@]}" "${W4A4[@]}" run.name=fp
expect_ok "eval W4A4 with the calibration"
check "eval JSON says quantized" test "$(json_field quantized)" = true
Q_LOSS=$(json_field loss)
qft_run eval "${BASE[@]}" run.name=fp
check "the same run without rules evaluates in FP (accuracy $FP_ACC)" \
    test "$(json_field quantized)" = false -a "$(json_field accuracy)" = "$FP_ACC"
check "W4A4 changes the loss (FP $(json_field loss), quantized $Q_LOSS)" test "$(json_field loss)" != "$Q_LOSS"
qft_run eval "${BASE[@]}" --config "$REPO_DIR/configs/quant/w8a8.yaml" run.name=fp
expect_error "eval under other rules than the calibration's" eval 1 "was calibrated as" "int4" "int8"
for calibrator in ema percentile mse omse entropy; do
    qft_run calibrate "${BASE[@]}" "${W4A4[@]}" run.name=fp quant.calib_batches=2 \
        "quant.rules=[{pattern: '*.weight', bits: 4, granularity: channel, calibrator: $calibrator}, {pattern: '*.input', bits: 4, symmetric: false, signed: false, calibrator: $calibrator}]"
    expect_ok "calibrate with $calibrator"
done

# ---- RepQ folding: per-channel qkv/fc1 inputs become per tensor; the folded model evaluates alike ----
PERCH='quant.rules=[{pattern: "*.qkv.input", bits: 4, granularity: channel, symmetric: false, signed: false}, {pattern: "*.fc1.input", bits: 4, granularity: channel, symmetric: false, signed: false}, {pattern: "*.input", bits: 4, symmetric: false, signed: false}]'
qft_run calibrate "${BASE[@]}" run.name=fp "$PERCH"
expect_ok "calibrate per-channel qkv/fc1 inputs"
qft_run eval "${BASE[@]}" run.name=fp "$PERCH"
UNFOLDED_LOSS=$(json_field loss)
qft_run reparam "${BASE[@]}" run.name=fp "$PERCH"
expect_ok "qft reparam"
check "reparam folded 2 pairs (qkv, fc1 of the one layer)" test "$(json_field folded)" = 2
qft_run eval "${BASE[@]}" run.name=fp --config "$RUNS/fp/reparam/eval.yaml"
expect_ok "eval the folded model with reparam/eval.yaml"
check "folded per-tensor model's loss $(json_field loss) equals the unfolded per-channel one's ($UNFOLDED_LOSS) to 1e-5" \
    python3 -S -c 'import sys; a, b = map(float, sys.argv[1:]); sys.exit(abs(a - b) > 1e-5 * max(1.0, abs(b)))' \
    "$(json_field loss)" "$UNFOLDED_LOSS"
qft_run calibrate "${BASE[@]}" run.name=fp "${W4A4[@]}"
qft_run reparam "${BASE[@]}" run.name=fp "${W4A4[@]}"
expect_error "reparam without per-channel inputs" reparam 1 "no per-channel qkv.input or fc1.input"

# ---- QAT: LSQ scales learned, checkpointed, resumed bit for bit ----
QAT=("${BASE[@]}" "$LSQ" model.init_from="$RUNS/fp/model.safetensors" quant.calib_batches=2)
qft_run train "${QAT[@]}" run.name=qat
expect_ok "QAT train 6 steps (calibrates first)"
grep -q "quantizers: calibrated" "$ERR" && pass "QAT calibrated its quantizers before step 1" ||
    fail "QAT calibrated its quantizers before step 1"
QAT_ACC=$(json_field eval_accuracy)
QAT_LOSS=$(json_field eval_loss)
cp "$RUNS/qat/checkpoints/step_00000006.safetensors" "$WORK/straight.safetensors"
PYTHONPATH="$CLI_DIR" python3 - "$RUNS/qat/calibration.safetensors" "$WORK/straight.safetensors" <<'PY' && pass "LSQ scales moved away from their calibration" || fail "LSQ scales moved away from their calibration"
import sys
from st_tensors import tensors
calib, ckpt = tensors(sys.argv[1]), tensors(sys.argv[2])
name = "layers.0.fc1.weight.scale"
sys.exit(0 if calib[name] != ckpt["qft.quant." + name] else 1)
PY
rm "$RUNS/qat/checkpoints/step_00000006.safetensors"
qft_run train "${QAT[@]}" run.name=qat
check "QAT resumes from step 3" test "$RC" -eq 0 -a "$(json_field resumed)" = true -a "$(json_field steps_this_run)" = 3
check "resumed QAT checkpoint is bit-identical to the straight run's" \
    cmp -s "$WORK/straight.safetensors" "$RUNS/qat/checkpoints/step_00000006.safetensors"
qft_run eval "${BASE[@]}" "$LSQ" run.name=qat
check "eval of the QAT checkpoint uses its learned quantizers (accuracy $QAT_ACC, loss $QAT_LOSS)" \
    test "$RC" -eq 0 -a "$(json_field quantized)" = true -a "$(json_field accuracy)" = "$QAT_ACC" \
    -a "$(json_field loss)" = "$QAT_LOSS"

# ---- Oscillation control: dampening and freezing on, state in checkpoints, resume bit for bit ----
OSC=("${BASE[@]}" "$LSQ" model.init_from="$RUNS/fp/model.safetensors" quant.calib_batches=2 oscillation.start=0
     oscillation.dampen_lambda=0.5 oscillation.freeze_threshold=0.2 oscillation.freeze_threshold_start=0.2
     oscillation.momentum=0.5 train.lr=0.05)
qft_run train "${OSC[@]}" run.name=osc
expect_ok "QAT with oscillation dampening and freezing"
check "metrics.jsonl logs the dampening loss and frozen weights" \
    python3 -c 'import json, sys; l = [json.loads(x) for x in open(sys.argv[1]) if "osc_tracked" in x]; sys.exit(not (l and l[-1]["osc_tracked"] > 0 and l[-1]["osc_dampen_loss"] > 0))' \
    "$RUNS/osc/metrics.jsonl"
cp "$RUNS/osc/checkpoints/step_00000006.safetensors" "$WORK/osc_straight.safetensors"
rm "$RUNS/osc/checkpoints/step_00000006.safetensors"
qft_run train "${OSC[@]}" run.name=osc
check "oscillation run resumed from step 3 is bit-identical (tracker state in the checkpoint)" \
    cmp -s "$WORK/osc_straight.safetensors" "$RUNS/osc/checkpoints/step_00000006.safetensors"

# ---- Quadapter-style: learned per-channel input scales, model frozen, then folded ----
QUAD='quant.rules=[{pattern: "*.qkv.input", bits: 4, granularity: channel, symmetric: false, signed: false, learn: lsq}, {pattern: "*.fc1.input", bits: 4, granularity: channel, symmetric: false, signed: false, learn: lsq}]'
qft_run train "${BASE[@]}" "$QUAD" run.name=quad model.init_from="$RUNS/fp/model.safetensors" \
    train.freeze_weights=true quant.calib_batches=2 quant.scale_lr=0.01
expect_ok "train only the per-channel input scales (train.freeze_weights)"
PYTHONPATH="$CLI_DIR" python3 - "$RUNS/fp/model.safetensors" "$RUNS/quad/model.safetensors" <<'PY' && pass "train.freeze_weights kept every model parameter" || fail "train.freeze_weights kept every model parameter"
import sys
from st_tensors import tensors as _tensors
def tensors(path):
    return _tensors(path, None)
a, b = tensors(sys.argv[1]), tensors(sys.argv[2])
sys.exit(0 if a == b else 1)
PY
qft_run eval "${BASE[@]}" "$QUAD" run.name=quad
QUAD_LOSS=$(json_field loss)
qft_run reparam "${BASE[@]}" "$QUAD" run.name=quad
check "reparam folds the learned channel scales (2 pairs)" test "$RC" -eq 0 -a "$(json_field folded)" = 2
qft_run eval "${BASE[@]}" run.name=quad --config "$RUNS/quad/reparam/eval.yaml"
check "folded Quadapter model's loss $(json_field loss) equals the unfolded one's ($QUAD_LOSS) to 1e-5" \
    python3 -S -c 'import sys; a, b = map(float, sys.argv[1:]); sys.exit(abs(a - b) > 1e-5 * max(1.0, abs(b)))' \
    "$(json_field loss)" "$QUAD_LOSS"

finish
