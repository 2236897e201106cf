"""Texts and dialogs in the manual's Chinese (issue 14): real boxes and windows on Xvfb.

- the project's message and question boxes say 确定 / 取消 / 是 / 否 (a real box opened,
  its buttons read and pressed while it waits), Tk's file chooser speaks zh_cn;
- every window opens centred on the main window (the box, 修改密码, 数据上报);
- 修改密码: a wrong old password says 原密码错误, 取消 and Esc close it;
- the login back-off counts down by itself and enables 登录 again;
- 门贴座次表 when no browser starts: the path, 打开所在文件夹, 复制路径;
- a notice too long for the top bar wraps above the status bar.

Everything waits on conditions (``pump_until``), never on sleeps.
"""

import os
import webbrowser

import pytest

from kd.core import model
from kd.views.dialogs import Dialogs, MessageBox, TextBox
from kd.views.loop import TkLoop
from tests.support.env import make_env
from tests.support.sites import main_window
from tests.support.ui import pump_until

pytestmark = pytest.mark.gui

PASSWORD = "texts-2026"


def boxes(root, cls):
    return [w for w in root.winfo_children() if isinstance(w, cls) and w.winfo_exists()]


def answer_when_open(root, cls, seen, press, text=None):
    """Once a ``cls`` box is viewable: record its buttons' texts and geometry, then press one."""
    def look():
        open_ = [b for b in boxes(root, cls) if b.winfo_viewable()]
        if not open_:
            root.after(20, look)
            return
        box = open_[0]
        box.update_idletasks()
        seen["buttons"] = [b.cget("text") for b in box.buttons]
        seen["box"] = (box.winfo_rootx(), box.winfo_rooty(), box.winfo_width(), box.winfo_height())
        seen["grab"] = str(box.grab_current()) == str(box)
        if text is not None:
            box.entry.insert(0, text)
        next(b for b in box.buttons if b.cget("text") == press).invoke()

    root.after(20, look)


def centre(x, y, w, h):
    return x + w / 2, y + h / 2


def assert_centred(window, root):
    window.update_idletasks()
    wx, wy = centre(window.winfo_rootx(), window.winfo_rooty(), window.winfo_width(), window.winfo_height())
    rx, ry = centre(root.winfo_rootx(), root.winfo_rooty(), root.winfo_width(), root.winfo_height())
    assert abs(wx - rx) <= 3 and abs(wy - ry) <= 3, ((wx, wy), (rx, ry))


def test_boxes_say_queding_quxiao_shi_fou_and_open_centred(gui_root):
    gui_root.update()
    dialogs = Dialogs(gui_root)
    seen = {}
    answer_when_open(gui_root, MessageBox, seen, "否")
    assert dialogs.confirm("退出系统", "确定要退出考点管理系统吗？", "退出后考场将无法连接考点服务器。") is False
    assert seen["buttons"] == ["是", "否"] and seen["grab"]
    rx, ry = centre(gui_root.winfo_rootx(), gui_root.winfo_rooty(), gui_root.winfo_width(), gui_root.winfo_height())
    bx, by = centre(*seen["box"])
    assert abs(bx - rx) <= 3 and abs(by - ry) <= 3, (seen["box"], (rx, ry))

    answer_when_open(gui_root, MessageBox, seen, "是")
    assert dialogs.confirm("系统初始化", "确认要执行初始化吗?") is True

    for show in (lambda: dialogs.info("需要重新启动", "系统初始化完成。", "点击确定后考点管理系统将重新启动。"),
                 lambda: dialogs.warning("不能退出系统", "考试数据尚未上报"),
                 lambda: dialogs.error(model_error())):
        seen.clear()
        answer_when_open(gui_root, MessageBox, seen, "确定")
        show()
        assert seen["buttons"] == ["确定"]

    seen.clear()
    answer_when_open(gui_root, TextBox, seen, "确定", text="11003")
    assert dialogs.ask_text("系统初始化", "请输入本考点的考点代码以确认初始化（未设置时留空）：") == "11003"
    assert seen["buttons"] == ["确定", "取消"]
    answer_when_open(gui_root, TextBox, seen, "取消", text="30")
    assert dialogs.ask_text("启动模拟考场", "模拟考场数量（监考机数量）：") is None
    assert not boxes(gui_root, MessageBox) and not boxes(gui_root, TextBox)

    # Tk's own file chooser (X11) reads its texts from the message catalog: zh_cn
    assert gui_root.tk.call("::msgcat::mclocale") == "zh_cn"
    assert "打开" in gui_root.tk.eval('namespace eval ::tk {::msgcat::mc "&Open"}')
    assert "取消" in gui_root.tk.eval('namespace eval ::tk {::msgcat::mc "&Cancel"}')


def model_error():
    from kd.errors import UserError  # noqa: PLC0415

    return UserError("无法写入。", "请检查磁盘空间。")


@pytest.fixture
def shell_site(tmp_path, gui_root, scripted):
    with main_window(tmp_path, gui_root, scripted, PASSWORD, load=True) as site:
        gui_root.update()
        yield site


def test_change_password_dialog_centred_wrong_old_password_cancel_and_escape(shell_site, gui_root, scripted):
    env, core, shell = shell_site
    shell.key_button.invoke()
    dialog = shell.more.password_dialog
    pump_until(gui_root, dialog.winfo_viewable, 10, "修改密码")
    assert_centred(dialog, gui_root)
    assert str(dialog.grab_current()) == str(dialog)  # modal
    form = dialog.form
    assert form.cancel is not None and form.cancel.cget("text") == "取消"
    form.old.insert(0, "not-the-password")
    for entry in (form.new, form.again):
        entry.insert(0, "another-2026")
    form.ok.invoke()
    pump_until(gui_root, lambda: form.error.cget("text"), 20, "the refusal")
    assert form.error.cget("text").startswith("原密码错误"), form.error.cget("text")
    assert "账号或密码" not in form.error.cget("text")
    form.cancel.invoke()
    assert not dialog.winfo_exists()

    shell.key_button.invoke()
    dialog = shell.more.password_dialog
    pump_until(gui_root, dialog.winfo_viewable, 10, "修改密码 again")
    dialog.form.old.event_generate("<Escape>")
    pump_until(gui_root, lambda: not dialog.winfo_exists(), 5, "Esc closes it")
    assert core.accounts.login("admin", PASSWORD)["user"] == "admin"  # unchanged


def test_upload_dialog_is_modal_and_centred(shell_site, gui_root, scripted):
    env, core, shell = shell_site
    shell.show("数据回收")
    page = shell.current
    page.upload_button.invoke()
    dialog = page.upload_dialog
    pump_until(gui_root, dialog.winfo_viewable, 10, "数据上报")
    assert_centred(dialog, gui_root)
    assert str(dialog.grab_current()) == str(dialog)
    dialog.close_button.invoke()
    pump_until(gui_root, lambda: gui_root.grab_current() is None, 5, "the grab released")


def test_long_notice_wraps_above_the_status_bar(shell_site, gui_root):
    env, core, shell = shell_site
    pump_until(gui_root, lambda: "【" in shell.heading.cget("text"), 10, "the title")
    shell.notify("考场 11003001 已注册", "info")
    assert shell.note_label.winfo_manager() == "pack" and not shell.long_note.winfo_manager()
    gui_root.geometry("1024x700")
    pump_until(gui_root, lambda: gui_root.winfo_width() == 1024, 5, "1024 wide")
    text = "状态报告发送失败，将自动重试：" + "监控平台暂时无法连接（连接超时），请检查网络连接后等待自动重试。" * 2
    shell.notify(text, "warning")
    gui_root.update_idletasks()
    assert shell.long_note.winfo_manager() == "pack" and not shell.note_label.winfo_manager()
    assert shell.note_text == text  # whole, not cut with …
    assert shell.long_note.winfo_reqwidth() <= gui_root.winfo_width()
    # a notice that fits the top bar moves to the notice line when the window narrows under it
    gui_root.geometry("1366x768")
    pump_until(gui_root, lambda: gui_root.winfo_width() == 1366, 5, "1366 wide")
    short = "考场 11003001 已导入考场数据，监考机可以开始等待开考许可了"
    shell.notify(short)
    pump_until(gui_root, lambda: shell.note_label.winfo_manager() == "pack", 5, "in the top bar")
    gui_root.geometry("1024x700")
    pump_until(gui_root, lambda: shell.long_note.winfo_manager() == "pack", 5, "moved to the notice line")
    assert shell.note_text == short and not shell.note_label.winfo_manager()


def test_door_sheet_without_a_browser_shows_the_path(tmp_path, gui_root, scripted, monkeypatch):
    from kd.views.shell import Shell  # noqa: PLC0415
    from kd.views.widgets import NotOpened  # noqa: PLC0415

    empty = tmp_path / "no-programs"
    empty.mkdir()
    monkeypatch.setenv("BROWSER", "/bin/false")  # the only browser there is fails
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.setattr(webbrowser, "_tryorder", None)  # read BROWSER and PATH again
    monkeypatch.setattr(webbrowser, "_browsers", {})
    env = make_env(tmp_path / "site", rooms=2, sessions=1, candidates=3)
    shell = None
    try:
        core = env.core
        core.accounts.change_password("admin", "888", PASSWORD)
        core.loading.load_online("admin")
        shell = Shell(gui_root, core, dialogs=scripted, user="admin", on_exit=lambda restart: None,
                      browser=webbrowser.open)
        code = env.ctx.manifest()["rooms"][0]["code"]
        path = core.loading.print_door_sheet(code)
        shell.open_url(path)
        window = pump_until(gui_root, lambda: shell.opened_failed is not None and shell.opened_failed, 20,
                            "the path shown")
        assert isinstance(window, NotOpened) and window.winfo_viewable()
        assert window.field.get() == path and os.path.isfile(path)
        assert [b.cget("text") for b in (window.folder_button, window.copy_button, window.close_button)] == [
            "打开所在文件夹", "复制路径", "关闭"]
        assert_centred(window, gui_root)
        window.copy_button.invoke()
        assert gui_root.clipboard_get() == path and window.status.cget("text") == "路径已复制。"
        window.close_button.invoke()
        assert not window.winfo_exists()
    finally:
        if shell is not None:
            shell.close()
        env.close()


def test_login_countdown_counts_and_enables_login(tmp_path, gui_root):
    from kd.views.login import LoginScreen  # noqa: PLC0415

    env = make_env(tmp_path / "site", rooms=2, sessions=1, candidates=3)
    loop = TkLoop(gui_root)
    try:
        core = env.core
        core.accounts.change_password("admin", "888", PASSWORD)  # the account is stored from here on
        env.ctx.stores.settings.update(model.ACCOUNTS, "admin", {"failures": 3})  # the next one waits 2 s
        logged = []
        screen = LoginScreen(gui_root, loop, core, logged.append)
        screen.pack(fill="both", expand=True)
        screen.password.insert(0, "wrong")
        screen.button.invoke()
        pump_until(gui_root, lambda: "2 秒后重试" in screen.error.cget("text"), 20, "the wait shown")
        assert str(screen.button.cget("state")) == "disabled" and screen.waiting
        assert screen.error.cget("text").startswith("账号或密码错误，已连续失败 4 次。")
        pump_until(gui_root, lambda: "1 秒后重试" in screen.error.cget("text"), 10, "counting down")
        pump_until(gui_root, lambda: str(screen.button.cget("state")) == "normal", 10, "登录 enabled again")
        assert not screen.waiting and "重试" not in screen.error.cget("text")
        assert not logged
        screen.destroy()
    finally:
        loop.close()
        env.close()
