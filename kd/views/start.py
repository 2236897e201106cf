"""The GUI entry point and the start flow (``main.py`` without a command or ``--headless``).

``run(data_dir, lock_url, lan_port, log_path, lan_host)`` opens the window and runs:

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

The flow owns the root's one ``kd.views.loop.TkLoop`` (its workers, timers and the
error hook, with the flow's dialogs and log path); the shell uses it too. ``close()``
waits up to ``CLOSE_DEADLINE_S`` for the loop's workers in flight before the App stops.

Watchers (``kd.views.hooks``): ``FLOW`` (the flow, before the loop starts: tests drive
the real screens from there) and ``PAINTED`` (each start screen; ``kd.views.probe``
reports them to benchmarks/startup.py and tests/gui/test_restart.py when
``KD_STARTUP_PROBE`` / ``KD_STARTUP_PROBE_FILE`` are set).
"""

import logging
import tkinter as tk
import webbrowser
from typing import Any, Callable, Dict, Optional, Union

import ttkbootstrap as ttk

from kd import paths
from kd.errors import UserError
from kd.views import branding, dpi, hooks, probe
from kd.views.dialogs import Dialogs
from kd.views.login import GateScreen, LoginScreen, SetupScreen
from kd.views.loop import INTERNAL, INTERNAL_REMEDY, TkLoop
from kd.views.password import PasswordForm
from kd.views.widgets import apply_fonts

log = logging.getLogger(__name__)

EXIT, RESTART = "exit", "restart"
THEME = "cosmo"
FORCED_HINT = "当前账号仍在使用初始密码，请先修改密码（至少 6 位，不能是 888）。"
#: how long closing waits for the UI's workers in flight before the App stops (seconds)
CLOSE_DEADLINE_S = 15.0


class StartFlow:
    """Start screens → main window in one root; ``outcome`` is EXIT or RESTART after the loop ends."""

    def __init__(self, root: Any, app_factory: Callable[[], Any], *, dialogs: Any = None, log_path: str = "",
                 tray_factory: Optional[Callable[[Any], Any]] = None,
                 browser: Callable[[str], Any] = webbrowser.open) -> None:
        self.root = root
        self.app_factory = app_factory
        self.log_path = log_path
        self.tray_factory = tray_factory
        self.browser = browser
        self.loop = TkLoop(root, dialogs=dialogs if dialogs is not None else Dialogs(root), log_path=log_path)
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
        root.protocol("WM_DELETE_WINDOW", self.exit)

    @property
    def dialogs(self) -> Any:
        """The dialogs of the loop (and so of the shell): ``kd.views.dialogs.Dialogs`` or a test's."""
        return self.loop.dialogs

    @dialogs.setter
    def dialogs(self, dialogs: Any) -> None:
        self.loop.dialogs = dialogs

    # -- screens -----------------------------------------------------------------------------
    def _swap(self, screen: Any) -> Any:
        if self.screen is not None:
            self.screen.destroy()
        self.screen = screen
        if screen is not None:
            screen.pack(fill="both", expand=True)
        return screen

    def begin(self) -> None:
        """Show 考点端登录 (登录 disabled until ready) and start the App in a worker once
        Tk has laid the screen out (``after_idle``: the worker's imports and the site's
        opening would otherwise take the CPU and the GIL from the first paint)."""
        self.attempts += 1
        login = self._swap(LoginScreen(self.root, self.loop, None, self._logged_in))
        hooks.fire(hooks.PAINTED, self.root, "login")
        self.root.after_idle(lambda: self._start_app(login))

    def _start_app(self, login: Any) -> None:
        if self.closed or self.screen is not login or self.app is not None:
            return  # closed, or the screen was replaced before the first idle round

        def start() -> Any:  # worker: even importing the services waits until the window shows
            self.app = self.app_factory()
            return self.app.start()

        self.loop.submit(start, self._started, self._start_failed)

    def _start_failed(self, exc: BaseException) -> None:
        app, self.app = self.app, None
        if app is not None:
            self.loop.submit(app.stop, None, lambda e: log.warning("stopping after a failed start: %r", e))
        if not isinstance(exc, UserError):
            log.error("the app did not start", exc_info=(type(exc), exc, exc.__traceback__))
            exc = UserError(INTERNAL.format(self.log_path or "（日志文件）"), INTERNAL_REMEDY)
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
            self._swap(LoginScreen(self.root, self.loop, app.core, self._logged_in))
        hooks.fire(hooks.PAINTED, self.root, "ready")

    def _logged_in(self, result: Dict[str, Any]) -> None:
        self.user = result["user"]
        if result.get("must_change"):
            self._swap(PasswordForm(self.root, self.loop, self.app.core, self.user, self._password_changed,
                                    heading="修改初始密码", hint=FORCED_HINT))
            self.screen.pack_forget()  # centred, as the login card it replaces
            self.screen.place(relx=0.5, rely=0.45, anchor="center")
            return
        self._password_changed({})

    def _password_changed(self, result: Dict[str, Any]) -> None:
        self.loop.submit(self.app.core.accounts.needs_setup, self._setup_or_main)

    def _setup_or_main(self, needs_setup: bool) -> None:
        if not needs_setup:
            self.main()
            return
        sim = getattr(self.app, "simulator", None)
        code = getattr(sim, "site_code", None) if getattr(self.app, "drill", False) else None
        note = "演练模式：模拟监控平台分配的考点代码是 {}。".format(code) if code else ""
        self._swap(SetupScreen(self.root, self.loop, self.app.core, self.user, lambda r: self.main(),
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

        self.loop.submit(lambda: core.system.initialize("", self.user), done)

    def main(self) -> None:
        """The main window (and the tray icon)."""
        from kd.views.shell import Shell  # noqa: PLC0415

        self._swap(None)
        tray = self.tray_factory(self) if self.tray_factory is not None else None
        self.shell = Shell(self.root, self.app.core, loop=self.loop, app=self.app, user=self.user,
                           log_path=self.log_path, tray_available=tray.docked if tray is not None else False,
                           on_exit=self._end, browser=self.browser)
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
        """After the loop: stop the shell, the tray, the UI's workers, then the App (blocks until they stopped)."""
        if self.closed:
            return
        self.closed = True
        if self.shell is not None:
            self.shell.close()
        if self.tray is not None:
            self.tray.stop()
        self.loop.close(CLOSE_DEADLINE_S)  # the workers call the core: they end before the services stop
        if self.app is not None:
            self.app.stop()


def make_window() -> Any:
    """The root window: theme, CJK font, icon, a size that fits 1024x700 up to 1366x768
    (logical size: multiplied by the display scaling, kd.views.dpi)."""
    scaling = dpi.tk_scaling()
    root = ttk.Window(title=branding.PRODUCT, themename=THEME, scaling=scaling)
    fit_window(root, scale=dpi.factor(scaling))
    set_icon(root)
    return root


def fit_window(root: Any, width: int = 1366, height: int = 768, scale: float = 1.0) -> None:
    sw, sh = root.winfo_screenwidth(), root.winfo_screenheight()
    w, h = min(round(width * scale), sw), min(round(height * scale), max(600, sh - round(40 * scale)))
    root.geometry("{}x{}+{}+{}".format(w, h, max(0, (sw - w) // 2), max(0, (sh - h) // 2 - 20)))
    root.minsize(min(round(1000 * scale), w), min(round(660 * scale), h))


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
    tray = Tray(flow.loop.post, lambda: flow.shell.show_window(), lambda: flow.shell.exit_system(), root=flow.root)
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


def run(data_dir: str, lock_url: Optional[str] = None, lan_port: int = 9190,
        log_path: str = "", lan_host: str = "0.0.0.0") -> Union[int, str]:  # noqa: S104 - every interface
    """Run the desktop app until 退出 / 退出系统 (the exit code) or a restart (``RESTART``).

    Blocks until the window closed and the App stopped. On ``RESTART`` the caller starts
    a new process (main.py, ``kd.relaunch``) once it released the instance lock.
    """
    def make_app() -> Any:  # called in a worker
        from kd.app import App  # noqa: PLC0415

        return App(data_dir, lock_url=lock_url, lan_host=lan_host, lan_port=lan_port)

    unwatch = probe.install()
    root = make_window()
    flow = StartFlow(root, make_app, log_path=log_path, tray_factory=tray_for)
    try:
        hooks.fire(hooks.FLOW, flow)
        flow.begin()
        root.mainloop()
    finally:
        root.withdraw()
        flow.close()
        finish_idle(root)
        root.destroy()
        unwatch()
    if flow.outcome == RESTART:
        log.info("restart asked: the window is closed and the app stopped")
        return RESTART
    return flow.exit_code
