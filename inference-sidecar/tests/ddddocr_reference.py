#!/usr/bin/env python3
"""The independent reference for tests/ddddocr.rs: ddddocr's own detector, run by ddddocr.

usage: ddddocr_reference.py OUTDIR
Draws a fixed set of pictures (characters and shapes of several sizes on textured backgrounds,
images from 150x60 to 1280x420, wide, square and tall, so the letterbox both enlarges and
shrinks), writes them to OUTDIR as PNG, runs `ddddocr.DdddOcr(det=True).detection(png_bytes)` on
each and prints one JSON object on stdout:

  {"model": "<path of common_det.onnx inside the installed ddddocr>",
   "images": [{"file": "a.png", "width": W, "height": H, "boxes": [[x1, y1, x2, y2], ...]}, ...]}

Deterministic: a seeded generator and Pillow's built-in font (pinned in tests/requirements.txt).
"""
import contextlib
import io
import json
import os
import random
import sys

from PIL import Image, ImageDraw, ImageFilter, ImageFont

# (name, width, height, number of characters, font size range)
PICTURES = [
    ("captcha_small", 150, 60, 4, (26, 34)),
    ("captcha", 320, 160, 5, (36, 56)),
    ("square", 416, 416, 6, (40, 90)),
    ("wide", 640, 360, 7, (40, 110)),
    ("large", 900, 600, 6, (60, 160)),
    ("tall", 300, 700, 5, (40, 100)),
    ("panorama", 1280, 420, 8, (50, 140)),
    ("few_big", 500, 300, 2, (120, 160)),
    # 470 x 416/1100 = 177.7 rows: ddddocr's int() keeps 177 where rounding would give 178
    ("banner", 1100, 470, 7, (50, 130)),
]

GLYPHS = "ABCDEFGHKMNPRSTUVWXYZ23456789"


def background(rng, w, h):
    img = Image.new("RGB", (w, h), tuple(rng.randint(200, 250) for _ in range(3)))
    d = ImageDraw.Draw(img)
    for _ in range(max(4, w * h // 8000)):
        x, y = rng.randrange(w), rng.randrange(h)
        r = rng.randint(3, max(4, min(w, h) // 8))
        colour = tuple(rng.randint(150, 235) for _ in range(3))
        d.ellipse([x - r, y - r, x + r, y + r], fill=colour)
    for _ in range(6):
        d.line(
            [(rng.randrange(w), rng.randrange(h)), (rng.randrange(w), rng.randrange(h))],
            fill=tuple(rng.randint(120, 200) for _ in range(3)),
            width=rng.randint(1, 3),
        )
    return img.filter(ImageFilter.GaussianBlur(1.2))


def picture(rng, w, h, count, sizes):
    img = background(rng, w, h)
    d = ImageDraw.Draw(img)
    slot = w / count
    for i in range(count):
        size = rng.randint(*sizes)
        font = ImageFont.load_default(size=size)
        ch = rng.choice(GLYPHS)
        left, top, right, bottom = d.textbbox((0, 0), ch, font=font)
        x = int(i * slot + max(0, (slot - (right - left)) * rng.random())) - left
        y = int(max(0, (h - (bottom - top)) * rng.random())) - top
        colour = tuple(rng.randint(0, 110) for _ in range(3))
        d.text((x, y), ch, font=font, fill=colour)
    return img


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    # DdddOcr prints a banner on stdout: keep stdout for the JSON alone
    with contextlib.redirect_stdout(sys.stderr):
        import ddddocr

        det = ddddocr.DdddOcr(det=True, ocr=False, show_ad=False)
    rng = random.Random(20260505)
    images = []
    for name, w, h, count, sizes in PICTURES:
        img = picture(rng, w, h, count, sizes)
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        data = buf.getvalue()
        file = f"{name}.png"
        with open(os.path.join(out, file), "wb") as f:
            f.write(data)
        boxes = det.detection(data)
        images.append({"file": file, "width": w, "height": h, "boxes": boxes})
    model = os.path.join(os.path.dirname(ddddocr.__file__), "common_det.onnx")
    json.dump({"model": model, "images": images}, sys.stdout)


if __name__ == "__main__":
    main()
