#!/usr/bin/env python3
"""Reference side of benchmarks/bench_loader.sh: PIL decode + torchvision transforms, one process.

Eval: Resize(256) + CenterCrop(224) + ToTensor + Normalize; train: RandomResizedCrop(224) +
RandomHorizontalFlip + ToTensor + Normalize (ImageNet mean/std), on ImageFolder's file list, as a
DataLoader worker does per sample (no batching/collate). Falls back to PIL-only transforms (no
tensor conversion) when torchvision is missing, and says so in the JSON line.

usage: bench_loader_torch.py FOLDER eval|train EPOCHS [--threads N]
       bench_loader_torch.py FOLDER breakdown 1   (eval time per image: decode, resize + crop, to tensor)
"""
import argparse
import json
import os
import random
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("folder")
    ap.add_argument("transform", choices=["eval", "train", "breakdown"])
    ap.add_argument("epochs", type=int)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    from PIL import Image
    try:
        import torch
        import torchvision
        from torchvision import transforms as T
        torch.set_num_threads(args.threads)
        have_tv = True
    except ImportError:
        have_tv = False
    files = []
    for cls in sorted(os.listdir(args.folder)):
        d = os.path.join(args.folder, cls)
        files += [os.path.join(d, f) for f in sorted(os.listdir(d))]
    if have_tv:
        norm = T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
        if args.transform == "eval":
            tf = T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor(), norm])
        else:
            tf = T.Compose([T.RandomResizedCrop(224), T.RandomHorizontalFlip(), T.ToTensor(), norm])
        torch.manual_seed(1)
    else:
        def tf(img):  # PIL only: the resize + crop, no tensor
            w, h = img.size
            s = 256 / min(w, h)
            img = img.resize((round(w * s), round(h * s)), Image.BILINEAR)
            w, h = img.size
            left, top = (w - 224) // 2, (h - 224) // 2
            return img.crop((left, top, left + 224, top + 224))
    if args.transform == "breakdown":
        t = [0.0, 0.0, 0.0]
        resize_crop = T.Compose([T.Resize(256), T.CenterCrop(224)]) if have_tv else tf
        tensor = T.Compose([T.ToTensor(), norm]) if have_tv else (lambda img: img)
        for path in files:
            a = time.perf_counter()
            with open(path, "rb") as f:
                img = Image.open(f).convert("RGB")
            b = time.perf_counter()
            img = resize_crop(img)
            c = time.perf_counter()
            tensor(img)
            d = time.perf_counter()
            t = [t[0] + b - a, t[1] + c - b, t[2] + d - c]
        n = len(files)
        print(json.dumps({"side": "torchvision" if have_tv else "pil_only", "decode_ms": round(1e3 * t[0] / n, 3),
                          "resize_crop_ms": round(1e3 * t[1] / n, 3), "normalize_ms": round(1e3 * t[2] / n, 3)}))
        return
    rng = random.Random(1)
    images, checksum = 0, 0.0
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(args.epochs):
        order = list(range(len(files)))
        rng.shuffle(order)
        for i in order:
            with open(files[i], "rb") as f:
                img = Image.open(f).convert("RGB")
            x = tf(img)
            if have_tv:
                checksum += float(x[0, 0, 0])
            images += 1
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    print(json.dumps({"side": "torchvision" if have_tv else "pil_only", "transform": args.transform,
                      "workers": 1, "images": images, "wall_s": round(wall, 4), "cpu_s": round(cpu, 4),
                      "images_per_s": round(images / wall, 2), "images_per_cpu_s": round(images / cpu, 2),
                      "torch": torch.__version__ if have_tv else None,
                      "torchvision": torchvision.__version__ if have_tv else None,
                      "pillow": Image.__version__}))


if __name__ == "__main__":
    main()
