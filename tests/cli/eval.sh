#!/usr/bin/env bash
# `qft eval`: evaluates the run's newest checkpoint (or eval.checkpoint) on the evaluation split,
# agrees with the evaluation at the end of training, and fails clearly when there is nothing to load.
source "$(dirname "$0")/lib.sh" "$@"
need_fmnist
cd "$WORK" || exit 1

BASE=("${TINY[@]}" data.eval_limit=256 data.eval_batch_size=100 train.steps=4 train.checkpoint_every=1)
RUNS=$WORK/runs

# shellcheck disable=SC2317  # called through check
# in_unit_interval X: 0 <= X <= 1.
in_unit_interval() { python3 -S -c 'import sys; x = float(sys.argv[1]); sys.exit(not 0.0 <= x <= 1.0)' "$1" 2>/dev/null; }
# shellcheck disable=SC2317
# finite X: X is a finite number.
finite() { python3 -S -c 'import math, sys; sys.exit(not math.isfinite(float(sys.argv[1])))' "$1" 2>/dev/null; }

qft_run train "${BASE[@]}" run.name=e
expect_ok "train 4 tiny steps"
TRAIN_ACC=$(json_field eval_accuracy)
TRAIN_LOSS=$(json_field eval_loss)

qft_run eval "${BASE[@]}" run.name=e
expect_ok "qft eval with the run's config"
check "eval JSON: \"command\": \"eval\"" test "$(json_field command)" = eval
check "eval JSON: accuracy $(json_field accuracy) is in [0, 1]" in_unit_interval "$(json_field accuracy)"
check "eval JSON: loss $(json_field loss) is finite" finite "$(json_field loss)"
check "eval JSON: examples $(json_field examples) == data.eval_limit (256)" test "$(json_field examples)" = 256
check "eval agrees with the end-of-training evaluation (accuracy $TRAIN_ACC, loss $TRAIN_LOSS)" \
    test "$(json_field accuracy)" = "$TRAIN_ACC" -a "$(json_field loss)" = "$TRAIN_LOSS"
LAST_ACC=$(json_field accuracy)

# The saved config alone reproduces the evaluation.
qft_run eval --config "$RUNS/e/config.yaml"
check "eval --config runs/e/config.yaml gives the same result" \
    test "$RC" -eq 0 -a "$(json_field accuracy)" = "$LAST_ACC" -a "$(json_field examples)" = 256
qft_run config --config "$RUNS/e/config.yaml"
check "runs/e/config.yaml loads back to itself (qft config)" cmp -s "$OUT" "$RUNS/e/config.yaml"

# A partial last batch (100 = 64 + 36) and the whole split.
qft_run eval "${BASE[@]}" run.name=e data.eval_limit=100 data.eval_batch_size=64
check "eval with a partial last batch counts 100 examples" test "$RC" -eq 0 -a "$(json_field examples)" = 100
qft_run eval "${BASE[@]}" run.name=e data.eval_limit=0 data.eval_batch_size=500
check "eval with data.eval_limit=0 uses the whole test split (10000)" test "$RC" -eq 0 -a "$(json_field examples)" = 10000

# Explicit checkpoints: an older training checkpoint and the exported model.
qft_run eval "${BASE[@]}" run.name=e eval.checkpoint="$RUNS/e/checkpoints/step_00000003.safetensors"
expect_ok "eval.checkpoint=<the step-3 checkpoint>"
qft_run eval "${BASE[@]}" run.name=e eval.checkpoint="$RUNS/e/model.safetensors"
expect_ok "eval.checkpoint=<the exported model.safetensors>"
check "the exported model evaluates like the final checkpoint" test "$(json_field accuracy)" = "$LAST_ACC"

# Errors.
qft_run eval "${BASE[@]}" run.name=never_trained
expect_error "eval of a run with no checkpoint" eval 1 "$RUNS/never_trained" "checkpoint"
check "a failed eval creates no run directory" test ! -e "$RUNS/never_trained"

qft_run eval "${BASE[@]}" run.name=e eval.checkpoint="$WORK/missing.safetensors"
expect_error "eval.checkpoint=<nonexistent file>" eval 1 "$WORK/missing.safetensors"

qft_run eval "${BASE[@]}" run.name=e model.hidden_size=32
expect_error "eval with a model config that does not match the checkpoint" eval 1 \
    "$RUNS/e/checkpoints/step_00000004.safetensors" "shape"

fixtures truncate "$RUNS/e/checkpoints/step_00000004.safetensors" "$WORK/half.safetensors" 3000
qft_run eval "${BASE[@]}" run.name=e eval.checkpoint="$WORK/half.safetensors"
expect_error "eval of a truncated checkpoint" eval 1 "$WORK/half.safetensors"

finish
