#!/usr/bin/env python3
"""Convert a PyTorch checkpoint (pytorch_model.bin, a pickled state dict) into model.safetensors.

    /usr/bin/python3 datasets/convert_pytorch_bin.py pytorch_model.bin [model.safetensors] [--dtype keep|F32|F16|BF16]

* Loads with torch.load(map_location="cpu", weights_only=True) when this torch supports it.
* Refuses anything that is not a flat state dict of name -> tensor (a dict holding "state_dict" or
  "model" is unwrapped with a note; anything else is an error).
* Keeps every name. Shared / tied tensors (e.g. BERT's decoder weight tied to the word embeddings)
  are written once per name, each as its own copy. Non-contiguous tensors are made contiguous.
* dtypes F32, F16 and BF16 are written as is (BF16 as its raw 16 bits); F64 and integer tensors too.
  --dtype casts every floating tensor to one dtype.
* The safetensors file is written by hand (no safetensors package): 8-byte little-endian header
  length, JSON header padded with spaces to a multiple of 8, raw little-endian data.
"""
import argparse
import json
import os
import struct
import sys

import torch

_CODES = {
    torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
    torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8",
    torch.uint8: "U8", torch.bool: "BOOL",
}
_CASTS = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}


def _load(path):
    kwargs = {"map_location": "cpu"}
    try:
        return torch.load(path, weights_only=True, **kwargs)
    except TypeError:  # torch < 1.13: no weights_only
        return torch.load(path, **kwargs)


def _state_dict(obj, path):
    if isinstance(obj, dict) and obj and not all(isinstance(v, torch.Tensor) for v in obj.values()):
        for key in ("state_dict", "model"):
            if isinstance(obj.get(key), dict):
                print(f"{path}: using the '{key}' entry", file=sys.stderr)
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj:
        raise SystemExit(f"{path}: not a state dict (got {type(obj).__name__})")
    for name, t in obj.items():
        if not isinstance(name, str):
            raise SystemExit(f"{path}: not a state dict (key {name!r} is not a string)")
        if not isinstance(t, torch.Tensor):
            raise SystemExit(f"{path}: not a state dict ('{name}' is a {type(t).__name__}, not a tensor)")
        if t.layout != torch.strided or t.is_quantized:
            raise SystemExit(f"{path}: '{name}': sparse or quantized tensors are not supported")
        if t.dtype not in _CODES:
            raise SystemExit(f"{path}: '{name}': unsupported dtype {t.dtype}")
    return obj


def _raw_bytes(t):
    """Little-endian bytes of a contiguous CPU tensor (a private copy: shared storage is not reused)."""
    t = t.detach().cpu().contiguous()
    if t.dtype == torch.bfloat16:  # numpy has no bf16: reinterpret the bits as int16
        t = t.view(torch.int16)
    a = t.numpy()
    if a.dtype.byteorder == ">" or (a.dtype.byteorder == "=" and sys.byteorder == "big"):
        a = a.byteswap().newbyteorder()
    return a.tobytes(order="C")


def save_safetensors(path, tensors, metadata=None):
    header = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    blobs, offset = [], 0
    for name, t in tensors.items():
        raw = _raw_bytes(t)
        header[name] = {"dtype": _CODES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    hjson = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hjson += b" " * ((8 - len(hjson) % 8) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(hjson)))
        f.write(hjson)
        for raw in blobs:
            f.write(raw)
    os.replace(tmp, path)


def convert(src, dst, dtype="keep"):
    sd = _state_dict(_load(src), src)
    out, seen = {}, {}
    shared = 0
    for name, t in sd.items():
        key = (t.data_ptr(), t.dtype, tuple(t.shape), tuple(t.stride()))
        if t.numel() and key in seen:
            shared += 1
        seen.setdefault(key, name)
        if dtype != "keep" and t.is_floating_point():
            t = t.to(_CASTS[dtype])
        out[name] = t.clone()  # own copy: tied tensors become independent, views contiguous
    save_safetensors(dst, out, {"format": "pt"})
    return len(out), shared


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("src", help="pytorch_model.bin")
    ap.add_argument("dst", nargs="?", help="output (default: model.safetensors next to src)")
    ap.add_argument("--dtype", default="keep", choices=["keep", "F32", "F16", "BF16"])
    args = ap.parse_args(argv)
    dst = args.dst or os.path.join(os.path.dirname(os.path.abspath(args.src)), "model.safetensors")
    n, shared = convert(args.src, dst, args.dtype)
    print(f"{dst}: {n} tensors ({shared} shared with an earlier name, copied)")


if __name__ == "__main__":
    main()
