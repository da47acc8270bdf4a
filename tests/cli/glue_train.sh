#!/usr/bin/env bash
# `qft train` / `qft eval` / `qft predict` on GLUE data (data.dataset glue): a tiny BERT on RTE-format
# (classification), STS-B-format (regression) and MNLI-format (matched + mismatched) fixtures
# tokenized with the MiniLM WordPiece vocab; the task metrics land in metrics.jsonl; the token cache
# is reused and survives corruption; test-set submission files; a validation split held out of MNLI's
# training rows (eval.split=validation); missing vocab, wrong num_labels and a missing task directory
# are one-line errors.
source "$(dirname "$0")/lib.sh" "$@"

VOCAB=${QFT_MINILM_DIR:-$HOME/.cache/qft/minilm}/vocab.txt
if [ ! -r "$VOCAB" ]; then
    echo "SKIP - $VOCAB is missing (bash datasets/fetch_minilm.sh)"
    echo "$PASSED passed, $FAILED failed"
    exit 77
fi
cd "$WORK" || exit 1
# This script's token cache lives in the scratch dir, not in the user's ~/.cache.
export XDG_CACHE_HOME=$WORK/cache

# Fixtures: real sentences (package descriptions from the dpkg status file, or a built-in list),
# labelled by rules a model can see. RTE: sentence2 is a piece of sentence1 (entailment) or of another
# sentence (not_entailment). STS-B: score = 5 x the word overlap of the two sentences.
python3 -S - "$WORK/glue" <<'EOF'
import os, re, sys
root = sys.argv[1]
sentences = []
try:
    for line in open("/var/lib/dpkg/status", encoding="utf-8", errors="replace"):
        if line.startswith("Description: "):
            s = re.sub(r"[\t\r\n\"]", " ", line[len("Description: "):]).strip()
            if len(s.split()) >= 4 and s not in sentences:
                sentences.append(s)
        if len(sentences) >= 80:
            break
except OSError:
    pass
builtin = ["GNU C library: shared libraries", "command-line interface for the package manager",
           "secure shell client and server", "compression library runtime", "utilities for the ext file systems",
           "standard message catalogs for the C library", "small and fast text editor with syntax highlighting",
           "network configuration tools including ifconfig and route", "library for terminal handling",
           "tool for creating and extracting tar archives", "runtime support for the Python language interpreter",
           "fonts with a wide coverage of Unicode characters"]
i = 0
while len(sentences) < 80:
    sentences.append(builtin[i % len(builtin)] + " part %d" % (i // len(builtin)))
    i += 1

def rte(rows):
    out = ["index\tsentence1\tsentence2\tlabel"]
    for k, (a, other) in enumerate(rows):
        words = a.split()
        if k % 2 == 0:
            out.append("%d\t%s\t%s\tentailment" % (k, a, " ".join(words[: max(2, len(words) // 2)])))
        else:
            w = other.split()
            out.append("%d\t%s\t%s\tnot_entailment" % (k, a, " ".join(w[: max(2, len(w) // 2)])))
    return "\n".join(out) + "\n"

def stsb(rows):
    out = ["index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore"]
    for k, (a, other) in enumerate(rows):
        b = a if k % 3 == 0 else (" ".join(a.split()[:3]) + " " + other if k % 3 == 1 else other)
        wa, wb = set(a.lower().split()), set(b.lower().split())
        score = 5.0 * len(wa & wb) / max(1, len(wa | wb))
        out.append("%d\tmain-captions\tdpkg\t2026\t%04d\tnone\tnone\t%s\t%s\t%.3f" % (k, k, a, b, score))
    return "\n".join(out) + "\n"

# MNLI: sentence2 a piece of sentence1 (entailment), of another sentence (neutral), or the piece
# negated (contradiction); train 12 columns, dev 16, test 10 (no labels).
MNLI_HEAD = ("index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\tsentence1_parse\t"
             "sentence2_parse\tsentence1\tsentence2")
def mnli(rows, kind):
    labels = ("entailment", "neutral", "contradiction")
    tail = {"train": "\tlabel1\tgold_label", "dev": "\tlabel1\tlabel2\tlabel3\tlabel4\tlabel5\tgold_label", "test": ""}
    out = [MNLI_HEAD + tail[kind]]
    for k, (a, other) in enumerate(rows):
        label = labels[k % 3]
        piece = " ".join((a if label != "neutral" else other).split()[:4])
        b = piece if label != "contradiction" else "it is not true that " + piece
        row = "%d\t%d\t%dn\tdpkg\t( %s )\t( %s )\t(ROOT)\t(ROOT)\t%s\t%s" % (k, k, k, a, b, a, b)
        row += {"train": "\t%s\t%s" % (label, label), "dev": ("\t" + label) * 6, "test": ""}[kind]
        out.append(row)
    return "\n".join(out) + "\n"

def unlabelled(text):
    # A test file of RTE/STS-B: the dev rows without the label column, so predictions can be scored.
    return "\n".join(line.rsplit("\t", 1)[0] for line in text.splitlines()) + "\n"

pairs = [(sentences[k], sentences[(k + 37) % len(sentences)]) for k in range(len(sentences))]
for task, make in (("RTE", rte), ("STS-B", stsb)):
    os.makedirs(os.path.join(root, task), exist_ok=True)
    open(os.path.join(root, task, "train.tsv"), "w").write(make(pairs[:48]))
    open(os.path.join(root, task, "dev.tsv"), "w").write(make(pairs[48:64]))
    open(os.path.join(root, task, "test.tsv"), "w").write(unlabelled(make(pairs[48:64])))
os.makedirs(os.path.join(root, "MNLI"), exist_ok=True)
for name, rows, kind in (("train", pairs[:48], "train"), ("dev_matched", pairs[48:64], "dev"),
                         ("dev_mismatched", pairs[64:76], "dev"), ("test_matched", pairs[48:58], "test"),
                         ("test_mismatched", pairs[66:73], "test")):
    open(os.path.join(root, "MNLI", name + ".tsv"), "w").write(mnli(rows, kind))
EOF

BERT=(run.dir="$WORK/runs" model.type=bert model.hidden_size=32 model.num_layers=1 model.num_heads=2
      model.intermediate_size=64 model.vocab_size=30522 model.max_position_embeddings=64 data.max_seq_len=32
      data.dataset=glue data.path="$WORK/glue" data.vocab="$VOCAB" data.batch_size=8 data.eval_batch_size=8
      train.steps=6 train.warmup_steps=1 train.log_every=1 train.eval_every=3 train.lr=1e-3)

# shellcheck disable=SC2317  # called through check
finite() { python3 -S -c 'import math, sys; sys.exit(not math.isfinite(float(sys.argv[1])))' "$1" 2>/dev/null; }
# shellcheck disable=SC2317
# eval_lines_have FILE KEY...: every eval line of metrics.jsonl has each KEY as a finite number, and there are 2.
eval_lines_have() {
    python3 -S - "$@" <<'EOF'
import json, math, sys
lines = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
evals = [l for l in lines if "eval_loss" in l]
ok = len(evals) == 2 and all(isinstance(e.get(k), (int, float)) and math.isfinite(e[k]) for e in evals for k in sys.argv[2:])
sys.exit(0 if ok else 1)
EOF
}
# shellcheck disable=SC2317
eval_accuracy_null() {
    python3 -S -c 'import json, sys; e = [json.loads(l) for l in open(sys.argv[1]) if "eval_loss" in l]; sys.exit(not (e and all(x["eval_accuracy"] is None for x in e)))' "$1"
}

# shellcheck disable=SC2317
# predictions_ok FILE ROWS LABEL...: a GLUE submission file: header "index<TAB>prediction", indices
# 0..ROWS-1 in order, every prediction one of the LABELs (or a number with 3 decimals for "float").
predictions_ok() {
    python3 -S - "$@" <<'EOF'
import re, sys
path, rows, labels = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
lines = open(path).read().split("\n")
ok = lines[0] == "index\tprediction" and lines[-1] == "" and len(lines) == rows + 2
for k, line in enumerate(lines[1:-1]):
    index, _, prediction = line.partition("\t")
    good = re.fullmatch(r"-?[0-9]+\.[0-9]{3}", prediction) if labels == ["float"] else prediction in labels
    ok = ok and index == str(k) and bool(good)
sys.exit(0 if ok else 1)
EOF
}
# shellcheck disable=SC2317
# same_accuracy PREDICTIONS DEV ACCURACY: the predictions scored against the dev labels (the test
# fixture is dev without its label column) give qft eval's accuracy.
same_accuracy() {
    python3 -S - "$@" <<'EOF'
import sys
predicted = [l.split("\t")[1] for l in open(sys.argv[1]).read().splitlines()[1:]]
truth = [l.rsplit("\t", 1)[1] for l in open(sys.argv[2]).read().splitlines()[1:]]
accuracy = sum(p == t for p, t in zip(predicted, truth)) / len(truth)
sys.exit(0 if len(predicted) == len(truth) and abs(accuracy - float(sys.argv[3])) < 1e-6 else 1)
EOF
}

# RTE: classification, metric accuracy.
qft_run train "${BERT[@]}" run.name=rte data.task=rte model.num_labels=2
expect_ok "train a tiny BERT on RTE-format data (6 steps)"
check "train tokenized RTE (nothing cached yet)" bash -c "! grep -q 'from the token cache' '$ERR'"
TRAIN_ACC=$(json_field eval_accuracy)
check "train JSON: eval_accuracy $TRAIN_ACC is a number" finite "$TRAIN_ACC"
check "metrics.jsonl: 2 RTE eval lines with eval_accuracy and eval_score" \
    eval_lines_have "$WORK/runs/rte/metrics.jsonl" eval_accuracy eval_score
check "metrics.jsonl: eval lines name the task" grep -q '"eval_task": "rte"' "$WORK/runs/rte/metrics.jsonl"
check "stderr: eval line with the GLUE metric" grep -q "GLUE rte: accuracy" "$ERR"
qft_run eval "${BERT[@]}" run.name=rte data.task=rte model.num_labels=2
expect_ok "qft eval on RTE-format dev"
check "eval JSON: examples $(json_field examples) == 16 (dev rows)" test "$(json_field examples)" = 16
check "eval agrees with the end-of-training evaluation ($TRAIN_ACC)" test "$(json_field accuracy)" = "$TRAIN_ACC"
check "eval stderr has the GLUE metric" grep -q "GLUE rte: accuracy" "$ERR"
check "eval read RTE dev from the token cache train wrote" grep -q "RTE/dev.tsv: 16 examples from the token cache" "$ERR"
check "eval JSON: no MNLI-mm keys for RTE" test "$(json_field mnli_mm_accuracy)" = "<missing>"

# Token cache: a corrupted or truncated file is reported, ignored and rebuilt; results do not change.
mapfile -t RTE_DEV_CACHE < <(ls "$XDG_CACHE_HOME"/qft/glue/rte_dev_*.tokens 2>/dev/null)
check "one RTE dev cache file under \$XDG_CACHE_HOME/qft/glue (${#RTE_DEV_CACHE[@]})" test "${#RTE_DEV_CACHE[@]}" -eq 1
python3 -S -c 'import sys; f = open(sys.argv[1], "r+b"); f.seek(200); b = f.read(1); f.seek(200); f.write(bytes([b[0] ^ 1]))' "${RTE_DEV_CACHE[0]}"
qft_run eval "${BERT[@]}" run.name=rte data.task=rte model.num_labels=2
check "a flipped byte in the cache: reported and ignored" grep -q "token cache ignored (checksum mismatch); tokenizing again" "$ERR"
check "  and the evaluation is unchanged ($(json_field accuracy))" test "$(json_field accuracy)" = "$TRAIN_ACC"
truncate -s 100 "${RTE_DEV_CACHE[0]}"
qft_run eval "${BERT[@]}" run.name=rte data.task=rte model.num_labels=2
check "a truncated cache: reported and ignored" grep -q "token cache ignored (wrong file size" "$ERR"
check "  and the evaluation is unchanged ($(json_field accuracy))" test "$(json_field accuracy)" = "$TRAIN_ACC"
qft_run eval "${BERT[@]}" run.name=rte data.task=rte model.num_labels=2
check "the rebuilt cache is used again" grep -q "RTE/dev.tsv: 16 examples from the token cache" "$ERR"

# qft predict: GLUE submission files of the test split; RTE's test fixture is dev without labels,
# so the predictions must score exactly qft eval's accuracy.
qft_run predict "${BERT[@]}" run.name=rte data.task=rte model.num_labels=2
expect_ok "qft predict on RTE-format test"
check "predict JSON names RTE.tsv: $(json_field files)" test "$(json_field files)" = "[\"$WORK/runs/rte/predictions/RTE.tsv\"]"
check "RTE.tsv: 16 rows of entailment / not_entailment" \
    predictions_ok "$WORK/runs/rte/predictions/RTE.tsv" 16 entailment not_entailment
check "RTE.tsv scored against the dev labels gives the eval accuracy ($TRAIN_ACC)" \
    same_accuracy "$WORK/runs/rte/predictions/RTE.tsv" "$WORK/glue/RTE/dev.tsv" "$TRAIN_ACC"

# STS-B: regression (num_labels 1, MSE), metrics Pearson and Spearman; no accuracy.
qft_run train "${BERT[@]}" run.name=stsb data.task=stsb model.num_labels=1
expect_ok "train a tiny BERT on STS-B-format data (regression)"
check "train JSON: eval_accuracy is null for regression" test "$(json_field eval_accuracy)" = null
check "train JSON: eval_pearson $(json_field eval_pearson) is a number" finite "$(json_field eval_pearson)"
check "train JSON: eval_score $(json_field eval_score) is a number" finite "$(json_field eval_score)"
check "train JSON: eval_loss (MSE) $(json_field eval_loss) is finite" finite "$(json_field eval_loss)"
check "metrics.jsonl: 2 STS-B eval lines with eval_pearson, eval_spearmanr, eval_score" \
    eval_lines_have "$WORK/runs/stsb/metrics.jsonl" eval_loss eval_pearson eval_spearmanr eval_score
check "metrics.jsonl: eval_accuracy is null for regression" eval_accuracy_null "$WORK/runs/stsb/metrics.jsonl"
qft_run eval "${BERT[@]}" run.name=stsb data.task=stsb model.num_labels=1
expect_ok "qft eval on STS-B-format dev"
check "eval JSON: accuracy is null, loss finite" test "$(json_field accuracy)" = null -a -n "$(json_field loss)"
check "eval JSON: spearmanr $(json_field spearmanr) is a number" finite "$(json_field spearmanr)"
check "eval JSON: score $(json_field score) is a number" finite "$(json_field score)"
check "eval stderr has Pearson and Spearman" grep -q "GLUE stsb: pearson .* spearmanr" "$ERR"
qft_run predict "${BERT[@]}" run.name=stsb data.task=stsb model.num_labels=1
expect_ok "qft predict on STS-B-format test"
check "STS-B.tsv: 16 rows of scores" predictions_ok "$WORK/runs/stsb/predictions/STS-B.tsv" 16 float

# MNLI: evaluation on dev_matched (16 rows) and dev_mismatched (12); predictions for both test sets.
qft_run train "${BERT[@]}" run.name=mnli data.task=mnli model.num_labels=3
expect_ok "train a tiny BERT on MNLI-format data"
MNLI_ACC=$(json_field eval_accuracy)
MNLI_MM_ACC=$(json_field eval_mnli_mm_accuracy)
check "train JSON: eval_mnli_mm_accuracy $MNLI_MM_ACC is a number" finite "$MNLI_MM_ACC"
check "train JSON: eval_mnli_mm_examples $(json_field eval_mnli_mm_examples) == 12" test "$(json_field eval_mnli_mm_examples)" = 12
check "metrics.jsonl: 2 MNLI eval lines with matched and mismatched accuracy" \
    eval_lines_have "$WORK/runs/mnli/metrics.jsonl" eval_accuracy eval_mnli_mm_accuracy eval_mnli_mm_loss eval_mnli_mm_examples
check "stderr: eval line with the mismatched accuracy" grep -q "GLUE mnli: accuracy .*; mismatched: accuracy" "$ERR"
qft_run eval "${BERT[@]}" run.name=mnli data.task=mnli model.num_labels=3
expect_ok "qft eval on MNLI-format dev_matched and dev_mismatched"
check "eval JSON: examples $(json_field examples) == 16, mnli_mm_examples $(json_field mnli_mm_examples) == 12" \
    test "$(json_field examples)" = 16 -a "$(json_field mnli_mm_examples)" = 12
check "eval JSON: accuracy and mnli_mm_accuracy agree with training's ($MNLI_ACC, $MNLI_MM_ACC)" \
    test "$(json_field accuracy)" = "$MNLI_ACC" -a "$(json_field mnli_mm_accuracy)" = "$MNLI_MM_ACC"
qft_run predict "${BERT[@]}" run.name=mnli data.task=mnli model.num_labels=3
expect_ok "qft predict on MNLI-format test_matched and test_mismatched"
check "MNLI-m.tsv: 10 rows of MNLI labels" \
    predictions_ok "$WORK/runs/mnli/predictions/MNLI-m.tsv" 10 contradiction entailment neutral
check "MNLI-mm.tsv: 7 rows of MNLI labels" \
    predictions_ok "$WORK/runs/mnli/predictions/MNLI-mm.tsv" 7 contradiction entailment neutral
check "predict JSON: examples $(json_field examples) == [10, 7]" test "$(json_field examples)" = "[10, 7]"

# eval.split=validation: 12 of MNLI's 48 training rows held out (data.validation_size), evaluated with
# the task metrics; no dev_mismatched evaluation (the rows come from the one training file).
MNLI_VAL=(run.name=mnli_val data.task=mnli model.num_labels=3 data.validation_size=12 eval.split=validation)
qft_run train "${BERT[@]}" "${MNLI_VAL[@]}"
expect_ok "train on MNLI-format data with 12 training rows held out for validation"
check "train JSON: train_examples $(json_field train_examples) == 36, eval_split validation, no mismatched keys" \
    test "$(json_field train_examples)" = 36 -a "$(json_field eval_split)" = validation -a \
    "$(json_field eval_mnli_mm_accuracy)" = "<missing>"
check "metrics.jsonl: MNLI eval lines on 12 validation rows" \
    python3 -S -c 'import json, sys; e = [json.loads(l) for l in open(sys.argv[1]) if "eval_loss" in l]; sys.exit(not (len(e) == 2 and all(x["eval_split"] == "validation" and x["eval_examples"] == 12 and x["eval_task"] == "mnli" and "eval_mnli_mm_accuracy" not in x for x in e)))' \
    "$WORK/runs/mnli_val/metrics.jsonl"
MNLI_VAL_ACC=$(json_field eval_accuracy)
qft_run eval "${BERT[@]}" "${MNLI_VAL[@]}"
expect_ok "qft eval eval.split=validation on MNLI-format data"
check "eval JSON: split validation, 12 examples, accuracy $(json_field accuracy) == training's ($MNLI_VAL_ACC)" \
    test "$(json_field split)" = validation -a "$(json_field examples)" = 12 -a "$(json_field accuracy)" = "$MNLI_VAL_ACC"
check "eval JSON: no mnli_mm keys on the validation split" test "$(json_field mnli_mm_examples)" = "<missing>"

# data.eval_limit applies to GLUE dev; a cased tokenizer setting still runs.
qft_run eval "${BERT[@]}" run.name=rte data.task=rte model.num_labels=2 data.eval_limit=5 data.do_lower_case=false
expect_ok "qft eval with data.eval_limit=5 data.do_lower_case=false"
check "eval JSON: examples $(json_field examples) == 5" test "$(json_field examples)" = 5

# The committed preset loads, and fails on the data only when training starts.
qft_run config --config "$REPO_DIR/configs/glue/rte.yaml"
check "configs/glue/rte.yaml loads with qft config" test "$RC" -eq 0

# Errors: one line each.
qft_run train --config "$REPO_DIR/configs/glue/rte.yaml" "${BERT[@]}" run.name=novocab data.vocab=
expect_error "glue preset without data.vocab" train 1 "data.vocab" "required"
qft_run train "${BERT[@]}" run.name=labels data.task=rte model.num_labels=3
expect_error "RTE with model.num_labels=3" train 1 "model.num_labels = 3" "rte needs 2"
qft_run train "${BERT[@]}" run.name=nomrpc data.task=mrpc model.num_labels=2
expect_error "a task whose directory is missing" train 1 "$WORK/glue/MRPC" "not a directory"
qft_run eval "${BERT[@]}" run.name=rte data.task=rte model.num_labels=2 data.vocab="$WORK/missing.txt"
expect_error "eval with a missing vocab file" eval 1 "$WORK/missing.txt"
qft_run train "${BERT[@]}" run.name=smallvocab data.task=rte model.num_labels=2 model.vocab_size=1000
expect_error "vocab.txt larger than model.vocab_size" train 1 "data.vocab" "model.vocab_size (1000)"
qft_run train "${BERT[@]}" run.name=notask model.num_labels=2
expect_error "glue without data.task" train 1 "data.task" "required"
mv "$WORK/glue/RTE/test.tsv" "$WORK/test.tsv"
qft_run predict "${BERT[@]}" run.name=rte data.task=rte model.num_labels=2
expect_error "predict without RTE/test.tsv" predict 1 "$WORK/glue/RTE/test.tsv"
qft_run predict run.dir="$WORK/runs" run.name=rte
expect_error "predict on data that is not GLUE" predict 1 "data.dataset" "needs glue"

finish
