"""Reads a safetensors file's tensors as raw bytes (stdlib only), for the CLI tests' comparisons."""
import json
import struct


def tensors(path, dtype="F32"):
    """{name: raw little-endian bytes} of the tensors of `dtype` (None = every dtype)."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__" or (dtype and info["dtype"] != dtype):
            continue
        a, b = info["data_offsets"]
        out[name] = data[a:b]
    return out
