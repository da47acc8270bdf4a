#!/usr/bin/env bash
# The default config (the Fashion-MNIST ViT demo) trains: 30 steps beat chance (0.10) by far, and
# the run directory holds a valid config.yaml, metrics.jsonl, checkpoint and exported model.
source "$(dirname "$0")/lib.sh" "$@"
need_fmnist
cd "$WORK" || exit 1

RUN=$WORK/runs/vit_fmnist
qft_run train run.dir="$WORK/runs" train.steps=30 data.eval_limit=500
expect_ok "qft train with the default config, train.steps=30"
acc=$(json_field eval_accuracy)
check "eval_accuracy $acc > 0.35 (chance is 0.10)" \
    python3 -S -c 'import sys; sys.exit(not float(sys.argv[1]) > 0.35)' "$acc"
check "JSON reports 30 steps, not resumed, not interrupted" \
    test "$(json_field steps)/$(json_field resumed)/$(json_field interrupted)" = "30/false/false"
check "final_loss $(json_field final_loss) is below ln(10) = 2.3026" \
    python3 -S -c 'import sys; sys.exit(not float(sys.argv[1]) < 2.3026)' "$(json_field final_loss)"
check "runs/vit_fmnist/config.yaml exists" test -s "$RUN/config.yaml"
check "every line of metrics.jsonl is valid JSON" \
    python3 -c 'import json,sys; [json.loads(l) for l in open(sys.argv[1])]' "$RUN/metrics.jsonl"
check "metrics.jsonl has a train line for step 30" grep -q '^{"step": 30, "loss"' "$RUN/metrics.jsonl"
check "metrics.jsonl has an eval line over 500 examples" grep -q '"eval_examples": 500' "$RUN/metrics.jsonl"
check "the step-30 checkpoint exists" test -s "$RUN/checkpoints/step_00000030.safetensors"
check "model.safetensors exists" test -s "$RUN/model.safetensors"
check "stderr (not a TTY) has no progress-bar carriage returns" bash -c "! grep -q \$'\\r' '$ERR'"
qft_run config --config "$RUN/config.yaml"
check "config.yaml loads back to itself" cmp -s "$OUT" "$RUN/config.yaml"

finish
