#!/usr/bin/env bash
# A model exported by qft loads back in PyTorch (plain-torch ViT with HF names, tests/oracle/models.py)
# and evaluates to the same loss and accuracy as `qft eval` on the same test images.
set -u
qft="$1"
cd "$(dirname "$0")/../.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
passed=0; failed=0
check() { if eval "$2"; then echo "ok: $1"; passed=$((passed+1)); else echo "FAIL: $1"; failed=$((failed+1)); fi; }
py=/usr/bin/python3
if ! $py -c 'import torch, numpy' 2>/dev/null; then
  echo "FAIL: /usr/bin/python3 lacks torch/numpy (scripts/setup.sh installs python3-torch python3-numpy)"
  echo "0 passed, 1 failed"; exit 1
fi
dims="model.hidden_size=32 model.num_layers=2 model.num_heads=4 model.intermediate_size=64"
"$qft" train run.dir="$work" run.name=exp $dims train.steps=20 data.train_limit=2560 data.eval_limit=64 \
  train.log_every=10 >"$work/train.json" 2>"$work/train.err"
check "tiny training run succeeds" '[ $? -eq 0 ] && [ -f "$work/exp/model.safetensors" ]'
"$qft" eval run.dir="$work" run.name=exp $dims data.eval_limit=1000 >"$work/eval.json" 2>/dev/null
$py tests/oracle/eval_export.py "$work/exp/model.safetensors" 1000 hidden_size=32 num_layers=2 num_heads=4 \
  intermediate_size=64 >"$work/torch.json"
check "PyTorch loads the export" '[ $? -eq 0 ]'
cmp=$($py - "$work/eval.json" "$work/torch.json" <<'PY'
import json, sys
q = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
t = json.loads(open(sys.argv[2]).read())
rel = abs(q["loss"] - t["loss"]) / abs(t["loss"])
print("loss qft %.6f torch %.6f rel %.2e; accuracy qft %.4f torch %.4f" % (q["loss"], t["loss"], rel, q["accuracy"], t["accuracy"]))
# qft prints the loss with 6 decimals; 1e-5 relative covers that rounding and fp32 differences.
sys.exit(0 if rel <= 1e-5 and abs(q["accuracy"] - t["accuracy"]) < 1e-9 else 1)
PY
)
status=$?
echo "$cmp"
check "same loss and accuracy in qft and PyTorch" '[ $status -eq 0 ]'
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
