#!/usr/bin/env bash
# data.validation_size / eval.split: the held-out examples leave training (fewer steps per epoch),
# the trainer's evaluations and `qft eval` run on them with eval.split=validation and say so in their
# JSON lines, eval.split=test still evaluates the test split, and the misuses are one-line errors.
source "$(dirname "$0")/lib.sh" "$@"
need_fmnist
cd "$WORK" || exit 1

# 2048 training examples, one epoch of batches of 32: 64 steps, or floor(1048 / 32) = 32 with 1000 held out.
BASE=("${TINY[@]}" data.train_limit=2048 train.epochs=1)
VAL=(data.validation_size=1000 eval.split=validation)
RUNS=$WORK/runs

# shellcheck disable=SC2317  # called through check
# eval_lines FILE SPLIT EXAMPLES: metrics.jsonl has eval lines, each with eval_split SPLIT and eval_examples EXAMPLES.
eval_lines() {
    python3 -S - "$@" <<'EOF'
import json, sys
evals = [e for e in (json.loads(l) for l in open(sys.argv[1]) if l.strip()) if "eval_loss" in e]
sys.exit(0 if evals and all(e.get("eval_split") == sys.argv[2] and e.get("eval_examples") == int(sys.argv[3])
                            for e in evals) else 1)
EOF
}

qft_run train "${BASE[@]}" run.name=full
expect_ok "train one epoch on 2048 examples"
check "no validation split: $(json_field steps) steps == 2048 / 32" test "$(json_field steps)" = 64
check "train JSON: train_examples $(json_field train_examples) == 2048" test "$(json_field train_examples)" = 2048
check "train JSON: eval_split is test by default" test "$(json_field eval_split)" = test
check "metrics.jsonl: eval lines say test, 256 examples (data.eval_limit)" eval_lines "$RUNS/full/metrics.jsonl" test 256

qft_run train "${BASE[@]}" "${VAL[@]}" run.name=val
expect_ok "train with data.validation_size=1000 eval.split=validation"
check "1000 held out: $(json_field steps) steps == floor(1048 / 32)" test "$(json_field steps)" = 32
check "train JSON: train_examples $(json_field train_examples) == 1048" test "$(json_field train_examples)" = 1048
check "train JSON: eval_split validation" test "$(json_field eval_split)" = validation
check "metrics.jsonl: eval lines say validation, 1000 examples" eval_lines "$RUNS/val/metrics.jsonl" validation 1000
check "stderr: the evaluation line says validation" grep -q "^step 32: validation loss" "$ERR"
TRAIN_ACC=$(json_field eval_accuracy)
TRAIN_LOSS=$(json_field eval_loss)

qft_run eval "${BASE[@]}" "${VAL[@]}" run.name=val
expect_ok "qft eval eval.split=validation on that checkpoint"
check "eval JSON: split validation" test "$(json_field split)" = validation
check "eval JSON: examples $(json_field examples) == data.validation_size (data.eval_limit does not apply)" \
    test "$(json_field examples)" = 1000
check "eval agrees with training's last evaluation (accuracy $TRAIN_ACC, loss $TRAIN_LOSS)" \
    test "$(json_field accuracy)" = "$TRAIN_ACC" -a "$(json_field loss)" = "$TRAIN_LOSS"
VAL_ACC=$(json_field accuracy)
VAL_LOSS=$(json_field loss)

qft_run eval --config "$RUNS/val/config.yaml"
check "eval --config runs/val/config.yaml (the keys are saved) repeats it" \
    test "$RC" -eq 0 -a "$(json_field split)" = validation -a "$(json_field accuracy)" = "$VAL_ACC"

qft_run eval "${BASE[@]}" "${VAL[@]}" run.name=val eval.split=test
expect_ok "qft eval eval.split=test on the same checkpoint"
check "eval JSON: split test, examples $(json_field examples) == 256" \
    test "$(json_field split)" = test -a "$(json_field examples)" = 256
check "the test split gives another accuracy ($(json_field accuracy) vs validation $VAL_ACC) and loss" \
    test "$(json_field accuracy)" != "$VAL_ACC" -a "$(json_field loss)" != "$VAL_LOSS"

# Holding out without evaluating on it still shortens training.
qft_run train "${BASE[@]}" data.validation_size=1000 run.name=held
expect_ok "train with data.validation_size=1000 and eval.split=test"
check "still $(json_field steps) steps == 32, evaluations on test" \
    test "$(json_field steps)" = 32 -a "$(json_field eval_split)" = test
check "metrics.jsonl: eval lines say test, 256 examples" eval_lines "$RUNS/held/metrics.jsonl" test 256

# Errors: one line each, naming the key.
qft_run train "${BASE[@]}" eval.split=validation run.name=nosize
expect_error "eval.split=validation without data.validation_size" train 1 "eval.split" "data.validation_size > 0"
qft_run eval "${BASE[@]}" eval.split=validation run.name=val
expect_error "qft eval eval.split=validation without data.validation_size" eval 1 "eval.split" \
    "data.validation_size > 0"
qft_run train "${BASE[@]}" data.validation_size=2048 run.name=all
expect_error "data.validation_size = the limited training set" train 1 "data.validation_size = 2048" \
    "only 2048 example(s) after data.train_limit"
qft_run train "${BASE[@]}" data.validation_size=60000 data.train_limit=0 run.name=all
expect_error "data.validation_size = the whole training set" train 1 "data.validation_size = 60000" \
    "only 60000 example(s)"
qft_run train "${BASE[@]}" data.validation_size=-1 run.name=negative
expect_error "negative data.validation_size" train 1 "data.validation_size" ">= 0"
qft_run config eval.split=dev
expect_error "eval.split=dev" config 1 "eval.split" "'dev' is not one of test|validation"
qft_run train "${BASE[@]}" data.validation_size=1500 data.batch_size=1024 run.name=bigbatch
expect_error "a batch larger than what training keeps" train 1 "data.batch_size 1024" "(548 examples)"

finish
