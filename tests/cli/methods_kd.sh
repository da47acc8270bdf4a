#!/usr/bin/env bash
# Distillation and frozen quantizer ranges through the CLI: KD-QAT with alpha = 1 pulls the W4A4
# student's logits toward the FP teacher's (lower KL than the same run with alpha = 0), a KD run
# resumes bit for bit (the teacher is re-read, not checkpointed), and quant.freeze_after stops the
# LSQ scales while the weights keep training.
source "$(dirname "$0")/lib.sh" "$@"
need_fmnist
cd "$WORK" || exit 1

RUNS=$WORK/runs
LSQ='quant.rules=[{pattern: "patch_embed.*", bits: 8}, {pattern: "*.weight", bits: 4, granularity: channel, learn: lsq}, {pattern: "*.input", bits: 4, symmetric: false, signed: false, learn: lsq_plus}]'

qft_run train "${TINY[@]}" train.steps=30 train.lr=3e-3 run.name=fp
expect_ok "train the FP teacher (30 steps)"
QAT=("${TINY[@]}" "$LSQ" model.init_from="$RUNS/fp/model.safetensors" quant.calib_batches=2 train.steps=12
     train.lr=1e-3 kd.enabled=true kd.temperature=2)

# last_field RUN KEY: KEY of the last metrics.jsonl line that has it.
last_field() {
    PYTHONPATH="$CLI_DIR" python3 - "$RUNS/$1/metrics.jsonl" "$2" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
print([r[sys.argv[2]] for r in rows if sys.argv[2] in r][-1])
PY
}

# ---- alpha = 0 (the KL is only measured) against alpha = 1 (distillation only) ----
qft_run train "${QAT[@]}" kd.alpha=0 run.name=kd0
expect_ok "QAT with the KL measured only (kd.alpha=0)"
grep -q "kd: teacher $RUNS/fp/model.safetensors" "$ERR" && pass "the teacher defaults to model.init_from" ||
    fail "the teacher defaults to model.init_from"
qft_run train "${QAT[@]}" kd.alpha=1 run.name=kd1 train.checkpoint_every=6
expect_ok "KD-QAT with kd.alpha=1"
KL0=$(last_field kd0 kd_loss)
KL1=$(last_field kd1 kd_loss)
check "alpha=1 ends closer to the teacher: T^2 KL $KL1 < $KL0 (alpha=0), same seed and batches" \
    python3 -c "import sys; sys.exit(0 if $KL1 < $KL0 else 1)"
check "alpha=1 logs the task loss apart from the KD loss" \
    python3 -c "import sys; sys.exit(0 if '$(last_field kd1 task_loss)' != '$KL1' else 1)"

# ---- resume with KD on: the teacher is read again, the result is the same bit for bit ----
cp "$RUNS/kd1/checkpoints/step_00000012.safetensors" "$WORK/straight.safetensors"
rm "$RUNS/kd1/checkpoints/step_00000012.safetensors"
qft_run train "${QAT[@]}" kd.alpha=1 run.name=kd1 train.checkpoint_every=6
check "KD-QAT resumes from step 6" test "$RC" -eq 0 -a "$(json_field resumed)" = true -a "$(json_field steps_this_run)" = 6
check "resumed KD checkpoint is bit-identical to the straight run's" \
    cmp -s "$WORK/straight.safetensors" "$RUNS/kd1/checkpoints/step_00000012.safetensors"

# ---- hidden-state MSE and a missing teacher ----
qft_run train "${QAT[@]}" kd.alpha=0.5 kd.hidden_weight=1 train.steps=3 run.name=kdh
check "kd.hidden_weight logs kd_hidden_loss ($(last_field kdh kd_hidden_loss 2>/dev/null))" \
    test "$RC" -eq 0 -a -n "$(last_field kdh kd_hidden_loss 2>/dev/null)"
qft_run train "${TINY[@]}" kd.enabled=true train.steps=1 run.name=noteacher
expect_error "kd without a teacher" train 1 "kd.enabled: no teacher"

# ---- quant.freeze_after: scales move until step 4, then stay; weights keep training ----
qft_run train "${QAT[@]}" kd.enabled=false quant.freeze_after=4 train.steps=8 train.checkpoint_every=4 run.name=frozen
expect_ok "QAT with quant.freeze_after=4"
PYTHONPATH="$CLI_DIR" python3 - "$RUNS/frozen/calibration.safetensors" "$RUNS/frozen/checkpoints/step_00000004.safetensors" \
    "$RUNS/frozen/checkpoints/step_00000008.safetensors" <<'PY' > "$WORK/freeze.txt"
import sys
from st_tensors import tensors
calib, s4, s8 = (tensors(p) for p in sys.argv[1:])
scales = [k for k in s4 if k.startswith("qft.quant.") and k.endswith(".scale")]
moved = sum(calib[k[len("qft.quant."):]] != s4[k] for k in scales)
same = sum(s4[k] == s8[k] for k in scales)
weights_moved = s4["vit.encoder.layer.0.intermediate.dense.weight"] != s8["vit.encoder.layer.0.intermediate.dense.weight"]
print(len(scales), moved, same, int(weights_moved))
PY
read -r NSCALES MOVED SAME WMOVED < "$WORK/freeze.txt"
check "before the freeze, $MOVED of $NSCALES scales moved from their calibration" test "${MOVED:-0}" -gt 0
check "after the freeze, all $NSCALES scales are identical between steps 4 and 8 ($SAME)" \
    test "${SAME:-x}" = "$NSCALES" -a "${NSCALES:-0}" -gt 0
check "the weights still train after the freeze" test "${WMOVED:-0}" = 1

finish
