#!/usr/bin/env bash
# `qft train` / `qft eval` on an ImageNet-layout image folder (data.dataset imagefolder): a tiny ViT on
# the Fashion-MNIST image-folder fixture (train/ and val/, 3 classes, PNG/BMP/PPM of varied sizes plus
# files the loader must skip); resume is bit-exact (N then 2N == 2N straight, resuming mid-epoch);
# wrong model.num_labels and a missing val/ are one-line errors; configs/vit_imagefolder.yaml loads.
source "$(dirname "$0")/lib.sh" "$@"
need_fmnist
cd "$WORK" || exit 1

# The fixture as train/ and val/ (the same images: the test checks the plumbing, not generalization).
for split in train val; do
    python3 "$REPO_DIR/datasets/make_imagefolder_fixture.py" "$WORK/folder/$split" "$FMNIST_DIR" >/dev/null ||
        { fail "make_imagefolder_fixture.py $split"; finish; }
done
CLASSES=$(find "$WORK/folder/train" -mindepth 1 -maxdepth 1 -type d ! -name '.*' | wc -l)

# 10 header-valid train images / batch 4 = 2 batches an epoch: resuming at step 3 is mid-epoch.
VIT=(run.dir="$WORK/runs" model.type=vit model.image_size=32 model.patch_size=8 model.num_channels=3
     model.hidden_size=32 model.num_layers=1 model.num_heads=2 model.intermediate_size=64 model.num_labels="$CLASSES"
     data.dataset=imagefolder data.path="$WORK/folder" data.batch_size=4 data.eval_batch_size=4 data.workers=2
     data.normalize_mean=0.5 data.normalize_std=0.5 train.warmup_steps=1 train.log_every=1 train.lr=1e-3
     train.checkpoint_every=0 model.dropout=0.1)
RUNS=$WORK/runs

# shellcheck disable=SC2317  # called through check
finite() { python3 -S -c 'import math, sys; sys.exit(not math.isfinite(float(sys.argv[1])))' "$1" 2>/dev/null; }

qft_run train "${VIT[@]}" run.name=basic train.steps=4 train.eval_every=2
expect_ok "train a tiny ViT on an image folder (4 steps, $CLASSES classes)"
check "train JSON: eval_accuracy $(json_field eval_accuracy) is a number" finite "$(json_field eval_accuracy)"
check "train JSON: final_loss $(json_field final_loss) is a number" finite "$(json_field final_loss)"
check "stderr reports skipped files and failed decodes" grep -q "imagefolder: train [0-9]* file(s) skipped" "$ERR"
check "metrics.jsonl eval lines carry eval_skipped_files" grep -q '"eval_skipped_files": [1-9]' "$RUNS/basic/metrics.jsonl"
TRAIN_ACC=$(json_field eval_accuracy)
qft_run eval "${VIT[@]}" run.name=basic
expect_ok "qft eval on val/"
check "eval JSON: examples $(json_field examples) == 10 (header-valid val images)" test "$(json_field examples)" = 10
check "eval agrees with the end-of-training evaluation ($TRAIN_ACC)" test "$(json_field accuracy)" = "$TRAIN_ACC"
qft_run eval "${VIT[@]}" run.name=basic data.workers=1 data.eval_batch_size=3
expect_ok "qft eval with 1 worker and a short last batch"
check "same accuracy with 1 worker ($(json_field accuracy))" test "$(json_field accuracy)" = "$TRAIN_ACC"

# Resume: constant schedule, 3 steps then 6 == 6 straight (step 3 is batch 1 of epoch 1).
CONST=("${VIT[@]}" train.schedule=constant train.warmup_steps=0)
qft_run train "${CONST[@]}" run.name=A train.steps=6
expect_ok "run A: 6 steps straight"
qft_run train "${CONST[@]}" run.name=B train.steps=3
expect_ok "run B: first 3 steps"
qft_run train "${CONST[@]}" run.name=B train.steps=6 data.workers=3
expect_ok "run B: resumed to 6 (3 workers)"
check "run B resumed" test "$(json_field resumed)" = true
check "resume discarded batches to reach its position" grep -q "discarded to reach the resume position" "$ERR"
check "A and B final model.safetensors are identical" cmp "$RUNS/A/model.safetensors" "$RUNS/B/model.safetensors"

# Errors: one line each.
qft_run train "${VIT[@]}" run.name=labels train.steps=1 model.num_labels=$((CLASSES + 2))
expect_error "wrong model.num_labels" train 1 "$CLASSES classes" "model.num_labels = $((CLASSES + 2))"
mkdir -p "$WORK/noval" && cp -r "$WORK/folder/train" "$WORK/noval/train"
qft_run train "${VIT[@]}" run.name=noval train.steps=1 data.path="$WORK/noval"
expect_error "missing val/ directory" train 1 "$WORK/noval/val" "not a directory"
qft_run train "${VIT[@]}" run.name=gray train.steps=1 model.num_channels=1
expect_error "imagefolder with model.num_channels=1" train 1 "num_channels 3"
qft_run train "${VIT[@]}" run.name=bert model.type=bert
expect_error "imagefolder with model.type=bert" train 1 "imagefolder needs model.type vit or deit"

qft_run config --config "$REPO_DIR/configs/vit_imagefolder.yaml"
check "configs/vit_imagefolder.yaml loads with qft config" test "$RC" -eq 0

finish
