#!/usr/bin/env bash
# model.hf_config: a Hugging Face config.json sets the architecture, explicit keys still win, bad
# files are one-line errors, a pretrained encoder fine-tunes from it with a new head, and a head of
# another shape loads only with model.ignore_mismatched_sizes.
source "$(dirname "$0")/lib.sh" "$@"
cd "$REPO_DIR" || exit 1
VIT=tests/golden/hf_vit/config.json
BERT_DIR=tests/golden/hf_bert_bare

qft_run config model.hf_config=$VIT
check "config.json sets the architecture" bash -c "grep -q 'type: vit' '$OUT' && grep -q 'hidden_size: 16' '$OUT' && grep -q 'patch_size: 4' '$OUT' && grep -q 'num_labels: 3' '$OUT'"
qft_run config model.hf_config=$VIT model.num_labels=7 model.hidden_size=32
check "explicit keys override config.json" bash -c "grep -q 'num_labels: 7' '$OUT' && grep -q 'hidden_size: 32' '$OUT'"

qft_run config model.hf_config="$WORK/missing.json"
expect_error "missing config.json" config 1 "missing.json"
printf '{"model_type": "vit", "hidden_size": "big"}' >"$WORK/bad.json"
qft_run config model.hf_config="$WORK/bad.json"
expect_error "config.json with a wrong type" config 1 "hidden_size"
printf '{"model_type": "gpt2"}' >"$WORK/gpt2.json"
qft_run config model.hf_config="$WORK/gpt2.json"
expect_error "unsupported model_type" config 1 "model_type"

# A bare BertModel (no classifier): the encoder loads, the new 2-class head is initialized and reported.
qft_run train run.dir="$WORK/runs" run.name=ft model.hf_config=$BERT_DIR/config.json \
    model.init_from=$BERT_DIR/model.safetensors model.num_labels=2 data.dataset=synthetic_text \
    data.max_seq_len=8 train.steps=3 train.log_every=1
check "fine-tunes from config.json + model.safetensors" test "$RC" -eq 0
check "reports the new classifier head" grep -q "missing head tensor 'classifier.weight'" "$ERR"

# A 3-label classification checkpoint into a 2-label model: an error naming the classifier, unless
# model.ignore_mismatched_sizes re-initializes the head (and says so).
CLS_DIR=tests/golden/hf_bert_cls
CLS_RUN=(run.dir="$WORK/runs" model.hf_config="$CLS_DIR/config.json" model.init_from="$CLS_DIR/model.safetensors"
         model.num_labels=2 data.dataset=synthetic_text data.max_seq_len=8 train.steps=2 train.log_every=1)
qft_run train "${CLS_RUN[@]}" run.name=cls_strict
expect_error "3-label head into a 2-label model" train 1 "classifier.weight" "expected shape [2, 8]"
qft_run train "${CLS_RUN[@]}" run.name=cls_ignore model.ignore_mismatched_sizes=true
expect_ok "model.ignore_mismatched_sizes=true fine-tunes with a new 2-label head"
check "reports the re-initialized classifier" grep -q "'classifier.weight' has shape \[3, 8\], the model's is \[2, 8\]: newly initialized" "$ERR"
finish
