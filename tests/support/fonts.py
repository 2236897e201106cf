"""Which installed fonts can show the UI's Chinese text (the CJK check of the GUI tests).

``cjk_families(root)``: the font families Tk offers on ``root`` that cover Chinese, sorted.

- Where fontconfig is (Linux, also what Tk's Xft uses there): the families of
  ``fc-list :lang=zh family`` (each line lists a font's names, comma-separated, the
  English and the localized ones) that Tk lists too, so a font Tk cannot use does not
  count. Any such font does: Noto CJK (Debian ``fonts-noto-cjk``), WenQuanYi
  (``fonts-wqy-microhei``, ``fonts-wqy-zenhei``), AR PL, Droid Sans Fallback, ...
- Without ``fc-list`` (Windows, macOS): Tk's families whose names are those of the
  usual Chinese system fonts (Microsoft YaHei, SimSun, PingFang, ...).
"""

import shutil
import subprocess
from typing import Any, List, Set

#: name parts of fonts covering Chinese, for systems without fontconfig (lower case)
CJK_NAME_PARTS = ("cjk", "yahei", "jhenghei", "simsun", "simhei", "nsimsun", "dengxian", "fangsong", "kaiti",
                  "mingliu", "pingfang", "hiragino", "heiti", "songti", "stheiti", "wenquanyi", "source han",
                  "droid sans fallback", "ar pl", "微软雅黑", "宋体", "黑体")


def fontconfig_zh_families() -> Set[str]:
    """Every family name fontconfig gives a font covering Chinese; empty without ``fc-list``."""
    fc_list = shutil.which("fc-list")
    if fc_list is None:
        return set()
    out = subprocess.run([fc_list, ":lang=zh", "family"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                         encoding="utf-8", errors="replace", timeout=60, check=False)
    return parse_fc_families(out.stdout)


def parse_fc_families(text: str) -> Set[str]:
    """The family names in ``fc-list ... family`` output: one font a line, its names comma-separated,
    ``-`` written ``\\-``."""
    names = set()
    for line in text.splitlines():
        for name in line.replace("\\-", "-").split(","):
            if name.strip():
                names.add(name.strip())
    return names


def cjk_families(root: Any) -> List[str]:
    """The families Tk offers on ``root`` that cover Chinese (see the module docstring)."""
    import tkinter.font as tkfont  # noqa: PLC0415 - only the GUI tests need Tk

    families = set(tkfont.families(root))
    if shutil.which("fc-list") is not None:
        return sorted(families & fontconfig_zh_families())
    return sorted(f for f in families if any(part in f.lower() for part in CJK_NAME_PARTS))
