#!/usr/bin/python3
"""Writes tests/golden/calib.safetensors: what PyTorch's observers (torch 1.13) and a Python
re-implementation of pytorch-quantization's entropy calibrator give on fixed batches, for
tests/test_calib.c.

- minmax / EMA / per-channel: torch.ao.quantization MinMaxObserver, MovingAverageMinMaxObserver,
  PerChannelMinMaxObserver, MovingAveragePerChannelMinMaxObserver; ranges and calculate_qparams().
- percentile: FQ-ViT's PercentileObserver: per batch torch.quantile(x, q) and
  torch.quantile(x, 1 - q) (q = p / 100, computed in double as the C code does), then
  m <- m + c (m_batch - m) in float32 torch with c = 0.01 (first batch initializes).
- entropy: pytorch-quantization's HistogramCalibrator.collect (|x| histogram, 2048 bins on
  [0, max], bins of the same width appended when a later batch exceeds the range) and
  _compute_amax_entropy (steps 1-4 of METHODS.md §5), with one stated difference: a value's bin is
  floor(|x| / width) in float64 (torch.histc bins in float32 with edge corrections), the formula
  host/quant/calib_hist.c uses, so the comparison tests the KL search and not binning round-off.
  The KL loop is vectorized with numpy but keeps their definitions (rel_entr: P > 0 with Q = 0 is
  inf; last minimiser).

Usage: /usr/bin/python3 tests/oracle/calib_oracle.py [--out DIR]   (default: tests/golden)
"""
import argparse
import math
import os
import sys

import numpy as np
import torch
from torch.ao.quantization import (MinMaxObserver, MovingAverageMinMaxObserver,
                                   MovingAveragePerChannelMinMaxObserver, PerChannelMinMaxObserver)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st_io  # noqa: E402

SEED = 4321
HERE = os.path.dirname(os.path.abspath(__file__))
BINS = 2048
START_BIN = 128


def laplace(n, gen):
    """Laplace(0, 1) by inverse CDF from the explicit generator (torch.distributions would draw from
    the unseeded global one)."""
    u = torch.rand(n, generator=gen, dtype=torch.float64) - 0.5
    return (-torch.sign(u) * torch.log1p(-2.0 * u.abs())).to(torch.float32)


def make_batches(gen):
    """Three activation batches [256, 16]: Gaussian columns of different scales, a heavy-tailed
    (Laplace) column 3 and a positive column 5; batch 1 carries a few large outliers so the range grows."""
    out = []
    col_scale = torch.linspace(0.5, 3.0, 16)
    for b in range(3):
        x = torch.randn(256, 16, generator=gen) * col_scale
        x[:, 3] = laplace(256, gen) * (1.0 if b == 0 else 1.5)
        x[:, 5] = x[:, 5].abs()
        if b == 1:
            x[7, 2] = 40.0
            x[100, 9] = -55.0
        out.append(x.to(torch.float32).contiguous())
    return out


def observer_results(obs, batches):
    for x in batches:
        obs(x)
    scale, zp = obs.calculate_qparams()
    return obs.min_val.clone(), obs.max_val.clone(), scale.to(torch.float32), zp.to(torch.float32)


def fqvit_percentile(batches, q, dim=None):
    """FQ-ViT PercentileObserver (per tensor, or per column with dim=0), EMA sigma 0.01 in float32."""
    lo = hi = None
    for x in batches:
        v = x.reshape(-1) if dim is None else x
        cur_hi = torch.quantile(v, q) if dim is None else torch.quantile(v, q, dim=dim)
        cur_lo = torch.quantile(v, 1.0 - q) if dim is None else torch.quantile(v, 1.0 - q, dim=dim)
        if hi is None:
            lo, hi = cur_lo, cur_hi
        else:
            hi = hi + 0.01 * (cur_hi - hi)
            lo = lo + 0.01 * (cur_lo - lo)
    return lo.reshape(-1), hi.reshape(-1)


class AbsHistogram:
    """pytorch-quantization HistogramCalibrator.collect, bins as in host/quant/calib_hist.c."""

    def __init__(self):
        self.width = 0.0
        self.counts = None

    def collect(self, x):
        v = np.abs(x.numpy().astype(np.float64))
        vmax = float(np.float32(v.max()))
        if self.counts is None:
            self.width = vmax / BINS
            self.counts = np.zeros(BINS, dtype=np.float64)
        elif vmax > len(self.counts) * self.width:
            end = int(math.ceil(vmax / self.width))
            self.counts = np.concatenate([self.counts, np.zeros(end - len(self.counts))])
        k = np.floor(v / self.width).astype(np.int64)
        k = np.minimum(k, len(self.counts) - 1)
        self.counts += np.bincount(k, minlength=len(self.counts)).astype(np.float64)


def entropy_amax(counts, width, num_bits, unsigned):
    """pytorch-quantization _compute_amax_entropy (stride 1, start_bin 128). Returns (amax, KL
    curve, candidate list)."""
    bins = counts.copy()
    bins[0] = bins[1]
    total_data = np.sum(bins)
    nbins = 1 << (num_bits - 1 + int(unsigned))
    divergences, arguments = [], []
    for i in range(START_BIN, len(bins) + 1):
        space = np.linspace(0, i, num=nbins + 1)
        digitized = np.digitize(np.arange(i), space) - 1
        digitized[bins[:i] == 0] = -1
        valid = digitized != -1
        level_mass = np.bincount(digitized[valid], weights=bins[:i][valid], minlength=nbins)
        level_count = np.bincount(digitized[valid], minlength=nbins)
        new_density = np.zeros(i, dtype=np.float64)
        new_density[valid] = level_mass[digitized[valid]] / level_count[digitized[valid]]
        reference = np.array(bins[:i])
        reference[-1] += np.sum(bins[i:])
        assert round(np.sum(new_density) + np.sum(bins[i:])) == total_data
        assert round(np.sum(reference)) == total_data
        # scipy.stats.entropy(reference, new_density): normalizes both, sum of rel_entr
        p = reference / np.sum(reference)
        qs = np.sum(new_density)
        if qs == 0:
            divergences.append(np.inf)
            arguments.append(i)
            continue
        q = new_density / qs
        if np.any((p > 0) & (q == 0)):
            ent = np.inf
        else:
            m = p > 0
            ent = float(np.sum(p[m] * np.log(p[m] / q[m])))
        divergences.append(ent)
        arguments.append(i)
    divergences = np.array(divergences)
    last_argmin = len(divergences) - 1 - np.argmin(divergences[::-1])
    amax = arguments[last_argmin] * width
    return amax, divergences, last_argmin


def kl_gap(divergences, best):
    """Relative gap between the minimum KL and the next distinct value: how far a float round-off
    would have to move the C result to pick another bin."""
    finite = np.sort(np.unique(divergences[np.isfinite(divergences)]))
    if len(finite) < 2:
        return float("inf")
    return float((finite[1] - finite[0]) / max(finite[0], 1e-300))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(HERE, "..", "golden"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(SEED)
    acts = make_batches(gen)
    weight = (torch.randn(32, 64, generator=gen) * torch.linspace(0.02, 0.3, 32)[:, None]).to(torch.float32)
    # Entropy batches: Laplace(1) then Laplace(1.6): the second exceeds the first's range, so bins
    # are appended (about 1.5x).
    hist_batches = [laplace(8192, gen), laplace(8192, gen) * 1.6]

    t = {}
    meta = {"torch_version": torch.__version__, "seed": str(SEED),
            "generator": "torch.Generator().manual_seed(seed); Laplace by inverse CDF of torch.rand"}
    for i, x in enumerate(acts):
        t[f"act.{i}"] = x
    t["weight"] = weight
    for i, x in enumerate(hist_batches):
        t[f"hist.{i}"] = x

    # Per-tensor observers. u8a = quint8 affine (our unsigned asymmetric 8-bit), s8s = qint8
    # symmetric, u8s = quint8 symmetric (zero point 128).
    schemes = {"u8a": (torch.quint8, torch.per_tensor_affine), "s8s": (torch.qint8, torch.per_tensor_symmetric),
               "u8s": (torch.quint8, torch.per_tensor_symmetric)}
    for tag, (dtype, qscheme) in schemes.items():
        lo, hi, s, z = observer_results(MinMaxObserver(dtype=dtype, qscheme=qscheme), acts)
        t[f"minmax.{tag}.lo"], t[f"minmax.{tag}.hi"], t[f"minmax.{tag}.scale"], t[f"minmax.{tag}.zp"] = \
            lo.reshape(1), hi.reshape(1), s.reshape(1), z.reshape(1)
    for c in (0.01, 0.1):
        lo, hi, s, z = observer_results(
            MovingAverageMinMaxObserver(averaging_constant=c, dtype=torch.quint8,
                                        qscheme=torch.per_tensor_affine), acts)
        t[f"ema{c}.u8a.lo"], t[f"ema{c}.u8a.hi"], t[f"ema{c}.u8a.scale"], t[f"ema{c}.u8a.zp"] = \
            lo.reshape(1), hi.reshape(1), s.reshape(1), z.reshape(1)
    # Per channel: activations by column (ch_axis=1), weights by row (ch_axis=0), qint8 symmetric.
    lo, hi, s, z = observer_results(PerChannelMinMaxObserver(ch_axis=1, dtype=torch.qint8,
                                                             qscheme=torch.per_channel_symmetric), acts)
    t["perch_act.s8s.lo"], t["perch_act.s8s.hi"], t["perch_act.s8s.scale"], t["perch_act.s8s.zp"] = lo, hi, s, z
    lo, hi, s, z = observer_results(PerChannelMinMaxObserver(ch_axis=0, dtype=torch.qint8,
                                                             qscheme=torch.per_channel_symmetric), [weight])
    t["perch_w.s8s.lo"], t["perch_w.s8s.hi"], t["perch_w.s8s.scale"], t["perch_w.s8s.zp"] = lo, hi, s, z
    lo, hi, s, z = observer_results(MovingAveragePerChannelMinMaxObserver(
        averaging_constant=0.01, ch_axis=1, dtype=torch.quint8, qscheme=torch.per_channel_affine), acts)
    t["ema_perch_act.u8a.lo"], t["ema_perch_act.u8a.hi"] = lo, hi
    t["ema_perch_act.u8a.scale"], t["ema_perch_act.u8a.zp"] = s, z

    for p in (99.9, 99.99, 99.999):
        q = p / 100.0
        lo, hi = fqvit_percentile(acts, q)
        t[f"pct{p}.lo"], t[f"pct{p}.hi"] = lo, hi
        lo, hi = fqvit_percentile(acts, q, dim=0)
        t[f"pct{p}_perch.lo"], t[f"pct{p}_perch.hi"] = lo, hi

    hist = AbsHistogram()
    for x in hist_batches:
        hist.collect(x)
    meta["entropy_bins"] = str(len(hist.counts))
    for tag, bits, unsigned, data in (("s8", 8, False, None), ("s4", 4, False, None), ("s2", 2, False, None)):
        amax, div, best = entropy_amax(hist.counts, hist.width, bits, unsigned)
        t[f"entropy.{tag}.amax"] = np.array([amax], dtype=np.float32)
        meta[f"entropy.{tag}.bin"] = str(best + START_BIN)
        meta[f"entropy.{tag}.kl_gap"] = f"{kl_gap(div, best):.3e}"
    # Unsigned 8-bit (2^8 levels): the C side sees |x| with an asymmetric unsigned format.
    amax, div, best = entropy_amax(hist.counts, hist.width, 8, True)
    t["entropy.u8.amax"] = np.array([amax], dtype=np.float32)
    meta["entropy.u8.bin"] = str(best + START_BIN)
    meta["entropy.u8.kl_gap"] = f"{kl_gap(div, best):.3e}"
    meta["entropy_hist_counts_total"] = str(int(hist.counts.sum()))

    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "calib.safetensors")
    st_io.save(path, {k: (v.to(torch.float32) if hasattr(v, "dtype") and isinstance(v, torch.Tensor) else v)
                      for k, v in t.items()}, meta)
    print(path, os.path.getsize(path), "bytes")
    for k in sorted(meta):
        if k.startswith("entropy"):
            print(k, meta[k])


if __name__ == "__main__":
    main()
