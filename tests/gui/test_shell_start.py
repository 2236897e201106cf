"""The start screens over a real App: the dongle gate (重试 / 退出), 考点端登录 with the
back-off shown inline, the forced change of the default password, 系统设置 with its 初始化
link, and the main window at the end."""

import datetime

import pytest

from kd.app import App
from kd.core.context import cst_now
from kd.store.database import open_stores
from kd.views.login import GateScreen, LoginScreen, SetupScreen
from kd.views.password import PasswordForm
from kd.views.start import EXIT, RESTART, StartFlow
from tests.support import sites
from tests.support.sites import first_login, ready_login, screen_of
from tests.support.ui import pump_until

pytestmark = pytest.mark.gui

SITE = {"rooms": 2, "sessions": 1, "candidates": 3, "room_kb": 4}


class HeldClock:
    """The site's clock: the real time until ``hold()``, then still until ``advance(s)``."""

    def __init__(self):
        self.held = None

    def __call__(self):
        held = self.held
        return cst_now() if held is None else held

    def hold(self):
        self.held = cst_now()

    def advance(self, seconds):
        self.held += datetime.timedelta(seconds=seconds)


def drill_flow(root, dialogs, data_dir, clock=None):
    return sites.drill_flow(root, dialogs, data_dir, SITE, clock)


def test_gate_refuses_without_the_dongle_retry_and_exit(gui_root, scripted, tmp_path):
    data = str(tmp_path / "data")
    stores = open_stores(data)
    stores.settings.put("settings", "site", {"site_code": "11003", "mode": "formal"})
    stores.close()
    flow = StartFlow(gui_root, lambda: App(data, lock_url="socket://127.0.0.1:9", lan_host="127.0.0.1",
                                           lan_port=0), dialogs=scripted)
    try:
        flow.begin()
        gate = pump_until(gui_root, lambda: screen_of(flow, GateScreen), 20, "gate")
        assert gate.message.cget("text").startswith("考点管理系统需要机考锁才能启动")
        assert gate.remedy.cget("text") and gate.retry.cget("text") == "重试" and gate.exit.cget("text") == "退出"
        gate.retry.invoke()
        again = pump_until(gui_root, lambda: screen_of(flow, GateScreen) is not gate and screen_of(flow, GateScreen),
                           20, "gate again")
        assert flow.attempts == 2 and flow.app is None
        again.exit.invoke()
        assert flow.outcome == EXIT and flow.shell is None
        assert flow.exit_code == 4  # main.py exits with the dongle gate's code
    finally:
        flow.close()
    assert not scripted.calls


def test_login_back_off_is_inline(gui_root, scripted, tmp_path):
    # The site's time stands still during the attempts: the 3rd failure's back-off (1 s, from
    # the moment the attempt is recorded, before its password is hashed) must not run out
    # while the test types the 4th; it ends when the test moves the clock on.
    clock = HeldClock()
    flow = drill_flow(gui_root, scripted, str(tmp_path / "data"), clock)
    try:
        flow.begin()
        login = pump_until(gui_root, lambda: ready_login(flow), 30, "login")
        assert login.user.get() == "admin"
        clock.hold()
        for attempt in range(3):
            login.password.insert(0, "wrong{}".format(attempt))
            login.button.invoke()
            assert str(login.button.cget("state")) == "disabled"  # PBKDF2 runs in a worker
            pump_until(gui_root, lambda: str(login.button.cget("state")) == "normal" or login.waiting, 20, "answer")
            assert "错误" in login.error.cget("text") and login.password.get() == ""
        # the 3rd failure's back-off counts down with 登录 disabled, then 登录 comes back by itself
        third = login.error.cget("text").replace(" ", "")
        assert login.waiting and str(login.button.cget("state")) == "disabled"
        assert "已连续失败3次" in third and "1秒后重试" in third
        pump_until(gui_root, lambda: str(login.button.cget("state")) == "normal", 20, "the countdown's end")
        login.password.insert(0, "888")  # even the right password waits out the back-off (the site's clock held)
        login.button.invoke()
        pump_until(gui_root, lambda: login.waiting, 20, "back-off")
        text = login.error.cget("text")
        assert "登录失败次数过多" in text and "秒后重试" in text.replace(" ", "")
        pump_until(gui_root, lambda: str(login.button.cget("state")) == "normal", 20, "the countdown's end")
        assert screen_of(flow, LoginScreen) is login and login.password.get() == "" and not scripted.calls
        clock.advance(1)  # the back-off is over: the right password logs in (and must be changed)
        first_login(gui_root, flow, login)
        assert not scripted.calls
    finally:
        flow.close()


def test_first_login_password_change_setup_and_main_window(gui_root, scripted, tmp_path):
    flow = drill_flow(gui_root, scripted, str(tmp_path / "data"))
    try:
        flow.begin()
        login = pump_until(gui_root, lambda: ready_login(flow), 30, "login")
        login.password.insert(0, "888")
        login.password.focus_force()
        gui_root.update()
        login.password.event_generate("<Return>")  # Enter logs in
        form = pump_until(gui_root, lambda: screen_of(flow, PasswordForm), 20, "forced change")
        form.old.insert(0, "888")
        form.new.insert(0, "888")
        form.again.insert(0, "888")
        form.ok.invoke()
        pump_until(gui_root, lambda: form.error.cget("text"), 20, "refusal")
        assert "太短" in form.error.cget("text")
        for entry in (form.new, form.again):
            entry.delete(0, "end")
            entry.insert(0, "start-2026")
        form.ok.invoke()
        setup = pump_until(gui_root, lambda: screen_of(flow, SetupScreen), 20, "系统设置")
        assert setup.code.get() == flow.app.simulator.site_code and setup.mode.get() == "formal"
        # the 初始化 link asks twice; a "no" changes nothing
        scripted.plan("confirm", True, False)
        setup.init_link.invoke()
        assert scripted.count("confirm") == 2 and screen_of(flow, SetupScreen) is setup
        setup.code.delete(0, "end")
        setup.code.insert(0, "12ab")
        setup.button.invoke()
        pump_until(gui_root, lambda: setup.error.cget("text"), 20, "bad code")
        assert "考点代码格式错误" in setup.error.cget("text")
        setup.code.delete(0, "end")
        setup.code.insert(0, flow.app.simulator.site_code)
        setup.mock.invoke()
        setup.button.invoke()
        pump_until(gui_root, lambda: flow.shell is not None, 20, "main window")
        pump_until(gui_root, lambda: "(当前是模考)" in gui_root.title(), 10, "mock title")
        assert gui_root.title() == "考点管理系统 【{}】(当前是模考)".format(flow.app.simulator.site_code)
        assert flow.shell.drill is not None and flow.shell.status.texts()["port"] == "端口: {}".format(
            flow.app.lan.port())
        # 更多 → 系统初始化 with the right code: done, and the app restarts
        scripted.plan("confirm", True, True).plan("ask_text", flow.app.simulator.site_code)
        flow.shell.more.invoke("系统初始化")
        pump_until(gui_root, lambda: flow.outcome == RESTART, 20, "restart")
        assert scripted.messages[-1][1] == "需要重新启动"
        scripted.check()
        assert not scripted.errors
    finally:
        flow.close()
