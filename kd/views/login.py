"""The start screens (screens.md §登录, 参数设置), shown in the main window before the shell.

- ``GateScreen``: the dongle gate's refusal ("考点管理系统需要机考锁才能启动…", cause,
  remedy) with 重试 and 退出 (also used for any other start error).
- ``LoginScreen``: 考点端登录 — 账号, 密码, 登录; shown while the services start (登录
  enabled by ``ready(core)``); Enter logs in; a refusal (wrong password, the back-off
  wait) shows inline. ``core.accounts.login`` (PBKDF2) runs in a worker. During the
  back-off 登录 is disabled and "请在 N 秒后重试" counts down each second (a timer of the
  root's ``TkLoop``); at zero 登录 is enabled again by itself.
- ``SetupScreen``: first login 系统设置 — 考点代码, 考试模式 ◉正式考试 ○模拟考试, 确定; the
  link 初始化 with its hint. ``core.accounts.setup`` validates (Tk-free).
- the forced change of the default password is ``kd.views.password.PasswordForm``.

Screens only collect input and show the core's answers; the flow is ``kd.views.start``.
The module imports nothing of the services (``kd.core.accounts`` is read when a login
answered, by then the App imported it): the login window is drawn before the services
are imported (tests/unit/test_startup_imports.py).
"""

import math
import time
import tkinter as tk
from typing import Any, Callable, Dict, Optional

import ttkbootstrap as ttk

from kd.errors import UserError

#: how often the back-off countdown looks at the clock (it shows whole seconds)
TICK_MS = 250
INIT_HINT = "系统初始化会将系统还原回初始安装状态, 请谨慎使用"


class _Card(ttk.Frame):
    """A centred panel with a heading."""

    def __init__(self, parent: tk.Misc, heading: str) -> None:
        super().__init__(parent)
        self.card = ttk.Frame(self, padding=24, bootstyle="light")
        self.card.place(relx=0.5, rely=0.45, anchor="center")
        ttk.Label(self.card, text=heading, font=("", 16, "bold"), bootstyle="inverse-light").grid(
            row=0, column=0, columnspan=2, pady=(0, 16))


class GateScreen(_Card):
    """A start refusal with 重试 and 退出."""

    def __init__(self, parent: tk.Misc, error: UserError, on_retry: Callable[[], None],
                 on_exit: Callable[[], None]) -> None:
        super().__init__(parent, "考点管理系统")
        self.message = ttk.Label(self.card, text=error.cause, wraplength=460, justify="left",
                                 bootstyle="inverse-light", font=("", 11))
        self.message.grid(row=1, column=0, columnspan=2, sticky="w")
        self.remedy = ttk.Label(self.card, text=error.remedy, wraplength=460, justify="left",
                                bootstyle="inverse-light")
        self.remedy.grid(row=2, column=0, columnspan=2, sticky="w", pady=(8, 16))
        self.retry = ttk.Button(self.card, text="重试", bootstyle="primary", width=10, command=on_retry)
        self.retry.grid(row=3, column=0, padx=8)
        self.exit = ttk.Button(self.card, text="退出", bootstyle="secondary", width=10, command=on_exit)
        self.exit.grid(row=3, column=1, padx=8)


class LoginScreen(_Card):
    """考点端登录. Shown at once while the services start (``core`` None): the user can type,
    and 登录 is enabled by ``ready(core)``; a refused start replaces the screen."""

    def __init__(self, parent: tk.Misc, loop: Any, core: Any, on_login: Callable[[Dict[str, Any]], None]) -> None:
        super().__init__(parent, "考点端登录")
        self.loop, self.core, self.on_login = loop, core, on_login
        ttk.Label(self.card, text="账号", bootstyle="inverse-light").grid(row=1, column=0, sticky="e", padx=8, pady=6)
        self.user = ttk.Entry(self.card, width=24)
        self.user.grid(row=1, column=1, pady=6)
        self.user.insert(0, "admin")
        ttk.Label(self.card, text="密码", bootstyle="inverse-light").grid(row=2, column=0, sticky="e", padx=8, pady=6)
        self.password = ttk.Entry(self.card, width=24, show="*")
        self.password.grid(row=2, column=1, pady=6)
        self.error = ttk.Label(self.card, text="", bootstyle="danger", wraplength=320, justify="left")
        self.error.grid(row=3, column=0, columnspan=2, pady=4)
        self.button = ttk.Button(self.card, text="登录", bootstyle="primary", width=20, command=self.submit)
        self.button.grid(row=4, column=0, columnspan=2, pady=(8, 0))
        for entry in (self.user, self.password):
            entry.bind("<Return>", lambda e: self.submit())
        self.password.focus_set()
        #: the back-off countdown: its timer, the monotonic deadline and the refusal's cause
        self._countdown: Any = None
        self._until = 0.0
        self._cause = ""
        if core is None:
            self.button.configure(state="disabled")
            self.error.configure(text="正在启动考点管理系统…", bootstyle="secondary")

    def ready(self, core: Any) -> None:
        """The services are up: enable 登录."""
        self.core = core
        self.button.configure(state="normal")
        self.error.configure(text="")

    @property
    def waiting(self) -> bool:
        """The back-off countdown runs (登录 disabled until it ends)."""
        return self._countdown is not None

    def submit(self) -> None:
        if str(self.button.cget("state")) == "disabled":
            return
        user, password = self.user.get().strip(), self.password.get()
        self.button.configure(state="disabled")
        self.error.configure(text="正在登录…", bootstyle="secondary")
        self.loop.submit(lambda: self.core.accounts.login(user, password), self._done, self._failed)

    def _done(self, result: Dict[str, Any]) -> None:
        self.button.configure(state="normal")
        self.error.configure(text="")
        self.on_login(result)

    def _failed(self, exc: BaseException) -> None:
        self.button.configure(state="normal")
        if not isinstance(exc, UserError):
            self.error.configure(text="")
            raise exc
        self.password.delete(0, "end")
        self.password.focus_set()
        from kd.core.accounts import LoginFailed  # noqa: PLC0415 - the services' module, see the docstring

        wait = getattr(exc, "wait_s", 0) if isinstance(exc, LoginFailed) else 0
        if wait > 0:
            self._count_down(exc.cause, wait)
            return
        self.error.configure(text="{}\n{}".format(exc.cause, exc.remedy).strip(), bootstyle="danger")

    # -- the back-off countdown ----------------------------------------------------------
    def _count_down(self, cause: str, wait_s: int) -> None:
        """登录 disabled, "请在 N 秒后重试" counting down every second, then 登录 enabled."""
        self._stop_countdown()
        self._cause = cause
        self._until = time.monotonic() + wait_s
        self.button.configure(state="disabled")
        self._tick()
        self._countdown = self.loop.every(TICK_MS, self._tick, owner=self.button)

    def _tick(self) -> None:
        left = int(math.ceil(self._until - time.monotonic()))
        if left <= 0:
            self._stop_countdown()
            self.button.configure(state="normal")
            self.error.configure(text="{}\n现在可以重新登录。".format(self._cause), bootstyle="secondary")
            return
        from kd.core.accounts import wait_text  # noqa: PLC0415 - the services' module, see the docstring

        text = "{}\n请在 {}后重试。".format(self._cause, wait_text(left))
        if self.error.cget("text") != text:
            self.error.configure(text=text, bootstyle="danger")

    def _stop_countdown(self) -> None:
        if self._countdown is not None:
            self._countdown.cancel()
            self._countdown = None


class SetupScreen(_Card):
    """系统设置 at first login; ``suggested`` prefills the site code (drill mode)."""

    def __init__(self, parent: tk.Misc, loop: Any, core: Any, user: str, on_done: Callable[[Dict[str, Any]], None],
                 on_initialize: Callable[[], None], suggested: Optional[str] = None, note: str = "") -> None:
        super().__init__(parent, "系统设置")
        self.loop, self.core, self.user, self.on_done = loop, core, user, on_done
        ttk.Label(self.card, text="考点代码", bootstyle="inverse-light").grid(row=1, column=0, sticky="e", padx=8,
                                                                         pady=6)
        self.code = ttk.Entry(self.card, width=24)
        self.code.grid(row=1, column=1, sticky="w", pady=6)
        if suggested:
            self.code.insert(0, suggested)
        ttk.Label(self.card, text="考试模式", bootstyle="inverse-light").grid(row=2, column=0, sticky="e", padx=8,
                                                                         pady=6)
        self.mode = tk.StringVar(self, value="formal")
        modes = ttk.Frame(self.card, bootstyle="light")
        modes.grid(row=2, column=1, sticky="w")
        self.formal = ttk.Radiobutton(modes, text="正式考试", value="formal", variable=self.mode)
        self.formal.pack(side="left")
        self.mock = ttk.Radiobutton(modes, text="模拟考试", value="mock", variable=self.mode)
        self.mock.pack(side="left", padx=(12, 0))
        if note:
            ttk.Label(self.card, text=note, bootstyle="inverse-light", wraplength=360, justify="left").grid(
                row=3, column=0, columnspan=2, pady=(4, 0))
        self.error = ttk.Label(self.card, text="", bootstyle="danger", wraplength=360, justify="left")
        self.error.grid(row=4, column=0, columnspan=2, pady=4)
        self.button = ttk.Button(self.card, text="确定", bootstyle="primary", width=20, command=self.submit)
        self.button.grid(row=5, column=0, columnspan=2, pady=(8, 12))
        links = ttk.Frame(self.card, bootstyle="light")
        links.grid(row=6, column=0, columnspan=2)
        self.init_link = ttk.Button(links, text="初始化", bootstyle="link", command=on_initialize)
        self.init_link.pack(side="left")
        ttk.Label(links, text=INIT_HINT, bootstyle="inverse-light", font=("", 9)).pack(side="left")
        self.code.bind("<Return>", lambda e: self.submit())
        self.code.focus_set()

    def destroy(self) -> None:
        # drop the variable here, on the Tk thread: left in a reference cycle, the garbage
        # collector could delete it (a Tk call) from whichever thread happens to run it
        self.mode = None  # type: ignore[assignment]
        super().destroy()

    def submit(self) -> None:
        if str(self.button.cget("state")) == "disabled":
            return
        code, mode = self.code.get().strip(), self.mode.get()
        self.button.configure(state="disabled")
        self.error.configure(text="")
        self.loop.submit(lambda: self.core.accounts.setup(code, mode, self.user), self._done, self._failed)

    def _done(self, result: Dict[str, Any]) -> None:
        self.button.configure(state="normal")
        self.on_done(result)

    def _failed(self, exc: BaseException) -> None:
        self.button.configure(state="normal")
        if not isinstance(exc, UserError):
            raise exc
        self.error.configure(text="{}\n{}".format(exc.cause, exc.remedy).strip())
