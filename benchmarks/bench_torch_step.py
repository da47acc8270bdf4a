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
"""
import argparse
import json
import os
import platform
import resource
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "oracle"))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402,F401

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
    opt = torch.optim.AdamW(model.parameters(), **opt_kw)

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

    times_ms = []
    cpu_ms = []
    for i, batch in enumerate(batches):
        t0 = time.perf_counter()
        c0 = time.process_time()
        opt.zero_grad(set_to_none=True)
        out = model(**batch)
        out["loss"].backward()
        opt.step()
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
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
