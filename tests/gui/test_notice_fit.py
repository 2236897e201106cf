"""A notice in the top bar is shown whole or not there at all (issue 14, the 1024 px window).

At 1024x768 the title, 演练/修改密码/更多 leave little room: the screenshots showed
``考场数据载入成功，已通过校`` cut by the packer. Every notice, short or long, is either
whole in the top bar (the label as wide as it asks) or in the notice line above the status bar.
"""

import pytest

from tests.support.sites import main_window
from tests.support.ui import pump_until

pytestmark = pytest.mark.gui


def test_every_notice_is_whole_at_1024(tmp_path, gui_root, scripted):
    with main_window(tmp_path, gui_root, scripted, "notice-2026", load=True) as (_env, _core, shell):
        pump_until(gui_root, lambda: "【" in shell.heading.cget("text"), 10, "the title")
        gui_root.geometry("1024x768")
        pump_until(gui_root, lambda: gui_root.winfo_width() == 1024, 5, "1024 wide")
        base = "考场数据载入成功，已通过校验。请继续注册考场并导出考点信息表发给各考场"
        for n in range(4, len(base) + 1):
            text = base[:n]
            shell.notify(text)
            gui_root.update()
            label = shell.note_label
            if label.winfo_manager():
                assert label.winfo_width() >= label.winfo_reqwidth(), (n, text, label.winfo_width(),
                                                                       label.winfo_reqwidth())
            else:
                assert shell.long_note.winfo_manager() == "pack" and shell.note_text == text


def test_a_notice_moves_when_the_top_bar_fills_under_it(tmp_path, gui_root, scripted):
    """The title grows (the exam's name after 载入) or 演练's line lengthens while a notice is
    shown: the notice moves to the notice line instead of being cut."""
    with main_window(tmp_path, gui_root, scripted, "notice-2026", load=True) as (_env, _core, shell):
        pump_until(gui_root, lambda: "【" in shell.heading.cget("text"), 10, "the title")
        gui_root.geometry("1024x768")
        pump_until(gui_root, lambda: gui_root.winfo_width() == 1024, 5, "1024 wide")
        title = str(shell.heading.cget("text"))
        shell.heading.configure(text="考点")
        gui_root.update()
        text = "考场数据载入成功，已通过校验。"
        shell.notify(text)
        gui_root.update()
        assert shell.note_label.winfo_manager() == "pack"  # fits beside the short title
        shell.heading.configure(text=title + "（第二批）")  # the title grows under the notice
        label = shell.note_label
        pump_until(gui_root, lambda: not label.winfo_manager() or label.winfo_width() >= label.winfo_reqwidth()
                   and label.winfo_ismapped(), 5, "the notice whole or moved")
        gui_root.update()
        if label.winfo_manager():
            assert label.winfo_width() >= label.winfo_reqwidth()
        else:
            assert shell.long_note.winfo_manager() == "pack" and shell.note_text == text
