#!/usr/bin/python3
"""Writes tiny Hugging Face-style checkpoints for tests/test_hf_import.c and tests the converter
datasets/convert_pytorch_bin.py on them.

For each case, tests/golden/hf_<name>/ holds an HF config.json and a model.safetensors produced the
way a user would: the state dict (HF names) is torch.save'd as pytorch_model.bin in a temp dir and
converted with datasets/convert_pytorch_bin.py. tests/golden/hf_<name>_io.safetensors holds a fixed
input and the float64 forward outputs (rounded to F32) of the checkpoint's weights.

  hf_vit        ViTForImageClassification (google/vit-base-patch16-224 naming, "vit." + classifier)
  hf_deit       DeiTForImageClassificationWithTeacher ("deit." + cls_/distillation_classifier)
  hf_bert_pt    BertForPreTraining-like: "bert." + pooler + cls.predictions.* (decoder tied to the
                word embeddings) + cls.seq_relationship.*, no classifier, an I64 position_ids
                buffer, one non-contiguous tensor
  hf_bert_bare  bare BertModel (no prefix, like all-MiniLM-L6-v2), with pooler
  hf_bert_cls   BertForSequenceClassification ("bert." + classifier.*, 3 labels via id2label; hidden 8)
  hf_vit_bf16   the hf_vit weights saved in bfloat16 and converted (dtype kept: raw BF16 bits)

Checks made here (the script fails otherwise): converted tensors equal the state dict bit for bit
(bf16 by raw bits), tied tensors are written under both names, a non-state-dict pickle is refused.

Usage: /usr/bin/python3 tests/oracle/make_hf_checkpoints.py [--out DIR]   (default: tests/golden)
"""
import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "datasets"))
import models  # noqa: E402
import st_io  # noqa: E402
import convert_pytorch_bin  # noqa: E402

SEED = 4321
VIT = dict(hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32, image_size=8,
           patch_size=4, num_channels=3, num_labels=3, layer_norm_eps=1e-12)
BERT = dict(vocab_size=24, hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32,
            max_position_embeddings=8, type_vocab_size=2, layer_norm_eps=1e-12, num_labels=2)
B = 2
T = 6
LENGTHS = [6, 4]
BERT_CLS = dict(BERT, hidden_size=8, intermediate_size=16, num_labels=3)


def init_params(model, gen):
    with torch.no_grad():
        for name, p in model.named_parameters():
            r = torch.randn(p.shape, generator=gen, dtype=torch.float32)
            if name.endswith("LayerNorm.weight") or "layernorm" in name and name.endswith(".weight"):
                p.copy_(1.0 + 0.1 * r)
            elif name.endswith(".bias"):
                p.copy_(0.1 * r)
            else:
                p.copy_(0.2 * r)


def vit_config_json(kind, cfg):
    labels = {str(i): f"label_{i}" for i in range(cfg["num_labels"])}
    arch = "ViTForImageClassification" if kind == "vit" else "DeiTForImageClassificationWithTeacher"
    return {
        "architectures": [arch], "model_type": kind, "hidden_size": cfg["hidden_size"],
        "num_hidden_layers": cfg["num_layers"], "num_attention_heads": cfg["num_heads"],
        "intermediate_size": cfg["intermediate_size"], "hidden_act": "gelu",
        "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0, "initializer_range": 0.02,
        "layer_norm_eps": cfg["layer_norm_eps"], "image_size": cfg["image_size"],
        "patch_size": cfg["patch_size"], "num_channels": cfg["num_channels"], "qkv_bias": True,
        "id2label": labels, "label2id": {v: int(k) for k, v in labels.items()},
        "torch_dtype": "float32", "transformers_version": "4.40.2",
    }


def bert_config_json(arch, cfg):
    return {
        "architectures": [arch], "model_type": "bert", "vocab_size": cfg["vocab_size"],
        "hidden_size": cfg["hidden_size"], "num_hidden_layers": cfg["num_layers"],
        "num_attention_heads": cfg["num_heads"], "intermediate_size": cfg["intermediate_size"],
        "hidden_act": "gelu", "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": cfg["max_position_embeddings"],
        "type_vocab_size": cfg["type_vocab_size"], "initializer_range": 0.02,
        "layer_norm_eps": cfg["layer_norm_eps"], "pad_token_id": 0,
        "position_embedding_type": "absolute", "use_cache": True,
        "torch_dtype": "float32", "transformers_version": "4.40.2",
    }


def read_raw(path):
    """-> {name: (dtype code, shape, raw bytes)} of a safetensors file (any dtype, BF16 included)."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    header.pop("__metadata__", None)
    return {k: (v["dtype"], v["shape"], data[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]])
            for k, v in header.items()}


def save_and_convert(sd, out_dir, tmp, name):
    """torch.save the state dict, convert it with the script (as a subprocess, like a user), check
    every tensor is written bit for bit under its name."""
    os.makedirs(out_dir, exist_ok=True)
    bin_path = os.path.join(tmp, f"{name}.bin")
    torch.save(sd, bin_path)
    dst = os.path.join(out_dir, "model.safetensors")
    subprocess.run([sys.executable, os.path.join(ROOT, "datasets", "convert_pytorch_bin.py"), bin_path, dst],
                   check=True, stdout=subprocess.DEVNULL)
    got = read_raw(dst)
    if list(got) != list(sd):
        raise SystemExit(f"{name}: converted names differ: {list(got)} vs {list(sd)}")
    for k, t in sd.items():
        code, shape, raw = got[k]
        if code != convert_pytorch_bin._CODES[t.dtype] or shape != list(t.shape):
            raise SystemExit(f"{name}: {k}: dtype/shape {code} {shape}")
        if raw != convert_pytorch_bin._raw_bytes(t):
            raise SystemExit(f"{name}: {k}: converted bytes differ")


def vision_case(kind, gen, out, tmp):
    model = models.build(kind, **VIT)
    init_params(model, gen)
    sd = model.state_dict()
    d = os.path.join(out, f"hf_{kind}")
    save_and_convert(sd, d, tmp, kind)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(vit_config_json(kind, VIT), f, indent=2)
        f.write("\n")
    pixels = torch.randn(B, VIT["num_channels"], VIT["image_size"], VIT["image_size"], generator=gen)
    with torch.no_grad():
        o = model.double()(pixels.double())
    io = {"pixel_values": pixels, "logits": o["logits"].float(), "last_hidden_state": o["last_hidden_state"].float()}
    st_io.save(os.path.join(out, f"hf_{kind}_io.safetensors"), io, {"model_type": kind})
    return model.float(), sd


def bert_inputs(gen):
    ids = torch.randint(1, BERT["vocab_size"], (B, T), generator=gen)
    types = torch.zeros(B, T, dtype=torch.int64)
    types[:, T // 2:] = 1
    mask = torch.zeros(B, T, dtype=torch.int64)
    for b, n in enumerate(LENGTHS):
        mask[b, :n] = 1
        ids[b, n:] = 0
    return ids, types, mask


def bert_case(name, gen, out, tmp):
    enc = models.BertModel(models.BertConfig(**BERT))
    init_params(enc, gen)
    d = os.path.join(out, f"hf_{name}")
    D, V = BERT["hidden_size"], BERT["vocab_size"]
    if name == "bert_pt":
        sd = {"bert." + k: v for k, v in enc.state_dict().items()}
        # HF BertForPreTraining layout: a position_ids buffer (older transformers) and the MLM/NSP heads.
        sd = {"bert.embeddings.position_ids": torch.arange(BERT["max_position_embeddings"]).unsqueeze(0), **sd}
        # a non-contiguous tensor (same values): the converter must write it in C order
        w = sd["bert.encoder.layer.0.intermediate.dense.weight"]
        sd["bert.encoder.layer.0.intermediate.dense.weight"] = w.t().contiguous().t()
        assert not sd["bert.encoder.layer.0.intermediate.dense.weight"].is_contiguous()
        mlm_bias = 0.1 * torch.randn(V, generator=gen)
        sd["cls.predictions.bias"] = mlm_bias
        sd["cls.predictions.transform.dense.weight"] = 0.2 * torch.randn(D, D, generator=gen)
        sd["cls.predictions.transform.dense.bias"] = 0.1 * torch.randn(D, generator=gen)
        sd["cls.predictions.transform.LayerNorm.weight"] = 1 + 0.1 * torch.randn(D, generator=gen)
        sd["cls.predictions.transform.LayerNorm.bias"] = 0.1 * torch.randn(D, generator=gen)
        sd["cls.predictions.decoder.weight"] = sd["bert.embeddings.word_embeddings.weight"]  # tied
        sd["cls.predictions.decoder.bias"] = mlm_bias  # tied
        sd["cls.seq_relationship.weight"] = 0.2 * torch.randn(2, D, generator=gen)
        sd["cls.seq_relationship.bias"] = 0.1 * torch.randn(2, generator=gen)
        arch = "BertForPreTraining"
    else:
        sd = dict(enc.state_dict())
        arch = "BertModel"
    save_and_convert(sd, d, tmp, name)
    got = read_raw(os.path.join(d, "model.safetensors"))
    if name == "bert_pt" and got["cls.predictions.decoder.weight"][2] != got["bert.embeddings.word_embeddings.weight"][2]:
        raise SystemExit("tied decoder weight not copied")
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(bert_config_json(arch, BERT), f, indent=2)
        f.write("\n")
    ids, types, mask = bert_inputs(gen)
    with torch.no_grad():
        seq, pooled = enc.double()(ids, mask, types)
    io = {"input_ids": ids, "token_type_ids": types, "attention_mask": mask,
          "last_hidden_state": seq.float(), "pooler_output": pooled.float()}
    st_io.save(os.path.join(out, f"hf_{name}_io.safetensors"), io, {"model_type": "bert"})


def bert_cls_case(gen, out, tmp):
    model = models.BertForSequenceClassification(models.BertConfig(**BERT_CLS))
    init_params(model, gen)
    d = os.path.join(out, "hf_bert_cls")
    save_and_convert(model.state_dict(), d, tmp, "bert_cls")
    cfg = bert_config_json("BertForSequenceClassification", BERT_CLS)
    cfg["id2label"] = {str(i): f"label_{i}" for i in range(BERT_CLS["num_labels"])}
    cfg["label2id"] = {v: int(k) for k, v in cfg["id2label"].items()}
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")
    ids, types, mask = bert_inputs(gen)
    with torch.no_grad():
        o = model.double()(ids, mask, types)
    io = {"input_ids": ids, "token_type_ids": types, "attention_mask": mask, "logits": o["logits"].float(),
          "last_hidden_state": o["last_hidden_state"].float(), "pooler_output": o["pooler_output"].float()}
    st_io.save(os.path.join(out, "hf_bert_cls_io.safetensors"), io, {"model_type": "bert"})


def check_refuses(tmp):
    bad = os.path.join(tmp, "not_a_state_dict.bin")
    for obj in ([torch.zeros(2)], {"a": torch.zeros(2), "b": 3}):
        torch.save(obj, bad)
        r = subprocess.run([sys.executable, os.path.join(ROOT, "datasets", "convert_pytorch_bin.py"), bad,
                            os.path.join(tmp, "x.safetensors")], capture_output=True, text=True)
        if r.returncode == 0 or "not a state dict" not in r.stderr:
            raise SystemExit(f"converter accepted {type(obj).__name__}: rc {r.returncode} {r.stderr!r}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "golden"))
    args = ap.parse_args()
    torch.manual_seed(SEED)
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(SEED)
    with tempfile.TemporaryDirectory() as tmp:
        _, vit_sd = vision_case("vit", gen, args.out, tmp)
        vision_case("deit", gen, args.out, tmp)
        bert_case("bert_pt", gen, args.out, tmp)
        bert_case("bert_bare", gen, args.out, tmp)
        bert_cls_case(gen, args.out, tmp)
        # bf16: the ViT weights stored as bfloat16 (dtype kept by the converter: raw BF16 bits)
        bf = {k: v.to(torch.bfloat16) for k, v in vit_sd.items()}
        d = os.path.join(args.out, "hf_vit_bf16")
        save_and_convert(bf, d, tmp, "vit_bf16")
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump(vit_config_json("vit", VIT), f, indent=2)
            f.write("\n")
        check_refuses(tmp)
    total = 0
    for root, _, files in os.walk(args.out):
        total += sum(os.path.getsize(os.path.join(root, f)) for f in files
                     if "hf_" in os.path.relpath(os.path.join(root, f), args.out))
    print(f"wrote tiny HF checkpoints under {args.out} ({total} bytes)")


if __name__ == "__main__":
    main()
