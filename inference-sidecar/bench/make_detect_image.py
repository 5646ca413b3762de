"""Writes the /v1/detect benchmark's photo-like JPEG (deterministic): characters in varied fonts
sizes and colours on a noisy gradient, like the click-captchas the ddddocr detector was trained on.
Usage: make_detect_image.py OUT.jpg [WIDTH HEIGHT]"""
import random
import sys

import numpy as np
from PIL import Image, ImageDraw, ImageFont

out = sys.argv[1]
w, h = (int(sys.argv[2]), int(sys.argv[3])) if len(sys.argv) > 3 else (640, 480)
rng = np.random.default_rng(5)
y, x = np.mgrid[0:h, 0:w]
base = np.stack([120 + 80 * x / w, 140 + 60 * y / h, 200 - 90 * x / w], axis=2)
img = np.clip(base + rng.normal(0, 18, (h, w, 3)), 0, 255).astype(np.uint8)
im = Image.fromarray(img, "RGB")
draw = ImageDraw.Draw(im)
r = random.Random(5)
for i in range(8):
    size = r.randint(h // 10, h // 6)
    font = ImageFont.load_default(size=size)
    ch = "ABCDEFGHJKMNPQRSTUVWXYZ"[r.randrange(23)]
    colour = tuple(r.randrange(0, 90) for _ in range(3))
    draw.text((40 + i * (w - 80) // 8, r.randint(20, h - size - 20)), ch, fill=colour, font=font)
im.save(out, quality=90)
