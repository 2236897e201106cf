"""Draw the one-file exe's splash screen with Pillow: assets/splash.png (480x270).

The bootloader shows it (kaodian.spec's ``Splash`` target, kd/views/splash.py) while the
exe unpacks: the icon, 考点管理系统 and 正在启动，请稍候…. The text is drawn into the
image (the bootloader's Tk has no Chinese font of its own), with a CJK font found by
``fc-list :lang=zh`` (Linux; ``--font PATH`` anywhere, e.g.
``C:\\Windows\\Fonts\\msyh.ttc``). The PNG is committed, so a build needs no font.
Run from the repository root: ``.venv/bin/python tools/make_splash.py``.
"""

import argparse
import os
import subprocess
import sys
from typing import List, Optional

from PIL import Image, ImageDraw, ImageFont

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "assets", "splash.png")
WIDTH, HEIGHT = 480, 270
BLUE = (31, 95, 191)
WHITE = (255, 255, 255)
PALE = (205, 222, 247)


def cjk_font(preferred: Optional[str] = None) -> str:
    """A font file covering Chinese: ``preferred``, else the first sans of ``fc-list :lang=zh``."""
    if preferred:
        return preferred
    out = subprocess.run(["fc-list", ":lang=zh", "file", "family"], stdout=subprocess.PIPE,
                         text=True, check=True).stdout
    files: List[str] = sorted({line.split(":")[0] for line in out.splitlines() if line.strip()},
                              key=lambda f: ("Sans" not in f, "Bold" in f, f))
    if not files:
        raise SystemExit("no Chinese font (fc-list :lang=zh is empty): apt-get install fonts-noto-cjk, or --font")
    return files[0]


def draw(font_path: str) -> Image.Image:
    img = Image.new("RGB", (WIDTH, HEIGHT), BLUE)
    d = ImageDraw.Draw(img)
    icon = Image.open(os.path.join(ROOT, "assets", "kaodian.png")).convert("RGBA").resize((96, 96), Image.LANCZOS)
    img.paste(icon, (40, (HEIGHT - 96) // 2 - 14), icon)
    title = ImageFont.truetype(font_path, 40)
    small = ImageFont.truetype(font_path, 18)
    d.text((156, 92), "考点管理系统", font=title, fill=WHITE)
    d.text((158, 152), "正在启动，请稍候…", font=small, fill=PALE)
    d.rectangle([0, HEIGHT - 6, WIDTH, HEIGHT], fill=PALE)
    return img


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--font", help="a .ttf/.ttc/.otf font file covering Chinese")
    parser.add_argument("--out", default=OUT)
    opts = parser.parse_args(argv)
    draw(cjk_font(opts.font)).save(opts.out, optimize=True)
    print(opts.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
