#!/usr/bin/env python3
"""Writes a small ImageNet-format folder (<out>/<class>/<files>) made from real Fashion-MNIST images.

By default Python's standard library only (gzip, struct, zlib), so the C tests need no imaging
package: images are written as PNG, BMP and binary PPM, upscaled (bilinear) to varied sizes and
tinted per class. With --jpeg every image is a JPEG written by Pillow, as ImageNet's are (named
*.JPEG; baseline 4:2:0, progressive, 4:4:4 and greyscale in turn); without Pillow the script exits
77 (the tests' "skipped" code). Also writes the files the loader must skip: a corrupt image, one cut
after its header, a text file, plus a hidden file that is ignored. Deterministic: the same bytes on
every run (for --jpeg, with the same Pillow and libjpeg).

usage: make_imagefolder_fixture.py [--jpeg] OUT_DIR [FASHION_MNIST_DIR]
Layout (tests/test_imagefolder.c and tests/cli/imagefolder_train.sh rely on it; EXT is png, bmp or
ppm in turn, or JPEG with --jpeg):
  Sneaker/    3 images                         (uppercase sorts before lowercase)
  bag/        3 images + notes.txt (skipped) + .DS_Store (ignored)
  coat/       2 images + broken.EXT (skipped) + truncated.EXT (header ok, data cut)
  coat/extra/ 1 image (walked after coat's own files)
"""
import gzip
import io
import os
import struct
import sys
import zlib

DEFAULT_DIR = "/usr/share/datasets/fashion-mnist"
# Fashion-MNIST labels used: 7 = sneaker, 8 = bag, 4 = coat
CLASSES = {"Sneaker": 7, "bag": 8, "coat": 4}
TINTS = {"Sneaker": (1.0, 0.55, 0.2), "bag": (0.3, 0.8, 1.0), "coat": (0.9, 0.9, 0.4)}
SIZES = [(64, 48), (48, 64), (37, 50), (80, 40), (30, 30)]


def read_idx(images_path, labels_path, limit):
    with gzip.open(images_path, "rb") as f:
        magic, count, rows, cols = struct.unpack(">IIII", f.read(16))
        assert magic == 0x803, images_path
        count = min(count, limit)
        pixels = f.read(count * rows * cols)
    with gzip.open(labels_path, "rb") as f:
        magic, _ = struct.unpack(">II", f.read(8))
        assert magic == 0x801, labels_path
        labels = f.read(count)
    images = [pixels[i * rows * cols:(i + 1) * rows * cols] for i in range(count)]
    return images, labels, rows, cols


def upscale_rgb(gray, rows, cols, width, height, tint, background):
    """Bilinear resize of a 28x28 grey image to width x height, tinted: bytes RGB rows."""
    out = bytearray(width * height * 3)
    for y in range(height):
        sy = min(max((y + 0.5) * rows / height - 0.5, 0.0), rows - 1.0)
        y0 = int(sy)
        y1 = min(y0 + 1, rows - 1)
        fy = sy - y0
        for x in range(width):
            sx = min(max((x + 0.5) * cols / width - 0.5, 0.0), cols - 1.0)
            x0 = int(sx)
            x1 = min(x0 + 1, cols - 1)
            fx = sx - x0
            v = ((gray[y0 * cols + x0] * (1 - fx) + gray[y0 * cols + x1] * fx) * (1 - fy)
                 + (gray[y1 * cols + x0] * (1 - fx) + gray[y1 * cols + x1] * fx) * fy)
            for c in range(3):
                value = background[c] + v * tint[c] * (255 - background[c]) / 255.0
                out[(y * width + x) * 3 + c] = max(0, min(255, int(value + 0.5)))
    return bytes(out)


def png_bytes(rgb, width, height):
    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)
    raw = b"".join(b"\x00" + rgb[y * width * 3:(y + 1) * width * 3] for y in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def bmp_bytes(rgb, width, height):
    stride = (width * 3 + 3) & ~3
    rows = []
    for y in range(height - 1, -1, -1):  # bottom-up, BGR
        row = bytearray()
        for x in range(width):
            r, g, b = rgb[(y * width + x) * 3:(y * width + x) * 3 + 3]
            row += bytes((b, g, r))
        rows.append(bytes(row) + b"\x00" * (stride - width * 3))
    data = b"".join(rows)
    header = struct.pack("<2sIHHI", b"BM", 54 + len(data), 0, 0, 54)
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, len(data), 2835, 2835, 0, 0)
    return header + info + data


def ppm_bytes(rgb, width, height):
    return b"P6\n%d %d\n255\n" % (width, height) + rgb


WRITERS = [("png", png_bytes), ("bmp", bmp_bytes), ("ppm", ppm_bytes)]


def jpeg_writers():
    """JPEG encoders (Pillow), one per encoding the loader must read; exits 77 without Pillow."""
    try:
        from PIL import Image
    except ImportError:
        print("make_imagefolder_fixture.py: --jpeg needs Pillow (apt-get install python3-pil)", file=sys.stderr)
        sys.exit(77)

    def writer(mode, **options):
        def write(rgb, width, height):
            image = Image.frombytes("RGB", (width, height), rgb).convert(mode)
            buffer = io.BytesIO()
            image.save(buffer, "JPEG", **options)
            return buffer.getvalue()
        return write

    return [("JPEG", writer("RGB", quality=90)), ("JPEG", writer("RGB", quality=85, progressive=True)),
            ("JPEG", writer("RGB", quality=95, subsampling=0)), ("JPEG", writer("L", quality=90))]


def bad_files(writers, sample):
    """(name, bytes) of the two broken images: garbage after the format's magic, and a good file cut
    just after its header (PNG: after IHDR; JPEG: inside the first scan, so libjpeg reads the header)."""
    ext, writer = writers[0]
    good = writer(sample, 40, 40)
    if ext == "JPEG":
        return [("broken.JPEG", b"\xff\xd8\xff\xe0" + bytes(range(256)) * 2),
                ("truncated.JPEG", good[:good.index(b"\xff\xda") + 40])]
    return [("broken.png", b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 2), ("truncated.png", good[:60])]


def main():
    args = sys.argv[1:]
    writers = WRITERS
    if args[:1] == ["--jpeg"]:
        args = args[1:]
        writers = jpeg_writers()
    if not args:
        sys.exit(__doc__)
    out = args[0]
    source = args[1] if len(args) > 1 else DEFAULT_DIR
    images, labels, rows, cols = read_idx(os.path.join(source, "t10k-images-idx3-ubyte.gz"),
                                          os.path.join(source, "t10k-labels-idx1-ubyte.gz"), 200)
    counts = {"Sneaker": [("", 3)], "bag": [("", 3)], "coat": [("", 2), ("extra", 1)]}
    serial = 0
    for name, label in CLASSES.items():
        picks = [i for i in range(len(images)) if labels[i] == label]
        used = 0
        for sub, n in counts[name]:
            folder = os.path.join(out, name, sub) if sub else os.path.join(out, name)
            os.makedirs(folder, exist_ok=True)
            for k in range(n):
                width, height = SIZES[serial % len(SIZES)]
                ext, writer = writers[serial % len(writers)]
                serial += 1
                background = (20 * (used % 3), 10, 30)
                rgb = upscale_rgb(images[picks[used]], rows, cols, width, height, TINTS[name], background)
                with open(os.path.join(folder, "img_%02d.%s" % (used, ext)), "wb") as f:
                    f.write(writer(rgb, width, height))
                used += 1
    with open(os.path.join(out, "bag", "notes.txt"), "w") as f:
        f.write("not an image\n")
    with open(os.path.join(out, "bag", ".DS_Store"), "wb") as f:
        f.write(b"\x00\x00\x00\x01Bud1")
    sample = upscale_rgb(images[0], rows, cols, 40, 40, (1, 1, 1), (0, 0, 0))
    for name, data in bad_files(writers, sample):
        with open(os.path.join(out, "coat", name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()
