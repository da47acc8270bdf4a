#!/usr/bin/python3
"""Writes the synthetic model goldens tests/golden/{vit_tiny,deit_tiny,bert_tiny,
bert_tiny_regression}.safetensors from the plain-torch models in models.py.

Precision: weights and inputs are drawn in float32 (so the stored F32 values are exactly the ones
used), the forward/backward is computed in float64, and every output / gradient is rounded to F32
on store. The same model is also run in float32 and the max relative error of torch's own fp32 run
against the fp64 reference is recorded in the metadata (torch_fp32_*), as a yardstick for the C
tolerances.

Error metric used by the C tests: max_rel_error(a, ref) = max|a - ref| / max|ref| per tensor.

Before writing, autograd gradients (float64) are checked against central finite differences on a
few parameter entries of every model; the script fails if they disagree.

Usage: /usr/bin/python3 tests/oracle/make_goldens.py [--out DIR]   (default: tests/golden)
"""
import argparse
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import models  # noqa: E402
import st_io  # noqa: E402

SEED = 1234
WEIGHT_STD = 0.2  # not HF's 0.02: keeps gradients well above fp32 noise
HERE = os.path.dirname(os.path.abspath(__file__))

TINY_VIT = dict(hidden_size=32, num_layers=2, num_heads=4, intermediate_size=64, image_size=12,
                patch_size=4, num_channels=3, num_labels=5, layer_norm_eps=1e-12)
TINY_BERT = dict(vocab_size=50, hidden_size=32, num_layers=2, num_heads=4, intermediate_size=64,
                 max_position_embeddings=16, type_vocab_size=2, layer_norm_eps=1e-12)
BATCH = 3
BERT_T = 8
BERT_LENGTHS = [8, 6, 3]  # real tokens per row; attention_mask is 0 on the rest (at the end)


def init_params(model, gen):
    """LayerNorm weights 1 + 0.1 N(0,1); biases (incl. LayerNorm bias) 0.1 N(0,1); every other
    parameter (matrices, conv kernel, embeddings, cls/distillation tokens, position embeddings)
    0.2 N(0,1). Drawn in float32 in named_parameters() order from one generator."""
    ln_weights = {f"{mn}.weight" for mn, m in model.named_modules() if isinstance(m, torch.nn.LayerNorm)}
    with torch.no_grad():
        for name, p in model.named_parameters():
            r = torch.randn(p.shape, generator=gen, dtype=torch.float32)
            if name in ln_weights:
                v = 1.0 + 0.1 * r
            elif name.endswith(".bias"):
                v = 0.1 * r
            else:
                v = WEIGHT_STD * r
            p.copy_(v)


def make_case(name):
    """Returns (model_fp32, inputs: dict of fp32/int64 tensors, meta: dict)."""
    gen = torch.Generator().manual_seed(SEED)
    if name in ("vit_tiny", "deit_tiny"):
        kind = "vit" if name == "vit_tiny" else "deit"
        model = models.build(kind, **TINY_VIT)
        init_params(model, gen)
        c, s = TINY_VIT["num_channels"], TINY_VIT["image_size"]
        pixel_values = torch.randn(BATCH, c, s, s, generator=gen, dtype=torch.float32)
        labels = torch.tensor([1, 4, 0], dtype=torch.int64)
        inputs = {"pixel_values": pixel_values, "labels": labels}
        cfg = model.config
        meta = {
            "model_type": kind, "hidden_size": cfg.hidden_size, "num_layers": cfg.num_layers,
            "num_heads": cfg.num_heads, "intermediate_size": cfg.intermediate_size,
            "image_size": cfg.image_size, "patch_size": cfg.patch_size,
            "num_channels": cfg.num_channels, "num_labels": cfg.num_labels,
            "layer_norm_eps": repr(cfg.layer_norm_eps), "hidden_act": cfg.hidden_act,
            "batch_size": BATCH, "seq_len": cfg.seq_len, "loss": "cross_entropy_mean",
        }
        if kind == "deit":
            meta["logits_def"] = "(cls_logits + distillation_logits) / 2"
            meta["loss_note"] = ("HF DeiTForImageClassificationWithTeacher has no loss; qft fine-tunes "
                                 "without a teacher with CrossEntropy(logits, labels)")
        return model, inputs, meta
    if name in ("bert_tiny", "bert_tiny_regression"):
        num_labels = 3 if name == "bert_tiny" else 1
        model = models.build("bert", num_labels=num_labels, **TINY_BERT)
        init_params(model, gen)
        v = TINY_BERT["vocab_size"]
        input_ids = torch.randint(1, v, (BATCH, BERT_T), generator=gen, dtype=torch.int64)
        token_type_ids = torch.randint(0, TINY_BERT["type_vocab_size"], (BATCH, BERT_T), generator=gen,
                                       dtype=torch.int64)
        attention_mask = torch.zeros(BATCH, BERT_T, dtype=torch.int64)
        for b, n in enumerate(BERT_LENGTHS):
            attention_mask[b, :n] = 1
        input_ids[attention_mask == 0] = 0  # [PAD] id 0, as a tokenizer pads
        token_type_ids[attention_mask == 0] = 0  # pad_type_id 0
        if num_labels == 1:
            labels = torch.tensor([0.5, -1.25, 2.0], dtype=torch.float32)
            loss = "mse_mean"
        else:
            labels = torch.tensor([2, 0, 1], dtype=torch.int64)
            loss = "cross_entropy_mean"
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask,
                  "token_type_ids": token_type_ids, "labels": labels}
        cfg = model.config
        meta = {
            "model_type": "bert", "hidden_size": cfg.hidden_size, "num_layers": cfg.num_layers,
            "num_heads": cfg.num_heads, "intermediate_size": cfg.intermediate_size,
            "num_labels": cfg.num_labels, "vocab_size": cfg.vocab_size,
            "max_position_embeddings": cfg.max_position_embeddings,
            "type_vocab_size": cfg.type_vocab_size, "layer_norm_eps": repr(cfg.layer_norm_eps),
            "hidden_act": cfg.hidden_act, "batch_size": BATCH, "seq_len": BERT_T, "loss": loss,
            "attention_mask_fill": "(1 - mask) * finfo(float64).min added to scaled scores",
        }
        return model, inputs, meta
    raise ValueError(name)


def run(model, inputs, dtype):
    """Forward + backward of a copy of `model` in `dtype`; returns (outputs, grads) as float64."""
    m = type(model)(model.config)
    m.load_state_dict(model.state_dict())
    m = m.to(dtype)
    m.zero_grad()
    kw = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in inputs.items()}
    out = m(**kw)
    out["loss"].backward()
    outs = {k: v.detach().double() for k, v in out.items()}
    grads = {n: p.grad.detach().double() for n, p in m.named_parameters()}
    return outs, grads, m, kw


def max_rel_error(a, ref):
    den = ref.abs().max().item()
    return (a - ref).abs().max().item() / (den if den > 0 else 1.0)


def finite_difference_check(model64, kw, grads, name, n_entries=6, h=1e-6):
    """Central differences in float64 on a few entries of a few parameters."""
    params = dict(model64.named_parameters())
    names = list(params)
    g = torch.Generator().manual_seed(7)
    pick = [names[0], names[len(names) // 3], names[len(names) // 2], names[-3], names[-1]]
    pick += [n for n in names if "query.weight" in n][:1] + [n for n in names if "LayerNorm.weight" in n
                                                              or "layernorm_before.weight" in n][:1]
    worst = 0.0
    with torch.no_grad():
        for pn in pick:
            p = params[pn]
            flat = p.view(-1)
            gflat = grads[pn].view(-1)
            # prefer entries with a non-zero gradient (embedding rows of absent tokens are exactly 0)
            nz = torch.nonzero(gflat.abs() > 0).view(-1)
            pool = nz if len(nz) else torch.arange(flat.numel())
            for _ in range(2):
                i = pool[torch.randint(len(pool), (1,), generator=g)].item()
                old = flat[i].item()
                flat[i] = old + h
                lp = model64(**kw)["loss"].item()
                flat[i] = old - h
                lm = model64(**kw)["loss"].item()
                flat[i] = old
                fd = (lp - lm) / (2 * h)
                ad = gflat[i].item()
                err = abs(fd - ad) / max(abs(ad), 1e-3)
                worst = max(worst, err)
                if err > 1e-5:
                    raise AssertionError(f"{name}: grad check failed at {pn}[{i}]: autograd {ad!r} fd {fd!r}")
    print(f"  finite-difference check: {len(pick) * 2} entries, worst rel err {worst:.2e}")


def write_golden(name, out_dir):
    model, inputs, meta = make_case(name)
    o64, g64, m64, kw64 = run(model, inputs, torch.float64)
    o32, g32, _, _ = run(model, inputs, torch.float32)
    finite_difference_check(m64, kw64, g64, name)
    for k, v in o64.items():
        if not torch.isfinite(v).all():
            raise AssertionError(f"{name}: non-finite {k}")

    tensors = {}
    for pn, p in model.named_parameters():
        tensors[pn] = p.detach().to(torch.float32)
    for k, v in inputs.items():
        tensors[k] = v  # F32 pixel_values / regression labels, I64 ids / masks / class labels
    # The attention key bias adds q_i . b_k to every score of query row i, which softmax ignores:
    # its gradient is analytically zero (float64 autograd leaves ~1e-17 of rounding noise). Store
    # exact zeros and list the tensors in the metadata: the C tests compare them in absolute terms.
    gmax = max(g.abs().max().item() for g in g64.values())
    zero_grads = [k for k in g64 if k.endswith("key.bias")]
    for k in zero_grads:
        assert g64[k].abs().max().item() < 1e-12 * gmax, k
        g64[k] = torch.zeros_like(g64[k])
    tensors["logits"] = o64["logits"].float()
    tensors["loss"] = o64["loss"].reshape(1).float()
    for k in ("cls_logits", "distillation_logits", "pooler_output", "last_hidden_state"):
        if k in o64:
            tensors[k] = o64[k].float()
    for pn in g64:
        tensors["grad." + pn] = g64[pn].float()

    e_logits = max_rel_error(o32["logits"], o64["logits"])
    e_grads = max(max_rel_error(g32[k], g64[k]) for k in g64 if k not in zero_grads)
    meta = {k: str(v) for k, v in meta.items()}
    meta.update({
        "name": name, "seed": str(SEED), "weight_init": "normal std 0.2; LayerNorm weight 1+0.1*randn; "
        "biases 0.1*randn (float32 draws)", "compute_dtype": "float64 (stored as F32)",
        "torch_version": torch.__version__, "generator": "tests/oracle/make_goldens.py",
        "torch_fp32_max_rel_err_logits": f"{e_logits:.3e}",
        "torch_fp32_max_rel_err_grads": f"{e_grads:.3e}",
        "error_metric": "max|a - ref| / max|ref| per tensor",
        "zero_grads": ",".join("grad." + k for k in zero_grads),
        "zero_grads_note": "analytically zero (softmax shift invariance), stored as exact 0",
    })
    path = os.path.join(out_dir, name + ".safetensors")
    st_io.save(path, tensors, meta)
    # round trip
    back, bmeta = st_io.load(path)
    assert bmeta == meta and list(back) == list(tensors)
    for k, v in tensors.items():
        assert np.array_equal(back[k], v.numpy()), k
    print(f"  wrote {path}: {os.path.getsize(path)} bytes, {len(tensors)} tensors, loss {o64['loss'].item():.6f},"
          f" torch fp32 vs fp64: logits {e_logits:.1e}, grads {e_grads:.1e}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(HERE, "..", "golden"))
    args = ap.parse_args()
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    os.makedirs(args.out, exist_ok=True)
    for name in ("vit_tiny", "deit_tiny", "bert_tiny", "bert_tiny_regression"):
        print(name)
        write_golden(name, os.path.normpath(args.out))


if __name__ == "__main__":
    main()
