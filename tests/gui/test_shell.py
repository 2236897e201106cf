"""The main window over a real site (simulator + emulator): navigation, step marks, status
bar and notifications from hub events, the 更多 menu with scripted dialogs, close-to-tray,
the tray's posts, the exit guard and the error hook."""

import os
import threading

import pytest

from kd.core import model
from kd.core.system import SystemRefused
from kd.errors import UserError
from kd.views import pages
from tests.support.env import SITE
from tests.support.sites import main_window
from tests.support.ui import pump_until

pytestmark = pytest.mark.gui

PASSWORD = "shell-2026"


@pytest.fixture
def site(tmp_path, gui_root, scripted):
    with main_window(tmp_path, gui_root, scripted, PASSWORD) as site:
        yield site


def in_worker(fn):
    """Run a core call in a thread (as the UI would) and return its result."""
    box = {}
    thread = threading.Thread(target=lambda: box.setdefault("r", fn()))
    thread.start()
    thread.join(30)
    return box.get("r")


def test_navigation_and_step_marks(site, gui_root, scripted):
    env, core, shell = site
    pump_until(gui_root, lambda: all(v is False for v in shell.marks.values()), 10, "✗ marks")
    assert [b.cget("text") for b in shell.step_buttons.values()] == [
        "1 导入考务 ✗", "2 考场注册 ✗", "3 考试授权 ✗", "4 封场检测 ✗", "5 授权验证 ✗"]
    assert gui_root.title() == "考点管理系统 【{}】".format(SITE)
    for _, label, spec in pages.NAVIGATION:
        shell.show(label)
        assert type(shell.current).__name__ == spec.split(":")[1]
        assert bool(shell.steps_bar.winfo_manager()) == (label == "考务管理")
        assert str(shell.nav_buttons[label].cget("style")).startswith("primary")
    for _, label, spec in pages.STEPS:
        shell.show(label)
        assert type(shell.current).__name__ == spec.split(":")[1] and shell.current_label == label
    assert len(shell.pages) == len({s for _, _, s in pages.STEPS + pages.NAVIGATION})  # built once each

    in_worker(lambda: core.loading.load_online("admin"))
    pump_until(gui_root, lambda: shell.marks["导入考务"] is True, 10, "导入考务 ✓")
    assert shell.step_buttons["导入考务"].cget("text") == "1 导入考务 ✓"
    exam = env.ctx.manifest()["exam_name"]
    pump_until(gui_root, lambda: gui_root.title() == "{} 考点管理系统 【{}】".format(exam, SITE), 10, "title")
    scripted.check()
    assert not scripted.errors


def test_status_bar_and_notifications_follow_events(site, gui_root):
    env, core, shell = site
    assert shell.status.texts()["files"] == "文件服务: 运行"
    pump_until(gui_root, lambda: shell.status.texts()["lock"] == "机考锁: 已插入", 10, "dongle state")
    assert shell.status.texts()["port"] == "端口: 9190" and shell.status.texts()["lan"] == "通讯: 停止"  # no LAN here
    hub = env.ctx.hub
    threading.Thread(target=lambda: hub.publish("net.status", ok=False)).start()
    pump_until(gui_root, lambda: shell.status.texts()["net"] == "网络连接: 异常", 5, "network down")
    assert "danger" in str(shell.status.labels["net"].cget("style"))
    hub.publish("net.status", ok=True)
    pump_until(gui_root, lambda: shell.status.texts()["net"] == "网络连接: 正常", 5, "network up")
    hub.publish("lock.detached", lock_id="x", url="u", reason="gone")
    pump_until(gui_root, lambda: shell.status.texts()["lock"] == "机考锁: 未插入", 5, "dongle out")
    hub.publish("room.registered", room="11003001", ip="10.0.0.1", again=False)
    hub.publish("outbox.deferred", id="1", kind="room_status", tries=2, error="timeout")
    pump_until(gui_root, lambda: len(shell.notes) >= 3, 5, "notifications")
    texts = [t for _, t in shell.notes]
    assert "机考锁已拔出" in texts and "考场 11003001 已注册" in texts
    assert any(t.startswith("状态报告发送失败，将自动重试") for t in texts)
    assert shell.note_label.winfo_manager() == "pack" and shell.note_label.cget("text") == texts[-1]


def test_more_menu_backup_restore_and_refusals(site, gui_root, scripted, tmp_path):
    env, core, shell = site
    folder = tmp_path / "backup"
    folder.mkdir()
    # 系统备份 before 导入考务: the core refuses, the dialog says why
    scripted.plan("choose_dir", str(folder)).plan("ask_text", "before")
    shell.more.invoke("系统备份")
    assert shell.busy and str(shell.more_button.cget("state")) == "disabled"
    pump_until(gui_root, lambda: scripted.errors, 10, "refusal")
    assert isinstance(scripted.errors[0], SystemRefused) and "尚未导入考务" in scripted.errors[0].cause
    assert not shell.busy and str(shell.more_button.cget("state")) == "normal"

    in_worker(lambda: core.loading.load_online("admin"))
    scripted.plan("choose_dir", str(folder)).plan("ask_text", "考前备份")
    shell.more.invoke("系统备份")
    pump_until(gui_root, lambda: scripted.messages, 30, "backup done")
    kind, title, text, detail = scripted.messages[-1]
    assert (kind, title, text) == ("info", "系统备份", "系统备份完成。")
    backups = [f for f in os.listdir(str(folder)) if f.endswith(".bak")]
    assert len(backups) == 1 and backups[0] in detail

    # 模考转正考 in formal mode: refused by the core
    scripted.plan("confirm", True)
    shell.more.invoke("模考转正考")
    pump_until(gui_root, lambda: len(scripted.errors) == 2, 10, "to_formal refusal")
    assert "已是正式考试" in scripted.errors[1].cause

    # 系统初始化: the first refusal stops; a wrong site code is refused by the core
    scripted.plan("confirm", False)
    shell.more.invoke("系统初始化")  # the rule is checked first, in a worker
    pump_until(gui_root, lambda: scripted.count("confirm") == 2, 10, "the first confirmation")
    assert scripted.count("ask_text") == 2
    scripted.plan("confirm", True, True).plan("ask_text", "99999")
    shell.more.invoke("系统初始化")
    pump_until(gui_root, lambda: len(scripted.errors) == 3, 10, "initialize refusal")
    assert "考点代码与本系统的考点代码不符" in scripted.errors[2].cause
    assert env.ctx.site_code() == SITE and not shell.ends

    # 系统恢复 from the backup: done, then the user is told and the app restarts
    scripted.plan("open_file", str(folder / backups[0]))
    shell.more.invoke("系统恢复")
    dialog = shell.more.restore_dialog
    pump_until(gui_root, lambda: dialog.phase == "ready", 30, "the restore preview")
    dialog.ok.invoke()
    pump_until(gui_root, lambda: shell.ends, 30, "restart after restore")
    assert shell.ends == [True] and shell.closed
    assert scripted.messages[-1][1] == "需要重新启动"
    scripted.check()


def test_change_password_dialog(site, gui_root, scripted):
    env, core, shell = site
    shell.more.invoke("修改密码")
    dialog = shell.more.password_dialog
    form = dialog.form
    form.old.insert(0, PASSWORD)
    form.new.insert(0, "short")
    form.again.insert(0, "short")
    form.ok.invoke()
    pump_until(gui_root, lambda: "太短" in form.error.cget("text"), 10, "inline refusal")
    assert dialog.winfo_exists()
    for entry, text in ((form.new, "changed-2026"), (form.again, "changed-2026")):
        entry.delete(0, "end")
        entry.insert(0, text)
    form.ok.invoke()
    pump_until(gui_root, lambda: ("success", "密码已修改") in shell.notes, 10, "changed")
    assert not dialog.winfo_exists()
    assert in_worker(lambda: core.accounts.login("admin", "changed-2026"))["must_change"] is False
    assert not scripted.errors


def test_close_hides_to_tray_and_exit_follows_the_rule(site, gui_root, scripted):
    from kd.views.tray import Tray

    env, core, shell = site
    shell.tray_available = True
    gui_root.deiconify()
    gui_root.update()
    gui_root.tk.call(gui_root.protocol("WM_DELETE_WINDOW"))  # the window's close button
    assert gui_root.state() == "withdrawn" and not shell.ends
    tray = Tray(shell.post, shell.show_window, shell.exit_system)  # its callbacks run in pystray's thread
    threading.Thread(target=tray.on_show, name="tray").start()
    pump_until(gui_root, lambda: gui_root.state() == "normal", 10, "显示主窗口")

    # nothing started yet: 退出系统 asks, and a "no" keeps the app running
    scripted.plan("confirm", False)
    threading.Thread(target=tray.on_exit, name="tray").start()
    pump_until(gui_root, lambda: scripted.count("confirm") == 1, 10, "exit question")
    assert not shell.ends
    # a room started a session: its data is not reported, so 退出系统 is refused with the reason
    in_worker(lambda: core.loading.load_online("admin"))
    room = env.ctx.manifest()["rooms"][0]["code"]
    sid = env.ctx.manifest()["sessions"][0]["id"]
    in_worker(lambda: core.monitor.heartbeat(room, {"session_id": sid, "started": True}))
    gui_root.withdraw()
    threading.Thread(target=tray.on_exit, name="tray").start()
    pump_until(gui_root, lambda: scripted.count("warning") == 1, 10, "exit refused")
    _, title, text, _ = scripted.messages[-1]
    assert title == "不能退出系统" and "禁止退出系统" in text and room in text
    assert gui_root.state() == "normal" and not shell.ends
    # without a tray the close button is 退出系统 itself
    shell.tray_available = False
    gui_root.tk.call(gui_root.protocol("WM_DELETE_WINDOW"))
    pump_until(gui_root, lambda: scripted.count("warning") == 2, 10, "exit refused again")
    assert gui_root.state() == "normal"
    scripted.check()


def test_error_hook_user_error_and_internal_error(site, gui_root, scripted, caplog):
    import ttkbootstrap as ttk

    env, core, shell = site

    def refuse():
        raise UserError("不能这样做。", "请那样做。")

    def crash():
        raise RuntimeError("boom")

    ttk.Button(gui_root, command=refuse).invoke()
    ttk.Button(gui_root, command=crash).invoke()
    assert [e.cause for e in scripted.errors] == ["不能这样做。", "内部错误，详见日志 /var/log/kd-test.log"]
    assert any("boom" in (r.exc_text or "") or (r.exc_info and "boom" in str(r.exc_info[1]))
               for r in caplog.records)
    # a worker's failure comes back through the same hook
    shell.call(lambda: core.system.to_formal("admin"))
    pump_until(gui_root, lambda: len(scripted.errors) == 3, 10, "worker refusal")
    assert isinstance(scripted.errors[2], SystemRefused)
    assert model.FORMAL == env.ctx.mode()
