#!/usr/bin/python3
"""Writes tests/golden/quant_ops.safetensors: PyTorch / numpy references for qft's fake-quant backend ops
(tests/test_fake_quant.c compares).

Uniform cases come from torch itself: torch.fake_quantize_per_tensor_affine and
torch.fake_quantize_per_channel_affine (forward, and the STE input gradient through autograd), and
torch._fake_quantize_learnable_per_{tensor,channel}_affine (forward; x, scale and zero-point gradients).
qft's layouts map onto them as: PER_TENSOR -> per_tensor; PER_ROW -> per_channel axis 0 of [rows, C];
PER_COLUMN -> axis 1; PER_ROW_GROUP -> axis 0 of x.reshape(-1, group_size); COLUMN_MAP -> axis 1 with
each column given its group's (scale, zero point), the per-column gradients then summed per group here.

Scale / zero-point gradients: torch sums float32 terms in its own order; qft sums the same terms in
double. Besides torch's sums (`.dscale`, `.dzero`) each case stores the float64 sum of torch's per-element
terms rounded to F32 (`.dscale_exact`, `.dzero_exact`) and the float64 sum of their magnitudes
(`.dscale_abs`, `.dzero_abs`); the per-element terms are torch's own, read from a per-channel call with
one channel per element.

Log cases (log2 / log-sqrt2, METHODS.md §4) come from a numpy reference written here with np.log2 in
float64 (qft evaluates the rounding from float bits instead; both are exact, see the assertion on the
distance to the rounding thresholds).

torch facts this file checks and records in the metadata (the script fails if torch disagrees):
  - the learnable backward rounds z + x/s with a fused multiply-add (torch's AVX2 / AVX-512 kernels are
    compiled with FMA contraction; its "default" capability build is not). ATEN_CPU_CAPABILITY is set to
    avx2 so the goldens do not depend on the machine's widest vector unit.
  - the per-tensor learnable backward uses z = trunc(clamp(z + 0.5)) (so z = -3 behaves as -2), unlike
    its own forward and the per-channel op; qft follows the forward (cases use z where the two agree).
  - for |x/s| >= 2^63 torch's int64 cast overflows and the forward returns (qmin - z) * s even for huge
    positive x; qft clamps to qmax (not in the goldens; tests/test_fake_quant.c checks qft's side).

Usage: /usr/bin/python3 tests/oracle/make_quant_goldens.py [--out DIR]   (default: tests/golden; ~1 s)
"""
import argparse
import os
import sys

os.environ["ATEN_CPU_CAPABILITY"] = "avx2"  # before importing torch: see the docstring

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st_io  # noqa: E402

SEED = 20240605
HERE = os.path.dirname(os.path.abspath(__file__))
F32 = np.float32
MIN_SCALE = F32(1.1920928955078125e-07)  # QFT_QUANT_MIN_SCALE
AXIS = {"tensor": 0, "row": 1, "column": 2, "row_group": 3, "column_map": 4}  # qft_fq_axis values


def grid(bits, signed, narrow=False):
    if not signed:
        return 0, (1 << bits) - 1
    return (-(1 << (bits - 1)) + (1 if narrow else 0)), (1 << (bits - 1)) - 1


def group_index(axis, rows, C, group_size, column_group):
    """k[r, c]: the group of every element, as qft_fq_layout defines it."""
    r, c = np.meshgrid(np.arange(rows), np.arange(C), indexing="ij")
    if axis == "tensor":
        return np.zeros((rows, C), dtype=np.int64)
    if axis == "row":
        return r
    if axis == "column":
        return c
    if axis == "row_group":
        return r * (C // group_size) + c // group_size
    return column_group[c]


def make_x(rng, scale_e, zero_e, qmin, qmax):
    """Inputs spread over the grid and 4 steps beyond each end, with exact ties (x/s = k + 0.5, exact when
    s is a power of two, often otherwise), their float neighbours, grid points and zeros."""
    z = np.rint(zero_e)
    t = rng.uniform(qmin - z - 4, qmax - z + 4)
    kind = rng.choice(4, size=t.shape, p=[0.4, 0.3, 0.2, 0.1])
    t = np.where(kind == 1, np.floor(t) + 0.5, t)
    t = np.where(kind == 3, np.rint(t), t)
    x = (t * scale_e.astype(np.float64)).astype(F32)
    toward = np.where(rng.random(t.shape) < 0.5, F32(np.inf), F32(-np.inf)).astype(F32)
    x = np.where(kind == 2, np.nextafter((np.floor(t) + 0.5) * scale_e, toward).astype(F32), x)
    x[rng.random(t.shape) < 0.03] = 0
    return x.astype(F32)


def count_ties(x, scale_e):
    v = x * (F32(1) / scale_e)  # float32, as the kernels
    return int(np.sum(v - np.floor(v) == 0.5))


# ---- uniform, non-learnable: torch.fake_quantize_per_{tensor,channel}_affine ----

def torch_fake_quant(x, scale, zero, axis, qmin, qmax, group_size, column_group, dout):
    """Returns (out, dx) from torch, for qft's layout."""
    xt = torch.tensor(x, requires_grad=True)
    if axis == "tensor":
        y = torch.fake_quantize_per_tensor_affine(xt, float(scale[0]), int(zero[0]), qmin, qmax)
    else:
        if axis == "row_group":
            xv, ch_axis, s, z = xt.reshape(-1, group_size), 0, scale, zero
        elif axis == "column_map":
            xv, ch_axis, s, z = xt, 1, scale[column_group], zero[column_group]
        else:
            xv, ch_axis, s, z = xt, (0 if axis == "row" else 1), scale, zero
        y = torch.fake_quantize_per_channel_affine(xv, torch.tensor(s), torch.tensor(z.astype(np.int32)),
                                                   ch_axis, qmin, qmax).reshape(x.shape)
    y.backward(torch.tensor(dout))
    return y.detach().numpy(), xt.grad.numpy()


# ---- uniform, learnable: torch._fake_quantize_learnable_per_{tensor,channel}_affine ----

def torch_learnable(x, scale, zero, axis, qmin, qmax, group_size, column_group, dout, grad_factor):
    """Returns (out, dx, dscale[K], dzero[K]) from torch; COLUMN_MAP sums torch's per-column grads here."""
    xt = torch.tensor(x, requires_grad=True)
    gf = float(grad_factor)
    if axis == "tensor":
        st = torch.tensor(scale, requires_grad=True)
        zt = torch.tensor(zero, requires_grad=True)
        y = torch._fake_quantize_learnable_per_tensor_affine(xt, st, zt, qmin, qmax, gf)
    else:
        if axis == "column_map":
            st = torch.tensor(scale[column_group], requires_grad=True)
            zt = torch.tensor(zero[column_group], requires_grad=True)
        else:
            st = torch.tensor(scale, requires_grad=True)
            zt = torch.tensor(zero, requires_grad=True)
        if axis == "row_group":
            xv, ch_axis = xt.reshape(-1, group_size), 0
        else:
            xv, ch_axis = xt, (0 if axis == "row" else 1)
        y = torch._fake_quantize_learnable_per_channel_affine(xv, st, zt, ch_axis, qmin, qmax, gf).reshape(x.shape)
    y.backward(torch.tensor(dout))
    dscale, dzero = st.grad.numpy().astype(np.float64), zt.grad.numpy().astype(np.float64)
    if axis == "column_map":
        K = len(scale)
        dscale = np.array([dscale[column_group == k].sum() for k in range(K)])
        dzero = np.array([dzero[column_group == k].sum() for k in range(K)])
    return y.detach().numpy(), xt.grad.numpy(), dscale.astype(F32), dzero.astype(F32)


def torch_learnable_terms(x, scale_e, zero_e, qmin, qmax, dout, grad_factor):
    """torch's per-element scale / zero-point gradient terms: a per-channel call with one element per channel."""
    xt = torch.tensor(x.reshape(-1, 1))
    st = torch.tensor(scale_e.reshape(-1), requires_grad=True)
    zt = torch.tensor(zero_e.reshape(-1), requires_grad=True)
    y = torch._fake_quantize_learnable_per_channel_affine(xt, st, zt, 0, qmin, qmax, float(grad_factor))
    y.backward(torch.tensor(dout.reshape(-1, 1)))
    return st.grad.numpy().reshape(x.shape), zt.grad.numpy().reshape(x.shape)


def uniform_case(tensors, rng, name, axis, bits, signed, rows, C, scale, zero, narrow=False, group_size=0,
                 column_group=None, learnable=False, x=None):
    """Adds case `name` to tensors; returns (exact ties, elements where the learnable backward's fused
    rounding differs from the forward's, worst torch-vs-float64 gradient sum error relative to sum|terms|)."""
    qmin, qmax = grid(bits, signed, narrow)
    column_group = np.zeros(C, dtype=np.int64) if column_group is None else column_group
    k = group_index(axis, rows, C, group_size, column_group)
    scale = np.asarray(scale, dtype=F32)
    zero = np.asarray(zero, dtype=F32)
    scale_e, zero_e = scale[k], zero[k]
    if x is None:
        x = make_x(rng, scale_e, zero_e, qmin, qmax)
    dout = rng.standard_normal((rows, C)).astype(F32)
    n_group = rows * C // len(scale)
    layout = [AXIS[axis], qmin, qmax, group_size, int(learnable)]
    tensors[f"{name}.x"] = x
    tensors[f"{name}.scale"] = scale
    tensors[f"{name}.zero_point"] = zero
    tensors[f"{name}.layout"] = np.array(layout, dtype=np.int32)
    if axis == "column_map":
        tensors[f"{name}.column_group"] = column_group.astype(np.int32)
    tensors[f"{name}.dout"] = dout
    if not learnable:
        out, dx = torch_fake_quant(x, scale, zero, axis, qmin, qmax, group_size, column_group, dout)
        tensors[f"{name}.out"] = out
        tensors[f"{name}.dx"] = dx
        return count_ties(x, scale_e), 0, 0.0
    grad_factor = F32(1.0 / np.sqrt(n_group * qmax))  # LSQ: 1/sqrt(N * Qp), N = elements per group
    out, dx, dscale, dzero = torch_learnable(x, scale, zero, axis, qmin, qmax, group_size, column_group, dout,
                                             grad_factor)
    ds_terms, dz_terms = torch_learnable_terms(x, scale_e, zero_e, qmin, qmax, dout, grad_factor)
    K = len(scale)
    ds64 = np.array([ds_terms[k == g].astype(np.float64).sum() for g in range(K)])
    dz64 = np.array([dz_terms[k == g].astype(np.float64).sum() for g in range(K)])
    ds_abs = np.array([np.abs(ds_terms[k == g].astype(np.float64)).sum() for g in range(K)])
    dz_abs = np.array([np.abs(dz_terms[k == g].astype(np.float64)).sum() for g in range(K)])
    worst = max(float(np.max(np.abs(dscale - ds64) / np.maximum(ds_abs, 1e-30))),
                float(np.max(np.abs(dzero - dz64) / np.maximum(dz_abs, 1e-30))))
    assert worst < 1e-6, f"{name}: torch's float sums vs float64 sums of its own terms: {worst}"
    tensors[f"{name}.grad_factor"] = np.array([grad_factor], dtype=F32)
    tensors[f"{name}.out"] = out
    tensors[f"{name}.dx"] = dx
    tensors[f"{name}.dscale"] = dscale
    tensors[f"{name}.dzero"] = dzero
    tensors[f"{name}.dscale_exact"] = ds64.astype(F32)
    tensors[f"{name}.dzero_exact"] = dz64.astype(F32)
    tensors[f"{name}.dscale_abs"] = ds_abs.astype(F32)
    tensors[f"{name}.dzero_abs"] = dz_abs.astype(F32)
    # How many elements round differently under torch's fused rint(fma(x, 1/s, z)) than under
    # rint(x * (1/s)) + z (the forward / STE form): ties with odd z and FMA-only roundings.
    inv_e = F32(1) / scale_e
    z_e = np.clip(np.rint(zero_e), qmin, qmax)
    fused = np.rint((x.astype(np.float64) * inv_e.astype(np.float64) + z_e).astype(F32))
    separate = np.rint(x * inv_e) + z_e
    return count_ties(x, scale_e), int(np.sum(fused != separate)), worst


def fma_tie_inputs(rng, scale, z, count, lowest=-20):
    """x near ties where torch's fused rint(fma(x, 1/s, z)) differs from rint(fl(x * 1/s) + z)."""
    inv = F32(1) / scale
    found = []
    while len(found) < count:
        t = rng.integers(lowest, 240, size=4096) + 0.5
        x = (t * np.float64(scale)).astype(F32)
        x = np.nextafter(x, np.where(rng.random(x.size) < 0.5, F32(np.inf), F32(-np.inf)).astype(F32)).astype(F32)
        fused = np.rint((x.astype(np.float64) * np.float64(inv) + z).astype(F32))
        two_step = np.rint(F32(x * inv) + F32(z))
        found.extend(x[fused != two_step].tolist())
    return np.array(found[:count], dtype=F32)


# ---- log2 / log-sqrt2 (numpy reference, METHODS.md §4) ----

def log_quant_reference(x, scale, bits, sqrt2, dout):
    """Returns (out, dx, dscale_exact, dscale_abs). q' = rint(-log2(x/s)) or rint(-2 log2(x/s)) with
    x/s = x * (1/s) in float32; level q: x_hat = s_q * 2^-ceil(q/2) (log-sqrt2, s_q = s * sqrt2 in float32
    for odd q, else s) or s * 2^-q (log2); q' < 0 -> s with no input gradient; q' >= 2^bits or x <= 0 -> 0;
    a level that underflows to 0 counts as zero. d x_hat/d s = x_hat / s as the exact level factor."""
    levels = 1 << bits
    scale = F32(scale)
    r = (x * (F32(1) / scale)).astype(F32)
    mult = 2.0 if sqrt2 else 1.0
    with np.errstate(divide="ignore", invalid="ignore"):
        e = -mult * np.log2(r.astype(np.float64))
    finite = np.isfinite(e)
    # np.log2 decides rint(e) only if e is not within its float64 error of a half-integer; the true
    # thresholds are >= 1.4e-8 relative from every float r, so this always holds.
    frac = np.abs(e[finite] - np.floor(e[finite]) - 0.5)
    assert np.all(frac > 1e-9), "log reference too close to a rounding threshold"
    out = np.zeros_like(x)
    dx = np.zeros_like(x)
    sg = np.zeros_like(x)
    sqrt2_f = F32(np.sqrt(2.0))
    for i in range(x.size):
        if not r[i] > 0:
            continue
        q = int(np.rint(e[i]))
        if q < 0:
            out[i], sg[i] = scale, F32(1)
            continue
        if q >= levels:
            continue
        odd = sqrt2 and q % 2 == 1
        shift = (q + 1) // 2 if sqrt2 else q
        value = F32(np.ldexp(np.float64(F32(scale * sqrt2_f) if odd else scale), -shift))
        if value == 0:
            continue
        out[i] = value
        dx[i] = dout[i]
        sg[i] = F32(np.ldexp(np.float64(sqrt2_f) if odd else 1.0, -shift))
    terms = (dout * sg).astype(F32).astype(np.float64)
    return out, dx, F32(terms.sum()), F32(np.abs(terms).sum())


def log_case(tensors, rng, name, bits, sqrt2, scale, n=256):
    scale = F32(scale)
    mult = 2.0 if sqrt2 else 1.0
    levels = 1 << bits
    # attention-like probabilities, exact levels, the float neighbours of every rounding threshold of the
    # first levels, values above s and above s*sqrt2, zero, and tiny / subnormal values
    probs = rng.dirichlet(np.full(16, 0.3), size=n // 16).reshape(-1).astype(F32)
    k = np.arange(min(levels, 40))
    thresholds = (scale * np.exp2(-(k + 0.5) / mult)).astype(F32)
    exact = (scale * np.exp2(-k / mult)).astype(F32)
    special = np.concatenate([
        thresholds, np.nextafter(thresholds, F32(np.inf)), np.nextafter(thresholds, F32(0)), exact,
        np.array([0.0, scale, 1.0, scale * 1.2, scale * 1.5, scale * 3, 1e-20, 1e-30, 1e-38, 1e-40, 1e-45,
                  np.exp2(-140.0), np.exp2(-149.0)], dtype=F32)]).astype(F32)
    x = probs.copy()
    idx = rng.choice(n, size=min(len(special), n // 2), replace=False)
    x[idx] = special[:len(idx)]
    dout = rng.standard_normal(n).astype(F32)
    out, dx, dscale, dscale_abs = log_quant_reference(x, scale, bits, sqrt2, dout)
    tensors[f"{name}.x"] = x
    tensors[f"{name}.scale"] = np.array([scale], dtype=F32)
    tensors[f"{name}.config"] = np.array([bits, int(sqrt2)], dtype=np.int32)
    tensors[f"{name}.dout"] = dout
    tensors[f"{name}.out"] = out
    tensors[f"{name}.dx"] = dx
    tensors[f"{name}.dscale_exact"] = np.array([dscale], dtype=F32)
    tensors[f"{name}.dscale_abs"] = np.array([dscale_abs], dtype=F32)


# ---- torch facts the C side depends on (see the docstring) ----

def check_torch_facts():
    notes = {}
    # 1. FMA in the learnable backward: a point where fma and two-step rounding differ.
    s, z = F32(0.6405921), 3
    x = fma_tie_inputs(np.random.default_rng(1), s, z, 1, lowest=10)
    inv = F32(1) / s
    fused = int(np.rint((np.float64(x[0]) * np.float64(inv) + z).astype(F32)))
    two_step = int(np.rint(F32(x[0] * inv) + F32(z)))
    qmax = min(fused, two_step)  # the element is inside under the smaller code only
    xt = torch.tensor(x.reshape(1, 1), requires_grad=True)
    y = torch._fake_quantize_learnable_per_channel_affine(xt, torch.tensor([s]), torch.tensor([float(z)]), 0,
                                                          0, qmax, 1.0)
    y.backward(torch.ones_like(y))
    torch_code = qmax if xt.grad.item() == 1.0 else qmax + 1
    assert torch_code == fused, (
        f"torch rounded z + x/s without FMA (code {torch_code}, fused {fused}, two-step {two_step}): "
        "regenerate on a machine with AVX2 + FMA")
    notes["torch_learnable_rounding"] = "rint(fma(x, 1/s, z)); inside: fma(q - z, s, -x) (AVX2 kernels, FMA contraction)"
    # 2. per-tensor learnable backward's zero point: trunc(clamp(z + 0.5)).
    xs = torch.arange(-140, 140, dtype=torch.float32)

    def grads(fn, z):
        xt = xs.clone().requires_grad_(True)
        st, zt = torch.tensor([1.0], requires_grad=True), torch.tensor([z], requires_grad=True)
        y = fn(xt, st, zt)
        y.sum().backward()
        return xt.grad.clone(), st.grad.item()
    per_tensor = lambda xt, st, zt: torch._fake_quantize_learnable_per_tensor_affine(xt, st, zt, -128, 127, 1.0)
    per_channel = lambda xt, st, zt: torch._fake_quantize_learnable_per_channel_affine(
        xt.view(1, -1), st, zt, 0, -128, 127, 1.0).view(-1)
    t_dx, t_ds = grads(per_tensor, -3.0)
    c_dx, c_ds = grads(per_channel, -2.0)
    assert torch.equal(t_dx, c_dx) and t_ds == c_ds, "torch's per-tensor learnable backward z rule changed"
    notes["torch_per_tensor_learnable_zero_point"] = (
        "backward uses trunc(clamp(z + 0.5)) (z = -3 acts as -2; z = 0.5 as 1), forward rint(z): "
        "qft uses clamp(rint(z)) in both, as torch's per-channel op")
    # 3. int64 overflow of the forward for |x/s| >= 2^63.
    huge = torch.tensor([1e19, 1e30, 8e18], dtype=torch.float32)
    out = torch.fake_quantize_per_tensor_affine(huge, 1.0, 3, 0, 255)
    assert out.tolist() == [-3.0, -3.0, 252.0], f"torch overflow behaviour changed: {out.tolist()}"
    notes["torch_forward_overflow"] = (
        "x/s >= 2^63 (or +inf, NaN): torch returns (qmin - z) * s; qft returns (qmax - z) * s (NaN for NaN)")
    return notes


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.normpath(os.path.join(HERE, "..", "golden")))
    args = ap.parse_args()
    torch.set_num_threads(1)
    rng = np.random.default_rng(SEED)
    tensors = {}
    stats = {}
    R, C = 12, 32

    def rand_scales(K, lo, hi):
        return rng.uniform(lo, hi, size=K).astype(F32)

    uniform = []

    def add(name, *a, **kw):
        stats[name] = uniform_case(tensors, rng, name, *a, **kw)
        uniform.append(name)

    # non-learnable: bits 2..8, signed / narrow / unsigned, odd zero points, zero range, huge values
    add("tensor_s8", "tensor", 8, True, R, C, [0.0625], [0])
    add("tensor_u8_odd_z", "tensor", 8, False, R, C, [0.1], [3])
    add("tensor_u2", "tensor", 2, False, R, C, [0.5], [1])
    add("tensor_s2", "tensor", 2, True, R, C, [0.3], [0])
    add("tensor_s4_narrow", "tensor", 4, True, R, C, [0.125], [0], narrow=True)
    zr = np.zeros((R, C), dtype=F32)
    pick = rng.random((R, C))
    zr[pick < 0.3] = (rng.integers(-300, 300, size=int(np.sum(pick < 0.3))) * 0.5 * MIN_SCALE).astype(F32)
    zr[pick > 0.95] = rng.choice([-1.0, 1.0, 1e-3], size=int(np.sum(pick > 0.95))).astype(F32)
    add("tensor_zero_range", "tensor", 8, True, R, C, [MIN_SCALE], [0], x=zr)
    hv = make_x(rng, np.full((R, C), F32(0.25)), np.full((R, C), F32(128)), 0, 255)
    hv.reshape(-1)[:40] = np.array([2e18, -2e18, 1e15, -1e15, 3e7, -3e7, 16777217.0, 33554436.0, 1e10, -1e10,
                                    2.3e18, -2.3e18, 4.5e6, 1e18, -1e18, 5e17, 6.7e7, 1.6777216e7, 8e9, -8e9] * 2,
                                   dtype=F32)
    add("tensor_huge", "tensor", 8, False, R, C, [0.25], [128], x=hv)
    row_scales = rand_scales(R, 0.02, 0.5)
    row_scales[3] = MIN_SCALE
    add("row_u3", "row", 3, False, R, C, row_scales, rng.integers(0, 8, size=R))
    add("row_s7", "row", 7, True, R, C, np.exp2(rng.integers(-6, 0, size=R)).astype(F32), np.zeros(R))
    add("column_u6", "column", 6, False, R, C, rand_scales(C, 0.01, 0.3), rng.integers(0, 64, size=C))
    add("column_s5", "column", 5, True, R, C, rand_scales(C, 0.05, 0.2), np.zeros(C))
    add("row_group_u4", "row_group", 4, False, R, C, rand_scales(R * C // 8, 0.05, 0.5),
        rng.integers(0, 16, size=R * C // 8), group_size=8)
    cg = rng.integers(0, 4, size=C)
    add("column_map_u8", "column_map", 8, False, R, C, rand_scales(4, 0.01, 0.05), rng.integers(0, 256, size=4),
        column_group=cg)

    # learnable (LSQ: z = 0; LSQ+: raw float z, rounded by the forward)
    add("lsq_tensor_s8", "tensor", 8, True, R, C, [0.03125], [0.0], learnable=True)
    add("lsq_plus_tensor_u4", "tensor", 4, False, R, C, [0.2], [5.3], learnable=True)
    s_fma = F32(0.6405921)
    xf = make_x(rng, np.full((R, C), s_fma), np.full((R, C), F32(3)), 0, 255)
    xf.reshape(-1)[:64] = fma_tie_inputs(rng, s_fma, 3, 64)
    xf.reshape(-1)[64:80] = ((np.array([-3.5, -2.5, 251.5, 252.5, 0.5, 1.5, 2.5, 7.5] * 2)) * np.float64(s_fma))
    add("lsq_plus_tensor_u8_fma", "tensor", 8, False, R, C, [s_fma], [3.0], learnable=True, x=xf)
    add("lsq_plus_row_s4", "row", 4, True, R, C, rand_scales(R, 0.05, 0.3),
        np.array([-1.7, 2.5, -0.5, 0.4, 7.9, -8.6, 3.0, -3.0, 1.5, 0.0, 6.49, -2.51], dtype=F32), learnable=True)
    add("lsq_plus_column_u8", "column", 8, False, R, C, rand_scales(C, 0.005, 0.05),
        rng.uniform(-2, 257, size=C).astype(F32), learnable=True)
    add("lsq_row_group_s3", "row_group", 3, True, R, C, rand_scales(R * C // 8, 0.1, 0.6), np.zeros(R * C // 8),
        group_size=8, learnable=True)
    add("lsq_plus_column_map_u5", "column_map", 5, False, R, C, rand_scales(3, 0.02, 0.2),
        np.array([4.2, 17.5, 30.0], dtype=F32), column_group=rng.integers(0, 3, size=C), learnable=True)

    logs = []
    for name, bits, sqrt2, scale in [("log2_b4_s1", 4, False, 1.0), ("log2_b3_s05", 3, False, 0.5),
                                     ("log2_b8_s075", 8, False, 0.75), ("log_sqrt2_b4_s07", 4, True, 0.7),
                                     ("log_sqrt2_b8_s1", 8, True, 1.0)]:
        log_case(tensors, rng, name, bits, sqrt2, scale)
        logs.append(name)

    ties = sum(v[0] for v in stats.values())
    fused_only = sum(v[1] for v in stats.values())
    assert ties > 500 and fused_only > 60, (ties, fused_only)
    worst_sum = max(v[2] for v in stats.values())
    meta = {
        "uniform_cases": ",".join(uniform),
        "log_cases": ",".join(logs),
        "exact_ties": str(ties),
        "learnable_fused_rounding_differs": str(fused_only),
        "torch_sum_vs_float64_max_rel": f"{worst_sum:.3e}",
        "layout_tensor": "[axis (qft_fq_axis), qmin, qmax, group_size, learnable]",
        "grad_sums": "dscale/dzero: torch; *_exact: float64 sum of torch's per-element terms; *_abs: sum of |terms|",
        "seed": str(SEED),
        "torch_version": torch.__version__,
        "aten_cpu_capability": os.environ["ATEN_CPU_CAPABILITY"],
        "generator": "tests/oracle/make_quant_goldens.py",
    }
    meta.update(check_torch_facts())
    path = os.path.join(args.out, "quant_ops.safetensors")
    st_io.save(path, tensors, meta)
    print(f"wrote {path} ({os.path.getsize(path)} bytes): {len(uniform)} uniform cases, {len(logs)} log cases, "
          f"{ties} exact ties, {fused_only} fused-rounding points, torch sum vs float64 <= {worst_sum:.2e}")


if __name__ == "__main__":
    main()
