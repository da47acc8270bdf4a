#!/usr/bin/env bash
# The progress bar: on a terminal, `qft train` draws step, loss, it/s and ETA on stderr; when stderr
# is not a terminal (files, CI logs) it draws nothing. The JSON summary stays the last stdout line.
source "$(dirname "$0")/lib.sh" "$@"
[ -f "$FMNIST_DIR/train-images-idx3-ubyte.gz" ] || { echo "SKIP: Fashion-MNIST not installed"; exit 77; }

# `script` gives the command a pseudo-terminal; both streams then land in one transcript.
transcript=$WORK/tty.txt
script -qec "$QFT train ${TINY[*]} run.name=tty train.steps=5" "$transcript" >/dev/null 2>&1
check "runs under a terminal" grep -q '"ok": true' "$transcript"
check "draws the bar with step, loss, it/s and ETA" grep -Eq '\] step 5/5 +loss [0-9.]+ +[0-9.]+ it/s +ETA [0-9]+m[0-9]{2}s' "$transcript"

qft_run train "${TINY[@]}" run.name=notty train.steps=5
check "no bar when stderr is a file" bash -c "! grep -q 'it/s' '$ERR'"
check "JSON summary is the last stdout line" bash -c "tail -1 '$OUT' | grep -q '\"command\": \"train\"'"
finish
