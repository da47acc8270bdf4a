#!/usr/bin/python3
"""Writes tests/golden/transform_eval.bin: torchvision's PIL transforms on small real images.

Each case holds the encoded file (JPEG or PNG made from a Fashion-MNIST test image, upscaled with PIL
and tinted), PIL's decoded RGB (libjpeg), and torchvision's output computed from that decode: the
8-bit pixels before ToTensor and the normalized float tensor. tests/test_imagefolder.c decodes the
same bytes with stb_image and checks qft's transforms against both.

Needs Debian's python3-pil and python3-torchvision for /usr/bin/python3. Deterministic.
usage: /usr/bin/python3 tests/oracle/transform_oracle.py   (from the repository root)

Format, little-endian: b"QFTTRF01", u32 case count, then per case:
  u32 kind (0 eval: Resize(resize) + CenterCrop(crop); 1 train: resized_crop(top, left, h, w, crop) + flip)
  u32 crop, u32 resize, u32 interpolation (0 bilinear, 1 bicubic), i32 top, left, height, width, flip
  f32 mean[3], f32 std[3]
  u32 encoded size, encoded bytes; u32 width, u32 height, u8 decoded[h * w * 3]
  u8 expected pixels[crop * crop * 3] (HWC); u32 has_tensor; if 1, f32 expected tensor[3 * crop * crop]
  (CHW; only a few cases carry it, to keep the file small: the pixels already pin everything else)
"""
import gzip
import io
import struct

import numpy as np
import torch
import torchvision.transforms as T
import torchvision.transforms.functional as F
from PIL import Image

FASHION = "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz"
IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
HALF = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
MODES = {0: T.InterpolationMode.BILINEAR, 1: T.InterpolationMode.BICUBIC}


def fashion_images(n):
    with gzip.open(FASHION, "rb") as f:
        _, count, rows, cols = struct.unpack(">IIII", f.read(16))
        data = np.frombuffer(f.read(n * rows * cols), dtype=np.uint8).reshape(n, rows, cols)
    return data


def source_image(gray, size, tint, fmt, **save):
    im = Image.fromarray(gray, "L").resize(size, Image.BILINEAR)
    a = np.asarray(im, dtype=np.float32)[:, :, None] * np.array(tint, dtype=np.float32)[None, None, :]
    rgb = Image.fromarray(np.clip(a + 20, 0, 255).astype(np.uint8), "RGB")
    buf = io.BytesIO()
    rgb.save(buf, format=fmt, **save)
    return buf.getvalue()


def main():
    g = fashion_images(16)
    cases = [
        # kind, image bytes, crop, resize, interp, (top, left, h, w, flip), norm
        (0, source_image(g[0], (64, 48), (1.0, 0.6, 0.3), "JPEG", quality=90), 32, 37, 0, None, IMAGENET),
        (0, source_image(g[1], (45, 61), (0.4, 0.9, 1.0), "JPEG", quality=75), 32, 37, 0, None, HALF),
        (0, source_image(g[2], (50, 37), (0.9, 0.9, 0.5), "PNG"), 32, 37, 0, None, IMAGENET),
        (0, source_image(g[3], (61, 75), (0.8, 0.5, 0.9), "PNG"), 48, 55, 0, None, IMAGENET),
        (0, source_image(g[4], (20, 26), (0.7, 1.0, 0.7), "PNG"), 32, 37, 0, None, IMAGENET),
        (0, source_image(g[5], (50, 37), (0.9, 0.9, 0.5), "PNG"), 32, 37, 1, None, IMAGENET),
        (0, source_image(g[6], (70, 52), (1.0, 1.0, 1.0), "JPEG", quality=95, subsampling=0), 32, 37, 0, None, IMAGENET),
        (1, source_image(g[7], (64, 48), (1.0, 0.6, 0.3), "JPEG", quality=90), 32, 0, 0, (5, 7, 30, 41, 1), IMAGENET),
        (1, source_image(g[8], (50, 37), (0.5, 0.6, 1.0), "PNG"), 32, 0, 1, (3, 4, 12, 10, 0), IMAGENET),
        (1, source_image(g[9], (61, 75), (0.8, 0.5, 0.9), "PNG"), 24, 0, 0, (10, 2, 60, 50, 1), HALF),
    ]
    out = bytearray(b"QFTTRF01" + struct.pack("<I", len(cases)))
    with_tensor = {0, 1, 7, 9}
    for case, (kind, encoded, crop, resize, interp, params, (mean, std)) in enumerate(cases):
        img = Image.open(io.BytesIO(encoded)).convert("RGB")
        if kind == 0:
            pil = T.Compose([T.Resize(resize, interpolation=MODES[interp]), T.CenterCrop(crop)])(img)
            top = left = height = width = flip = 0
        else:
            top, left, height, width, flip = params
            pil = F.resized_crop(img, top, left, height, width, [crop, crop], interpolation=MODES[interp])
            if flip:
                pil = F.hflip(pil)
        tensor = T.Normalize(mean, std)(T.ToTensor()(pil))
        assert pil.size == (crop, crop)
        decoded = np.asarray(img, dtype=np.uint8)
        out += struct.pack("<4I5i", kind, crop, resize, interp, top, left, height, width, flip)
        out += struct.pack("<6f", *mean, *std)
        out += struct.pack("<I", len(encoded)) + encoded
        out += struct.pack("<II", img.size[0], img.size[1]) + decoded.tobytes()
        out += np.asarray(pil, dtype=np.uint8).tobytes()
        out += struct.pack("<I", case in with_tensor)
        if case in with_tensor:
            out += tensor.numpy().astype("<f4").tobytes()
    with open("tests/golden/transform_eval.bin", "wb") as f:
        f.write(out)
    print("tests/golden/transform_eval.bin: %d cases, %d bytes" % (len(cases), len(out)))


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
