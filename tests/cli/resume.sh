#!/usr/bin/env bash
# Resume is bit-exact: N steps + resume to 2N == 2N straight, byte for byte in model.safetensors and
# in the final checkpoint (dropout and shuffling on, crossing an epoch). Plus resume=never, an
# explicit resume path, and clear errors for corrupt or mismatched checkpoints.
source "$(dirname "$0")/lib.sh" "$@"
need_fmnist
cd "$WORK" || exit 1

# 256 examples / batch 32 = 8 batches an epoch: resuming at step 5 is mid-epoch, step 10 is in the next.
N=5
N2=10
BASE=("${TINY[@]}" data.train_limit=256 data.eval_limit=64 data.eval_batch_size=64 model.dropout=0.1
      data.shuffle=true train.checkpoint_every=0 train.warmup_steps=2)
RUNS=$WORK/runs

ckpt() { printf '%s/%s/checkpoints/step_%08d.safetensors' "$RUNS" "$1" "$2"; }

# train_ok "what" ARGS...: one check that the training succeeded with the expected step counts.
# Expected values come from the variables STEPS, THIS_RUN and RESUMED.
train_ok() {
    local what=$1
    shift
    qft_run train "$@"
    local got want
    got="exit=$RC steps=$(json_field steps) steps_this_run=$(json_field steps_this_run) resumed=$(json_field resumed)"
    want="exit=0 steps=$STEPS steps_this_run=$THIS_RUN resumed=$RESUMED"
    if [ "$got" = "$want" ] && [ "$(json_field ok)" = "true" ]; then
        pass "$what ($want)"
    else
        fail "$what: got $got, expected $want"
        show_last
    fi
}

# Train lines of metrics.jsonl without the timing field: what two equal runs must share.
train_metrics() {
    grep '"loss"' "$RUNS/$1/metrics.jsonl" | sed 's/, "ms_per_step": [0-9.e+-]*//'
}

# --- split vs straight with a constant schedule (the lr of a step does not depend on train.steps) --
CONST=("${BASE[@]}" train.schedule=constant)
STEPS=$N2 THIS_RUN=$N2 RESUMED=false train_ok "run A: $N2 steps straight" "${CONST[@]}" run.name=A train.steps=$N2
STEPS=$N THIS_RUN=$N RESUMED=false train_ok "run B: first $N steps" "${CONST[@]}" run.name=B train.steps=$N
check "run B wrote the step-$N checkpoint" test -s "$(ckpt B $N)"
STEPS=$N2 THIS_RUN=$N RESUMED=true train_ok "run B: resumed to $N2" "${CONST[@]}" run.name=B train.steps=$N2
check "resume message on stderr names the checkpoint" grep -qF "$(ckpt B $N)" "$ERR"
check "A and B final model.safetensors are identical" cmp "$RUNS/A/model.safetensors" "$RUNS/B/model.safetensors"
check "A and B step-$N2 checkpoints are identical" cmp "$(ckpt A $N2)" "$(ckpt B $N2)"
check "A and B log the same training losses at every step" cmp -s <(train_metrics A) <(train_metrics B)
check "B's metrics.jsonl has each step once (appended on resume)" \
    test "$(train_metrics B | grep -c '')" -eq "$N2"

# The same with gradient accumulation: the micro-batch index must survive the resume too.
ACC=("${CONST[@]}" train.grad_accum=2)
STEPS=$N2 THIS_RUN=$N2 RESUMED=false train_ok "grad_accum=2 straight" "${ACC[@]}" run.name=A_acc train.steps=$N2
STEPS=$N THIS_RUN=$N RESUMED=false train_ok "grad_accum=2 first half" "${ACC[@]}" run.name=B_acc train.steps=$N
STEPS=$N2 THIS_RUN=$N RESUMED=true train_ok "grad_accum=2 resumed" "${ACC[@]}" run.name=B_acc train.steps=$N2
check "grad_accum=2: split and straight models are identical" \
    cmp "$RUNS/A_acc/model.safetensors" "$RUNS/B_acc/model.safetensors"

# --- cosine schedule: stop at N inside a 2N run, resume from an explicit path ----------------------
STEPS=$N2 THIS_RUN=$N2 RESUMED=false train_ok "cosine run C: $N2 straight" "${BASE[@]}" run.name=C train.steps=$N2
STEPS=$N2 THIS_RUN=$N2 RESUMED=false train_ok "cosine run D: $N2 with checkpoint_every=$N" \
    "${BASE[@]}" run.name=D train.steps=$N2 train.checkpoint_every=$N
check "checkpointing does not change the trajectory (C == D)" \
    cmp "$RUNS/C/model.safetensors" "$RUNS/D/model.safetensors"
check "D kept its step-$N checkpoint" test -s "$(ckpt D $N)"
STEPS=$N2 THIS_RUN=$N RESUMED=true train_ok "run E: train.resume=<D's step-$N checkpoint>" \
    "${BASE[@]}" run.name=E train.steps=$N2 train.resume="$(ckpt D $N)"
check "E (resumed from an explicit path) == C (straight)" \
    cmp "$RUNS/C/model.safetensors" "$RUNS/E/model.safetensors"
check "E's and C's final checkpoints are identical" cmp "$(ckpt C $N2)" "$(ckpt E $N2)"

# --- a finished run resumed again is a no-op -------------------------------------------------------
cp "$RUNS/B/model.safetensors" "$WORK/B_model_before.safetensors"
STEPS=$N2 THIS_RUN=0 RESUMED=true train_ok "rerunning a finished run trains no step" \
    "${CONST[@]}" run.name=B train.steps=$N2
check "... and leaves model.safetensors unchanged" cmp "$WORK/B_model_before.safetensors" "$RUNS/B/model.safetensors"

# --- resume=never ---------------------------------------------------------------------------------
STEPS=3 THIS_RUN=3 RESUMED=false train_ok "resume=never restarts from step 0" \
    "${CONST[@]}" run.name=B train.steps=3 train.resume=never
check "resume=never: the JSON checkpoint exists" test -s "$(json_field checkpoint)"
check "resume=never: metrics.jsonl restarted (3 train lines)" test "$(train_metrics B | grep -c '')" -eq 3
STEPS=3 THIS_RUN=3 RESUMED=false train_ok "resume=never, same steps as A's first 3" \
    "${CONST[@]}" run.name=A3 train.steps=3
check "resume=never gives the same model as a fresh run" \
    cmp "$RUNS/A3/model.safetensors" "$RUNS/B/model.safetensors"
# The restarted run is the run now: auto-resume must continue it, not the stale step-$N2 of before.
STEPS=4 THIS_RUN=1 RESUMED=true train_ok "after resume=never, auto resumes the new run (step 3 -> 4)" \
    "${CONST[@]}" run.name=B train.steps=4

# --- bad checkpoints --------------------------------------------------------------------------------
STEPS=$N THIS_RUN=$N RESUMED=false train_ok "run F: $N steps" "${BASE[@]}" run.name=F train.steps=$N
bad=$(ckpt F $N)
fixtures truncate "$bad" "$bad.tmp" $(($(stat -c %s "$bad") / 2)) && mv "$bad.tmp" "$bad"
qft_run train "${BASE[@]}" run.name=F train.steps=$N2
expect_error "a truncated newest checkpoint" train 1 "$bad"

printf 'garbage, not a checkpoint at all' >"$bad"
qft_run train "${BASE[@]}" run.name=F train.steps=$N2
expect_error "a garbage newest checkpoint" train 1 "$bad"

qft_run train "${BASE[@]}" run.name=G train.steps=$N2 train.resume="$WORK/nope.safetensors"
expect_error "train.resume=<nonexistent path>" train 1 "$WORK/nope.safetensors"

qft_run train "${BASE[@]}" run.name=G train.steps=$N2 train.resume="$RUNS/C/model.safetensors"
expect_error "train.resume=<an exported model, not a checkpoint>" train 1 "$RUNS/C/model.safetensors" "optimizer"

qft_run train "${BASE[@]}" run.name=G train.steps=$N2 model.hidden_size=32 train.resume="$(ckpt C $N2)"
expect_error "train.resume=<checkpoint of another model shape>" train 1 "$(ckpt C $N2)" "shape"

finish
