#!/usr/bin/env python3
"""Checks a safetensors file written by qft with independent readers.

Always: the file opens in the Hugging Face `safetensors` package (its strict header validation) and,
when importable, in PyTorch; the values they return equal an independent numpy parse of the raw bytes
(BF16 decoded by bit shifting, since numpy has no bfloat16).

With --pattern: the file must be the deterministic one that tests/test_safetensors.c writes when
QFT_SAFETENSORS_EXPORT=<path> is set; every value is compared with numpy's own fp32 -> fp16 rounding
and a numpy round-to-nearest-even fp32 -> bf16, bit for bit (NaN compared as NaN).

    QFT_SAFETENSORS_EXPORT=/tmp/p.safetensors ./build/test_safetensors
    python3 tests/oracle/check_safetensors_export.py /tmp/p.safetensors --pattern

Prints one JSON line; exits 0 on success, 1 on any mismatch, 2 when numpy is missing.
"""
import argparse
import json
import struct
import sys

try:
    import numpy as np
except ImportError:  # pragma: no cover
    print(json.dumps({"ok": False, "error": "numpy not installed"}))
    sys.exit(2)

NUMPY_DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4", "I16": "<i2",
                "I8": "i1", "U64": "<u8", "U32": "<u4", "U16": "<u2", "U8": "u1", "BOOL": "?"}


def raw_parse(path):
    """Independent reader: header JSON + numpy views. Returns (metadata, {name: array}, header_len)."""
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n].decode("utf-8"))
    data = blob[8 + n:]
    metadata = header.pop("__metadata__", {})
    tensors = {}
    for name, info in header.items():
        begin, end = info["data_offsets"]
        raw = data[begin:end]
        shape = tuple(info["shape"])
        if info["dtype"] == "BF16":
            bits = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
            tensors[name] = bits.view(np.float32).reshape(shape)
        else:
            tensors[name] = np.frombuffer(raw, dtype=NUMPY_DTYPES[info["dtype"]]).reshape(shape)
    return metadata, tensors, n, {k: v["dtype"] for k, v in header.items()}


def same(a, b):
    a = np.asarray(a)
    b = np.asarray(b)
    if a.shape != b.shape:
        return False
    if a.dtype.kind == "f" or b.dtype.kind == "f":
        a64, b64 = a.astype(np.float64), b.astype(np.float64)
        both_nan = np.isnan(a64) & np.isnan(b64)
        return bool(np.all(both_nan | (a64 == b64)))
    return bool(np.array_equal(a, b))


def pattern_source():
    """Mirror of pattern_bits() in tests/test_safetensors.c."""
    specials = [0x7f800000, 0xff800000, 0x7fc00000, 0x80000000, 0x3f801000, 0x3f803000,
                0x3f808000, 0x3f818000, 0x33000000, 0x477ff000, 0x00000001]
    bits = []
    for i in range(111):
        if i < len(specials):
            bits.append(specials[i])
            continue
        h = (i * 2654435761 + 12345) & 0xffffffff
        mixed = h ^ (h >> 15)
        bits.append((mixed & 0x80000000) | ((100 + (h >> 5) % 60) << 23) | (mixed & 0x7fffff))
    return np.array(bits, dtype=np.uint32)


def bf16_round(bits):
    """fp32 bits -> bf16 bits, round to nearest even; NaN -> quiet NaN."""
    bits = bits.astype(np.uint64)
    rounded = ((bits + 0x7fff + ((bits >> 16) & 1)) >> 16).astype(np.uint16)
    nan = (bits & 0x7fffffff) > 0x7f800000
    rounded[nan] = ((bits[nan] >> 16) | 0x40).astype(np.uint16)
    return rounded


def check_pattern(tensors, dtypes, metadata, problems):
    src_bits = pattern_source()
    src = src_bits.view(np.float32)
    if metadata.get("qft.pattern") != "1" or metadata.get("format") != "pt":
        problems.append(f"metadata {metadata}")
    expect_dtype = {"pattern.f32": "F32", "pattern.f16": "F16", "pattern.bf16": "BF16",
                    "pattern.i32": "I32", "pattern.i64": "I64", "pattern.scalar": "F32"}
    for name, dtype in expect_dtype.items():
        if dtypes.get(name) != dtype:
            problems.append(f"{name}: dtype {dtypes.get(name)}, expected {dtype}")
    if problems:
        return
    if not same(tensors["pattern.f32"].reshape(-1), src) or \
            not np.array_equal(tensors["pattern.f32"].reshape(-1).view(np.uint32), src_bits):
        problems.append("pattern.f32: not bit-exact")
    with np.errstate(over="ignore"):
        want_f16 = src.astype(np.float16)  # numpy rounds fp32 -> fp16 to nearest even
    got_f16 = tensors["pattern.f16"].reshape(-1)
    if not same(got_f16, want_f16):
        bad = np.nonzero(~((got_f16 == want_f16) | (np.isnan(got_f16) & np.isnan(want_f16))))[0]
        problems.append(f"pattern.f16: {len(bad)} elements differ from numpy, first at {bad[:5].tolist()}")
    got_bf16 = tensors["pattern.bf16"].reshape(-1).view(np.uint32) >> 16
    want_bf16 = bf16_round(src_bits)
    nan = np.isnan(tensors["pattern.bf16"].reshape(-1))
    if not (np.array_equal(got_bf16[~nan], want_bf16[~nan]) and
            np.array_equal(nan, (want_bf16 & 0x7fff) > 0x7f80)):
        problems.append("pattern.bf16: differs from round-to-nearest-even")
    i = np.arange(111, dtype=np.uint64)
    want_i32 = ((i * 2654435761) & 0xffffffff).astype(np.uint32).view(np.int32)
    if not np.array_equal(tensors["pattern.i32"], want_i32):
        problems.append("pattern.i32: values differ")
    i = np.arange(111, dtype=np.int64)
    want_i64 = i * 1000000007 * 1000 * np.where(i % 2 == 1, -1, 1)
    if not np.array_equal(tensors["pattern.i64"], want_i64):
        problems.append("pattern.i64: values differ")
    if tensors["pattern.scalar"].shape != () or float(tensors["pattern.scalar"]) != 0.5:
        problems.append("pattern.scalar: expected a 0-d 0.5")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("path")
    parser.add_argument("--pattern", action="store_true", help="check the test_safetensors export pattern")
    args = parser.parse_args()

    problems, readers = [], ["numpy-raw"]
    metadata, tensors, header_len, dtypes = raw_parse(args.path)
    if header_len % 8 != 0:
        problems.append(f"header length {header_len} is not a multiple of 8")

    try:
        from safetensors import safe_open
    except ImportError:
        safe_open = None
    if safe_open is not None:
        readers.append("safetensors")
        with safe_open(args.path, framework="numpy") as f:  # validates offsets, dtypes, coverage
            if (f.metadata() or {}) != metadata:
                problems.append(f"safetensors metadata {f.metadata()} != {metadata}")
            if sorted(f.keys()) != sorted(tensors):
                problems.append("safetensors sees different tensor names")
            for name in f.keys():
                if dtypes[name] == "BF16":
                    continue  # numpy has no bfloat16; torch below covers it
                if not same(f.get_tensor(name), tensors[name]):
                    problems.append(f"{name}: safetensors value differs from the raw parse")
    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None:
        readers.append("torch")
        from safetensors.torch import load_file
        for name, t in load_file(args.path).items():
            if not same(t.float().numpy() if t.dtype == torch.bfloat16 else t.numpy(), tensors[name]):
                problems.append(f"{name}: torch value differs from the raw parse")
    if args.pattern:
        check_pattern(tensors, dtypes, metadata, problems)

    print(json.dumps({"ok": not problems, "file": args.path, "tensors": len(tensors), "readers": readers,
                      "pattern": args.pattern, "problems": problems}))
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())
