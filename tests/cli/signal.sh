#!/usr/bin/env bash
# SIGTERM/SIGINT during training: exit 0 with "interrupted": true and a checkpoint; a rerun resumes
# and finishes, bit-identical to a run never interrupted. SIGKILL: the rerun resumes from the newest
# periodic checkpoint (atomic writes leave no half-written one behind).
source "$(dirname "$0")/lib.sh" "$@"
need_fmnist
cd "$WORK" || exit 1

S=1500  # long enough to catch mid-run (0.5-5 ms a step), short enough to finish four times
# One thread: the fastest at this size on a busy machine, where spinning workers cost most.
BASE=("${TINY[@]}" data.eval_limit=64 data.eval_batch_size=64 model.dropout=0.1 train.steps="$S"
      train.log_every=1 train.eval_every=1000000 train.schedule=cosine run.threads=1)
RUNS=$WORK/runs

# start_bg NAME ARGS...: starts qft train in the background; BG_PID, and output in $WORK/NAME.{out,err}.
# No `timeout` wrapper: the signals (SIGKILL above all) must reach qft itself; finish_bg keeps watch.
start_bg() {
    local name=$1
    shift
    "$QFT" train "${BASE[@]}" run.name="$name" "$@" >"$WORK/$name.out" 2>"$WORK/$name.err" &
    BG_PID=$!
}

# wait_exit: waits up to $QFT_TIMEOUT s for the background run to end (kills it after that);
# RC is its exit status (137 when it had to be killed).
wait_exit() {
    local i
    for ((i = 0; i < QFT_TIMEOUT * 20; i++)); do
        kill -0 "$BG_PID" 2>/dev/null || break
        sleep 0.05
    done
    kill -0 "$BG_PID" 2>/dev/null && kill -KILL "$BG_PID"
    RC=0
    { wait "$BG_PID"; } 2>/dev/null || RC=$?
}

# wait_metrics NAME MIN_STEP: polls metrics.jsonl until a train line of step >= MIN_STEP appears
# (or the process ends, or 60 s pass); fails in the latter two cases.
wait_metrics() {
    local file=$RUNS/$1/metrics.jsonl min=$2 i last
    for ((i = 0; i < 6000; i++)); do
        if [ -f "$file" ]; then
            last=$(grep -o '"step": [0-9]*, "loss"' "$file" | tail -n 1 | tr -dc '0-9')
            [ -n "$last" ] && [ "$last" -ge "$min" ] && return 0
        fi
        kill -0 "$BG_PID" 2>/dev/null || return 1
        sleep 0.01
    done
    return 1
}

# finish_bg NAME: waits for the background run; RC, $OUT, $ERR and J as after qft_run.
finish_bg() {
    wait_exit
    cp "$WORK/$1.out" "$OUT"
    cp "$WORK/$1.err" "$ERR"
    parse_json "$OUT"
}

# interrupted_ok NAME SIGNAL: checks of a run stopped by a catchable signal.
interrupted_ok() {
    local name=$1 sig=$2 steps ck
    if [ "$RC" -eq 0 ] && [ "$(json_field ok)" = "true" ] && [ "$(json_field interrupted)" = "true" ]; then
        pass "SIG$sig: exit 0, \"ok\": true, \"interrupted\": true (stopped at step $(json_field steps) of $S)"
    else
        fail "SIG$sig: exit $RC, ok=$(json_field ok), interrupted=$(json_field interrupted)"
        show_last
    fi
    steps=$(json_field steps)
    check "SIG$sig: stopped before the end (0 < $steps < $S)" test "$steps" -gt 0 -a "$steps" -lt "$S"
    ck=$(printf '%s/%s/checkpoints/step_%08d.safetensors' "$RUNS" "$name" "$steps")
    check "SIG$sig: checkpoint of the stopping step exists and is the one reported" \
        test -s "$ck" -a "$(json_field checkpoint)" = "$ck"
    check "SIG$sig: no stray temporary files in checkpoints/" \
        test -z "$(find "$RUNS/$name/checkpoints" -type f ! -name 'step_*.safetensors')"
    check "SIG$sig: stderr shows no crash" bash -c "! grep -qiE 'segmentation|core dumped|abort' '$ERR'"
    INTERRUPTED_AT=$steps
}

# resumed_ok NAME: checks of the rerun after an interruption at $INTERRUPTED_AT.
resumed_ok() {
    local got want
    got="exit=$RC resumed=$(json_field resumed) interrupted=$(json_field interrupted) steps=$(json_field steps)"
    got+=" steps_this_run=$(json_field steps_this_run)"
    want="exit=0 resumed=true interrupted=false steps=$S steps_this_run=$((S - INTERRUPTED_AT))"
    if [ "$got" = "$want" ]; then pass "$1: rerun resumes and completes ($want)"; else fail "$1: got $got, expected $want"; show_last; fi
}

# --- the reference: S steps never interrupted -------------------------------------------------
qft_run train "${BASE[@]}" run.name=straight
expect_ok "reference run of $S steps"

# --- SIGTERM ----------------------------------------------------------------------------------
start_bg term
if wait_metrics term 1; then pass "SIGTERM run logged a step"; else fail "SIGTERM run: no metrics line before it ended"; fi
kill -TERM "$BG_PID" 2>/dev/null
finish_bg term
interrupted_ok term TERM
check "SIGTERM: model.safetensors written" test -s "$RUNS/term/model.safetensors"
qft_run train "${BASE[@]}" run.name=term
resumed_ok "SIGTERM"
check "SIGTERM: interrupted+resumed model == uninterrupted model (bit for bit)" \
    cmp "$RUNS/straight/model.safetensors" "$RUNS/term/model.safetensors"
check "SIGTERM: metrics.jsonl logs each of the $S steps exactly once" \
    test "$(grep -o '"step": [0-9]*, "loss"' "$RUNS/term/metrics.jsonl" | sort -u | grep -c '')" -eq "$S" -a \
    "$(grep -c '"loss"' "$RUNS/term/metrics.jsonl")" -eq "$S"

# --- SIGINT (Ctrl-C) --------------------------------------------------------------------------
start_bg int
if wait_metrics int 1; then pass "SIGINT run logged a step"; else fail "SIGINT run: no metrics line before it ended"; fi
kill -INT "$BG_PID" 2>/dev/null
finish_bg int
interrupted_ok int INT
qft_run train "${BASE[@]}" run.name=int
resumed_ok "SIGINT"
check "SIGINT: interrupted+resumed model == uninterrupted model" \
    cmp "$RUNS/straight/model.safetensors" "$RUNS/int/model.safetensors"

# --- SIGKILL: nothing to catch; the periodic checkpoints must be enough -------------------------
start_bg kill train.checkpoint_every=100
if wait_metrics kill 250; then pass "SIGKILL run reached step 250"; else fail "SIGKILL run: did not reach step 250"; fi
kill -KILL "$BG_PID" 2>/dev/null
wait_exit
check "SIGKILL: the run died by the signal (exit $RC)" test "$RC" -eq 137
newest=$(find "$RUNS/kill/checkpoints" -name 'step_*.safetensors' -printf '%f\n' | sort | tail -n 1)
check "SIGKILL: a periodic checkpoint survived ($newest)" test -n "$newest"
qft_run train "${BASE[@]}" run.name=kill train.checkpoint_every=100
if [ "$RC" -eq 0 ] && [ "$(json_field resumed)" = "true" ] && [ "$(json_field steps)" = "$S" ]; then
    pass "SIGKILL: rerun resumes from $(grep -o 'step_[0-9]*' "$ERR" | head -n 1) and completes"
else
    fail "SIGKILL: rerun exit $RC, resumed=$(json_field resumed), steps=$(json_field steps)"
    show_last
fi
check "SIGKILL: killed+resumed model == uninterrupted model" \
    cmp "$RUNS/straight/model.safetensors" "$RUNS/kill/model.safetensors"

finish
