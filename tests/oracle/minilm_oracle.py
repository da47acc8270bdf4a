#!/usr/bin/python3
"""Writes tests/golden/minilm_hidden.safetensors: the real all-MiniLM-L6-v2 encoder (BERT, 6 layers,
hidden 384, 12 heads) on 8 real English sentences, computed with the plain-torch BertModel of
models.py (no `transformers`).

Sentences: taken verbatim (whitespace collapsed) from Debian package descriptions in
/var/lib/dpkg/status of the machine the golden was made on (the package is named next to each).
They are written out below rather than read at run time, so regenerating on another machine gives
the same file. They exercise the tokenizer's edge cases: punctuation, hyphens, digits, an accented
letter (Bézier -> bezier), an en dash, a curly apostrophe, CJK characters (each its own token) and
U+FFFD (removed by BERT's text cleaning).

Tokenizer: the Hugging Face `tokenizers` package (Rust), loading the checkpoint's tokenizer.json
(BertNormalizer lowercase + accent strip + CJK split, BertPreTokenizer, WordPiece "##",
[CLS] ... [SEP]) with its built-in padding/truncation (fixed 128) switched off; the batch is padded
here to its longest row with [PAD] = 0, attention_mask 0 and token_type_ids 0 on the padding.
check_vs_transformers.py confirms the ids equal those of HF's slow Python BertTokenizer.
Install: /usr/bin/python3 -m pip install --break-system-packages tokenizers

Precision: the checkpoint's F32 weights are run once in float64 (the stored reference) and once in
float32; the differences between the two torch runs are stored in the metadata so the C tolerance
can be stated relative to torch's own fp32 error.

Contents: input_ids, attention_mask, token_type_ids [B, T] I64; last_hidden_state [B, T, 384] F32
(float64 run; padded positions included as HF computes them, but tests should compare only rows
with attention_mask == 1); sentence_embedding [B, 384] F32 = mask-weighted mean of
last_hidden_state, L2-normalized (sentence-transformers Pooling(mean) + Normalize).

Usage: /usr/bin/python3 tests/oracle/minilm_oracle.py [--model-dir DIR] [--out FILE]
       (default model dir: the one printed by datasets/fetch_minilm.sh)
"""
import argparse
import json
import os
import subprocess
import sys

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import models  # noqa: E402
import st_io  # noqa: E402

# (source package, sentence) -- from the Description fields in /var/lib/dpkg/status (Debian 12).
SOURCES = [
    ("gzip", "GNU compression utilities"),
    ("gzip", "This package provides the standard GNU file compression utilities, which are also the "
             "default compression tools for Debian."),
    ("bash", "Bash is an sh-compatible command language interpreter that executes commands read from "
             "the standard input or from a file."),
    ("imagemagick", "Use ImageMagick to translate, flip, mirror, rotate, scale, shear and transform "
                    "images, adjust image colors, apply various special effects, or draw text, lines, "
                    "polygons, ellipses and Bézier curves."),
    ("jq", "jq is like sed for JSON data – you can use it to slice and filter and map and transform "
           "structured data with the same ease that sed, awk, grep and friends let you play with text."),
    ("fonts-noto-mono", "Tofu (豆腐) is Japanese jargon for unicode replacement character \"\ufffd\" "
                        "(U+FFFD) often displayed as replacement for unassigned or unknown characters."),
    ("jq", "jq can mangle the data format that you have into the one that you want with very little "
           "effort, and the program to do so is often shorter and simpler than you’d expect."),
    ("make", "utility for directing compilation"),
]
SENTENCES = [s for _, s in SOURCES]
MAX_TOKENS = 64


def model_dir_default():
    script = os.path.join(HERE, "..", "..", "datasets", "fetch_minilm.sh")
    out = subprocess.check_output(["bash", script], text=True)
    return out.strip().splitlines()[-1]


def tokenize(model_dir, sentences):
    try:
        from tokenizers import Tokenizer
    except ImportError:
        sys.exit("needs the `tokenizers` package: /usr/bin/python3 -m pip install --break-system-packages tokenizers")
    tok = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
    tok.no_padding()
    tok.no_truncation()
    encs = [tok.encode(s) for s in sentences]
    t = max(len(e.ids) for e in encs)
    if t > MAX_TOKENS:
        raise SystemExit(f"longest sentence has {t} tokens > {MAX_TOKENS}")
    b = len(encs)
    ids = np.zeros((b, t), np.int64)
    mask = np.zeros((b, t), np.int64)
    types = np.zeros((b, t), np.int64)
    for i, e in enumerate(encs):
        n = len(e.ids)
        ids[i, :n] = e.ids
        mask[i, :n] = e.attention_mask
        types[i, :n] = e.type_ids
    return ids, mask, types, [e.tokens for e in encs]


def load_model(model_dir, dtype):
    with open(os.path.join(model_dir, "config.json")) as f:
        cfg = models.BertConfig.from_hf(json.load(f))
    weights, _ = st_io.load(os.path.join(model_dir, "model.safetensors"))
    m = models.BertModel(cfg, add_pooling_layer=True)
    models.load_state(m, weights)  # checkpoint names have no "bert." prefix; position_ids buffer ignored
    return m.to(dtype).eval(), cfg


def encode(model, ids, mask, types):
    with torch.no_grad():
        h, _ = model(torch.from_numpy(ids), torch.from_numpy(mask), torch.from_numpy(types))
    m = torch.from_numpy(mask).to(h.dtype).unsqueeze(-1)
    pooled = (h * m).sum(1) / m.sum(1).clamp(min=1e-9)
    return h, F.normalize(pooled, p=2, dim=1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model-dir", default=None)
    ap.add_argument("--out", default=os.path.join(HERE, "..", "golden", "minilm_hidden.safetensors"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    model_dir = args.model_dir or model_dir_default()

    ids, mask, types, tokens = tokenize(model_dir, SENTENCES)
    for s, tk in zip(SENTENCES, tokens):
        print(f"{len(tk):3d}  {' '.join(tk)}")

    m64, cfg = load_model(model_dir, torch.float64)
    m32, _ = load_model(model_dir, torch.float32)
    h64, e64 = encode(m64, ids, mask, types)
    h32, e32 = encode(m32, ids, mask, types)
    real = torch.from_numpy(mask).bool()
    d_h = (h32.double() - h64)[real].abs().max().item()
    r_h = d_h / h64[real].abs().max().item()
    d_e = (e32.double() - e64).abs().max().item()
    r_e = d_e / e64.abs().max().item()
    print(f"torch fp32 vs fp64: last_hidden_state max abs {d_h:.3e} (max rel {r_h:.3e}, real tokens); "
          f"sentence_embedding max abs {d_e:.3e} (max rel {r_e:.3e})")

    # sanity: paraphrase-like pairs must be closer than unrelated ones
    cos = (e64 @ e64.T).numpy()
    print("cosine matrix:\n" + np.array2string(cos, precision=3, suppress_small=True))
    assert cos[0, 1] > cos[0, 5] and cos[0, 1] > cos[0, 3], "gzip summary should match the gzip sentence best"
    assert cos[4, 6] > cos[4, 5] and cos[4, 6] > cos[4, 0], "the two jq sentences should be closest"
    extra = ["A program that compresses files to save disk space.",
             "A tool which makes files smaller so they use less storage.",
             "Japanese jargon for the unicode replacement character."]
    xi, xm, xt, _ = tokenize(model_dir, extra)
    _, xe = encode(m64, xi, xm, xt)
    xc = (xe @ xe.T).numpy()
    print(f"paraphrase cos {xc[0, 1]:.3f} vs unrelated {xc[0, 2]:.3f}, {xc[1, 2]:.3f}")
    assert xc[0, 1] > xc[0, 2] + 0.3 and xc[0, 1] > xc[1, 2] + 0.3

    meta = {
        "model": "sentence-transformers all-MiniLM-L6-v2 (datasets/fetch_minilm.sh)",
        "model_type": "bert", "hidden_size": str(cfg.hidden_size), "num_layers": str(cfg.num_layers),
        "num_heads": str(cfg.num_heads), "intermediate_size": str(cfg.intermediate_size),
        "vocab_size": str(cfg.vocab_size), "max_position_embeddings": str(cfg.max_position_embeddings),
        "type_vocab_size": str(cfg.type_vocab_size), "layer_norm_eps": repr(cfg.layer_norm_eps),
        "hidden_act": cfg.hidden_act,
        "sentences": json.dumps(SENTENCES, ensure_ascii=False),
        "sources": json.dumps([p for p, _ in SOURCES]),
        "tokenizer": "HF tokenizers from tokenizer.json (BertNormalizer lowercase+strip accents, WordPiece), "
                     "no truncation, padded to the longest row with [PAD]=0",
        "compute_dtype": "float64 (stored as F32)",
        "sentence_embedding": "sum(h * mask) / sum(mask) over tokens, then L2-normalized",
        "compare_last_hidden_state": "rows with attention_mask == 1 only",
        "torch_fp32_max_abs_diff_last_hidden_state": f"{d_h:.3e}",
        "torch_fp32_max_rel_err_last_hidden_state": f"{r_h:.3e}",
        "torch_fp32_max_abs_diff_sentence_embedding": f"{d_e:.3e}",
        "torch_fp32_max_rel_err_sentence_embedding": f"{r_e:.3e}",
        "error_metric": "max|a - ref| / max|ref| per tensor",
        "torch_version": torch.__version__, "generator": "tests/oracle/minilm_oracle.py",
    }
    tensors = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types,
               "last_hidden_state": h64.float(), "sentence_embedding": e64.float()}
    out = os.path.normpath(args.out)
    st_io.save(out, tensors, meta)
    back, bmeta = st_io.load(out)
    assert bmeta == meta and all(np.array_equal(back[k], np.asarray(v)) for k, v in tensors.items())
    print(f"wrote {out}: {os.path.getsize(out)} bytes, batch {ids.shape[0]} x {ids.shape[1]} tokens")


if __name__ == "__main__":
    main()
