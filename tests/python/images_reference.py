#!/usr/bin/env python3
"""OpenCV reference for crates/imageq: the blur score the Rust crate must reproduce, its speed,
and the derivation of the photo set (scripts/fetch-photos.sh).

  score FILE...                 one JSON line per file: {file, width, height, blur}
  bench DIR [--seconds S] [--decode-only]
                                single-thread imdecode(GRAYSCALE) + Laplacian + var on the
                                in-memory bytes of DIR/*.jpg (or the decode alone); one JSON line
  derive RAW_DIR OUT_DIR        sharp/, blurred/, bench/ and manifest.json from the raw photos

Scoring is what imageq does: IMREAD_GRAYSCALE (stored orientation), then when the long side
is over 1024 an integer-factor INTER_AREA downscale (f = ceil(long / 1024), after cropping
the right/bottom remainders), then cv2.Laplacian(g, cv2.CV_64F).var().
"""
import argparse
import json
import math
import os
import sys
import time

import cv2
import numpy as np

WORKING_SIDE = 1024
FLAGS = cv2.IMREAD_GRAYSCALE | cv2.IMREAD_IGNORE_ORIENTATION


def normalise(gray, max_side=WORKING_SIDE):
    h, w = gray.shape
    factor = math.ceil(max(h, w) / max_side)
    if factor <= 1:
        return gray
    cropped = gray[: h // factor * factor, : w // factor * factor]
    return cv2.resize(cropped, (w // factor, h // factor), interpolation=cv2.INTER_AREA)


def blur(gray):
    return float(cv2.Laplacian(gray, cv2.CV_64F).var())


def cmd_score(files):
    for path in files:
        data = np.fromfile(path, dtype=np.uint8)
        gray = cv2.imdecode(data, FLAGS)
        if gray is None:
            print(json.dumps({"file": path, "error": "opencv could not decode it"}))
            continue
        h, w = gray.shape
        print(json.dumps({"file": path, "width": w, "height": h, "blur": blur(normalise(gray))}))


def cmd_bench(directory, seconds, decode_only=False):
    cv2.setNumThreads(1)
    names = sorted(n for n in os.listdir(directory) if n.lower().endswith((".jpg", ".jpeg")))
    buffers = [np.fromfile(os.path.join(directory, n), dtype=np.uint8) for n in names]
    if not buffers:
        sys.exit(f"no JPEG files in {directory}")
    # One untimed pass warms caches and checks every file decodes.
    pixels = []
    for buf in buffers:
        gray = cv2.imdecode(buf, FLAGS)
        pixels.append(gray.size)
    images = 0
    megapixels = 0.0
    started = time.perf_counter()
    while True:
        for buf, size in zip(buffers, pixels):
            gray = cv2.imdecode(buf, FLAGS)
            if not decode_only:
                cv2.Laplacian(gray, cv2.CV_64F).var()
            images += 1
            megapixels += size / 1e6
        elapsed = time.perf_counter() - started
        if elapsed >= seconds:
            break
    print(json.dumps({
        "images": images,
        "seconds": elapsed,
        "images_per_sec": images / elapsed,
        "megapixels": megapixels,
        "megapixels_per_sec": megapixels / elapsed,
        "files": len(buffers),
        "part": "decode" if decode_only else "decode+laplacian+var",
        "opencv": cv2.__version__,
    }))


# Real photographs (not drawings, renders, charts or synthetic test patterns). Left out although
# photographs: skimage/cell.png, a fluorescence micrograph that is soft as captured (Laplacian
# variance 1.9, below every Gaussian-blurred copy).
SHARP = [
    "skimage/astronaut.png", "skimage/brick.png", "skimage/camera.png",
    "skimage/chelsea.png", "skimage/coffee.png", "skimage/coins.png", "skimage/grass.png",
    "skimage/gravel.png", "skimage/hubble_deep_field.jpg", "skimage/ihc.png", "skimage/moon.png",
    "skimage/motorcycle_left.png", "skimage/retina.jpg", "skimage/rocket.jpg",
    "opencv/aero1.jpg", "opencv/aero3.jpg", "opencv/aloeL.jpg", "opencv/apple.jpg",
    "opencv/baboon.jpg", "opencv/basketball1.png", "opencv/board.jpg", "opencv/box.png",
    "opencv/box_in_scene.png", "opencv/building.jpg", "opencv/butterfly.jpg",
    "opencv/chicky_512.png", "opencv/ela_original.jpg", "opencv/fruits.jpg", "opencv/graf1.png",
    "opencv/home.jpg", "opencv/left.jpg", "opencv/left01.jpg", "opencv/leuvenA.jpg",
    "opencv/messi5.jpg", "opencv/orange.jpg", "opencv/rubberwhale1.png", "opencv/smarties.png",
    "opencv/squirrel_cls.jpg", "opencv/starry_night.jpg", "opencv/stuff.jpg",
]
# Photographs that are blurred as taken (motion or defocus).
REAL_BLUR = [
    "skimage/clock_motion.png", "opencv/licenseplate_motion.jpg", "opencv/text_defocus.jpg",
    "opencv/text_motion.jpg",
]
LICENCE = {
    "skimage": "scikit-image data (CC0 / public domain, see skimage/data/README.txt)",
    "opencv": "OpenCV samples data (Debian opencv-doc, BSD-3-Clause / Apache-2.0 samples)",
}


def flat_name(rel):
    source, name = rel.split("/", 1)
    return f"{source}-{name}"


def cell(image, side):
    h, w = image.shape[:2]
    scale = side / min(h, w)
    inter = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    resized = cv2.resize(image, (max(side, round(w * scale)), max(side, round(h * scale))), interpolation=inter)
    h, w = resized.shape[:2]
    y, x = (h - side) // 2, (w - side) // 2
    return resized[y : y + side, x : x + side]


def cmd_derive(raw, out):
    manifest = []
    for sub in ("sharp", "blurred", "bench"):
        os.makedirs(os.path.join(out, sub), exist_ok=True)
    colour = {}
    for rel in SHARP + REAL_BLUR:
        src = os.path.join(raw, rel)
        if not os.path.exists(src):
            print(f"  missing {rel}, skipped", file=sys.stderr)
            continue
        kind = "sharp" if rel in SHARP else "blurred"
        dst = os.path.join(out, kind, flat_name(rel))
        with open(src, "rb") as f, open(dst, "wb") as g:
            g.write(f.read())
        source = rel.split("/")[0]
        manifest.append({"file": f"{kind}/{flat_name(rel)}", "kind": "photo" if kind == "sharp" else "real-blur",
                         "origin": rel, "licence": LICENCE[source]})
        if kind == "sharp":
            image = cv2.imread(src, cv2.IMREAD_COLOR)
            colour[rel] = image
            blurred = cv2.GaussianBlur(image, (0, 0), 3)
            name = os.path.splitext(flat_name(rel))[0] + "-gauss3.png"
            cv2.imwrite(os.path.join(out, "blurred", name), blurred)
            manifest.append({"file": f"blurred/{name}", "kind": "gaussian-sigma-3", "origin": rel,
                             "licence": LICENCE[source]})
    # ~1 MP bench JPEGs: 1000x1000 centre crops of the photos that are big enough, and 2x2
    # mosaics of 500x500 cells from the others (real texture, not upscaled mush).
    quality = [int(cv2.IMWRITE_JPEG_QUALITY), 90]
    names = sorted(colour)
    big = [r for r in names if min(colour[r].shape[:2]) >= 1000]
    small = [r for r in names if r not in big]
    count = 0
    for rel in big:
        name = f"bench-{count:02d}.jpg"
        cv2.imwrite(os.path.join(out, "bench", name), cell(colour[rel], 1000), quality)
        manifest.append({"file": f"bench/{name}", "kind": "bench-crop", "origin": rel})
        count += 1
    step = 0
    while count < 24:
        picks = [small[(step * 4 + i * 7) % len(small)] for i in range(4)]
        tiles = [cell(colour[r], 500) for r in picks]
        mosaic = np.vstack([np.hstack(tiles[:2]), np.hstack(tiles[2:])])
        name = f"bench-{count:02d}.jpg"
        cv2.imwrite(os.path.join(out, "bench", name), mosaic, quality)
        manifest.append({"file": f"bench/{name}", "kind": "bench-mosaic", "origin": picks})
        count += 1
        step += 1
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    print(f"  derived {len(manifest)} files", file=sys.stderr)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    score = sub.add_parser("score")
    score.add_argument("files", nargs="+")
    bench = sub.add_parser("bench")
    bench.add_argument("directory")
    bench.add_argument("--seconds", type=float, default=5.0)
    bench.add_argument("--decode-only", action="store_true")
    derive = sub.add_parser("derive")
    derive.add_argument("raw")
    derive.add_argument("out")
    args = parser.parse_args()
    if args.command == "score":
        cmd_score(args.files)
    elif args.command == "bench":
        cmd_bench(args.directory, args.seconds, args.decode_only)
    else:
        cmd_derive(args.raw, args.out)


if __name__ == "__main__":
    main()
