"""The start screens' guards over a real App in drill mode (drill platform over HTTP, drill
dongle emulator over ``socket://``): 系统设置 refuses a site code that is not the dongle's
(issue 12 item 3), and 考点端登录 refuses every login -- the right password too -- while a
failure cannot be recorded (item 7, a real unwritable settings DB)."""

import os

import pytest

from kd.views.login import LoginScreen, SetupScreen
from tests.support import sites
from tests.support.sites import first_login, ready_login, screen_of
from tests.support.ui import pump_until

pytestmark = pytest.mark.gui

NEW = "start-2026"
SITE = {"rooms": 2, "sessions": 1, "candidates": 3, "room_kb": 4}


def answered(root, screen, what):
    """Wait until the screen's worker answered (its button is enabled again)."""
    pump_until(root, lambda: str(screen.button.cget("state")) == "normal", 20, what)


def test_setup_screen_refuses_another_sites_code(gui_root, scripted, tmp_path):
    flow = sites.drill_flow(gui_root, scripted, str(tmp_path / "data"), SITE)
    try:
        flow.begin()
        login = pump_until(gui_root, lambda: ready_login(flow), 30, "login")
        form = first_login(gui_root, flow, login)
        form.old.insert(0, "888")
        for entry in (form.new, form.again):
            entry.insert(0, NEW)
        form.ok.invoke()
        setup = pump_until(gui_root, lambda: screen_of(flow, SetupScreen), 20, "系统设置")
        registered = flow.app.simulator.site_code
        assert registered == "11003"
        setup.code.delete(0, "end")
        setup.code.insert(0, "11004")
        setup.button.invoke()
        answered(gui_root, setup, "refusal")
        assert setup.error.cget("text") == ("考点代码 11004 与机考锁登记的考点（11003）不一致。\n"
                                            "请核对考点代码，或插入本考点的机考锁。")
        assert screen_of(flow, SetupScreen) is setup and flow.shell is None
        assert flow.app.core.accounts.needs_setup()  # nothing stored
        setup.code.delete(0, "end")
        setup.code.insert(0, registered)
        setup.button.invoke()
        pump_until(gui_root, lambda: flow.shell is not None, 20, "main window")
        assert flow.app.site.ctx.site_code() == registered
        assert not scripted.errors
    finally:
        flow.close()


def test_login_screen_refuses_the_right_password_while_failures_cannot_be_recorded(gui_root, scripted, tmp_path):
    data = str(tmp_path / "data")
    flow = sites.drill_flow(gui_root, scripted, data, SITE)
    try:
        flow.begin()
        login = pump_until(gui_root, lambda: ready_login(flow), 30, "login")
        blocker = flow.app.site.folder.store_path("settings") + ".tmp"
        os.mkdir(blocker)  # the settings DB cannot write its temp file (as root, chmod would not stop it)
        for password in ("wrong", "888"):
            login.password.insert(0, password)
            login.button.invoke()
            answered(gui_root, login, password)
            text = login.error.cget("text")
            assert text.startswith("无法记录登录失败次数，已拒绝登录") and "磁盘空间" in text, password
            assert screen_of(flow, LoginScreen) is login
        os.rmdir(blocker)  # recording works again: so does the login
        first_login(gui_root, flow, login)
        assert not scripted.errors
    finally:
        flow.close()
