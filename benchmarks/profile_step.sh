#!/usr/bin/env bash
# Where does qft's CPU training-step time go? Profiles a short demo-ViT run (qft's default config)
# and prints the top functions.
#
#   benchmarks/profile_step.sh                  # 20-step demo ViT, perf, top 25 symbols
#   benchmarks/profile_step.sh model.type=bert data.dataset=synthetic_text ...   # extra qft overrides
#
# Environment knobs (defaults in brackets):
#   STEPS [20]  THREADS [2]  TOP [25]
#   PROFILE_ENV [""]  extra environment of the profiled run, e.g. OMP_WAIT_POLICY=PASSIVE: idle
#       OpenMP workers then sleep instead of spin, so libgomp's spin loop (unnamed addresses in
#       libgomp.so) disappears from the profile; with the default active waiting it shows how much
#       time the workers wait (a lot when other processes share the cores).
#   CALLGRAPH [0]  1 = also print caller chains (perf record -g)
#   QFT_BIN / QFT_BUILD_DIR [build-bench]  as in run_step_bench.sh
#   TOOL [auto]  perf | gprof. perf needs only the software cpu-clock event (this VM exposes no
#       hardware counters: `perf stat -e instructions` says <not supported>). gprof builds a
#       separate -pg tree (build-gprof); it samples the main thread only and attributes nothing
#       inside OpenBLAS or the OpenMP workers, so it is a last resort.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
STEPS=${STEPS:-20}
THREADS=${THREADS:-2}
TOP=${TOP:-25}
PROFILE_ENV=${PROFILE_ENV-}
CALLGRAPH=${CALLGRAPH:-0}
QFT_BUILD_DIR=${QFT_BUILD_DIR:-build-bench}
TOOL=${TOOL:-auto}
WORK=$(mktemp -d /tmp/qft_profile.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
log() { echo "[profile] $*" >&2; }

if [[ $TOOL == auto ]]; then
    if command -v perf >/dev/null && perf record -q -e cpu-clock -o "$WORK/probe.data" true >/dev/null 2>&1; then
        TOOL=perf
    elif command -v gprof >/dev/null; then
        TOOL=gprof
    else
        log "neither perf (cpu-clock) nor gprof works here"; exit 1
    fi
fi

build() {  # dir [extra cmake args...]
    local dir=$1; shift
    if [[ ! -f "$dir/CMakeCache.txt" ]]; then
        cmake -S . -B "$dir" -DQFT_CUDA=OFF -DCMAKE_BUILD_TYPE=Release \
            -DCMAKE_C_COMPILER_LAUNCHER="$ROOT/benchmarks/cc_no_warn_error.sh" "$@" >"$WORK/cmake.log" 2>&1 \
            || { cat "$WORK/cmake.log" >&2; exit 1; }
    fi
    cmake --build "$dir" -j"$(nproc)" --target qft >"$WORK/build.log" 2>&1 || { tail -40 "$WORK/build.log" >&2; exit 1; }
}

ARGS=(train run.dir="$WORK/runs" run.name=profile train.steps="$STEPS" train.warmup_steps=0 train.grad_clip=0
      data.eval_limit=1 data.eval_batch_size=128 train.log_every=1000 train.resume=never run.threads="$THREADS" "$@")

if [[ $TOOL == perf ]]; then
    if [[ -z "${QFT_BIN:-}" ]]; then build "$QFT_BUILD_DIR"; QFT_BIN=$QFT_BUILD_DIR/qft; fi
    G=(); (( CALLGRAPH )) && G=(-g)
    log "perf record: env ${PROFILE_ENV:-<none>} $QFT_BIN ${ARGS[*]}"
    env $PROFILE_ENV OMP_NUM_THREADS="$THREADS" OPENBLAS_NUM_THREADS="$THREADS" \
        perf record -q -e cpu-clock -F 1999 "${G[@]}" -o "$WORK/perf.data" -- "$QFT_BIN" "${ARGS[@]}" \
        >"$WORK/qft.out" 2>"$WORK/qft.err" || { cat "$WORK/qft.err" >&2; exit 1; }
    echo "qft: $(tail -1 "$WORK/qft.out")"
    echo "load average during the run (end): $(cut -d' ' -f1-3 /proc/loadavg); env: ${PROFILE_ENV:-<none>}"
    echo
    echo "== whole run (setup + $STEPS steps + final eval/checkpoint): samples by shared object =="
    perf report -i "$WORK/perf.data" --no-children --sort dso --stdio -g none 2>/dev/null \
        | grep -v '^#' | grep -v '^$' | head -12
    # The training steps' window: first to last sample in a GEMM kernel or a qft CPU kernel body
    # (dataset decompression and model init come before, the checkpoint write after).
    WINDOW=$(perf script -i "$WORK/perf.data" -F time,ip,sym 2>/dev/null \
        | awk '/sgemm_kernel|cpu_[A-Za-z0-9_]*\._omp_fn/ {t=$1; sub(":", "", t); if (s == "") s = t; e = t} END {if (s != "") print s "," e}')
    TIME=(); [[ -n "$WINDOW" ]] && TIME=(--time "$WINDOW")
    echo
    echo "== training steps only (perf report --time $WINDOW): samples by shared object =="
    perf report -i "$WORK/perf.data" "${TIME[@]}" --no-children --sort dso --stdio -g none 2>/dev/null \
        | grep -v '^#' | grep -v '^$' | head -12
    echo
    echo "== training steps only: top $TOP functions (self time; *._omp_fn.N = the OpenMP body of that function) =="
    perf report -i "$WORK/perf.data" "${TIME[@]}" --no-children --sort dso,symbol --stdio -g none 2>/dev/null \
        | grep -v '^#' | grep -v '^$' | head -"$TOP" | sed -E 's/ +- +- +$//'
    if (( CALLGRAPH )); then
        echo
        echo "== callers of the top functions =="
        perf report -i "$WORK/perf.data" "${TIME[@]}" --no-children --sort symbol --stdio -G --percent-limit 3 2>/dev/null \
            | grep -v '^#' | grep -v '^$' | head -150
    fi
else
    # gprof: -pg build in its own tree; counts only the main thread's samples.
    build build-gprof -DCMAKE_C_FLAGS=-pg -DCMAKE_EXE_LINKER_FLAGS=-pg
    log "gprof run (main thread only)"
    (cd "$WORK" && env $PROFILE_ENV "$ROOT/build-gprof/qft" "${ARGS[@]}" >"$WORK/qft.out" 2>"$WORK/qft.err") \
        || { cat "$WORK/qft.err" >&2; exit 1; }
    echo "qft: $(tail -1 "$WORK/qft.out")"
    gprof -b -p "$ROOT/build-gprof/qft" "$WORK/gmon.out" | head -$((TOP + 5))
fi
