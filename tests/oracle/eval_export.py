"""Loads a ViT exported by qft (runs/<name>/model.safetensors, Hugging Face names) into the
plain-torch ViTForImageClassification of models.py and evaluates it on the first N Fashion-MNIST
test images with qft's normalization; prints one JSON line (loss, accuracy) to compare with
`qft eval`. Proves the export loads back in PyTorch and means the same model there.

usage: /usr/bin/python3 tests/oracle/eval_export.py MODEL.safetensors N [key=value model dims...]
"""
import gzip
import json
import os
import struct
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import models  # noqa: E402
import st_io  # noqa: E402

FMNIST = "/usr/share/datasets/fashion-mnist"


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic = struct.unpack(">I", data[:4])[0]
    if magic == 0x803:
        n, rows, cols = struct.unpack(">III", data[4:16])
        return np.frombuffer(data, np.uint8, offset=16).reshape(n, rows, cols)
    n = struct.unpack(">I", data[4:8])[0]
    return np.frombuffer(data, np.uint8, offset=8)


def main():
    path, count = sys.argv[1], int(sys.argv[2])
    dims = dict(hidden_size=64, num_layers=4, num_heads=4, intermediate_size=256, image_size=28,
                patch_size=7, num_channels=1, num_labels=10, layer_norm_eps=1e-6)
    mean, std = 0.2860, 0.3530
    for arg in sys.argv[3:]:
        key, value = arg.split("=", 1)
        if key == "mean":
            mean = float(value)
        elif key == "std":
            std = float(value)
        else:
            dims[key] = type(dims[key])(value)
    torch.set_num_threads(1)
    model = models.build("vit", **dims).float().eval()
    tensors, _ = st_io.load(path)
    models.load_state(model, tensors)
    images = read_idx(os.path.join(FMNIST, "t10k-images-idx3-ubyte.gz"))[:count]
    labels = read_idx(os.path.join(FMNIST, "t10k-labels-idx1-ubyte.gz"))[:count]
    # qft: x * (1 / (255 * std)) - mean / std, in float32
    x = torch.from_numpy(images.astype(np.float32)).unsqueeze(1)
    x = x * np.float32(1.0 / (255.0 * std)) - np.float32(mean / std)
    y = torch.from_numpy(labels.astype(np.int64))
    with torch.no_grad():
        logits = model(x)["logits"]
        loss = torch.nn.functional.cross_entropy(logits.double(), y).item()
        accuracy = (logits.argmax(-1) == y).double().mean().item()
    print(json.dumps({"examples": count, "loss": loss, "accuracy": accuracy}))


if __name__ == "__main__":
    main()
