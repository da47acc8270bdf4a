#!/usr/bin/env bash
# The fine-tuning methods through the CLI: the outlier penalty lowers the measured activation range at its
# sites (`qft analyze`) against the same run without it, and their outlier ratio max|x - mu|/sigma, and logs
# task loss and penalty apart; noise-trained
# QAT differs from plain QAT and evaluates with the real quantizer; histogram noise differs from uniform noise;
# noise training then PTQ (calibrate + eval) works; resume is bit-exact with penalty and adaptive noise on and
# with histogram noise; bad settings are one-line errors.
source "$(dirname "$0")/lib.sh" "$@"
need_fmnist
cd "$WORK" || exit 1

RUNS=$WORK/runs
BASE=("${TINY[@]}" model.num_layers=2 train.lr=3e-3 train.log_every=20 run.threads=1)
PENALTY=(penalty.lambda=1 penalty.k=3)
W4A4=(--config "$REPO_DIR/configs/quant/w4a4.yaml")

# mean_absmax RUN: mean over the penalized sites (default penalty.sites) of max|x| in qft analyze's ranges.csv.
mean_absmax() {
    python3 -S - "$RUNS/$1/ranges.csv" <<'PY'
import csv, re, sys
rows = [r for r in csv.DictReader(open(sys.argv[1]))
        if re.match(r"layers\.\d+\.(ln.\.output|fc2\.input|resid.\.output)$", r["site"])]
print("%.4f" % (sum(float(r["absmax"]) for r in rows) / len(rows)) if len(rows) == 10 else "none")
PY
}

# ---- outlier penalty: lower activation ranges than the same run without it ----
qft_run train "${BASE[@]}" run.name=plain train.steps=60
expect_ok "plain FP run, 60 steps"
qft_run train "${BASE[@]}" "${PENALTY[@]}" run.name=penalty train.steps=60
expect_ok "the same run with the outlier penalty"
line=$(grep '"task_loss"' "$RUNS/penalty/metrics.jsonl" | tail -n 1)
python3 -S -c '
import json, sys
d = json.loads(sys.argv[1])
sys.exit(not (d["penalty"] > 0 and abs(d["loss"] - d["task_loss"] - d["penalty_lambda"] * d["penalty"]) < 1e-5))' "$line" &&
    pass "metrics.jsonl: loss = task_loss + lambda * penalty ($line)" || fail "metrics.jsonl penalty fields: $line"
for run in plain penalty; do
    qft_run analyze "${BASE[@]}" run.name=$run quant.calib_batches=4
    expect_ok "qft analyze $run"
done
PLAIN_MAX=$(mean_absmax plain)
PENALTY_MAX=$(mean_absmax penalty)
check "the penalty lowers the mean max|x| of its 10 sites ($PENALTY_MAX vs $PLAIN_MAX without)" \
    python3 -S -c 'import sys; sys.exit(not float(sys.argv[1]) < 0.97 * float(sys.argv[2]))' "$PENALTY_MAX" "$PLAIN_MAX"

# ---- the penalty lowers the outlier ratio max|x - mu|/sigma (what it targets, not only the scale) ----
# Fine-tuning from the plain run's weights; penalty.lambda=1e-9 logs the same monitor with no pull.
FT=("${BASE[@]}" model.init_from="$RUNS/plain/model.safetensors" train.lr=1e-3 train.log_every=10 train.steps=40
    penalty.k=3)
qft_run train "${FT[@]}" run.name=monitor penalty.lambda=1e-9
expect_ok "fine-tuning with the penalty's monitor only"
qft_run train "${FT[@]}" run.name=pulled penalty.lambda=1
expect_ok "fine-tuning with the penalty"
last_mean_sigma() { grep '"penalty_mean_sigma"' "$RUNS/$1/metrics.jsonl" | tail -n 1 | sed -E 's/.*"penalty_mean_sigma": ([0-9.e+-]+).*/\1/'; }
MONITOR_RATIO=$(last_mean_sigma monitor)
PULLED_RATIO=$(last_mean_sigma pulled)
check "the penalty lowers the mean outlier ratio of its sites ($PULLED_RATIO vs $MONITOR_RATIO sigma without a pull)" \
    python3 -S -c 'import sys; sys.exit(not float(sys.argv[1]) < 0.95 * float(sys.argv[2]))' "$PULLED_RATIO" "$MONITOR_RATIO"

# ---- noise fine-tuning: QAT from the plain run's weights, with and without noise ----
QAT=("${BASE[@]}" "${W4A4[@]}" model.init_from="$RUNS/plain/model.safetensors" quant.calib_batches=2 train.steps=10)
qft_run train "${QAT[@]}" run.name=qat
expect_ok "plain W4A4 QAT"
qft_run train "${QAT[@]}" run.name=noise noise.kind=uniform noise.adapt_every=3
expect_ok "W4A4 QAT with adaptive uniform noise"
NOISE_ACC=$(json_field eval_accuracy)
NOISE_LOSS=$(json_field eval_loss)
check "noise training gives other weights than plain QAT" \
    bash -c "! cmp -s '$RUNS/qat/model.safetensors' '$RUNS/noise/model.safetensors'"
qft_run eval "${BASE[@]}" "${W4A4[@]}" run.name=noise
check "qft eval of the noise run quantizes for real and reproduces its final evaluation (loss $NOISE_LOSS)" \
    test "$RC" -eq 0 -a "$(json_field quantized)" = true -a "$(json_field loss)" = "$NOISE_LOSS" \
    -a "$(json_field accuracy)" = "$NOISE_ACC"

# ---- histogram noise (NIPQ): the measured residual's distribution in place of uniform noise ----
qft_run train "${QAT[@]}" run.name=hist noise.kind=histogram noise.adapt_every=3
expect_ok "W4A4 QAT with residual-histogram noise"
check "histogram noise gives other weights than uniform noise" \
    bash -c "! cmp -s '$RUNS/noise/model.safetensors' '$RUNS/hist/model.safetensors'"
check "the checkpoint holds the per-site histogram CDFs" \
    grep -q "qft.noise.histogram_cdf" "$RUNS/hist/checkpoints/step_00000010.safetensors"

# ---- penalty + noise in FP-weight training, then PTQ ----
qft_run train "${BASE[@]}" "${PENALTY[@]}" "${W4A4[@]}" run.name=both noise.kind=gaussian train.steps=10 \
    model.init_from="$RUNS/plain/model.safetensors" quant.calib_batches=2
expect_ok "penalty + gaussian noise together"
qft_run calibrate "${BASE[@]}" "${W4A4[@]}" run.name=both quant.calib_batches=2 eval.checkpoint="$RUNS/both/model.safetensors"
expect_ok "PTQ after noise training: calibrate"
qft_run eval "${BASE[@]}" "${W4A4[@]}" run.name=both eval.checkpoint="$RUNS/both/model.safetensors"
check "PTQ after noise training: eval is quantized" test "$RC" -eq 0 -a "$(json_field quantized)" = true

# ---- noise on the attention probabilities only (the attention op draws it; a_site adapts at steps 0, 3, 6, 9) ----
qft_run train "${QAT[@]}" run.name=noise_probs noise.kind=uniform noise.adapt_every=3 'noise.sites=layers.*.attn.probs'
expect_ok "W4A4 QAT with adaptive uniform noise on layers.*.attn.probs only"
PROBS_LOSS=$(json_field eval_loss)
check "noise on the probabilities only gives other weights than plain QAT" \
    bash -c "test -f '$RUNS/noise_probs/model.safetensors' && ! cmp -s '$RUNS/qat/model.safetensors' '$RUNS/noise_probs/model.safetensors'"
check "and other weights than noise on every site" \
    bash -c "test -f '$RUNS/noise_probs/model.safetensors' && ! cmp -s '$RUNS/noise/model.safetensors' '$RUNS/noise_probs/model.safetensors'"
qft_run eval "${BASE[@]}" "${W4A4[@]}" run.name=noise_probs
check "qft eval of it quantizes for real and reproduces its final evaluation (loss $PROBS_LOSS)" \
    test "$RC" -eq 0 -a "$(json_field quantized)" = true -a "$(json_field loss)" = "$PROBS_LOSS"

# ---- resume stays bit-exact with penalty and adaptive noise on (amplitudes adapt at steps 0, 3, 6) ----
BOTH=("${QAT[@]}" "${PENALTY[@]}" noise.kind=uniform noise.adapt_every=3 noise.anneal=0.3
      penalty.warmup_steps=4 data.shuffle=true train.steps=8)
qft_run train "${BOTH[@]}" run.name=straight
expect_ok "8 steps straight with penalty and noise"
qft_run train "${BOTH[@]}" run.name=split train.steps=8 train.checkpoint_every=4
rm "$RUNS/split/checkpoints/step_00000008.safetensors"
qft_run train "${BOTH[@]}" run.name=split
check "resumed from step 4" test "$RC" -eq 0 -a "$(json_field resumed)" = true -a "$(json_field steps_this_run)" = 4
check "resumed run's final checkpoint is bit-identical to the straight run's" \
    cmp "$RUNS/straight/checkpoints/step_00000008.safetensors" "$RUNS/split/checkpoints/step_00000008.safetensors"

# ---- resume stays bit-exact with histogram noise: the CDFs measured at step 3 drive steps 4 and 5 ----
HIST=("${QAT[@]}" noise.kind=histogram noise.adapt_every=3 noise.anneal=0.3 data.shuffle=true train.steps=8)
qft_run train "${HIST[@]}" run.name=hist_straight
expect_ok "8 steps straight with histogram noise"
qft_run train "${HIST[@]}" run.name=hist_split train.checkpoint_every=4
rm "$RUNS/hist_split/checkpoints/step_00000008.safetensors"
qft_run train "${HIST[@]}" run.name=hist_split
check "histogram noise: resumed from step 4" \
    test "$RC" -eq 0 -a "$(json_field resumed)" = true -a "$(json_field steps_this_run)" = 4
check "histogram noise: resumed run's final checkpoint is bit-identical to the straight run's" \
    cmp "$RUNS/hist_straight/checkpoints/step_00000008.safetensors" \
    "$RUNS/hist_split/checkpoints/step_00000008.safetensors"

# ---- errors ----
qft_run train "${BASE[@]}" run.name=bad noise.kind=uniform train.steps=2
expect_error "noise without quantized sites" train 1 "noise.sites"
qft_run train "${BASE[@]}" run.name=bad penalty.lambda=1 penalty.sites=layers.*.nothing train.steps=2
expect_error "a penalty pattern that matches no site" train 1 "layers.*.nothing"

finish
