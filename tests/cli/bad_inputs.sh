#!/usr/bin/env bash
# Bad weights (model.init_from) and bad data (data.path): each is exit 1, one stderr line naming the
# file, an "ok": false JSON line, and never a crash. Fixtures come from tests/cli/fixtures.py.
source "$(dirname "$0")/lib.sh" "$@"
cd "$WORK" || exit 1

# A small valid IDX set, so this script needs no installed dataset.
fixtures idx "$WORK/idx_good" count=64
BASE=("${TINY[@]}" data.path="$WORK/idx_good" data.train_limit=0 data.eval_limit=0 data.batch_size=32
      data.eval_batch_size=64 train.steps=1)

# --- model.init_from ----------------------------------------------------------------------------
qft_run train "${BASE[@]}" run.name=export
expect_ok "a 1-step tiny train on a generated IDX set exports a model"
GOOD=$WORK/runs/export/model.safetensors
check "model.safetensors exists" test -s "$GOOD"

qft_run train "${BASE[@]}" run.name=control model.init_from="$GOOD"
expect_ok "control: model.init_from=<the exported model> trains"

# init_bad NAME FILE "what" PATTERN...: training from FILE must fail cleanly naming it.
init_bad() {
    local name=$1 file=$2 what=$3
    shift 3
    qft_run train "${BASE[@]}" run.name="$name" model.init_from="$file"
    expect_error "init_from $what" train 1 "$file" "$@"
}

fixtures truncate "$GOOD" "$WORK/truncated_half.safetensors" $(($(stat -c %s "$GOOD") / 2))
init_bad trunc_half "$WORK/truncated_half.safetensors" "truncated to half its size"

fixtures truncate "$GOOD" "$WORK/truncated_tail.safetensors" -4
init_bad trunc_tail "$WORK/truncated_tail.safetensors" "missing its last 4 bytes"

fixtures truncate "$GOOD" "$WORK/truncated_header.safetensors" 40
init_bad trunc_header "$WORK/truncated_header.safetensors" "cut inside the JSON header"

fixtures truncate "$GOOD" "$WORK/truncated_len.safetensors" 5
init_bad trunc_len "$WORK/truncated_len.safetensors" "shorter than the 8-byte length field"

: >"$WORK/empty.safetensors"
init_bad empty "$WORK/empty.safetensors" "empty file"

fixtures oversized-header "$WORK/oversized.safetensors"
init_bad oversized "$WORK/oversized.safetensors" "oversized header length (2^40)" "header"

fixtures raw-header "$WORK/notjson.safetensors" '{"this is": not json at all!!!}'

init_bad notjson "$WORK/notjson.safetensors" "header that is not JSON" "JSON"

t=$(fixtures dtype "$GOOD" "$WORK/dtype_i8.safetensors" vit.encoder.layer.0.attention.attention.query.weight I8)
init_bad dtype "$WORK/dtype_i8.safetensors" "I8 dtype for a weight" "$t" "I8"

t=$(fixtures shape "$GOOD" "$WORK/shape.safetensors" vit.encoder.layer.0.attention.attention.query.weight)
init_bad shape "$WORK/shape.safetensors" "shape [17, 16] for a [16, 16] weight" "$t"

t=$(fixtures shape "$GOOD" "$WORK/shape_bias.safetensors" vit.encoder.layer.0.output.dense.bias)
init_bad shape_bias "$WORK/shape_bias.safetensors" "17 values for a 16-value bias" "$t"

t=$(fixtures drop "$GOOD" "$WORK/missing.safetensors" vit.encoder.layer.0.intermediate.dense.weight)
init_bad missing "$WORK/missing.safetensors" "missing a body weight" "$t"

init_bad nonexistent "$WORK/no_such_file.safetensors" "nonexistent file"

mkdir -p "$WORK/a_directory.safetensors"
init_bad directory "$WORK/a_directory.safetensors" "a directory"

# Dropping the classifier is fine-tuning onto a new head: a note on stderr, then training.
fixtures drop "$GOOD" "$WORK/headless0.safetensors" classifier.weight >/dev/null
fixtures drop "$WORK/headless0.safetensors" "$WORK/headless.safetensors" classifier.bias >/dev/null
qft_run train "${BASE[@]}" run.name=headless model.init_from="$WORK/headless.safetensors"
expect_ok "init_from without the classifier head trains (new head)"
check "... and says the head was newly initialized" grep -q "classifier.weight.*newly initialized" "$ERR"

# NaN weights: either refused on import or reported as divergence, but a clean one-line failure.
t=$(fixtures nan "$GOOD" "$WORK/nan.safetensors" vit.encoder.layer.0.attention.attention.query.weight)
qft_run train "${BASE[@]}" run.name=nan model.init_from="$WORK/nan.safetensors"
expect_error "init_from with NaN weights fails cleanly" train 1

# --- data.path ----------------------------------------------------------------------------------
# data_bad NAME DIR "what" PATTERN...: training on DIR must fail cleanly; PATTERNs name the file.
data_bad() {
    local name=$1 dir=$2 what=$3
    shift 3
    qft_run train "${BASE[@]}" run.name="$name" data.path="$dir"
    expect_error "data.path $what" train 1 "$@"
}

mkdir -p "$WORK/idx_empty"
data_bad empty "$WORK/idx_empty" "empty directory (no IDX files)" "$WORK/idx_empty/train-images-idx3-ubyte.gz"

data_bad nodir "$WORK/idx_nowhere" "nonexistent directory" "$WORK/idx_nowhere/train-images-idx3-ubyte.gz"

mkdir -p "$WORK/idx_nolabels"
cp "$WORK/idx_good/train-images-idx3-ubyte.gz" "$WORK/idx_nolabels/"
data_bad nolabels "$WORK/idx_nolabels" "images without labels" "$WORK/idx_nolabels/train-labels-idx1-ubyte.gz"

# Truncated gzip files: the real Debian files when present (the case that matters), else ours.
mkdir -p "$WORK/idx_truncgz"
src=$WORK/idx_good
[ -r "$FMNIST_DIR/t10k-images-idx3-ubyte.gz" ] && src=$FMNIST_DIR
cp "$src"/*.gz "$WORK/idx_truncgz/"
f=$src/train-images-idx3-ubyte.gz
fixtures truncate "$f" "$WORK/idx_truncgz/train-images-idx3-ubyte.gz" $(($(stat -c %s "$f") / 2))
data_bad truncgz "$WORK/idx_truncgz" "truncated gzip image file" "$WORK/idx_truncgz/train-images-idx3-ubyte.gz" "pixels"

mkdir -p "$WORK/idx_truncgz_hdr"
cp "$WORK"/idx_good/* "$WORK/idx_truncgz_hdr/"
fixtures truncate "$WORK/idx_good/train-labels-idx1-ubyte.gz" "$WORK/idx_truncgz_hdr/train-labels-idx1-ubyte.gz" 12
data_bad truncgz_hdr "$WORK/idx_truncgz_hdr" "gzip label file cut inside the gzip header" \
    "$WORK/idx_truncgz_hdr/train-labels-idx1-ubyte.gz"

fixtures idx "$WORK/idx_short" count=64 short=1
data_bad short "$WORK/idx_short" "complete gzip stream with half the pixels" "$WORK/idx_short/train-images-idx3-ubyte.gz" "truncated"

fixtures idx "$WORK/idx_magic" count=64 image_magic=0x00000801
data_bad magic "$WORK/idx_magic" "wrong magic in the image file" "$WORK/idx_magic/train-images-idx3-ubyte.gz" "magic"

fixtures idx "$WORK/idx_magic_lab" count=64 label_magic=0x08030000
data_bad magic_lab "$WORK/idx_magic_lab" "wrong magic in the label file" "$WORK/idx_magic_lab/train-labels-idx1-ubyte.gz" "magic"

mkdir -p "$WORK/idx_garbage"
cp "$WORK"/idx_good/* "$WORK/idx_garbage/"
head -c 3000 "$CLI_DIR/fixtures.py" >"$WORK/idx_garbage/train-images-idx3-ubyte.gz"
data_bad garbage "$WORK/idx_garbage" "text file posing as gzip IDX" "$WORK/idx_garbage/train-images-idx3-ubyte.gz"

fixtures idx "$WORK/idx_count" count=64 labels=60
data_bad count "$WORK/idx_count" "label count differs from image count" "$WORK/idx_count/train-labels-idx1-ubyte.gz" "60"

fixtures idx "$WORK/idx_huge" count=64 huge_count=1
data_bad huge "$WORK/idx_huge" "headers claiming 2^31-1 examples over 64 of data" \
    "$WORK/idx_huge/train-images-idx3-ubyte.gz" "truncated"

fixtures idx "$WORK/idx_label" count=64 max_label=12
data_bad label "$WORK/idx_label" "label 12 with model.num_labels=10" "$WORK/idx_label/train-labels-idx1-ubyte.gz" "num_labels"

fixtures idx "$WORK/idx_size" count=64 rows=32 cols=32
data_bad size "$WORK/idx_size" "32x32 images with model.image_size=28" "$WORK/idx_size/train-images-idx3-ubyte.gz" "image_size"

# Only the evaluation split is broken: the message must name the t10k file, not the train one.
mkdir -p "$WORK/idx_evalbad"
cp "$WORK"/idx_good/* "$WORK/idx_evalbad/"
fixtures truncate "$WORK/idx_good/t10k-images-idx3-ubyte.gz" "$WORK/idx_evalbad/t10k-images-idx3-ubyte.gz" 30
data_bad evalbad "$WORK/idx_evalbad" "broken evaluation split only" "$WORK/idx_evalbad/t10k-images-idx3-ubyte.gz"

qft_run eval "${BASE[@]}" run.name=export data.path="$WORK/idx_short"
expect_error "eval on a truncated IDX set" eval 1 "$WORK/idx_short/t10k-images-idx3-ubyte.gz"

finish
