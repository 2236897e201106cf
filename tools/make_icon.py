"""Draw the kaodian icon with Pillow: assets/kaodian.png (256 px) and assets/kaodian.ico (16-256 px).

A blue rounded square holding a white exam sheet with three lines and a green check
mark. Run from the repository root: ``.venv/bin/python tools/make_icon.py``.
"""

import os

from PIL import Image, ImageDraw

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZE = 1024  # drawn large, scaled down smoothly
BLUE = (31, 95, 191, 255)
WHITE = (255, 255, 255, 255)
GREY = (150, 170, 200, 255)
GREEN = (40, 170, 90, 255)


def draw() -> Image.Image:
    s = SIZE
    img = Image.new("RGBA", (s, s), (0, 0, 0, 0))
    d = ImageDraw.Draw(img)
    d.rounded_rectangle([s * 0.04, s * 0.04, s * 0.96, s * 0.96], radius=s * 0.2, fill=BLUE)
    d.rounded_rectangle([s * 0.25, s * 0.16, s * 0.75, s * 0.84], radius=s * 0.05, fill=WHITE)
    for i in range(3):
        y = s * (0.30 + 0.11 * i)
        d.rounded_rectangle([s * 0.33, y, s * 0.67, y + s * 0.045], radius=s * 0.02, fill=GREY)
    w = int(s * 0.075)
    d.line([(s * 0.40, s * 0.66), (s * 0.49, s * 0.75), (s * 0.68, s * 0.55)], fill=GREEN, width=w, joint="curve")
    for x, y in ((s * 0.40, s * 0.66), (s * 0.68, s * 0.55)):
        d.ellipse([x - w / 2, y - w / 2, x + w / 2, y + w / 2], fill=GREEN)
    return img


def main() -> None:
    big = draw()
    assets = os.path.join(ROOT, "assets")
    os.makedirs(assets, exist_ok=True)
    big.resize((256, 256), Image.LANCZOS).save(os.path.join(assets, "kaodian.png"))
    big.resize((256, 256), Image.LANCZOS).save(
        os.path.join(assets, "kaodian.ico"), sizes=[(16, 16), (24, 24), (32, 32), (48, 48), (64, 64), (128, 128),
                                                    (256, 256)])


if __name__ == "__main__":
    main()
