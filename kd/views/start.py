"""The GUI entry point and the start flow (``main.py`` without a command or ``--headless``).

``run(data_dir, lock_url, lan_port, log_path)`` opens the window and runs:

1. 考点端登录 at once, its 登录 disabled ("正在启动考点管理系统…") while ``App.start()``
   runs in a worker (drill mode starts a platform simulator and a dongle emulator: the
   window stays responsive, the user can already type);
2. a start refusal (``LockGateError``: "考点管理系统需要机考锁才能启动…", or any other
   ``UserError`` such as the LAN port being taken) → ``GateScreen`` with 重试 / 退出;
3. 登录 enabled → (default password) the forced change → (no site code yet) 系统设置;
4. the main window (``kd.views.shell.Shell``) and the tray icon.

Restart (after 系统恢复, 系统初始化, 模考转正考): the shell tells the user ("…点击确定后考点
管理系统将重新启动"), then the window closes, the App stops and ``run`` returns
``RESTART``; ``main.py`` releases the instance lock and starts a new process
(``kd.relaunch``). Nothing is rebuilt in this process: a second Tk root here would find
ttkbootstrap's per-process ``Style`` bound to the destroyed one (a plain grey window,
Tcl ``bgerror``s) next to whatever the old App left running. ``run`` returns the exit
code when the user exits (0 after 退出系统; the refusal's code after 退出 at the gate).

Probes (benchmarks/startup.py, tests/gui/test_restart.py): ``KD_STARTUP_PROBE`` prints
``KD-PAINTED <screen>`` once a screen is drawn (and ends the process after the screen
it names); ``KD_STARTUP_PROBE_FILE=<path>`` appends one JSON line per drawn screen to
that file: ``{"screen", "pid", "theme", "background", "danger", "primary"}`` — the Tk
theme in use, the root's background and the ``danger.TLabel`` foreground and
``primary.TButton`` background as Tk resolves them (what is painted, not what
ttkbootstrap's Python side believes). ``ON_FLOW`` (tests) is called with the
``StartFlow`` before the window's loop starts.
"""

import json
import logging
import os
import sys
import tkinter as tk
from typing import Any, Callable, Dict, Optional, Union

import ttkbootstrap as ttk

from kd import paths
from kd.errors import UserError
from kd.views import branding
from kd.views.dialogs import Dialogs
from kd.views.login import GateScreen, LoginScreen, SetupScreen
from kd.views.password import PasswordForm
from kd.views.runner import UiRunner
from kd.views.widgets import apply_fonts

log = logging.getLogger(__name__)

EXIT, RESTART = "exit", "restart"
THEME = "cosmo"
FORCED_HINT = "当前账号仍在使用初始密码，请先修改密码（至少 6 位，不能是 888）。"


class StartFlow:
    """Start screens → main window in one root; ``outcome`` is EXIT or RESTART after the loop ends."""

    def __init__(self, root: Any, app_factory: Callable[[], Any], *, dialogs: Any = None, log_path: str = "",
                 tray_factory: Optional[Callable[[Any], Any]] = None) -> None:
        self.root = root
        self.app_factory = app_factory
        self.dialogs = dialogs if dialogs is not None else Dialogs(root)
        self.log_path = log_path
        self.tray_factory = tray_factory
        self.runner = UiRunner(root)
        self.app: Any = None
        self.shell: Any = None
        self.tray: Any = None
        self.screen: Any = None
        self.user = ""
        self.outcome = EXIT
        #: the process exit code: the refusal's (4 for the dongle gate) when 退出 ends a refused start
        self.exit_code = 0
        self.attempts = 0
        self.closed = False
        apply_fonts(root)
        root.report_callback_exception = self._report
        root.protocol("WM_DELETE_WINDOW", self.exit)

    # -- screens -----------------------------------------------------------------------------
    def _swap(self, screen: Any) -> Any:
        if self.screen is not None:
            self.screen.destroy()
        self.screen = screen
        if screen is not None:
            screen.pack(fill="both", expand=True)
        return screen

    def begin(self) -> None:
        """Show 考点端登录 (登录 disabled until ready) and start the App in a worker."""
        self.attempts += 1
        self._swap(LoginScreen(self.root, self.runner, None, self._logged_in))
        startup_probe(self.root, "login")

        def start() -> Any:  # worker: even importing the services waits until the window shows
            self.app = self.app_factory()
            return self.app.start()

        self.runner.submit(start, self._started, self._start_failed)

    def _start_failed(self, exc: BaseException) -> None:
        app, self.app = self.app, None
        if app is not None:
            self.runner.submit(app.stop, None, lambda e: log.warning("stopping after a failed start: %r", e))
        if not isinstance(exc, UserError):
            log.error("the app did not start", exc_info=(type(exc), exc, exc.__traceback__))
            exc = UserError("内部错误，详见日志 {}".format(self.log_path or "（日志文件）"),
                            "请把日志文件交给技术服务单位。")
        else:
            log.warning("start refused: %s (%s)", exc.cause, exc.detail)
        refusal = exc

        def quit_refused() -> None:
            self.exit_code = refusal.exit_code
            self.exit()

        self._swap(GateScreen(self.root, exc, self.begin, quit_refused))

    def _started(self, app: Any) -> None:
        self.exit_code = 0
        if isinstance(self.screen, LoginScreen):
            self.screen.ready(app.core)
        else:
            self._swap(LoginScreen(self.root, self.runner, app.core, self._logged_in))
        startup_probe(self.root, "ready")

    def _logged_in(self, result: Dict[str, Any]) -> None:
        self.user = result["user"]
        if result.get("must_change"):
            self._swap(PasswordForm(self.root, self.runner, self.app.core, self.user, self._password_changed,
                                    heading="修改初始密码", hint=FORCED_HINT))
            self.screen.pack_configure(expand=False, pady=80)
            return
        self._password_changed({})

    def _password_changed(self, result: Dict[str, Any]) -> None:
        self.runner.submit(self.app.core.accounts.needs_setup, self._setup_or_main)

    def _setup_or_main(self, needs_setup: bool) -> None:
        if not needs_setup:
            self.main()
            return
        sim = getattr(self.app, "simulator", None)
        code = getattr(sim, "site_code", None) if getattr(self.app, "drill", False) else None
        note = "演练模式：模拟监控平台分配的考点代码是 {}。".format(code) if code else ""
        self._swap(SetupScreen(self.root, self.runner, self.app.core, self.user, lambda r: self.main(),
                               self._initialize, suggested=code, note=note))

    def _initialize(self) -> None:
        """The 初始化 link of 系统设置: confirmations, then 系统初始化 (no site code is set yet)."""
        from kd.views.more import INIT_AGAIN, INIT_WARNING  # noqa: PLC0415

        d = self.dialogs
        if not d.confirm("系统初始化", INIT_WARNING) or not d.confirm("系统初始化", INIT_AGAIN):
            return
        core = self.app.core

        def done(result: Any) -> None:
            d.info("需要重新启动", "系统初始化完成。", "点击确定后考点管理系统将重新启动。")
            self._end(True)

        self.runner.submit(lambda: core.system.initialize("", self.user), done)

    def main(self) -> None:
        """The main window (and the tray icon)."""
        from kd.views.shell import Shell  # noqa: PLC0415

        self._swap(None)
        tray = self.tray_factory(self) if self.tray_factory is not None else None
        self.shell = Shell(self.root, self.app.core, app=self.app, dialogs=self.dialogs, user=self.user,
                           log_path=self.log_path, tray_available=tray is not None, on_exit=self._end)
        self.tray = tray

    # -- ending ------------------------------------------------------------------------------
    def exit(self) -> None:
        if self.shell is not None:
            self.shell.close_window()
            return
        self._end(False)

    def _end(self, restart: bool) -> None:
        self.outcome = RESTART if restart else EXIT
        self.root.quit()

    def close(self) -> None:
        """After the loop: stop the shell, the tray and the App (blocks until they stopped)."""
        if self.closed:
            return
        self.closed = True
        if self.shell is not None:
            self.shell.close()
        if self.tray is not None:
            self.tray.stop()
        self.runner.close()
        if self.app is not None:
            self.app.stop()

    def _report(self, exc_type: Any, exc: BaseException, tb: Any) -> None:
        if isinstance(exc, UserError):
            self.dialogs.error(exc)
            return
        log.error("internal error in the UI", exc_info=(exc_type, exc, tb))
        self.dialogs.error(UserError("内部错误，详见日志 {}".format(self.log_path or "（日志文件）"),
                                     "请把日志文件交给技术服务单位。"), title="内部错误")


PROBE_ENV = "KD_STARTUP_PROBE"
PROBE_FILE_ENV = "KD_STARTUP_PROBE_FILE"


def startup_probe(root: Any, screen: str) -> None:
    """For benchmarks and tests: report once ``screen`` is drawn (see the module docstring).

    ``KD_STARTUP_PROBE`` set: print ``KD-PAINTED <screen>``; with
    ``KD_STARTUP_PROBE=login`` the process also ends after the login screen is drawn.
    ``KD_STARTUP_PROBE_FILE`` set: append the screen's JSON line to that file.
    """
    want = os.environ.get(PROBE_ENV)
    path = os.environ.get(PROBE_FILE_ENV)
    if not want and not path:
        return

    def painted() -> None:
        root.update_idletasks()
        if path:
            with open(path, "a", encoding="utf-8") as f:
                f.write(json.dumps(dict(painted_style(root), screen=screen, pid=os.getpid())) + "\n")
        if want:
            print("KD-PAINTED {}".format(screen), file=sys.stdout, flush=True)
            if want == screen:
                root.after(50, root.quit)

    root.after_idle(painted)


def painted_style(root: Any) -> Dict[str, str]:
    """The theme and colours Tk paints ``root`` with (the probe's fields)."""
    def lookup(style: str, option: str) -> str:
        return str(root.tk.call("ttk::style", "lookup", style, option))

    return {"theme": str(root.tk.call("ttk::style", "theme", "use")), "background": str(root.cget("background")),
            "danger": lookup("danger.TLabel", "-foreground"), "primary": lookup("primary.TButton", "-background")}


def make_window() -> Any:
    """The root window: theme, CJK font, icon, a size that fits 1024x700 up to 1366x768."""
    root = ttk.Window(title=branding.PRODUCT, themename=THEME)
    fit_window(root)
    set_icon(root)
    return root


def fit_window(root: Any, width: int = 1366, height: int = 768) -> None:
    sw, sh = root.winfo_screenwidth(), root.winfo_screenheight()
    w, h = min(width, sw), min(height, max(600, sh - 40))
    root.geometry("{}x{}+{}+{}".format(w, h, max(0, (sw - w) // 2), max(0, (sh - h) // 2 - 20)))
    root.minsize(min(1000, w), min(660, h))


def set_icon(root: Any) -> None:
    try:
        image = tk.PhotoImage(master=root, file=paths.resource_path("assets", "kaodian.png"))
    except tk.TclError as e:
        log.warning("no window icon: %s", e)
        return
    root.iconphoto(True, image)
    root._kd_icon = image  # keep a reference


def tray_for(flow: StartFlow) -> Any:
    """The tray icon for the main window, or None (switched off or not usable)."""
    from kd.views.tray import Tray, tray_enabled  # noqa: PLC0415

    if not tray_enabled():
        return None
    tray = Tray(lambda fn: flow.shell.post(fn) if flow.shell is not None else None,
                lambda: flow.shell.show_window(), lambda: flow.shell.exit_system())
    return tray if tray.start() else None


def finish_idle(root: Any) -> None:
    """Run the root's pending idle work (ttk's ``<<ThemeChanged>>`` round after a style was
    configured) before it is destroyed: Tcl keeps idle handlers per thread, so one left
    behind fires on the next event loop of this thread against a destroyed application
    (a Tcl ``bgerror`` on stderr, e.g. under the message box of a failed restart)."""
    try:
        root.update_idletasks()
    except tk.TclError as e:
        log.debug("idle work before closing the window: %s", e)


#: tests: called with the ``StartFlow`` before the window's loop starts (main.py sets none)
ON_FLOW: Optional[Callable[[StartFlow], None]] = None


def run(data_dir: str, lock_url: Optional[str] = None, lan_port: int = 9190,
        log_path: str = "") -> Union[int, str]:
    """Run the desktop app until 退出 / 退出系统 (the exit code) or a restart (``RESTART``).

    Blocks until the window closed and the App stopped. On ``RESTART`` the caller starts
    a new process (main.py, ``kd.relaunch``) once it released the instance lock.
    """
    def make_app() -> Any:  # called in a worker
        from kd.app import App  # noqa: PLC0415

        return App(data_dir, lock_url=lock_url, lan_port=lan_port)

    root = make_window()
    flow = StartFlow(root, make_app, log_path=log_path, tray_factory=tray_for)
    try:
        if ON_FLOW is not None:
            ON_FLOW(flow)
        flow.begin()
        root.mainloop()
    finally:
        root.withdraw()
        flow.close()
        finish_idle(root)
        root.destroy()
    if flow.outcome == RESTART:
        log.info("restart asked: the window is closed and the app stopped")
        return RESTART
    return flow.exit_code
