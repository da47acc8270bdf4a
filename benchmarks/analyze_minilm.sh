#!/usr/bin/env bash
# Outlier analysis of the real all-MiniLM-L6-v2 (issue 5's "Must show"): `qft analyze` on real English
# sentences, written into runs/<name>/report.md (+ CSV, PNG). Sentences come from the long package
# descriptions in /var/lib/dpkg/status, in an SST-2-layout TSV (the labels are placeholders: analysis
# reads no label), so the run needs no download beyond the checkpoint.
#
#   benchmarks/analyze_minilm.sh                      # 8 batches of 32 sentences, max 128 tokens
#   benchmarks/analyze_minilm.sh quant.calib_batches=2 --config configs/quant/w8a8.yaml   # extra qft args
#
# Environment: QFT_MINILM_DIR [~/.cache/qft/minilm] (datasets/fetch_minilm.sh), QFT_BIN [build/qft],
# THREADS [2], RUN_DIR [runs], RUN_NAME [analyze_minilm].
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
MINILM=${QFT_MINILM_DIR:-$HOME/.cache/qft/minilm}
QFT_BIN=${QFT_BIN:-build/qft}
THREADS=${THREADS:-2}
RUN_DIR=${RUN_DIR:-runs}
RUN_NAME=${RUN_NAME:-analyze_minilm}
for f in config.json model.safetensors vocab.txt; do
    [ -r "$MINILM/$f" ] || { echo "analyze_minilm.sh: $MINILM/$f is missing (bash datasets/fetch_minilm.sh)" >&2; exit 1; }
done
[ -x "$QFT_BIN" ] || { echo "analyze_minilm.sh: $QFT_BIN is not built (cmake --build build)" >&2; exit 1; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/qft_minilm.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
# Sentences of the descriptions' first paragraphs (5..60 words, deduplicated, in file order).
python3 -S - "$WORK/glue/SST-2" <<'EOF'
import os, re, sys
out_dir = sys.argv[1]
os.makedirs(out_dir)
sentences, seen, paragraph = [], set(), []

def flush():
    text = " ".join(paragraph)
    for s in re.split(r"(?<=[.!?])\s+", text):
        s = re.sub(r"[\t\r\n\"]", " ", s).strip()
        if 5 <= len(s.split()) <= 60 and s not in seen:
            seen.add(s)
            sentences.append(s)
    paragraph.clear()

in_description = False
for line in open("/var/lib/dpkg/status", encoding="utf-8", errors="replace"):
    if line.startswith("Description: "):
        in_description = True
        paragraph.clear()
    elif in_description and line.startswith(" ") and line.strip() != ".":
        paragraph.append(line.strip())
    elif in_description:
        flush()  # first paragraph only: later ones are often lists
        in_description = False
if len(sentences) < 64:
    sys.exit("analyze_minilm.sh: only %d sentences in /var/lib/dpkg/status" % len(sentences))
for name, rows in (("train.tsv", sentences), ("dev.tsv", sentences[:64])):
    with open(os.path.join(out_dir, name), "w", encoding="utf-8") as f:
        f.write("sentence\tlabel\n")
        for k, s in enumerate(rows):
            f.write("%s\t%d\n" % (s, k % 2))
print("analyze_minilm.sh: %d sentences" % len(sentences), file=sys.stderr)
EOF

export XDG_CACHE_HOME=$WORK/cache  # the token cache of these throwaway TSVs
OMP_NUM_THREADS=$THREADS "$QFT_BIN" analyze model.type=bert model.hf_config="$MINILM/config.json" \
    model.init_from="$MINILM/model.safetensors" data.dataset=glue data.task=sst2 data.path="$WORK/glue" \
    data.vocab="$MINILM/vocab.txt" data.do_lower_case=true data.max_seq_len=128 data.batch_size=32 \
    quant.calib_batches=8 run.dir="$RUN_DIR" run.name="$RUN_NAME" "$@"
