#!/usr/bin/env bash
# Step-time overhead of each fine-tuning method vs plain QAT LSQ at W4A4 on the demo ViT (CPU), measured
# side by side: each repetition runs plain QAT and every method once, interleaved, each a fresh
# `qft train` of $STEPS optimizer steps from the FP model (configs/vit_fmnist_qat_w4a4.yaml's rules);
# the figure is the trainer's ms_per_step (training steps only: calibration, loading and evaluation are
# outside it). Ratio = method / plain QAT of the same repetition; prints median and [min, max] over
# the repetitions, and the per-run figures, as Markdown on stdout.
#
#   OMP_WAIT_POLICY=PASSIVE benchmarks/methods_overhead.sh     # from the repository root
#
# Methods: +KD (kd.enabled, alpha 0.5, T 2), +penalty (penalty.lambda 1e-4, default sites),
# +noise (noise.kind uniform, adapt every 50 steps), +oscillation dampening (oscillation.dampen_lambda 0.1,
# oscillation.start 0, so the loss is on from the first step), +penalty+noise.
# Knobs: QFT_BIN (build/qft), RUNS (runs), FP_RUN (vit_fmnist), OUT_DIR (runs/methods_overhead), REPS (5),
# STEPS (60).
set -euo pipefail
cd "$(dirname "$0")/.."
QFT=${QFT_BIN:-build/qft}
RUNS=${RUNS:-runs}
FP_RUN=${FP_RUN:-vit_fmnist}
OUT=${OUT_DIR:-runs/methods_overhead}
REPS=${REPS:-5}
STEPS=${STEPS:-60}
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
mkdir -p "$OUT"
fp_model="$RUNS/$FP_RUN/model.safetensors"
[ -f "$fp_model" ] || { echo "no $fp_model: train the FP model first (benchmarks/methods_vit.sh does)" >&2; exit 1; }
methods=(qat kd penalty noise osc pn)
declare -A margs=(
    [qat]=""
    [kd]="kd.enabled=true kd.alpha=0.5 kd.temperature=2"
    [penalty]="penalty.lambda=1e-4"
    [noise]="noise.kind=uniform"
    [osc]="oscillation.dampen_lambda=0.1 oscillation.start=0"
    [pn]="penalty.lambda=1e-4 noise.kind=uniform"
)
declare -A labels=([kd]="+KD" [penalty]="+penalty" [noise]="+noise" [osc]="+oscillation dampening" [pn]="+penalty+noise")
TSV="$OUT/ms_per_step.tsv"
: > "$TSV"
for rep in $(seq 1 "$REPS"); do
    for m in "${methods[@]}"; do
        name="ovh_$m"
        rm -rf "${RUNS:?}/$name"
        read -r -a a <<< "${margs[$m]}"
        "$QFT" train --config configs/vit_fmnist.yaml --config configs/vit_fmnist_qat_w4a4.yaml "run.dir=$RUNS" \
            "run.name=$name" "model.init_from=$fp_model" "train.steps=$STEPS" "train.log_every=$STEPS" "${a[@]}" \
            > "$OUT/$name.$rep.json" 2> "$OUT/$name.$rep.err"
        ms=$(sed -n 's/.*"ms_per_step": *\([0-9.]*\).*/\1/p' "$OUT/$name.$rep.json")
        printf '%s\t%s\t%s\n' "$rep" "$m" "$ms" >> "$TSV"
        echo "rep $rep $m: $ms ms/step" >&2
    done
done
rm -rf "${RUNS:?}"/ovh_*
echo "W4A4 QAT LSQ on the demo ViT, $STEPS steps per run, batch 128, $REPS interleaved repetitions."
echo
echo "| method | ms/step median [min, max] | ratio to plain QAT, median [min, max] |"
echo "|---|---:|---:|"
for m in "${methods[@]}"; do
    awk -F'\t' -v m="$m" -v label="${labels[$m]:-plain QAT LSQ}" '
        $2 == "qat" { base[$1] = $3 }
        $2 == m { ms[$1] = $3 }
        function median(a, n,   i, j, t, s) {
            n = 0; for (i in a) s[++n] = a[i]
            for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (s[j] < s[i]) { t = s[i]; s[i] = s[j]; s[j] = t }
            lo = s[1]; hi = s[n]
            return n % 2 ? s[(n + 1) / 2] : (s[n / 2] + s[n / 2 + 1]) / 2
        }
        END {
            for (r in ms) ratio[r] = ms[r] / base[r]
            med = median(ms); mlo = lo; mhi = hi
            rmed = median(ratio)
            printf "| %s | %.1f [%.1f, %.1f] | %.3f [%.3f, %.3f] |\n", label, med, mlo, mhi, rmed, lo, hi
        }' "$TSV"
done
