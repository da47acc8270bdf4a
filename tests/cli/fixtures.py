#!/usr/bin/env python3
# Bad-input fixtures for the CLI tests (safetensors and IDX), built with the standard library only.
# Each subcommand writes one file or directory; the shell tests decide what qft must say about it.
import gzip
import json
import os
import struct
import sys

DTYPE_SIZE = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}


def read_safetensors(path):
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n])
    data = blob[8 + n:]
    meta = header.pop("__metadata__", None)
    tensors = {}
    for name, info in header.items():
        start, end = info["data_offsets"]
        tensors[name] = {"dtype": info["dtype"], "shape": list(info["shape"]), "data": data[start:end]}
    return meta, tensors


def write_safetensors(path, meta, tensors):
    header, chunks, offset = {}, [], 0
    if meta is not None:
        header["__metadata__"] = meta
    for name, t in tensors.items():
        header[name] = {"dtype": t["dtype"], "shape": t["shape"], "data_offsets": [offset, offset + len(t["data"])]}
        chunks.append(t["data"])
        offset += len(t["data"])
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the format pads the header to 8 bytes
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(chunks))


def numel(shape):
    n = 1
    for d in shape:
        n *= d
    return n


def pick(tensors, name):
    if name in tensors:
        return name
    # Default: the first 2-D weight, so the broken tensor is one every model must load.
    for k, t in tensors.items():
        if len(t["shape"]) == 2 and k.endswith("weight"):
            return k
    raise SystemExit("fixtures.py: no tensor to modify")


def cmd_truncate(src, dst, keep):
    with open(src, "rb") as f:
        blob = f.read()
    keep = int(keep)
    if keep < 0:
        keep = len(blob) + keep
    with open(dst, "wb") as f:
        f.write(blob[:keep])


def cmd_oversized_header(dst):
    # A header length of 2^40 bytes followed by a little JSON: must be refused before any allocation.
    with open(dst, "wb") as f:
        f.write(struct.pack("<Q", 1 << 40) + b'{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}' + b"\0" * 4)


def cmd_raw_header(dst, text):
    # A length field that matches whatever header text is given (for "not JSON" and friends).
    blob = text.encode()
    with open(dst, "wb") as f:
        f.write(struct.pack("<Q", len(blob)) + blob)


def cmd_dtype(src, dst, name, dtype):
    meta, tensors = read_safetensors(src)
    name = pick(tensors, name)
    t = tensors[name]
    t["dtype"] = dtype
    t["data"] = b"\x01" * (numel(t["shape"]) * DTYPE_SIZE[dtype])
    write_safetensors(dst, meta, tensors)
    print(name)


def cmd_shape(src, dst, name):
    meta, tensors = read_safetensors(src)
    name = pick(tensors, name)
    t = tensors[name]
    t["shape"] = [t["shape"][0] + 1] + t["shape"][1:]
    t["data"] = b"\0" * (numel(t["shape"]) * DTYPE_SIZE[t["dtype"]])
    write_safetensors(dst, meta, tensors)
    print(name)


def cmd_nan(src, dst, name):
    meta, tensors = read_safetensors(src)
    name = pick(tensors, name)
    t = tensors[name]
    t["data"] = struct.pack("<f", float("nan")) * numel(t["shape"])
    write_safetensors(dst, meta, tensors)
    print(name)


def cmd_drop(src, dst, name):
    meta, tensors = read_safetensors(src)
    name = pick(tensors, name)
    del tensors[name]
    write_safetensors(dst, meta, tensors)
    print(name)


def cmd_names(src):
    _, tensors = read_safetensors(src)
    for k, t in tensors.items():
        print(k, t["dtype"], "x".join(map(str, t["shape"])))


def write_idx(path, magic, dims, payload, raw=False):
    blob = struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in dims) + payload
    opener = open if raw else gzip.open
    with opener(path, "wb") as f:
        f.write(blob)


def cmd_idx(out_dir, *opts):
    """A small valid Fashion-MNIST-shaped set; options break one thing:
    count=N rows=R cols=C labels=N max_label=K image_magic=0x.. label_magic=0x..
    huge_count=1 (both headers claim 2^31-1 examples; the data holds `count`)
    short=1 (complete gzip streams whose pixel payload stops halfway)"""
    o = dict(kv.split("=", 1) for kv in opts)
    count, rows, cols = int(o.get("count", 64)), int(o.get("rows", 28)), int(o.get("cols", 28))
    nlabels = int(o.get("labels", count))
    max_label = int(o.get("max_label", 9))
    image_magic, label_magic = int(o.get("image_magic", "0x803"), 0), int(o.get("label_magic", "0x801"), 0)
    os.makedirs(out_dir, exist_ok=True)
    pixels = bytes((i * 37 + (i // (rows * cols)) * 11) % 256 for i in range(count * rows * cols))
    labels = bytes(i % (max_label + 1) for i in range(nlabels))
    declared = 0x7FFFFFFF if o.get("huge_count") else count
    if o.get("short"):
        pixels = pixels[:len(pixels) // 2]
    for stem in ("train", "t10k"):
        write_idx(os.path.join(out_dir, stem + "-images-idx3-ubyte.gz"), image_magic, [declared, rows, cols], pixels)
        write_idx(os.path.join(out_dir, stem + "-labels-idx1-ubyte.gz"), label_magic,
                  [declared if o.get("huge_count") else nlabels], labels)


def main(argv):
    commands = {
        "truncate": cmd_truncate, "oversized-header": cmd_oversized_header, "raw-header": cmd_raw_header, "dtype": cmd_dtype,
        "shape": cmd_shape, "nan": cmd_nan, "drop": cmd_drop, "names": cmd_names, "idx": cmd_idx,
    }
    if len(argv) < 2 or argv[1] not in commands:
        raise SystemExit("usage: fixtures.py {%s} ..." % "|".join(commands))
    commands[argv[1]](*argv[2:])


if __name__ == "__main__":
    main(sys.argv)
