#!/usr/bin/python3
"""Writes tests/golden/quant_{vit,deit,bert}.safetensors: fake-quantized tiny ViT / DeiT / BERT
(forward, loss, every parameter gradient and every learnable quantizer gradient) computed with
torch's own fake-quant ops at qft's quant sites, for tests/test_quant_model.c.

The models are models.py's (parameter names, init and the FP math are checked against them); the
forward is spelled out here so a quantizer can sit at every qft site (docs/quant.md):
  weight   W_hat = Q(W) (linear weights, per output channel or per tensor)
  input    x_hat = Q(x) feeding one linear (the unquantized x stays for the other consumers)
  output   a stream tensor quantized in place (LN outputs, residual sums, embeddings.output)
  probs    P_hat = Q(P) weights the values; the softmax backward gets dP_hat * STE mask
Ops: torch.fake_quantize_per_{tensor,channel}_affine (frozen sites),
torch._fake_quantize_learnable_per_{tensor,channel}_affine (LSQ / LSQ+, grad_factor 1/sqrt(N*qmax)
with N the elements per quantizer group among the rows the site sees, as qft_site_lsq_grad_factor),
and host/quant/format.h's qft_log_dequant formula (log2 / log-sqrt2, STE mask) for probabilities.

The last ViT/DeiT layer is computed for the CLS (and distillation) query rows only, as qft's default
prune_last_layer does: its LN1 output and q/k/v input see all B*T rows, its probabilities B*NH*keep
rows of T keys, and everything after the attention B*keep rows (so the LSQ N there counts B*keep rows).

Precision: the network runs in float64; each quantizer receives its input rounded to float32 and runs
in float32 (the ops qft reproduces bit for bit, tests/golden/quant_ops), its output is widened back.
A rounding decision of a quantizer that depends on the last bits of its input (x/s within ~1e-4 of a
tie k + 0.5, or -log2 within ~1e-4 of a half-integer) could go either way between qft's float32
network and this float64 one, so activation scales are nudged (x 1.00731 per try) until every quantized
element is at least 1e-4 + 1e-5 |code| code units from such a threshold; the smallest distance
left is recorded in the metadata (`min_tie_margin`).

Usage: /usr/bin/python3 tests/oracle/make_quant_model_goldens.py [--out DIR]   (default tests/golden)
"""
import argparse
import fnmatch
import math
import os
import sys

os.environ["ATEN_CPU_CAPABILITY"] = "avx2"  # the learnable backward's FMA rounding, as make_quant_goldens.py

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_goldens  # noqa: E402  (init_params)
import models  # noqa: E402
import st_io  # noqa: E402

SEED = 4242
HERE = os.path.dirname(os.path.abspath(__file__))
F32 = np.float32
TINY_VIT = dict(hidden_size=16, num_layers=2, num_heads=2, intermediate_size=32, image_size=12, patch_size=4,
                num_channels=3, num_labels=3, layer_norm_eps=1e-12)
TINY_BERT = dict(vocab_size=30, hidden_size=16, num_layers=2, num_heads=2, intermediate_size=32,
                 max_position_embeddings=8, type_vocab_size=2, num_labels=3, layer_norm_eps=1e-12)
BATCH = 2
BERT_T = 8
BERT_LENGTHS = [8, 5]
RANGE_SHRINK = 0.85   # activation scales from 0.85 x the FP range: the top elements clip (STE / LSQ clip terms)
LEARN_SHRINK = 0.7    # learnable inputs clip more at both ends, so LSQ+ offsets get gradients
WEIGHT_SHRINK = 0.9
TIE_TOL, TIE_TOL_REL = 1e-4, 1e-5
NUDGE = 1.00731

U = dict(signed=False, symmetric=False)  # unsigned asymmetric grid with a zero point


def rules_for(kind):
    """The rule list (first match wins). Mixed formats: weights per-channel signed 4-bit (some LSQ),
    linear inputs per-tensor unsigned asymmetric 4/6-bit (some LSQ / LSQ+), probabilities uniform 8-bit
    in one layer and log-sqrt2 / log2 4-bit in the other, LN outputs, residual sums, embeddings.output,
    8-bit patch embedding and heads."""
    if kind == "bert":
        p0, p1 = dict(kind="log2", bits=4), dict(bits=8, **U)
        stream = [dict(pattern="layers.0.resid2.output", bits=6, **U), dict(pattern="layers.1.ln1.output", bits=8),
                  dict(pattern="layers.0.ln2.output", bits=8), dict(pattern="layers.1.resid1.output", bits=8),
                  dict(pattern="layers.1.ln2.output", bits=6, **U)]
    else:
        p0, p1 = (dict(bits=8, **U), dict(kind="log_sqrt2", bits=4)) if kind == "vit" else \
            (dict(kind="log_sqrt2", bits=4), dict(bits=8, **U))
        if kind == "vit":
            stream = [dict(pattern="layers.0.resid1.output", bits=6, **U), dict(pattern="layers.0.ln2.output", bits=8),
                      dict(pattern="layers.1.ln1.output", bits=8), dict(pattern="layers.1.resid2.output", bits=8),
                      dict(pattern="final_ln.output", bits=8)]
        else:  # the other four stream sites, two of them in the pruned layer
            stream = [dict(pattern="layers.0.ln1.output", bits=8), dict(pattern="layers.0.resid2.output", bits=8),
                      dict(pattern="layers.1.resid1.output", bits=6, **U), dict(pattern="layers.1.ln2.output", bits=8),
                      dict(pattern="final_ln.output", bits=6, **U)]
    rules = [
        dict(pattern="patch_embed.weight", bits=8, granularity="channel"),
        # the patch projection has no input gradient: its learnable input quantizer still needs dL/dx_hat
        dict(pattern="patch_embed.input", bits=8, learn="lsq_plus" if kind == "vit" else "lsq", **U),
        dict(pattern="embeddings.output", bits=8),
        dict(pattern="layers.0.qkv.weight", bits=4, granularity="channel", learn="lsq"),
        dict(pattern="layers.0.qkv.input", bits=4, learn="lsq_plus", **U),
        dict(pattern="layers.0.attn.probs", **p0),
        dict(pattern="layers.1.attn.probs", **p1),
    ] + stream + [
        dict(pattern="layers.1.fc1.input", bits=6, learn="lsq", **U),
        dict(pattern="layers.1.proj.input", bits=4, learn="lsq_plus", **U),
        dict(pattern="*.fc2.input", bits=6, learn="lsq_plus", **U),
        dict(pattern="*.fc1.weight", bits=4, granularity="channel", learn="lsq"),
        dict(pattern="pooler.weight", bits=8),
        dict(pattern="head*.weight", bits=8, granularity="channel"),
        dict(pattern="head*.input", bits=8, learn="lsq_plus", **U),
        dict(pattern="*.weight", bits=4, granularity="channel"),
        dict(pattern="*.input", bits=4, **U),
    ]
    return rules


def rules_yaml(rules):
    def val(v):
        return ("true" if v else "false") if isinstance(v, bool) else (f'"{v}"' if isinstance(v, str) else str(v))
    lines = ["quant:", "  rules:"]
    for r in rules:
        lines.append("    - {" + ", ".join(f"{k}: {val(v)}" for k, v in r.items()) + "}")
    return "\n".join(lines) + "\n"


def resolve(rule):
    """The rule's format with configs/README.md's defaults."""
    f = dict(kind="uniform", bits=8, signed=True, symmetric=True, granularity="tensor", learn="none")
    f.update({k: v for k, v in rule.items() if k != "pattern"})
    b = f["bits"]
    f["qmin"], f["qmax"] = ((-(1 << (b - 1)), (1 << (b - 1)) - 1) if f["signed"] else (0, (1 << b) - 1))
    return f


def params_from_range(f, lo, hi):
    """qft_quant_params_from_range (torch observer form), in float64 then float32."""
    qmin, qmax = f["qmin"], f["qmax"]
    if f["symmetric"]:
        assert f["signed"], "symmetric unsigned grids are not used here"
        amax = np.maximum(-lo, hi)
        s = np.maximum(amax / ((qmax - qmin) / 2.0), 1.1920928955078125e-07).astype(F32)
        return s, np.zeros_like(s)
    lo, hi = np.minimum(lo, 0.0), np.maximum(hi, 0.0)
    s = np.maximum((hi - lo) / (qmax - qmin), 1.1920928955078125e-07).astype(F32)
    z = np.clip(qmin - np.rint(lo / s.astype(np.float64)), qmin, qmax).astype(F32)
    return s, z


class LogQuant(torch.autograd.Function):
    """qft_log_dequant (host/quant/format.h): r = x * (1/s) in float; q' = rint(-log2 r) or rint(-2 log2 r);
    0 where x <= 0 or q' >= 2^bits; else q = max(q', 0), x_hat = s * 2^-q or s_q * 2^-ceil(q/2) with
    s_q = s * sqrt2 (float) for odd q. Backward: dx = dx_hat where x_hat != 0 and q' >= 0 (no scale grad)."""

    @staticmethod
    def forward(ctx, x, scale, bits, sqrt2):
        xs = x.detach().numpy().astype(F32)
        r = (xs * (F32(1) / F32(scale))).astype(F32)
        with np.errstate(divide="ignore", invalid="ignore"):
            e = -(2.0 if sqrt2 else 1.0) * np.log2(r.astype(np.float64))
        qf = np.where(r > 0, np.rint(e), np.inf)
        zero = ~(qf < (1 << bits))
        q = np.where(zero, 0, np.maximum(qf, 0)).astype(np.int64)
        if sqrt2:
            base = np.where(q & 1, F32(F32(scale) * F32(math.sqrt(2.0))), F32(scale)).astype(np.float64)
            out = np.ldexp(base, -((q + 1) >> 1)).astype(F32)
        else:
            out = np.ldexp(np.float64(F32(scale)), -q).astype(F32)
        out[zero] = 0
        mask = (~zero) & (qf >= 0) & (out != 0)
        ctx.save_for_backward(torch.tensor(mask))
        return torch.tensor(out)

    @staticmethod
    def backward(ctx, g):
        (mask,) = ctx.saved_tensors
        return g * mask.to(g.dtype), None, None, None


class Quant:
    """Applies (or, in mode "fp", only records) the quantizer of every named site."""

    def __init__(self, rules, mode):
        self.rules = rules
        self.mode = mode
        self.ranges = {}      # fp: name -> (lo, hi) arrays (per row for channel weights)
        self.rows = {}        # name -> rows the site saw
        self.scale, self.zero = {}, {}   # name -> float32 arrays
        self.mult = {}        # name -> nudge multiplier of an activation scale
        self.leaves = {}      # name -> (scale, zero_point) tensors of learnable sites
        self.order = []       # names in forward order
        self.violations = []  # sites with an element too close to a rounding threshold
        self.min_margin = np.inf

    def fmt(self, name):
        for r in self.rules:
            if fnmatch.fnmatchcase(name, r["pattern"]):
                return resolve(r)
        return None

    def effective_scale(self, name):
        return (self.scale[name].astype(np.float64) * self.mult.get(name, 1.0)).astype(F32)

    def _margin(self, name, d, tol):
        ok = d >= tol
        if not np.all(ok):
            self.violations.append(name)
        self.min_margin = min(self.min_margin, float(np.min(d / tol)) if d.size else np.inf)

    def site(self, name, x, role):
        f = self.fmt(name)
        if f is None or self.mode == "off":
            return x
        x2 = x.reshape(-1, x.shape[-1])
        rows, C = x2.shape
        self.rows[name] = rows
        if name not in self.order:
            self.order.append(name)
        if self.mode == "fp":
            xs = x2.detach().numpy()
            if f["granularity"] == "channel":
                assert role == "weight"
                self.ranges[name] = (xs.min(axis=1), xs.max(axis=1))
            else:
                self.ranges[name] = (np.array([xs.min()]), np.array([xs.max()]))
            return x
        s = self.effective_scale(name) if role != "weight" else self.scale[name]
        z = self.zero[name]
        x32 = x2.float()
        if f["kind"] != "uniform":
            assert role == "probs"
            xs = x32.detach().numpy()
            r = (xs * (F32(1) / s[0])).astype(F32).astype(np.float64)
            pos = r > 0
            e = -(2.0 if f["kind"] == "log_sqrt2" else 1.0) * np.log2(r[pos])
            self._margin(name, np.abs(e - np.floor(e) - 0.5), TIE_TOL + TIE_TOL_REL * np.abs(e))
            y = LogQuant.apply(x32, float(s[0]), f["bits"], f["kind"] == "log_sqrt2")
            return y.double().reshape(x.shape)
        if role != "weight":  # weights are float32 in both programs: identical rounding
            u = (x32.detach().numpy() * (F32(1) / s[0] if len(s) == 1 else None)).astype(F32).astype(np.float64)
            d = np.abs(u - np.floor(u) - 0.5)
            tol = TIE_TOL + TIE_TOL_REL * (np.abs(u) if role == "probs" else np.abs(u).max())
            self._margin(name, d, tol)
        qmin, qmax = f["qmin"], f["qmax"]
        per_channel = f["granularity"] == "channel"
        if f["learn"] != "none":
            # One channel per element (torch's own per-element terms, as make_quant_goldens.py reads them),
            # summed per quantizer group in float64 by the expand's backward: the reference sums do not
            # carry torch's float32 summation error, which cancellation in a scale gradient magnifies.
            K = len(s)
            gf = float(F32(1.0 / math.sqrt(rows * C / K * qmax)))
            st = torch.tensor(s, requires_grad=True)
            zt = torch.tensor(z, requires_grad=f["learn"] == "lsq_plus")
            self.leaves[name] = (st, zt, gf)
            per = (lambda t: t.double().repeat_interleave(C)) if per_channel else (lambda t: t.double().expand(rows * C))
            y = torch._fake_quantize_learnable_per_channel_affine(x32.reshape(-1, 1), per(st).float(), per(zt).float(),
                                                                  0, qmin, qmax, gf)
        elif per_channel:
            y = torch.fake_quantize_per_channel_affine(x32, torch.tensor(s), torch.tensor(z.astype(np.int32)), 0,
                                                       qmin, qmax)
        else:
            y = torch.fake_quantize_per_tensor_affine(x32, float(s[0]), int(z[0]), qmin, qmax)
        return y.double().reshape(x.shape)

    def linear(self, name, x, w, b):
        x_hat = self.site(name + ".input", x, "input")
        w_hat = self.site(name + ".weight", w, "weight")
        return x_hat @ w_hat.t() + b

    def calibrate(self, lsq_plus_offset=0.3):
        """Scales / zero points from the recorded FP ranges; LSQ+ offsets get a non-integer part that the
        forward rounds away (qft keeps learned offsets as reals)."""
        for name in self.order:
            f = self.fmt(name)
            lo, hi = self.ranges[name]
            if f["kind"] != "uniform":
                self.scale[name] = np.array([hi[0]], dtype=F32)   # range top (qft's log calibration)
                self.zero[name] = np.zeros(1, dtype=F32)
                continue
            shrink = WEIGHT_SHRINK if name.endswith(".weight") else (
                LEARN_SHRINK if f["learn"] != "none" else RANGE_SHRINK)
            s, z = params_from_range(f, lo * shrink, hi * shrink)
            if f["learn"] == "lsq_plus":
                z = (z + np.where(z < f["qmax"], lsq_plus_offset, -lsq_plus_offset)).astype(F32)
            self.scale[name], self.zero[name] = s, z


# ---- the models, with a quantizer at every qft site ----

def layer_norm(x, w, b, eps):
    return F.layer_norm(x, (x.shape[-1],), w, b, eps)


def attention(Q, name, q, k, v, NH, ext_mask=None):
    """q [B, Tq, D] (query rows), k/v [B, T, D]; probabilities quantized at `name`."""
    B, Tq, D = q.shape
    T, HS = k.shape[1], D // NH
    qh = q.reshape(B, Tq, NH, HS).permute(0, 2, 1, 3)
    kh = k.reshape(B, T, NH, HS).permute(0, 2, 1, 3)
    vh = v.reshape(B, T, NH, HS).permute(0, 2, 1, 3)
    scores = qh @ kh.transpose(-1, -2) / math.sqrt(HS)
    if ext_mask is not None:
        scores = scores + ext_mask
    probs = Q.site(name, F.softmax(scores, dim=-1), "probs")
    return (probs @ vh).permute(0, 2, 1, 3).reshape(B, Tq, D)


def layer_weights(P, pre, names):
    g = lambda n: P[pre + n]  # noqa: E731
    wq = torch.cat([g(names["q"] + ".weight"), g(names["k"] + ".weight"), g(names["v"] + ".weight")])
    bq = torch.cat([g(names["q"] + ".bias"), g(names["k"] + ".bias"), g(names["v"] + ".bias")])
    return wq, bq, g


def vit_forward(P, cfg, deit, pixel, labels, Q, prune=True):
    pre = "deit." if deit else "vit."
    B, p, D, NH = pixel.shape[0], cfg.patch_size, cfg.hidden_size, cfg.num_heads
    keep = 2 if deit else 1
    patches = pixel.unfold(2, p, p).unfold(3, p, p)          # [B, C, gh, gw, p, p]
    patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(B, -1, cfg.num_channels * p * p)
    wp = P[pre + "embeddings.patch_embeddings.projection.weight"].reshape(D, -1)
    emb = Q.linear("patch_embed", patches, wp, P[pre + "embeddings.patch_embeddings.projection.bias"])
    toks = [P[pre + "embeddings.cls_token"].expand(B, -1, -1)]
    if deit:
        toks.append(P[pre + "embeddings.distillation_token"].expand(B, -1, -1))
    x = torch.cat(toks + [emb], dim=1) + P[pre + "embeddings.position_embeddings"]
    x = Q.site("embeddings.output", x, "output")
    names = dict(q="attention.attention.query", k="attention.attention.key", v="attention.attention.value")
    eps = cfg.layer_norm_eps
    for l in range(cfg.num_layers):
        lp = f"{pre}encoder.layer.{l}."
        wq, bq, g = layer_weights(P, lp, names)
        s = f"layers.{l}."
        last = prune and l == cfg.num_layers - 1
        h1 = Q.site(s + "ln1.output", layer_norm(x, g("layernorm_before.weight"), g("layernorm_before.bias"), eps),
                    "output")
        qkv = Q.linear(s + "qkv", h1, wq, bq)
        q, k, v = qkv.split(D, dim=-1)
        if last:  # qft's prune_last_layer: only the prefix tokens are queries from here on
            q, x = q[:, :keep], x[:, :keep]
        a = attention(Q, s + "attn.probs", q, k, v, NH)
        h = x + Q.linear(s + "proj", a, g("attention.output.dense.weight"), g("attention.output.dense.bias"))
        h = Q.site(s + "resid1.output", h, "output")
        h2 = Q.site(s + "ln2.output", layer_norm(h, g("layernorm_after.weight"), g("layernorm_after.bias"), eps),
                    "output")
        f1 = F.gelu(Q.linear(s + "fc1", h2, g("intermediate.dense.weight"), g("intermediate.dense.bias")))
        y = h + Q.linear(s + "fc2", f1, g("output.dense.weight"), g("output.dense.bias"))
        x = Q.site(s + "resid2.output", y, "output")
    seq = Q.site("final_ln.output", layer_norm(x, P[pre + "layernorm.weight"], P[pre + "layernorm.bias"], eps),
                 "output")
    if deit:
        l1 = Q.linear("head", seq[:, 0], P["cls_classifier.weight"], P["cls_classifier.bias"])
        l2 = Q.linear("head2", seq[:, 1], P["distillation_classifier.weight"], P["distillation_classifier.bias"])
        logits = (l1 + l2) / 2
    else:
        logits = Q.linear("head", seq[:, 0], P["classifier.weight"], P["classifier.bias"])
    return logits, F.cross_entropy(logits, labels)


def bert_forward(P, cfg, ids, mask, types, labels, Q):
    pre, D, NH, eps = "bert.", cfg.hidden_size, cfg.num_heads, cfg.layer_norm_eps
    T = ids.shape[1]
    e = P[pre + "embeddings.word_embeddings.weight"][ids] + P[pre + "embeddings.token_type_embeddings.weight"][types]
    e = e + P[pre + "embeddings.position_embeddings.weight"][torch.arange(T)][None]
    x = layer_norm(e, P[pre + "embeddings.LayerNorm.weight"], P[pre + "embeddings.LayerNorm.bias"], eps)
    x = Q.site("embeddings.output", x, "output")
    ext = models.extended_attention_mask(mask, x.dtype)
    names = dict(q="attention.self.query", k="attention.self.key", v="attention.self.value")
    for l in range(cfg.num_layers):
        wq, bq, g = layer_weights(P, f"{pre}encoder.layer.{l}.", names)
        s = f"layers.{l}."
        q, k, v = Q.linear(s + "qkv", x, wq, bq).split(D, dim=-1)
        a = attention(Q, s + "attn.probs", q, k, v, NH, ext)
        r1 = Q.site(s + "resid1.output",
                    x + Q.linear(s + "proj", a, g("attention.output.dense.weight"), g("attention.output.dense.bias")),
                    "output")
        a1 = Q.site(s + "ln1.output", layer_norm(r1, g("attention.output.LayerNorm.weight"),
                                                 g("attention.output.LayerNorm.bias"), eps), "output")
        f1 = F.gelu(Q.linear(s + "fc1", a1, g("intermediate.dense.weight"), g("intermediate.dense.bias")))
        r2 = Q.site(s + "resid2.output", a1 + Q.linear(s + "fc2", f1, g("output.dense.weight"),
                                                        g("output.dense.bias")), "output")
        x = Q.site(s + "ln2.output", layer_norm(r2, g("output.LayerNorm.weight"), g("output.LayerNorm.bias"), eps),
                   "output")
    pooled = torch.tanh(Q.linear("pooler", x[:, 0], P[pre + "pooler.dense.weight"], P[pre + "pooler.dense.bias"]))
    logits = Q.linear("head", pooled, P["classifier.weight"], P["classifier.bias"])
    return logits, F.cross_entropy(logits, labels)


# ---- cases ----

def make_case(name):
    gen = torch.Generator().manual_seed(SEED)
    if name in ("quant_vit", "quant_deit"):
        kind = "vit" if name == "quant_vit" else "deit"
        model = models.build(kind, **TINY_VIT)
        make_goldens.init_params(model, gen)
        c, s = TINY_VIT["num_channels"], TINY_VIT["image_size"]
        inputs = {"pixel_values": torch.randn(BATCH, c, s, s, generator=gen, dtype=torch.float32),
                  "labels": torch.tensor([2, 0], dtype=torch.int64)}
        cfg = model.config
        meta = {"model_type": kind, "image_size": cfg.image_size, "patch_size": cfg.patch_size,
                "num_channels": cfg.num_channels, "seq_len": cfg.seq_len}
        fwd = lambda P, Q, prune=True: vit_forward(P, cfg, kind == "deit", inputs["pixel_values"].double(),  # noqa
                                                   inputs["labels"], Q, prune)
    else:
        kind = "bert"
        model = models.build("bert", **TINY_BERT)
        make_goldens.init_params(model, gen)
        ids = torch.randint(1, TINY_BERT["vocab_size"], (BATCH, BERT_T), generator=gen, dtype=torch.int64)
        types = torch.randint(0, 2, (BATCH, BERT_T), generator=gen, dtype=torch.int64)
        mask = torch.zeros(BATCH, BERT_T, dtype=torch.int64)
        for b, n in enumerate(BERT_LENGTHS):
            mask[b, :n] = 1
        ids[mask == 0] = 0
        types[mask == 0] = 0
        inputs = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types,
                  "labels": torch.tensor([1, 2], dtype=torch.int64)}
        cfg = model.config
        meta = {"model_type": "bert", "vocab_size": cfg.vocab_size,
                "max_position_embeddings": cfg.max_position_embeddings, "type_vocab_size": cfg.type_vocab_size,
                "seq_len": BERT_T}
        fwd = lambda P, Q, prune=True: bert_forward(P, cfg, ids, mask, types, inputs["labels"], Q)  # noqa: E731
    meta.update({"hidden_size": cfg.hidden_size, "num_layers": cfg.num_layers, "num_heads": cfg.num_heads,
                 "intermediate_size": cfg.intermediate_size, "num_labels": cfg.num_labels,
                 "layer_norm_eps": repr(cfg.layer_norm_eps), "hidden_act": cfg.hidden_act, "batch_size": BATCH,
                 "loss": "cross_entropy_mean"})
    return kind, model, inputs, meta, fwd


def fresh_params(model):
    return {n: p.detach().double().clone().requires_grad_(True) for n, p in model.named_parameters()}


def write_golden(name, out_dir):
    kind, model, inputs, meta, fwd = make_case(name)
    rules = rules_for(kind)

    # 1. The spelled-out forward without quantizers equals models.py's (float64; ViT/DeiT pruned or not).
    m64 = type(model)(model.config)
    m64.load_state_dict(model.state_dict())
    m64 = m64.double()
    kw = {k: (v.double() if v.is_floating_point() else v) for k, v in inputs.items()}
    ref = m64(**kw)
    for prune in (True, False):
        logits, loss = fwd(fresh_params(model), Quant(rules, "off"), prune)
        err = (logits - ref["logits"]).abs().max().item() / ref["logits"].abs().max().item()
        assert err < 1e-12 and abs(loss.item() - ref["loss"].item()) < 1e-12, f"{name}: FP forward differs: {err}"

    # 2. Ranges from the FP run, scales from them, then nudge scales off rounding thresholds.
    rec = Quant(rules, "fp")
    fwd(fresh_params(model), rec)
    q = Quant(rules, "q")
    q.ranges, q.order = rec.ranges, list(rec.order)
    q.calibrate()
    nudges = 0
    while True:
        q.violations, q.min_margin, q.leaves = [], np.inf, {}
        P = fresh_params(model)
        logits, loss = fwd(P, q)
        if not q.violations:
            break
        first = min(q.violations, key=q.order.index)   # upstream first: downstream sites change with it
        q.mult[first] = q.mult.get(first, 1.0) * NUDGE
        nudges += 1
        assert nudges < 2000, f"{name}: cannot move {first} off rounding thresholds"
    loss.backward()
    assert torch.isfinite(logits).all()

    tensors = {}
    for pn, p in model.named_parameters():
        tensors[pn] = p.detach().float().numpy()
    for k, v in inputs.items():
        tensors[k] = v.numpy()
    tensors["logits"] = logits.detach().float().numpy()
    tensors["loss"] = np.array([loss.item()], dtype=F32)
    gmax = max(P[n].grad.abs().max().item() for n in P)
    zero_grads = []
    for pn in P:
        gr = P[pn].grad.detach()
        if pn.endswith("key.bias"):  # softmax shift invariance survives quantization: P (so P_hat) ignores it
            assert gr.abs().max().item() < 1e-12 * gmax, pn
            gr = torch.zeros_like(gr)
            zero_grads.append("grad." + pn)
        tensors["grad." + pn] = gr.float().numpy()
    learnable, rows = [], []
    for site in q.order:
        f = q.fmt(site)
        s = q.effective_scale(site) if not site.endswith(".weight") else q.scale[site]
        tensors[f"site.{site}.scale"] = s
        tensors[f"site.{site}.zero_point"] = q.zero[site]
        rows.append(f"{site}:{q.rows[site]}")
        if site in q.leaves:
            st, zt, gf = q.leaves[site]
            learnable.append(site)
            tensors[f"grad.site.{site}.scale"] = st.grad.numpy().astype(F32)
            assert np.any(st.grad.numpy() != 0), f"{name}: {site} scale gradient is 0: nothing tested there"
            if f["learn"] == "lsq_plus":
                tensors[f"grad.site.{site}.zero_point"] = zt.grad.numpy().astype(F32)
                assert np.any(zt.grad.numpy() != 0), f"{name}: {site} offset gradient is 0 (nothing clips)"
    meta = {k: str(v) for k, v in meta.items()}
    meta.update({
        "name": name, "seed": str(SEED), "generator": "tests/oracle/make_quant_model_goldens.py",
        "torch_version": torch.__version__, "rules_yaml": rules_yaml(rules), "sites": ",".join(q.order),
        "site_rows": ",".join(rows), "learnable_sites": ",".join(learnable),
        "prune_last_layer": "1" if kind != "bert" else "0",
        "compute_dtype": "float64 network, float32 quantizers (stored as F32)",
        "min_tie_margin": f"{q.min_margin:.3f} (x the 1e-4 + 1e-5|code| tolerance)",
        "scale_nudges": str(nudges), "zero_grads": ",".join(zero_grads),
        "error_metric": "max|a - ref| / max|ref| per tensor",
    })
    path = os.path.join(out_dir, name + ".safetensors")
    st_io.save(path, tensors, meta)
    back, bmeta = st_io.load(path)
    assert bmeta == meta and list(back) == list(tensors)
    print(f"  wrote {path}: {os.path.getsize(path)} bytes, {len(q.order)} sites ({len(learnable)} learnable), "
          f"loss {loss.item():.6f}, {nudges} scale nudges, min tie margin {q.min_margin:.2f} x tolerance")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(HERE, "..", "golden"))
    args = ap.parse_args()
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    for name in ("quant_vit", "quant_deit", "quant_bert"):
        print(name)
        write_golden(name, os.path.normpath(args.out))


if __name__ == "__main__":
    main()
