"""The whole exam day through the UI, in drill mode (the walkthrough test and the screenshots).

``ExamDay(root, data_dir, work_dir, dialogs, shot=None)`` starts the real start flow
(``kd.views.start.StartFlow``) over a drill ``App`` on 127.0.0.1 (platform simulator,
dongle emulator, LAN port 0) and walks it by pressing the UI's buttons (``invoke()``),
answering dialogs from the ``ScriptedDialogs`` plan, and pumping Tk until the tables
show each step's outcome. ``shot(name)`` is called at each screen (screenshots); the
test checks the tables itself between steps. Nothing calls the core directly except
to read what the tables should show.
"""

import os
from typing import Any, Callable, Dict, List, Optional

from tests.support.ui import pump_until

PASSWORD = "drill-2026"
#: a small drill site whose sessions run in about a second at the drill's speed
SITE = {"rooms": 3, "sessions": 2, "candidates": 5, "room_kb": 4, "duration": 30, "first_start_in": 10, "gap": 5}


def refused(login: Any) -> bool:
    """The login screen answered a wrong password: the refusal, or the back-off counting down."""
    text = login.error.cget("text")
    return str(login.button.cget("state")) == "normal" and "错误" in text or "后重试" in text


class ExamDay:
    def __init__(self, root: Any, data_dir: str, work_dir: str, dialogs: Any,
                 shot: Optional[Callable[[str], None]] = None, site: Optional[Dict[str, Any]] = None,
                 timeout: float = 30.0, mock: bool = False, wrong_logins: int = 0,
                 speed: Optional[float] = 900.0) -> None:
        self.root, self.data_dir, self.work_dir, self.dialogs = root, data_dir, work_dir, dialogs
        self.shot = shot or (lambda name: None)
        self.site = dict(site or SITE)
        self.timeout = timeout
        self.mock = mock
        self.wrong_logins = wrong_logins
        self.speed = speed
        self.flow: Any = None
        self.opened: List[str] = []

    # -- helpers -----------------------------------------------------------------------------
    @property
    def shell(self) -> Any:
        return self.flow.shell

    @property
    def core(self) -> Any:
        return self.flow.app.core

    def wait(self, predicate: Callable[[], Any], what: str, timeout: Optional[float] = None) -> Any:
        try:
            return pump_until(self.root, predicate, timeout or self.timeout, what)
        except AssertionError as e:
            raise AssertionError("{}; dialogs: {}; notes: {}".format(
                e, self.dialogs.calls[-5:], self.shell.notes[-5:] if self.flow.shell else [])) from None

    def settle(self) -> None:
        """Let pending workers and refreshes land (the runner is idle and no page refresh is running)."""
        shell, loop = self.flow.shell, self.flow.loop
        if shell is not None:
            shell.refresh_steps()
        self.wait(lambda: loop.idle() and not getattr(self.page(), "_refreshing", False)
                  and (shell is None or not shell.steps_pending), "idle UI")
        self.wait(loop.idle, "step marks")
        self.root.update()

    def page(self) -> Any:
        return self.shell.current if self.flow.shell is not None else None

    def show(self, label: str) -> Any:
        self.shell.show(label)
        self.settle()
        return self.shell.current

    def cells(self, page: Optional[Any] = None) -> List[List[str]]:
        return (page or self.page()).table.cells()

    # -- the day -----------------------------------------------------------------------------
    def start(self) -> None:
        """正在启动 → 考点端登录 → 修改初始密码 → 系统设置 → main window."""
        from kd.app import App  # noqa: PLC0415
        from kd.views.login import LoginScreen, SetupScreen  # noqa: PLC0415
        from kd.views.password import PasswordForm  # noqa: PLC0415
        from kd.views.start import StartFlow  # noqa: PLC0415

        site = self.site
        self.flow = StartFlow(self.root, lambda: App(self.data_dir, lan_host="127.0.0.1", lan_port=0,
                                                     drill_site=site, probe_s=60.0),
                              dialogs=self.dialogs, log_path=os.path.join(self.data_dir, "logs", "kaodian.log"),
                              browser=self.opened.append)  # no real browser in tests
        self.flow.begin()
        self.root.update()
        self.shot("01_starting")
        login = self.wait(lambda: isinstance(self.flow.screen, LoginScreen) and self.flow.screen.core is not None
                           and self.flow.screen, "login screen")
        self.shot("03_login")
        for _ in range(self.wrong_logins):
            login.password.insert(0, "wrong")
            login.button.invoke()
            self.wait(lambda: refused(login), "login refused")
        if self.wrong_logins:
            self.shot("04_login_refused")
            while "后重试" not in login.error.cget("text"):  # fail on until the back-off counts down
                self.wait(lambda: str(login.button.cget("state")) == "normal", "login answered")
                login.password.insert(0, "wrong")
                login.button.invoke()
                self.wait(lambda: refused(login), "login refused")
            self.shot("04_login_backoff")
            # the countdown (1 s after 3 failures, doubling after) enables 登录 again by itself
            self.wait(lambda: str(login.button.cget("state")) == "normal", "the back-off to pass")
        login.password.delete(0, "end")
        login.password.insert(0, "888")
        login.password.focus_force()
        self.root.update()
        login.password.event_generate("<Return>")  # Enter logs in
        form = self.wait(lambda: isinstance(self.flow.screen, PasswordForm) and self.flow.screen, "password form")
        self.shot("05_password_forced")
        form.old.insert(0, "888")
        form.new.insert(0, PASSWORD)
        form.again.insert(0, PASSWORD)
        form.ok.invoke()
        setup = self.wait(lambda: isinstance(self.flow.screen, SetupScreen) and self.flow.screen, "setup screen")
        if self.mock:
            setup.mock.invoke()
        self.shot("06_setup")
        setup.button.invoke()
        self.wait(lambda: self.flow.shell is not None, "main window")
        self.settle()

    def load(self) -> None:
        page = self.show("导入考务")
        self.shot("07_load_empty")
        page.load_button.invoke()
        rooms = self.site["rooms"]
        self.wait(lambda: len(self.cells(page)) >= rooms and not self.shell.busy, "rooms loaded")
        self.settle()
        self.shot("08_load")

    def export_site_info(self) -> str:
        page = self.show("考场注册")
        folder = os.path.join(self.work_dir, "usb")
        os.makedirs(folder, exist_ok=True)
        self.dialogs.plan("choose_dir", folder)
        page.export_button.invoke()
        return self.wait(lambda: self.shell.last_site_info, "site info exported")

    def proctors(self) -> None:
        """Start the simulated proctors (演练 → 启动模拟考场) and wait until every room registered."""
        rooms = self.site["rooms"]
        self.shell.drill.start(rooms=rooms, speed=self.speed)
        core = self.core
        self.wait(lambda: sum(1 for r in core.registration.snapshot()["rooms"] if r.get("registered"))
                  >= rooms, "rooms registered")
        self.settle()
        self.show("考场注册")
        self.shot("09_register")

    def authorize(self) -> None:
        page = self.show("考试授权")
        page.authorize_button.invoke()
        sessions = self.site["sessions"]
        self.wait(lambda: sum(1 for s in self.core.authorization.snapshot()["sessions"] if s.get("authorized"))
                  >= sessions, "sessions authorized")
        self.settle()
        self.shot("10_authorize")

    def seal(self) -> None:
        page = self.show("封场检测")
        page.check_button.invoke()
        self.wait(lambda: self.core.seal.last() is not None, "seal check done")
        self.settle()
        self.shot("11_seal")

    def verify(self) -> None:
        page = self.show("授权验证")
        page.sync_button.invoke()
        self.wait(lambda: self.dialogs.count("info") and "机考锁校时" in self.dialogs.texts(), "lock synced")
        for index in range(self.site["sessions"]):
            page.session.current(index)
            page.session.event_generate("<<ComboboxSelected>>")
            sid = page.selected_session()
            page.verify_button.invoke()
            self.wait(lambda s=sid: any(r["id"] == s and r["verified"]
                                        for r in self.core.verification.snapshot()["sessions"]), "verified")
            self.settle()
        self.shot("12_verify")

    def results(self) -> None:
        """考场管理 while the sessions run, then wait for every result to arrive."""
        self.show("考场管理")
        self.wait(lambda: any(r["started"] and r["in_exam"] for r in self.core.monitor.snapshot()["rows"]),
                  "a session running", timeout=self.timeout * 2)
        self.settle()
        self.shot("13_monitor")
        try:
            self.wait(lambda: self.core.recovery.all_recovered(), "all results received", timeout=self.timeout * 2)
        except AssertionError as e:
            sim = self.shell.drill.simulation
            raise AssertionError("{}\nproctors: {}\nrecovery: {}".format(
                e, sim.report() if sim else self.shell.drill.report,
                [(r.get("room"), r.get("session"), r.get("state")) for r in
                 self.core.recovery.snapshot().get("rows", [])])) from None
        self.settle()

    def upload(self) -> Any:
        """数据回收 → 上报: 第一步 backup to the external folder, 第二步 the upload tool, every session."""
        page = self.show("数据回收")
        self.shot("14_recovery")
        page.upload_button.invoke()
        dialog = self.wait(lambda: page.upload_dialog is not None and page.upload_dialog, "upload dialog")
        self.root.update()
        self.shot("15_upload_dialog")
        folder = os.path.join(self.work_dir, "usb-backup")
        os.makedirs(folder, exist_ok=True)
        self.dialogs.plan("choose_dir", folder)
        dialog.step1.invoke()
        self.wait(lambda: str(dialog.step2.cget("state")) == "normal", "external backup verified")
        dialog.step2.invoke()
        tool = self.wait(lambda: dialog.tool is not None and dialog.tool.blocks and dialog.tool, "upload tool")
        self.root.update()
        for sid in list(tool.blocks):
            tool.upload(sid)
            self.wait(lambda: tool.busy is None, "upload of " + sid)
        self.wait(lambda: self.core.upload.snapshot() and _all_uploaded(self.core), "every result uploaded")
        self.wait(lambda: all(row[-1] == "全部已上报" for row in tool.cells()), "the tool shows every upload")
        self.root.update()
        self.shot("16_upload_tool")
        return tool

    def close(self) -> None:
        if self.flow is not None:
            self.flow.close()


def _all_uploaded(core: Any) -> bool:
    ok, _reason = core.system.exit_allowed()
    return ok
