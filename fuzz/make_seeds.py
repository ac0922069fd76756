#!/usr/bin/env python3
"""Writes 14 small seed images (76-823 bytes) for the decode_redact fuzz target into
fuzz/corpus/decode_redact: JPEG baseline, progressive, grey, CMYK and EXIF orientation 6; PNG RGB,
RGBA, palette, grey and 16-bit; WebP lossy and lossless; animated GIF and WebP. Needs Pillow, e.g.
the venv of benches/compare_deface.py: ~/.cache/veil/bench-venv/bin/python fuzz/make_seeds.py"""
import os

from PIL import Image

out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "decode_redact")
os.makedirs(out, exist_ok=True)
rgb = Image.new("RGB", (16, 12), (200, 100, 50))
for x in range(16):
    rgb.putpixel((x, x % 12), (x * 15, 255 - x * 15, x * 7))
exif = Image.Exif()
exif[0x0112] = 6  # orientation
exif[0x010F] = "Cam"  # make
turned = rgb.rotate(90)
seeds = {
    "base.jpg": (rgb, {"quality": 80}),
    "prog.jpg": (rgb, {"quality": 80, "progressive": True}),
    "gray.jpg": (rgb.convert("L"), {"quality": 80}),
    "cmyk.jpg": (rgb.convert("CMYK"), {"quality": 80}),
    "orient6.jpg": (rgb, {"quality": 80, "exif": exif.tobytes()}),
    "rgb.png": (rgb, {}),
    "rgba.png": (rgb.convert("RGBA"), {}),
    "pal.png": (rgb.convert("P"), {}),
    "gray.png": (rgb.convert("L"), {}),
    "i16.png": (rgb.convert("I;16"), {}),
    "lossy.webp": (rgb, {"quality": 50}),
    "lossless.webp": (rgb, {"lossless": True}),
    "anim.gif": (rgb, {"save_all": True, "append_images": [turned], "duration": 100, "loop": 0}),
    "anim.webp": (rgb, {"save_all": True, "append_images": [turned], "duration": 100}),
}
for name, (img, kw) in seeds.items():
    img.save(os.path.join(out, name), **kw)
    print(name, os.path.getsize(os.path.join(out, name)))
