#!/usr/bin/env bash
# Training-step benchmark: qft (CPU backend) vs PyTorch CPU, side by side in one run.
#
#   benchmarks/run_step_bench.sh            # build if needed, run both sides, print a Markdown report
#   benchmarks/run_step_bench.sh --write    # ... and also replace the marked section of benchmarks/RESULTS.md
#   MODE=qat benchmarks/run_step_bench.sh [--write]   # QAT step of the demo ViT (below; its own section)
#
# Models: the demo ViT (qft's default config) and "BERT-base-sized layers" (2 layers of BERT-base
# width). Same threads, batch, dims, float32, dropout 0, AdamW, no gradient clipping on either side.
# Each repetition runs qft then torch (the order alternates between repetitions). Per run: median
# ms/step over its timed steps (warmup steps dropped). Reported: each side's median of its run
# medians, and qft/torch = the median over repetitions of the paired ratio (qft run / torch run of
# the same repetition, measured back to back), with its range, over the undisturbed repetitions
# (see WAIT_QUIET). BERT token counts match qft's per-step trimmed batches exactly (see
# benchmarks/qft_batch_lengths.c). Results and caveats: benchmarks/RESULTS.md.
#
# Environment knobs (defaults in brackets):
#   THREADS [2]  REPS [5]  WARMUP [3]  VIT_STEPS [30]  BERT_STEPS [10]  MODELS ["vit bert"]
#   QFT_BIN        use this qft binary instead of building one
#   QFT_BUILD_DIR  [build-bench] where to build qft (configured with -DQFT_CUDA=OFF, Release, and
#                  benchmarks/cc_no_warn_error.sh as compiler launcher so a warning in someone's
#                  in-progress file cannot stop the build; optimization flags are the project's)
#   TORCH_PY       [/usr/bin/python3] the python with Debian's torch
#   KEEP_DIR       keep raw outputs here (default: a temp dir, removed at the end)
#   TORCH_BLAS     [openmp] which Debian OpenBLAS build torch's libblas.so.3 resolves to:
#                  openmp = /usr/lib/x86_64-linux-gnu/openblas-openmp via LD_LIBRARY_PATH for the
#                  torch process only (the build qft links: BLAS and the OpenMP loops share one
#                  libgomp thread pool), system = whatever the libblas.so.3 alternative points to
#                  (openblas-pthread here). With openblas-pthread, torch's OpenMP workers spin while
#                  OpenBLAS's own threads want the same cores: torch's steps get 3-5x slower.
#   BENCH_ENV      [""] extra environment of BOTH sides, e.g. BENCH_ENV=OMP_WAIT_POLICY=PASSIVE.
#                  Default: libgomp's default (active) waiting, as users run. Idle OpenMP workers
#                  spin, so when other processes use the cores both sides slow down erratically
#                  (10-70x seen); passive waiting is robust to that but slower on a quiet machine
#                  (qft ViT 27 vs 20 ms). Both sides also get OMP_NUM_THREADS=OPENBLAS_NUM_THREADS=THREADS.
#   WAIT_QUIET     [60] before each run, wait up to this many seconds for the other processes'
#                  CPU use to fall below 10% of the machine (sampled over 1 s). During each run the
#                  other processes' share is measured too (/proc/stat busy time minus the run's own
#                  CPU time); repetitions where it reached 10% in either run are "disturbed" and
#                  left out of the headline ratio when undisturbed ones exist.
#   MODE           [fp] fp = the float32 step (above). qat = quantization-aware training of the demo ViT
#                  (MODELS is ignored): learnable int8 quantizers on every linear, qft rules QAT_RULES
#                  below (per-output-channel LSQ weights, per-tensor LSQ+ inputs: 36 sites) against torch's
#                  learnable fake-quant ops on the same sites (bench_torch_step.py --qat). Each repetition
#                  runs four processes back to back, in an order rotated per repetition: qft FP, qft QAT,
#                  torch FP, torch QAT. Reported: qft QAT / qft FP (target <= 1.15x) and qft QAT / torch QAT
#                  (target <= 0.5x), each the median of the per-repetition paired ratios with their range;
#                  torch QAT / torch FP for context. --write replaces the qat-step-bench section of RESULTS.md.
# *_STEPS are qft steps per run, warmup included; torch runs WARMUP untimed + (STEPS - WARMUP) timed.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
WRITE=0
[[ "${1:-}" == "--write" ]] && WRITE=1

THREADS=${THREADS:-2}
REPS=${REPS:-5}
WARMUP=${WARMUP:-3}
VIT_STEPS=${VIT_STEPS:-30}
BERT_STEPS=${BERT_STEPS:-10}
MODELS=${MODELS:-"vit bert"}
TORCH_PY=${TORCH_PY:-/usr/bin/python3}
QFT_BUILD_DIR=${QFT_BUILD_DIR:-build-bench}
BENCH_ENV=${BENCH_ENV-}
WAIT_QUIET=${WAIT_QUIET:-60}
TORCH_BLAS=${TORCH_BLAS:-openmp}
MODE=${MODE:-fp}
case $MODE in
    fp) ;;
    qat) MODELS=vit ;;
    *) echo "[step-bench] MODE must be fp or qat" >&2; exit 1 ;;
esac
# The QAT rules (qft side; bench_torch_step.py --qat puts the same quantizers on the same sites).
QAT_RULES='quant.rules=[{pattern: "*.weight", bits: 8, granularity: channel, learn: lsq}, {pattern: "*.input", bits: 8, symmetric: false, signed: false, learn: lsq_plus}]'
REPORT_PY=$(command -v python3 || echo "$TORCH_PY")

if [[ -n "${KEEP_DIR:-}" ]]; then
    WORK=$KEEP_DIR
    mkdir -p "$WORK"
else
    WORK=$(mktemp -d /tmp/qft_step_bench.XXXXXX)
    trap 'rm -rf "$WORK"' EXIT
fi

log() { echo "[step-bench] $*" >&2; }

# /proc/stat aggregate line -> "busy total" jiffies.
cpu_jiffies() {
    local f i total=0
    read -r -a f </proc/stat
    for ((i = 1; i <= 8; i++)); do total=$(( total + f[i] )); done  # user..steal (guest is inside user)
    echo $(( total - f[4] - f[5] )) "$total"
}
# Busy share (percent of the machine) over 1 s while this script is idle.
background_busy() {
    local a b
    a=($(cpu_jiffies)); sleep 1; b=($(cpu_jiffies))
    local t=$(( b[1] - a[1] ))
    echo $(( t > 0 ? 100 * (b[0] - a[0]) / t : 0 ))
}
# measured NAME CMD...: waits (up to WAIT_QUIET s) for the machine to be quiet, runs CMD under
# /usr/bin/time, and records "NAME busy_before busy_during", where busy_during is the machine's
# busy share during the run minus CMD's own CPU time: the other processes' share of the cores.
measured() {
    local name=$1 busy waited=0; shift
    busy=$(background_busy)
    while (( busy >= 10 && waited < WAIT_QUIET )); do
        sleep 4; waited=$((waited + 5)); busy=$(background_busy)
    done
    local a b rc=0
    a=($(cpu_jiffies))
    /usr/bin/time -f "%U %S" -o "$WORK/time_$name" "$@" || rc=$?
    b=($(cpu_jiffies))
    (( rc == 0 )) || return $rc
    local t=$(( b[1] - a[1] )) own
    own=$(awk -v hz="$(getconf CLK_TCK)" '{printf "%d", ($1 + $2) * hz}' "$WORK/time_$name")
    local during=$(( t > 0 ? 100 * (b[0] - a[0] - own) / t : 0 ))
    (( during < 0 )) && during=0
    echo "$name $busy $during" >>"$WORK/background_busy"
    return 0
}
RUN_ENV=(env $BENCH_ENV OMP_NUM_THREADS="$THREADS" OPENBLAS_NUM_THREADS="$THREADS")
TORCH_ENV=()
case $TORCH_BLAS in
    openmp)
        OMP_BLAS_DIR=$(ls -d /usr/lib/*-linux-gnu/openblas-openmp 2>/dev/null | head -1)
        [[ -n "$OMP_BLAS_DIR" && -e "$OMP_BLAS_DIR/libblas.so.3" ]] \
            || { log "TORCH_BLAS=openmp: no openblas-openmp/libblas.so.3 (apt-get install libopenblas0-openmp, or TORCH_BLAS=system)"; exit 1; }
        TORCH_ENV=(LD_LIBRARY_PATH="$OMP_BLAS_DIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}") ;;
    system) ;;
    *) log "TORCH_BLAS must be openmp or system"; exit 1 ;;
esac

# ---------------------------------------------------------------------------------------- build
if [[ -z "${QFT_BIN:-}" ]]; then
    if [[ ! -f "$QFT_BUILD_DIR/CMakeCache.txt" ]]; then
        log "configuring $QFT_BUILD_DIR"
        cmake -S . -B "$QFT_BUILD_DIR" -DQFT_CUDA=OFF -DCMAKE_BUILD_TYPE=Release \
            -DCMAKE_C_COMPILER_LAUNCHER="$ROOT/benchmarks/cc_no_warn_error.sh" >"$WORK/cmake.log" 2>&1 \
            || { cat "$WORK/cmake.log" >&2; exit 1; }
    fi
    log "building qft in $QFT_BUILD_DIR"
    cmake --build "$QFT_BUILD_DIR" -j"$(nproc)" --target qft >"$WORK/build.log" 2>&1 \
        || { tail -40 "$WORK/build.log" >&2; exit 1; }
    QFT_BIN=$QFT_BUILD_DIR/qft
    QFT_LIB=$QFT_BUILD_DIR/libqftlib.a
else
    QFT_LIB=${QFT_LIB:-$(dirname "$QFT_BIN")/libqftlib.a}
fi
[[ -x "$QFT_BIN" ]] || { log "no qft binary at $QFT_BIN"; exit 1; }

# qft's exact per-step BERT batch lengths (its own dataset code), for the torch side.
LENGTHS_BIN=$WORK/qft_batch_lengths
if [[ " $MODELS " == *" bert "* ]]; then
    [[ -f "$QFT_LIB" ]] || { log "need $QFT_LIB for qft_batch_lengths"; exit 1; }
    BLAS_LIB=$(sed -n 's/^CBLAS_LIBRARY:FILEPATH=//p' "$(dirname "$QFT_LIB")/CMakeCache.txt" 2>/dev/null || true)
    cc -O2 -std=c11 -D_GNU_SOURCE -Ihost benchmarks/qft_batch_lengths.c "$QFT_LIB" -fopenmp \
        $(pkg-config --libs yaml-0.1 libcjson) -lz ${BLAS_LIB:--lopenblas} -lm -o "$LENGTHS_BIN"
fi

# ---------------------------------------------------------------------------------------- models
# Shared by both sides: qft overrides, and the matching torch flags.
VIT_QFT=(model.type=vit data.dataset=fashion_mnist data.batch_size=128 data.eval_batch_size=128)
VIT_TORCH=(--model vit --batch 128 --hidden 64 --layers 4 --heads 4 --intermediate 256 --labels 10
           --image-size 28 --patch-size 7 --channels 1)
BERT_QFT=(model.type=bert data.dataset=synthetic_text model.num_labels=2 data.max_seq_len=128
          model.hidden_size=768 model.num_layers=2 model.num_heads=12 model.intermediate_size=3072
          data.batch_size=8 data.eval_batch_size=8 model.vocab_size=30522 model.max_position_embeddings=512)
BERT_TORCH=(--model bert --batch 8 --hidden 768 --layers 2 --heads 12 --intermediate 3072 --labels 2
            --vocab 30522 --max-pos 512)
# Common qft overrides: no LR warmup, no clipping (torch side does none), 1-example eval at the end,
# a metrics line every step (per-step times come from consecutive cumulative means).
QFT_COMMON=(train.warmup_steps=0 train.grad_clip=0 data.eval_limit=1 train.log_every=1
            train.resume=never run.threads=$THREADS)

run_qft() {  # model rep steps [qat]: outputs qft_<model>_r<rep>.* (qftqat_... with qat)
    local model=$1 rep=$2 steps=$3 qat=${4:-} name="${1}_r${2}" side=qft extra
    if [[ $model == vit ]]; then extra=("${VIT_QFT[@]}"); else extra=("${BERT_QFT[@]}"); fi
    # QAT: the quantizers start from a calibration on quant.calib_batches batches before step 1 (untimed).
    [[ -n $qat ]] && { extra+=("$QAT_RULES"); side=qftqat; }
    log "$side $model rep $rep ($steps steps)"
    measured "${side}_$name" "${RUN_ENV[@]}" "$QFT_BIN" train run.dir="$WORK/runs" run.name="$name" train.steps="$steps" \
        "${QFT_COMMON[@]}" "${extra[@]}" >"$WORK/${side}_$name.out" 2>"$WORK/${side}_$name.err" \
        || { cat "$WORK/${side}_$name.err" >&2; exit 1; }
    cp "$WORK/runs/$name/metrics.jsonl" "$WORK/${side}_$name.metrics.jsonl"
    rm -rf "$WORK/runs/$name"
}

run_torch() {  # model rep steps [qat]: outputs torch_<model>_r<rep>.json (torchqat_... with qat)
    local model=$1 rep=$2 steps=$3 qat=${4:-} name="${1}_r${2}" side=torch extra
    if [[ $model == vit ]]; then extra=("${VIT_TORCH[@]}"); else extra=("${BERT_TORCH[@]}" --lengths "$WORK/bert_lengths.json"); fi
    [[ -n $qat ]] && { extra+=(--qat); side=torchqat; }
    log "$side $model rep $rep ($WARMUP + $((steps - WARMUP)) steps)"
    measured "${side}_$name" "${RUN_ENV[@]}" "${TORCH_ENV[@]}" "$TORCH_PY" benchmarks/bench_torch_step.py "${extra[@]}" --threads "$THREADS" \
        --warmup "$WARMUP" --steps $((steps - WARMUP)) >"$WORK/${side}_$name.json" 2>"$WORK/${side}_$name.err" \
        || { cat "$WORK/${side}_$name.err" >&2; exit 1; }
}

cat /proc/loadavg >"$WORK/loadavg_start"
ldd "$QFT_BIN" | awk '/blas/ {print $3}' >"$WORK/qft_blas"
date -u +"%Y-%m-%d %H:%M UTC" >"$WORK/date"
# the commit measured (and "dirty" when tracked files differ from it), for the report
echo "$(git rev-parse --short HEAD 2>/dev/null || echo '?')$([[ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]] && echo ' dirty')" >"$WORK/commit"
for model in $MODELS; do
    if [[ $model == vit ]]; then steps=$VIT_STEPS; else steps=$BERT_STEPS; fi
    (( steps > WARMUP )) || { log "$model: steps ($steps) must exceed WARMUP ($WARMUP)"; exit 1; }
    if [[ $model == bert ]]; then
        "$LENGTHS_BIN" "$steps" "${BERT_QFT[@]}" >"$WORK/bert_lengths.json"
    fi
    for ((rep = 1; rep <= REPS; rep++)); do
        if [[ $MODE == qat ]]; then
            # four runs, the order rotated by one per repetition
            runs=("run_qft $model $rep $steps qat" "run_qft $model $rep $steps"
                  "run_torch $model $rep $steps qat" "run_torch $model $rep $steps")
            for ((k = 0; k < 4; k++)); do ${runs[(k + rep - 1) % 4]}; done
        elif (( rep % 2 )); then
            run_qft "$model" "$rep" "$steps"; run_torch "$model" "$rep" "$steps"
        else
            run_torch "$model" "$rep" "$steps"; run_qft "$model" "$rep" "$steps"
        fi
    done
done
cat /proc/loadavg >"$WORK/loadavg_end"

# ---------------------------------------------------------------------------------------- report
CMDLINE="$0${1:+ $1}"
for v in THREADS REPS WARMUP VIT_STEPS BERT_STEPS MODELS BENCH_ENV WAIT_QUIET TORCH_BLAS; do
    # show the knobs that differ from the defaults as an env prefix of the command
    case $v in
        THREADS) d=2 ;; REPS) d=5 ;; WARMUP) d=3 ;; VIT_STEPS) d=30 ;; BERT_STEPS) d=10 ;; MODELS) d="vit bert" ;;
        BENCH_ENV) d="" ;; WAIT_QUIET) d=60 ;; TORCH_BLAS) d=openmp ;;
    esac
    [[ $MODE == qat && ( $v == MODELS || $v == BERT_STEPS ) ]] && continue
    [[ "${!v}" != "$d" ]] && CMDLINE="$v='${!v}' $CMDLINE"
done
[[ $MODE == qat ]] && CMDLINE="MODE=qat $CMDLINE"
"$REPORT_PY" benchmarks/step_bench_report.py "$WORK" --warmup "$WARMUP" --models "$MODELS" \
    --command "$CMDLINE" --qft-bin "$QFT_BIN" --env "${RUN_ENV[*]:1}" --torch-env "${TORCH_ENV[*]}" \
    --mode "$MODE" --qat-rules "${QAT_RULES#quant.rules=}" >"$WORK/report.md"
cat "$WORK/report.md"
if (( WRITE )); then
    "$REPORT_PY" benchmarks/step_bench_report.py --splice benchmarks/RESULTS.md "$WORK/report.md" --mode "$MODE"
    log "updated benchmarks/RESULTS.md"
fi
[[ -n "${KEEP_DIR:-}" ]] && log "raw outputs in $WORK"
exit 0
