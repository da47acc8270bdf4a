#!/usr/bin/env bash
# Fine-tuning methods on the Fashion-MNIST demo ViT (issue 6 "Must show"): every cell is a real run,
# test accuracy on the 10,000 test images; prints Markdown tables on stdout (the methods table, the
# penalty sweep), per-run JSON lines and YAML in $OUT_DIR.
#
#   OMP_WAIT_POLICY=PASSIVE benchmarks/methods_vit.sh          # from the repository root
#
# Rows (each column W8A8 / W6A6 / W4A4; fine-tuning rows start from the FP model's weights):
#   FP            the FP model (qft train --config configs/vit_fmnist.yaml, trained once, reused)
#   PTQ best      benchmarks/ptq_vit.sh over the calibrators; the best per column is named
#   QAT LSQ       configs/vit_fmnist_qat_w4a4.yaml's rules with the 4-bit fields set to W bits
#                 (weights per channel `learn: lsq`, linear inputs per tensor asymmetric `learn: lsq_plus`,
#                 MSE calibrator init; attention probabilities uniform unsigned, minmax; patch embedding and
#                 head 8-bit), $EPOCHS epochs, lr $LR, warmup $WARMUP, weight_decay 0, seed 1337
#   + KD          kd.enabled, alpha $KD_ALPHA, T $KD_T (teacher = the FP model)
#   penalty       penalty.lambda = $PENALTY (picked by the W4A4 sweep over $SWEEP on a validation split: 5000
#                 training images held out, data.validation_size / eval.split; reported), defaults otherwise
#   noise         noise.kind uniform, adaptation every 50 steps (default), noise.anneal $NOISE_ANNEAL
#   penalty+noise both
#   p+n+PTQ-after the penalty+noise run's weights (model.safetensors, no quantizer state), fresh
#                 `qft calibrate` + `qft eval` with the preset and the column's best PTQ calibrator
#   RepQ-folded   the preset with qkv/fc1 inputs per channel, best PTQ calibrator, `qft calibrate`,
#                 `qft reparam`, `qft eval --config <run>/reparam/eval.yaml` (the unfolded per-channel
#                 accuracy is reported next to it)
# Fine-tuned rows are evaluated with `qft eval` on the run's final checkpoint (the real quantizer with the
# learned quantizer state; the noise is training-only).
#
# Knobs (environment): QFT_BIN (build/qft), RUNS (runs), FP_RUN (vit_fmnist), OUT_DIR (runs/methods_vit),
# WIDTHS ("4 6 8": the order the columns are run in), EPOCHS (2), LR (2e-4), WARMUP (50),
# KD_ALPHA (0.5), KD_T (2), SWEEP ("1e-4 1e-3 1e-2"), PENALTY (empty = the sweep's best), NOISE_ANNEAL (0.5: the better of 0.2, 0.5 and 1 on the ViT validation split; 0.5 and 1 tie),
# WITH_KD (1 = the penalty / noise rows and the sweep also distil from the FP model, as QAT LSQ + KD; their
# run names and result rows get the suffix _kd), NOISE_KIND (uniform), NOISE_SITES (noise.sites; default the config's, every site), TAG (a further suffix of the method
# rows' run names and result rows, for a variant beside the main runs),
# SKIP_PTQ (1 = reuse $OUT_DIR/ptq from an earlier run), ROWS (which rows to run, default all),
# SEED (1337; another seed passes run.seed and suffixes the run names and result rows with _s<seed>;
# give PENALTY and SKIP_PTQ=1 to reuse the first run's sweep and PTQ; the table shows seed 1337),
# TABLE_ONLY (1 = run nothing, print the tables from $OUT_DIR/results.tsv and $OUT_DIR/ptq).
set -euo pipefail
cd "$(dirname "$0")/.."
QFT=${QFT_BIN:-build/qft}
RUNS=${RUNS:-runs}
FP_RUN=${FP_RUN:-vit_fmnist}
OUT=${OUT_DIR:-runs/methods_vit}
WIDTHS=${WIDTHS:-"4 6 8"}
EPOCHS=${EPOCHS:-2}
LR=${LR:-2e-4}
WARMUP=${WARMUP:-50}
KD_ALPHA=${KD_ALPHA:-0.5}
KD_T=${KD_T:-2}
SWEEP=${SWEEP:-"1e-4 1e-3 1e-2"}
PENALTY=${PENALTY:-}
NOISE_ANNEAL=${NOISE_ANNEAL:-0.5}
ROWS=${ROWS:-"qat kd penalty noise pn pnptq repq"}
SEED=${SEED:-1337}
S=""; [ "$SEED" = 1337 ] || S="_s$SEED"   # run-name suffix of another seed
K=""; [ "${WITH_KD:-0}" = 1 ] && K="_kd"   # suffix of the method rows distilled from the FP model
K="$K${TAG:-}"                               # and of a variant (TAG=_hist with NOISE_KIND=histogram, say)
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
mkdir -p "$OUT"
RES="$OUT/results.tsv"   # row <tab> width <tab> accuracy <tab> note
touch "$RES"
fp_model="$RUNS/$FP_RUN/model.safetensors"
base=(--config configs/vit_fmnist.yaml "run.dir=$RUNS")

json_field() { sed -n "s/.*\"$1\": *\([-0-9.eE+a-z]*\).*/\1/p" | tail -1; }
record() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "${4:-}" >> "$RES"; echo "[$(date +%T)] $1 W$2A$2: $3 ${4:-}" >&2; }
has() { case " $ROWS " in *" $1 "*) return 0 ;; esac; return 1; }

# ---- FP and PTQ (the FP model is trained once if missing) ----
if [ ! -f "$fp_model" ]; then
    echo "training the FP model into $RUNS/$FP_RUN ..." >&2
    "$QFT" train "${base[@]}" "run.name=$FP_RUN" > "$OUT/fp_train.json"
fi
"$QFT" eval "${base[@]}" "run.name=$FP_RUN" "eval.checkpoint=$fp_model" > "$OUT/fp_eval.json" 2> /dev/null
fp=$(json_field accuracy < "$OUT/fp_eval.json")
echo "FP accuracy $fp" >&2
presets=""
for w in $WIDTHS; do presets="$presets w${w}a${w}"; done
if [ "${TABLE_ONLY:-0}" = 1 ]; then SKIP_PTQ=1; ROWS=""; fi
if [ "${SKIP_PTQ:-0}" != 1 ]; then
    PRESETS="$presets" OUT_DIR="$OUT/ptq" RUN_NAME="$FP_RUN" EXTRA="run.dir=$RUNS" \
        benchmarks/ptq_vit.sh > "$OUT/ptq_table.md"
fi
declare -A best_cal best_acc
for w in $WIDTHS; do
    p="w${w}a${w}"
    best_acc[$w]=-1
    for f in "$OUT"/ptq/"$p"_*.eval.json; do
        a=$(json_field accuracy < "$f")
        [ -n "$a" ] || continue
        tag=$(basename "$f" .eval.json); tag=${tag#"$p"_}
        if awk -v a="$a" -v b="${best_acc[$w]}" 'BEGIN { exit !(a > b) }'; then best_acc[$w]=$a; best_cal[$w]=$tag; fi
    done
    echo "PTQ best W${w}A${w}: ${best_cal[$w]} ${best_acc[$w]}" >&2
done
cal_fields() {  # cal_fields TAG: the YAML fields of a ptq_vit.sh calibrator tag (percentile99.9 -> ...)
    case "$1" in
        percentile*) echo "calibrator: percentile, percentile: ${1#percentile}" ;;
        *) echo "calibrator: $1" ;;
    esac
}

# ---- fine-tuning ----
qat_yaml() {  # the QAT config at W bits
    local y="$OUT/qat_w$1.yaml"
    sed -E "s/bits: 4/bits: $1/" configs/vit_fmnist_qat_w4a4.yaml > "$y"
    echo "$y"
}
finetune() {  # finetune ROW W EXTRA...: train, then qft eval the final checkpoint
    local row=$1 w=$2; shift 2
    local name="mv_${row}_w$w$S" y
    y=$(qat_yaml "$w")
    rm -rf "${RUNS:?}/$name"
    local args=("${base[@]}" --config "$y" "run.name=$name" "model.init_from=$fp_model" "train.epochs=$EPOCHS"
                "train.lr=$LR" "train.warmup_steps=$WARMUP" train.weight_decay=0 "run.seed=$SEED" "$@")
    if "$QFT" train "${args[@]}" > "$OUT/$name.train.json" 2> "$OUT/$name.train.err" &&
        "$QFT" eval "${args[@]}" > "$OUT/$name.eval.json" 2> "$OUT/$name.eval.err"; then
        record "$row$S" "$w" "$(json_field accuracy < "$OUT/$name.eval.json")" \
            "ms/step $(json_field ms_per_step < "$OUT/$name.train.json")"
    else
        record "$row$S" "$w" "error" "see $OUT/$name.*"
    fi
}
kd_args=(kd.enabled=true "kd.alpha=$KD_ALPHA" "kd.temperature=$KD_T")
noise_args=("noise.kind=${NOISE_KIND:-uniform}" "noise.anneal=$NOISE_ANNEAL")
[ -n "${NOISE_SITES:-}" ] && noise_args+=("noise.sites=\"$NOISE_SITES\"")   # YAML-quoted: globs start with *
method_args=()   # what every penalty / noise row adds
[ -n "$K" ] && method_args=("${kd_args[@]}")
val_args=(data.validation_size=5000 eval.split=validation)

if has penalty || has pn || has pnptq; then
    if [ -z "$PENALTY" ]; then
        best=-1
        for lam in $SWEEP; do
            if ! grep -q "^sweep$K""_$lam	4	" "$RES"; then
                finetune "sweep$K""_$lam" 4 "penalty.lambda=$lam" "${method_args[@]}" "${val_args[@]}"
            fi
            a=$(awk -F'\t' -v r="sweep$K""_$lam" '$1 == r && $2 == 4 { v = $3 } END { print v }' "$RES")
            if awk -v a="$a" -v b="$best" 'BEGIN { exit !(a > b) }'; then best=$a; PENALTY=$lam; fi
        done
        echo "penalty.lambda = $PENALTY (W4A4 sweep, validation accuracy)" >&2
    fi
fi
for w in $WIDTHS; do
    has qat && finetune qat "$w"
    has kd && finetune kd "$w" "${kd_args[@]}"
    has penalty && finetune "penalty$K" "$w" "penalty.lambda=$PENALTY" "${method_args[@]}"
    has noise && finetune "noise$K" "$w" "${noise_args[@]}" "${method_args[@]}"
    if has pn || has pnptq; then finetune "pn$K" "$w" "penalty.lambda=$PENALTY" "${noise_args[@]}" "${method_args[@]}"; fi
    if has pnptq; then
        name="mv_pnptq$K""_w$w$S"
        y="$OUT/pnptq_w$w.yaml"
        sed -E "s/^( *- *\{.*)\}( *)$/\1, $(cal_fields "${best_cal[$w]}")}\2/" "configs/quant/w${w}a${w}.yaml" > "$y"
        rm -rf "${RUNS:?}/$name"
        args=("${base[@]}" --config "$y" "run.name=$name" "eval.checkpoint=$RUNS/mv_pn$K""_w$w$S/model.safetensors")
        if "$QFT" calibrate "${args[@]}" > "$OUT/$name.calibrate.json" 2> "$OUT/$name.err" &&
            "$QFT" eval "${args[@]}" > "$OUT/$name.eval.json" 2>> "$OUT/$name.err"; then
            record "pnptq$K$S" "$w" "$(json_field accuracy < "$OUT/$name.eval.json")" "calibrator ${best_cal[$w]}"
        else
            record "pnptq$K$S" "$w" error "see $OUT/$name.*"
        fi
    fi
    if has repq; then
        name="mv_repq_w$w"
        y="$OUT/repq_w$w.yaml"
        f=$(cal_fields "${best_cal[$w]}")
        {
            echo "quant:"
            echo "  rules:"
            echo "    - {pattern: \"*.qkv.input\", bits: $w, granularity: channel, symmetric: false, signed: false, $f}"
            echo "    - {pattern: \"*.fc1.input\", bits: $w, granularity: channel, symmetric: false, signed: false, $f}"
            sed -n -E "s/^( *- *\{.*)\}( *)$/\1, $f}\2/p" "configs/quant/w${w}a${w}.yaml"
        } > "$y"
        rm -rf "${RUNS:?}/$name"
        args=("${base[@]}" "run.name=$name" "eval.checkpoint=$fp_model")
        if "$QFT" calibrate "${args[@]}" --config "$y" > "$OUT/$name.calibrate.json" 2> "$OUT/$name.err" &&
            "$QFT" eval "${args[@]}" --config "$y" > "$OUT/$name.unfolded.json" 2>> "$OUT/$name.err" &&
            "$QFT" reparam "${args[@]}" --config "$y" > "$OUT/$name.reparam.json" 2>> "$OUT/$name.err" &&
            "$QFT" eval "${base[@]}" "run.name=$name" --config "$RUNS/$name/reparam/eval.yaml" \
                > "$OUT/$name.eval.json" 2>> "$OUT/$name.err"; then
            record repq "$w" "$(json_field accuracy < "$OUT/$name.eval.json")" \
                "unfolded per-channel $(json_field accuracy < "$OUT/$name.unfolded.json"), folded $(json_field folded < "$OUT/$name.reparam.json") pairs, calibrator ${best_cal[$w]}"
        else
            record repq "$w" error "see $OUT/$name.*"
        fi
    fi
done

# ---- tables ----
cell() {  # cell ROW W: "acc (+pp)" from the last result of that row and width
    local a
    a=$(awk -F'\t' -v r="$1" -v w="$2" '$1 == r && $2 == w { v = $3 } END { print v }' "$RES")
    if [ -z "$a" ]; then echo "not run"; return; fi
    if [ "$a" = error ]; then echo "error"; return; fi
    awk -v a="$a" -v f="$fp" 'BEGIN { printf "%.4f (%+.2f)", a, 100 * (a - f) }'
}
has_row() { awk -F'\t' -v r="$1" '$1 == r { f = 1 } END { exit !f }' "$RES"; }
cols="8 6 4"
header="| method |"; rule="|---|"; fp_row="| FP |"; ptq_row="| PTQ best calibrator |"
for w in $cols; do
    header="$header W${w}A${w} |"; rule="$rule---:|"; fp_row="$fp_row $(printf '%.4f' "$fp") |"
    if [ -n "${best_cal[$w]:-}" ]; then
        ptq_row="$ptq_row $(awk -v a="${best_acc[$w]}" -v f="$fp" 'BEGIN { printf "%.4f (%+.2f)", a, 100 * (a - f) }') ${best_cal[$w]} |"
    else
        ptq_row="$ptq_row not run |"
    fi
done
echo "$header"; echo "$rule"; echo "$fp_row"; echo "$ptq_row"
for r in "qat:QAT LSQ" "kd:QAT LSQ + KD" "penalty:outlier penalty" "noise:noise (uniform, adaptive)" \
         "pn:penalty + noise" "pnptq:penalty + noise + PTQ-after" \
         "penalty_kd:KD + outlier penalty" "noise_kd:KD + noise" "pn_kd:KD + penalty + noise" \
         "pnptq_kd:KD + penalty + noise + PTQ-after" "repq:RepQ-folded (PTQ)"; do
    has_row "${r%%:*}" || continue
    row="| ${r#*:} |"
    for w in $cols; do row="$row $(cell "${r%%:*}" "$w") |"; done
    echo "$row"
done
echo
echo "| penalty.lambda (W4A4 sweep) | validation accuracy, without KD | with KD |"
echo "|---|---:|---:|"
for lam in $SWEEP; do echo "| $lam | $(cell "sweep_$lam" 4 | cut -d' ' -f1) | $(cell "sweep_kd_$lam" 4 | cut -d' ' -f1) |"; done
if grep -q '_s[0-9]*	' "$RES"; then  # other seeds (SEED=...): every seed's accuracy per row and width
    echo
    echo "| row | width | accuracy per seed (1337 first) |"
    echo "|---|---|---|"
    awk -F'\t' '$1 !~ /^sweep_/ { r = $1; s = "1337"; if (match(r, /_s[0-9]+$/)) { s = substr(r, RSTART + 2); r = substr(r, 1, RSTART - 1) }
                 if (r == "repq" || r == "penalty" && s == "1337" && $4 ~ /sweep/) { }
                 k = r " W" $2 "A" $2; if (!(k in v)) order[++n] = k; v[k] = v[k] (v[k] == "" ? "" : ", ") s ": " $3 }
                 END { for (i = 1; i <= n; i++) { split(order[i], p, " "); if (v[order[i]] ~ /, /) printf "| %s | %s | %s |\n", p[1], p[2], v[order[i]] } }' "$RES"
fi
