#!/usr/bin/python3
"""PyTorch CPU side of the qft training-step benchmark: times one full float32 training step
(zero_grad, forward, cross-entropy loss, backward, AdamW step) of the plain-torch HF-equivalent
ViT or BERT from tests/oracle/models.py, and prints one JSON object on stdout.

Run with Debian's torch:  /usr/bin/python3 benchmarks/bench_torch_step.py --model vit
(the pyenv python3 first on PATH has no torch). benchmarks/run_step_bench.sh runs it beside qft.

The JSON carries, besides the step times, the evidence that the baseline is sane: torch's own
1024^3 float32 matmul GFLOP/s at the same thread count, and which BLAS library is mapped into the
process (Debian's torch calls libblas.so.3, which must resolve to OpenBLAS, not the generic
reference BLAS; see benchmarks/RESULTS.md).

BERT token counts: qft trims every text batch to its longest row, so its per-step sequence length
varies. --lengths FILE takes the exact per-step row lengths qft uses (from
benchmarks/qft_batch_lengths.c): step i runs at T = max(lengths_i) with the same padding mask.
Without it, every step runs at T = --seq-len with no padding.

--qat (vit only): the quantization-aware step, with torch's learnable fake-quant ops on every linear
(see "QAT mode" below); `MODE=qat benchmarks/run_step_bench.sh` runs it beside qft's QAT step.
"""
import argparse
import json
import math
import os
import platform
import resource
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "oracle"))

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import models  # noqa: E402  (tests/oracle/models.py)


def blas_libraries():
    """The BLAS/LAPACK shared objects actually mapped into this process (resolved paths)."""
    found = set()
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                path = line.split()[-1] if len(line.split()) >= 6 else ""
                base = os.path.basename(path)
                if any(k in base for k in ("blas", "lapack", "mkl")):
                    found.add(path)
    except OSError:
        pass
    return sorted(found)


def sgemm_gflops(n=1024, reps=10):
    a = torch.randn(n, n)
    b = torch.randn(n, n)
    c = torch.empty(n, n)
    for _ in range(3):
        torch.mm(a, b, out=c)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        torch.mm(a, b, out=c)
        times.append(time.perf_counter() - t0)
    return 2.0 * n ** 3 / statistics.median(times) / 1e9


# ---- QAT mode (--qat): learnable fake quantizers on every linear, as qft's LSQ / LSQ+ sites ----
#
# Mirrors qft's rules  {pattern: "*.weight", bits: 8, granularity: channel, learn: lsq}  and
# {pattern: "*.input", bits: 8, symmetric: false, signed: false, learn: lsq_plus}  on the ViT:
#  - weights: torch._fake_quantize_learnable_per_channel_affine over the output channels, int8 signed
#    symmetric ([-128, 127], zero point 0, not learned), grad_factor 1/sqrt(in_features * 127) (LSQ: N =
#    elements per quantizer group, Qp = 127), learnable scale per channel;
#  - inputs: torch._fake_quantize_learnable_per_tensor_affine, uint8 asymmetric ([0, 255]), learnable scale
#    and zero point (LSQ+), grad_factor 1/sqrt(numel * 255);
#  - sites: patch embedding (conv weight per output channel; its input = the pixels, the same elements as
#    qft's patch matrix), every layer's q/k/v (one input quantizer shared by the three, as qft's fused qkv
#    has one input site; per-channel weights of q, k, v = per channel of the fused [3D, D] weight), attention
#    output projection, fc1, fc2, and the classifier;
#  - scales start from a min/max calibration on the first batch (untimed), like qft's calibration; the
#    quantizer parameters train with AdamW at the same lr without weight decay, and scales are clamped to
#    >= 2^-23 after each step (qft_quant_clamp_scales).
W_QMIN, W_QMAX, X_QMIN, X_QMAX = -128, 127, 0, 255
MIN_SCALE = 2.0 ** -23


class InputQuant(nn.Module):
    """Per-tensor LSQ+ input quantizer."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1))
        self.zero_point = nn.Parameter(torch.zeros(1))
        self.calibrating = False

    def forward(self, x):
        if self.calibrating:
            lo, hi = min(float(x.min()), 0.0), max(float(x.max()), 0.0)
            s = max((hi - lo) / (X_QMAX - X_QMIN), MIN_SCALE)
            with torch.no_grad():
                self.scale.fill_(s)
                self.zero_point.fill_(float(min(max(X_QMIN - round(lo / s), X_QMIN), X_QMAX)))
            return x
        gf = 1.0 / math.sqrt(x.numel() * X_QMAX)
        return torch._fake_quantize_learnable_per_tensor_affine(x, self.scale, self.zero_point, X_QMIN, X_QMAX, gf)


class QuantLinear(nn.Module):
    """Wraps an nn.Linear / nn.Conv2d: per-output-channel LSQ weight quantizer, optional input quantizer."""

    def __init__(self, inner, input_quant=True):
        super().__init__()
        self.inner = inner
        oc = inner.weight.shape[0]
        self.w_scale = nn.Parameter(torch.ones(oc))
        self.register_buffer("w_zero", torch.zeros(oc))  # symmetric: z = 0, not learned
        self.iq = InputQuant() if input_quant else None
        self.w_grad_factor = 1.0 / math.sqrt(inner.weight[0].numel() * W_QMAX)
        self.calibrating = False

    def forward(self, x):
        w = self.inner.weight
        if self.calibrating:
            with torch.no_grad():
                amax = w.detach().reshape(w.shape[0], -1).abs().amax(dim=1)
                self.w_scale.copy_(torch.clamp(amax / ((W_QMAX - W_QMIN) / 2), min=MIN_SCALE))
        if self.iq is not None:
            x = self.iq(x)
        if not self.calibrating:
            w = torch._fake_quantize_learnable_per_channel_affine(w, self.w_scale, self.w_zero, 0, W_QMIN, W_QMAX,
                                                                  self.w_grad_factor)
        if isinstance(self.inner, nn.Conv2d):
            return F.conv2d(x, w, self.inner.bias, self.inner.stride, self.inner.padding)
        return F.linear(x, w, self.inner.bias)


def quantize_vit(model):
    """Puts QAT quantizers on every linear of tests/oracle/models.py's ViT (in place)."""
    vit = model.vit
    pe = vit.embeddings.patch_embeddings
    pe.projection = QuantLinear(pe.projection)
    for layer in vit.encoder.layer:
        attn = layer.attention.attention
        for name in ("query", "key", "value"):
            setattr(attn, name, QuantLinear(getattr(attn, name), input_quant=False))
        attn.qkv_iq = InputQuant()
        attn.forward = (lambda a, f: lambda h, extended_mask=None: f(a.qkv_iq(h), extended_mask))(
            attn, attn.forward)
        layer.attention.output.dense = QuantLinear(layer.attention.output.dense)
        layer.intermediate.dense = QuantLinear(layer.intermediate.dense)
        layer.output.dense = QuantLinear(layer.output.dense)
    model.classifier = QuantLinear(model.classifier)


def set_calibrating(model, on):
    for m in model.modules():
        if isinstance(m, (InputQuant, QuantLinear)):
            m.calibrating = on


def quant_parameters(model):
    return [p for n, p in model.named_parameters() if n.endswith(("scale", "zero_point", "w_scale"))]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=["vit", "bert"], required=True)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=None, help="default: 128 (vit), 8 (bert)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps before the timed ones")
    p.add_argument("--steps", type=int, default=20, help="timed steps (median reported)")
    p.add_argument("--seed", type=int, default=0)
    # model dims (defaults: qft's demo ViT, and 2 layers of BERT-base width)
    p.add_argument("--hidden", type=int, default=None)
    p.add_argument("--layers", type=int, default=None)
    p.add_argument("--heads", type=int, default=None)
    p.add_argument("--intermediate", type=int, default=None)
    p.add_argument("--labels", type=int, default=None)
    p.add_argument("--image-size", type=int, default=28)
    p.add_argument("--patch-size", type=int, default=7)
    p.add_argument("--channels", type=int, default=1)
    p.add_argument("--vocab", type=int, default=30522)
    p.add_argument("--max-pos", type=int, default=512)
    p.add_argument("--seq-len", type=int, default=128, help="bert T when --lengths is not given")
    p.add_argument("--lengths", default=None, help="JSON from qft_batch_lengths (bert)")
    # optimizer (qft defaults)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--weight-decay", type=float, default=0.05)
    p.add_argument("--foreach", choices=["default", "on", "off"], default="default",
                   help="AdamW foreach implementation (default: torch's choice)")
    p.add_argument("--qat", action="store_true",
                   help="vit only: learnable fake quantizers on every linear (see QAT mode above)")
    args = p.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    gflops = sgemm_gflops()

    if args.model == "vit":
        cfg = dict(hidden_size=args.hidden or 64, num_layers=args.layers or 4, num_heads=args.heads or 4,
                   intermediate_size=args.intermediate or 256, image_size=args.image_size,
                   patch_size=args.patch_size, num_channels=args.channels, num_labels=args.labels or 10,
                   layer_norm_eps=1e-6, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
        B = args.batch or 128
    else:
        cfg = dict(vocab_size=args.vocab, hidden_size=args.hidden or 768, num_layers=args.layers or 2,
                   num_heads=args.heads or 12, intermediate_size=args.intermediate or 3072,
                   max_position_embeddings=args.max_pos, num_labels=args.labels or 2,
                   hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
        B = args.batch or 8
    model = models.build(args.model, **cfg).float()
    model.train()
    n_params = sum(p.numel() for p in model.parameters())
    opt_kw = dict(lr=args.lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=args.weight_decay)
    if args.foreach != "default":
        opt_kw["foreach"] = args.foreach == "on"
    qparams = []
    if args.qat:
        if args.model != "vit":
            sys.exit("--qat: vit only")
        quantize_vit(model)
        qparams = quant_parameters(model)
        qids = {id(p) for p in qparams}
        groups = [dict(params=[p for p in model.parameters() if id(p) not in qids]),
                  dict(params=qparams, weight_decay=0.0)]
        opt = torch.optim.AdamW(groups, **opt_kw)
    else:
        opt = torch.optim.AdamW(model.parameters(), **opt_kw)
    qscales = [p for n, p in model.named_parameters() if n.endswith("scale")]

    total = args.warmup + args.steps
    g = torch.Generator().manual_seed(args.seed)
    # Inputs are made before timing (qft's per-step time includes filling its batch, a memcpy-sized
    # cost; random data here: the step's arithmetic does not depend on the values).
    batches = []
    step_T = []
    if args.model == "vit":
        x = torch.randn(B, args.channels, args.image_size, args.image_size, generator=g)
        y = torch.randint(0, cfg["num_labels"], (B,), generator=g)
        batches = [dict(pixel_values=x, labels=y)] * total
        step_T = [(args.image_size // args.patch_size) ** 2 + 1] * total
    else:
        lengths = None
        if args.lengths:
            with open(args.lengths) as f:
                spec = json.load(f)
            if spec["batch_size"] != B:
                sys.exit(f"--lengths batch_size {spec['batch_size']} != --batch {B}")
            lengths = [s["lengths"] for s in spec["steps"]]
        for i in range(total):
            if lengths:
                # qft's run: step k uses batch k. The warmup steps here take the first `warmup`
                # batches, as qft's first steps do, so timed step i matches qft's step warmup+i.
                lens = lengths[i % len(lengths)]
            else:
                lens = [args.seq_len] * B
            T = max(lens)
            ids = torch.randint(4, args.vocab, (B, T), generator=g)
            ids[:, 0] = 1
            mask = torch.zeros(B, T, dtype=torch.long)
            types = torch.zeros(B, T, dtype=torch.long)
            for r, L in enumerate(lens):
                mask[r, :L] = 1
                types[r, L // 2:L] = 1
            ids = ids * mask
            y = torch.randint(0, cfg["num_labels"], (B,), generator=g)
            batches.append(dict(input_ids=ids, attention_mask=mask, token_type_ids=types, labels=y))
            step_T.append(T)

    if args.qat:  # min/max calibration of every quantizer on the first batch (untimed)
        set_calibrating(model, True)
        with torch.no_grad():
            model(**batches[0])
        set_calibrating(model, False)

    times_ms = []
    cpu_ms = []
    for i, batch in enumerate(batches):
        t0 = time.perf_counter()
        c0 = time.process_time()
        opt.zero_grad(set_to_none=True)
        out = model(**batch)
        out["loss"].backward()
        opt.step()
        if qscales:
            with torch.no_grad():
                for sc in qscales:
                    sc.clamp_(min=MIN_SCALE)
        c1 = time.process_time()
        t1 = time.perf_counter()
        if i >= args.warmup:
            times_ms.append(1000.0 * (t1 - t0))
            cpu_ms.append(1000.0 * (c1 - c0))
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB

    cfg_txt = torch.__config__.show()
    blas_info = next((tok.split("=", 1)[1].rstrip(",") for tok in cfg_txt.split()
                      if tok.startswith("BLAS_INFO=")), "?")
    libs = blas_libraries()
    result = {
        "side": "torch",
        "model": args.model,
        "torch_version": torch.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "batch_size": B,
        "config": cfg,
        "params": n_params,
        "warmup_steps": args.warmup,
        "timed_steps": args.steps,
        "seq_len_timed": step_T[args.warmup:],
        "tokens_per_step_median": statistics.median(B * t for t in step_T[args.warmup:]),
        "ms_per_step_median": statistics.median(times_ms),
        "ms_per_step_mean": statistics.fmean(times_ms),
        "ms_per_step_min": min(times_ms),
        "ms_per_step_all": [round(t, 3) for t in times_ms],
        "cpu_ms_per_step_median": statistics.median(cpu_ms),
        "peak_rss_mb": peak_rss_mb,
        "sgemm_gflops_1024": gflops,
        "torch_build_blas_info": blas_info,
        "blas_libraries_mapped": libs,
        "openblas": any("openblas" in x for x in libs),
        "adamw_foreach": args.foreach,
        "qat": args.qat,
        "quant_params": sum(p.numel() for p in qparams),
        "final_loss": float(out["loss"]),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
