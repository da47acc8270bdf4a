#!/usr/bin/env bash
# `qft train` / `qft eval` on an ImageNet-layout image folder (data.dataset imagefolder): a tiny ViT on
# the Fashion-MNIST image-folder fixture written as JPEG by Pillow at test time (train/ and val/, 3
# classes, baseline/progressive/4:4:4/greyscale JPEGs of varied sizes plus files the loader must
# skip); per-channel normalization through overrides; resume is bit-exact (N then 2N == 2N straight,
# resuming mid-epoch) and decodes only the batches it trains on; data.train_limit / eval_limit apply;
# a validation split held out of train/ (data.validation_size, eval.split=validation); wrong model.num_labels and a missing val/ are one-line errors; configs/vit_imagefolder.yaml loads.
source "$(dirname "$0")/lib.sh" "$@"
need_fmnist
need_pillow
cd "$WORK" || exit 1

# The fixture as train/ and val/ (the same images: the test checks the plumbing, not generalization).
for split in train val; do
    "$PIL_PYTHON" "$REPO_DIR/datasets/make_imagefolder_fixture.py" --jpeg "$WORK/folder/$split" "$FMNIST_DIR" \
        >/dev/null || { fail "make_imagefolder_fixture.py --jpeg $split"; finish; }
done
JPEGS=$(find "$WORK/folder/train" -name '*.JPEG' | wc -l)
check "the fixture is JPEG files ($JPEGS of them)" test "$JPEGS" -eq 11
CLASSES=$(find "$WORK/folder/train" -mindepth 1 -maxdepth 1 -type d ! -name '.*' | wc -l)

# 10 header-valid train images / batch 4 = 2 batches an epoch: resuming at step 3 is mid-epoch.
VIT=(run.dir="$WORK/runs" model.type=vit model.image_size=32 model.patch_size=8 model.num_channels=3
     model.hidden_size=32 model.num_layers=1 model.num_heads=2 model.intermediate_size=64 model.num_labels="$CLASSES"
     data.dataset=imagefolder data.path="$WORK/folder" data.batch_size=4 data.eval_batch_size=4 data.workers=2
     data.normalize_mean=[0.485,0.456,0.406] data.normalize_std='[0.229, 0.224, 0.225]' train.warmup_steps=1
     train.log_every=1 train.lr=1e-3
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
check "config.yaml keeps the per-channel mean" grep -q '^  normalize_mean: \[0.485, 0.456, 0.406\]$' "$RUNS/basic/config.yaml"
check "config.yaml keeps the per-channel std" grep -q '^  normalize_std: \[0.229, 0.224, 0.225\]$' "$RUNS/basic/config.yaml"
TRAIN_ACC=$(json_field eval_accuracy)
qft_run eval "${VIT[@]}" run.name=basic
expect_ok "qft eval on val/"
check "eval JSON: examples $(json_field examples) == 10 (header-valid val images)" test "$(json_field examples)" = 10
check "eval skips notes.txt and broken.JPEG, fails once on truncated.JPEG" \
    grep -q "imagefolder: val 2 file(s) skipped, 1 failed decode(s)" "$ERR"
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
# Images decoded minus failed decodes = images trained on: 3 steps x 4 when the loader starts at the
# resume position (discarding batch 0 of epoch 1 first would make it 16).
decoded=$(sed -n 's/^imagefolder: train [0-9]* file(s) skipped, \([0-9]*\) failed decode(s) of \([0-9]*\);.*/\2 - \1/p' "$ERR")
check "the resumed run decodes only its own 12 images (got $((decoded)))" test "$((decoded))" -eq 12
check "A and B final model.safetensors are identical" cmp "$RUNS/A/model.safetensors" "$RUNS/B/model.safetensors"

# Limits: a subset keeping every class (train: 6 of 10 -> 1 batch of 4 an epoch; val: 5 of 10).
qft_run train "${VIT[@]}" run.name=limits train.steps=2 data.train_limit=6 data.eval_limit=5
expect_ok "train with data.train_limit=6 data.eval_limit=5"
check "end-of-training evaluation used 5 images" grep -q '"eval_examples": 5' "$RUNS/limits/metrics.jsonl"
qft_run eval "${VIT[@]}" run.name=limits data.eval_limit=7
check "eval JSON: examples $(json_field examples) == data.eval_limit (7)" test "$(json_field examples)" = 7
qft_run eval "${VIT[@]}" run.name=limits data.eval_limit=2
expect_error "data.eval_limit below the number of classes" eval 1 "data.eval_limit = 2" "fewer than the $CLASSES classes"

# A validation split held out of train/: 4 of its 10 images (one per class, the leftover to the largest
# remainder) leave training (6 -> 1 batch of 4 an epoch) and are evaluated with the eval transform.
qft_run train "${VIT[@]}" run.name=val train.steps=2 data.validation_size=4 eval.split=validation
expect_ok "train with data.validation_size=4 eval.split=validation"
check "train JSON: train_examples $(json_field train_examples) == 6, eval_split validation" \
    test "$(json_field train_examples)" = 6 -a "$(json_field eval_split)" = validation
check "metrics.jsonl: the evaluations used the 4 validation images" \
    grep -q '"eval_split": "validation", "eval_loss": [0-9.]*, "eval_accuracy": [0-9.]*, "eval_examples": 4' \
    "$RUNS/val/metrics.jsonl"
VAL_ACC=$(json_field eval_accuracy)
qft_run eval "${VIT[@]}" run.name=val data.validation_size=4 eval.split=validation data.workers=1
expect_ok "qft eval eval.split=validation on an image folder"
check "eval JSON: split validation, 4 examples, training's accuracy ($VAL_ACC)" \
    test "$(json_field split)" = validation -a "$(json_field examples)" = 4 -a "$(json_field accuracy)" = "$VAL_ACC"
check "stderr names the validation split" grep -q "imagefolder: validation [0-9]* file(s) skipped" "$ERR"
qft_run train "${VIT[@]}" run.name=val2 train.steps=1 data.validation_size=2
expect_error "data.validation_size below the number of classes" train 1 "data.validation_size = 2" \
    "fewer than the $CLASSES classes"

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
