#!/usr/bin/env bash
# `qft analyze` on a tiny trained ViT and BERT: report.md, CSVs and the JSON summary exist and are sane
# (every activation site analyzed whatever quant.rules enables, shares in [0, 1] adding up to 1, a
# rule's own bit width added), weights from model.init_from, and one-line errors when there are none.
source "$(dirname "$0")/lib.sh" "$@"
need_fmnist
cd "$WORK" || exit 1

RUNS=$WORK/runs
VIT=("${TINY[@]}" data.train_limit=256 train.steps=4)
BERT=(--config "$REPO_DIR/configs/bert_synthetic.yaml" run.dir="$RUNS" model.hidden_size=32 model.num_layers=2
      model.num_heads=2 model.intermediate_size=64 data.train_limit=256 data.eval_limit=64 data.batch_size=16
      data.eval_batch_size=64 train.warmup_steps=2 train.steps=6)

# shellcheck disable=SC2317  # called through check
# shares_sane BITS: the four overall shares at BITS are in [0, 1] and add up to 1 (1e-4), the median
# site share and the top site's share are in [0, 1], and the top site is named. E_amp is a difference
# of two rounding errors and can be slightly negative where nothing is an outlier (docs/analyze.md §2),
# so the bounds have 1% of slack.
shares_sane() {
    local b=$1
    python3 -S -c '
import sys
v = [float(x) for x in sys.argv[1:7]]
ok = all(-0.01 <= x <= 1.01 for x in v) and abs(sum(v[:4]) - 1.0) < 1e-4 and sys.argv[7] not in ("", "<missing>")
sys.exit(not ok)' "$(json_field "share_clip_${b}bit")" "$(json_field "share_round_out_${b}bit")" \
        "$(json_field "share_round_in0_${b}bit")" "$(json_field "share_amp_${b}bit")" \
        "$(json_field "median_share_amp_${b}bit")" "$(json_field "top_site_share_amp_${b}bit")" \
        "$(json_field "top_site_${b}bit")" 2>/dev/null
}

# activation_sites ARGS...: how many sites `qft quant-sites` lists with role input, output or probs.
activation_sites() {
    "$QFT" quant-sites "$@" | awk '$2 == "input" || $2 == "output" || $2 == "probs"' | wc -l
}

# report_complete DIR BITS...: report.md with its overall section, and every CSV, one row per site.
report_complete() {
    local dir=$1 sites=$2 b
    shift 2
    grep -q '^## Overall (qft analyze)' "$dir/report.md" || return 1
    for f in ranges.csv histogram.csv histogram_grid.csv; do [ -s "$dir/$f" ] || return 1; done
    [ "$(($(wc -l <"$dir/ranges.csv") - 1))" -eq "$sites" ] || return 1
    for b in "$@"; do
        [ "$(($(wc -l <"$dir/error_split_${b}bit.csv") - 1))" -eq "$sites" ] || return 1
        grep -q "^## Quantization error, $b bit" "$dir/report.md" || return 1
    done
}

# --- ViT ---
qft_run train "${VIT[@]}" run.name=v
expect_ok "train a tiny ViT for 4 steps"
VIT_SITES=$(activation_sites "${VIT[@]}")
qft_run analyze "${VIT[@]}" run.name=v quant.calib_batches=3
expect_ok "qft analyze on the trained ViT"
check "analyze JSON: weights are the newest checkpoint" \
    test "$(json_field weights)" = "$RUNS/v/checkpoints/step_00000004.safetensors"
check "analyze JSON: 3 batches, 96 examples (quant.calib_batches=3, batch 32)" \
    test "$(json_field batches)" = 3 -a "$(json_field examples)" = 96
check "analyze JSON: sites $(json_field sites) == activation sites of quant-sites ($VIT_SITES)" \
    test "$(json_field sites)" = "$VIT_SITES"
for b in 8 6 4; do
    check "ViT $b bit: overall shares in [0, 1] summing to 1, median and top site sane" shares_sane $b
done
check "analyze JSON: report is runs/v/report.md" test "$(json_field report)" = "$RUNS/v/report.md"
check "report.md, CSVs (one row per site) and 8/6/4-bit tables written" report_complete "$RUNS/v" "$VIT_SITES" 8 6 4
if command -v gnuplot >/dev/null; then
    check "gnuplot present: plotted and the PNGs exist" test "$(json_field plotted)" = true -a -s "$RUNS/v/ranges.png" \
        -a -s "$RUNS/v/error_split_8bit.png" -a -s "$RUNS/v/histogram.png"
fi
FIRST=$(tail -n 1 "$OUT")
qft_run analyze "${VIT[@]}" run.name=v quant.calib_batches=3
check "a second analyze prints the same summary (deterministic)" test "$(tail -n 1 "$OUT")" = "$FIRST"

# A rule list enabling fewer sites: every activation site is still analyzed, the rule's 5 bits added.
cat >"$WORK/rules.yaml" <<'EOF'
quant:
  rules:
    - {pattern: "*.fc1.input", bits: 5, symmetric: false, signed: false}
    - {pattern: "*", enable: false}
EOF
qft_run analyze "${VIT[@]}" --config "$WORK/rules.yaml" run.name=v quant.calib_batches=1
expect_ok "analyze with quant.rules enabling one site at 5 bits"
check "all $VIT_SITES activation sites analyzed, not only the enabled one" test "$(json_field sites)" = "$VIT_SITES"
check "5-bit figures for the rule's site (1 site), shares sane" \
    test "$(json_field share_amp_5bit)" != "<missing>" -a -s "$RUNS/v/error_split_5bit.csv"
check "the 5-bit CSV lists that one site" test "$(($(wc -l <"$RUNS/v/error_split_5bit.csv") - 1))" -eq 1
check "5 bit: shares sane" shares_sane 5

# Weights from model.init_from when the run has no checkpoint.
qft_run analyze "${VIT[@]}" run.name=fresh model.init_from="$RUNS/v/model.safetensors" quant.calib_batches=1
expect_ok "analyze a run with no checkpoint from model.init_from"
check "weights are model.init_from, report in runs/fresh" \
    test "$(json_field weights)" = "$RUNS/v/model.safetensors" -a -s "$RUNS/fresh/report.md"

# --- BERT (text: padding left out) ---
qft_run train "${BERT[@]}" run.name=b
expect_ok "train a tiny BERT on synthetic text for 6 steps"
BERT_SITES=$(activation_sites "${BERT[@]}")
qft_run analyze "${BERT[@]}" run.name=b quant.calib_batches=2
expect_ok "qft analyze on the trained BERT"
check "BERT: sites $(json_field sites) == activation sites ($BERT_SITES), 2 batches of 16" \
    test "$(json_field sites)" = "$BERT_SITES" -a "$(json_field batches)" = 2 -a "$(json_field examples)" = 32
for b in 8 6 4; do
    check "BERT $b bit: overall shares in [0, 1] summing to 1" shares_sane $b
done
check "BERT report.md and CSVs" report_complete "$RUNS/b" "$BERT_SITES" 8 6 4

# --- imagefolder (when Pillow can write the JPEG fixture): the training images, evaluation transform ---
PIL_PY=""
for py in /usr/bin/python3 python3; do "$py" -c 'import PIL' 2>/dev/null && { PIL_PY=$py; break; }; done
if [ -n "$PIL_PY" ] && "$PIL_PY" "$REPO_DIR/datasets/make_imagefolder_fixture.py" --jpeg "$WORK/folder/train" \
    "$FMNIST_DIR" >/dev/null && cp -r "$WORK/folder/train" "$WORK/folder/val"; then
    CLASSES=$(find "$WORK/folder/train" -mindepth 1 -maxdepth 1 -type d ! -name '.*' | wc -l)
    IMG=(run.dir="$RUNS" model.type=vit model.image_size=32 model.patch_size=8 model.num_channels=3
         model.hidden_size=32 model.num_layers=1 model.num_heads=2 model.intermediate_size=64
         model.num_labels="$CLASSES" data.dataset=imagefolder data.path="$WORK/folder" data.batch_size=4
         data.eval_batch_size=4 data.workers=2 train.warmup_steps=1 train.steps=2)
    qft_run train "${IMG[@]}" run.name=img
    expect_ok "train a tiny ViT on the image-folder fixture"
    qft_run analyze "${IMG[@]}" run.name=img quant.calib_batches=8
    expect_ok "qft analyze on the image folder"
    # 10 header-valid training images in batches of 4: 3 batches (the short last one kept).
    check "imagefolder: 3 batches, 10 examples (short last batch kept)" \
        test "$(json_field batches)" = 3 -a "$(json_field examples)" = 10
    check "imagefolder 8 bit: shares sane" shares_sane 8
else
    echo "# imagefolder part skipped: Pillow (python3-pil) is missing"
fi

# --- Errors ---
qft_run analyze "${VIT[@]}" run.name=never_trained
expect_error "analyze with no weights at all" analyze 1 "$RUNS/never_trained" "no weights"
check "a failed analyze creates no run directory" test ! -e "$RUNS/never_trained"
qft_run analyze "${VIT[@]}" run.name=v eval.checkpoint="$WORK/missing.safetensors"
expect_error "analyze eval.checkpoint=<nonexistent file>" analyze 1 "$WORK/missing.safetensors"
qft_run analyze "${VIT[@]}" run.name=v model.hidden_size=32
expect_error "analyze with a model config that does not match the checkpoint" analyze 1 "shape"

finish
