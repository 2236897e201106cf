"""The window can show Chinese: some installed font covering Chinese is one Tk can use.

Any such font will do (tests/support/fonts.py): on Debian/Ubuntu ``fonts-noto-cjk`` or
``fonts-wqy-microhei``; on Windows the system's Microsoft YaHei / SimSun.
"""

import pytest

from tests.support.fonts import parse_fc_families

pytestmark = pytest.mark.gui

INSTALL = "no font for Chinese: install one (Debian/Ubuntu: apt-get install fonts-noto-cjk, or fonts-wqy-microhei)"


def test_ttkbootstrap_window_shows_chinese(tk_root):
    import ttkbootstrap as ttk

    from tests.support.fonts import cjk_families

    ttk.Style(theme="cosmo")
    label = ttk.Label(tk_root, text="考点管理系统")
    label.pack()
    tk_root.deiconify()
    tk_root.update()
    assert label.winfo_width() > 1
    assert cjk_families(tk_root), INSTALL


def test_fc_list_names_are_every_family_name_of_each_font():
    # fc-list :lang=zh family with WenQuanYi (fonts-wqy-microhei) and Noto CJK installed
    text = ("WenQuanYi Micro Hei Mono,文泉驛等寬微米黑,文泉驿等宽微米黑\n"
            "WenQuanYi Micro Hei,文泉驛微米黑,文泉驿微米黑\n"
            "Noto Sans CJK SC\n"
            "Droid Sans Fallback\n"
            "Noto Sans\\-Test\n\n")
    assert parse_fc_families(text) == {"WenQuanYi Micro Hei Mono", "文泉驛等寬微米黑", "文泉驿等宽微米黑",
                                       "WenQuanYi Micro Hei", "文泉驛微米黑", "文泉驿微米黑", "Noto Sans CJK SC",
                                       "Droid Sans Fallback", "Noto Sans-Test"}
