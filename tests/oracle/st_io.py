"""Minimal safetensors reader/writer (numpy only; torch tensors accepted on write).

Format (https://github.com/huggingface/safetensors, "Format" section):
  8 bytes   little-endian u64 N = length of the JSON header in bytes (padding included)
  N bytes   JSON object {name: {"dtype": "F32", "shape": [...], "data_offsets": [begin, end]}, ...}
            plus an optional "__metadata__": {str: str}; padded with spaces to a multiple of 8
  rest      raw little-endian tensor data; data_offsets are relative to the start of this block

Tensors are written in the order given (dict insertion order), each contiguous, C order, so a
regenerated file is byte-identical when the values are.
"""
import json
import struct

import numpy as np

_DTYPES = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"),
    "I8": np.dtype("i1"),
    "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
}
_NAMES = {np.dtype(v).str: k for k, v in _DTYPES.items()}


def _to_numpy(x):
    if hasattr(x, "detach"):  # torch.Tensor, without importing torch here
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def save(path, tensors, metadata=None):
    """tensors: dict name -> numpy array or torch tensor (dtype kept as is: cast before calling).
    metadata: dict str -> str (stored under "__metadata__")."""
    header = {}
    if metadata:
        for k, v in metadata.items():
            if not isinstance(k, str) or not isinstance(v, str):
                raise TypeError(f"metadata must be str -> str, got {k!r}: {type(v).__name__}")
        header["__metadata__"] = dict(metadata)
    blobs = []
    offset = 0
    for name, t in tensors.items():
        if name == "__metadata__":
            raise ValueError("reserved tensor name")
        a = _to_numpy(t)
        dt = a.dtype.newbyteorder("<") if a.dtype.byteorder == ">" else a.dtype
        if dt.str not in _NAMES:
            raise TypeError(f"{name}: unsupported dtype {a.dtype}")
        a = np.ascontiguousarray(a, dtype=dt)
        code = _NAMES[dt.str]
        raw = a.tobytes(order="C")
        header[name] = {"dtype": code, "shape": list(a.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    hjson = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hjson += b" " * ((8 - len(hjson) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hjson)))
        f.write(hjson)
        for raw in blobs:
            f.write(raw)


def load(path):
    """Returns (tensors: dict name -> numpy array, metadata: dict or {})."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n].decode("utf-8"))
    meta = header.pop("__metadata__", {}) or {}
    base = 8 + n
    out = {}
    for name, info in header.items():
        dt = _DTYPES[info["dtype"]]
        b, e = info["data_offsets"]
        a = np.frombuffer(data[base + b:base + e], dtype=dt)
        out[name] = a.reshape(info["shape"]).copy()
    return out, meta
