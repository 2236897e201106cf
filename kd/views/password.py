"""修改密码 (manual §6.4): 原密码, 新密码, 确认新密码 → ``core.accounts.change_password``.

``PasswordForm(parent, loop, core, user, on_done, on_cancel=None)`` is the form (the
rules are the core's: a refusal shows its cause and remedy inline, under the fields; a
wrong old password says 原密码错误). It serves the forced change of the default password
at first login (no 取消: the default password must go) and, inside ``PasswordDialog``
(a small modal ``Toplevel`` centred on the main window), the 修改密码 / 更多 → 修改密码
entry, with 确定 and 取消; Esc and the window's close button are 取消. PBKDF2 runs in a
worker.
"""

import tkinter as tk
from typing import Any, Callable, Dict, Optional

import ttkbootstrap as ttk

from kd.errors import UserError
from kd.views.dialogs import center_on, modal


class PasswordForm(ttk.Frame):
    def __init__(self, parent: tk.Misc, loop: Any, core: Any, user: str,
                 on_done: Callable[[Dict[str, Any]], None], heading: str = "修改密码", hint: str = "",
                 on_cancel: Optional[Callable[[], None]] = None) -> None:
        super().__init__(parent, padding=16)
        self.loop, self.core, self.user, self.on_done = loop, core, user, on_done
        ttk.Label(self, text=heading, font=("", 14, "bold")).grid(row=0, column=0, columnspan=2, pady=(0, 8))
        if hint:
            ttk.Label(self, text=hint, bootstyle="secondary", wraplength=340).grid(row=1, column=0, columnspan=2,
                                                                                 pady=(0, 8))
        self.old = self._field("原密码", 2)
        self.new = self._field("新密码", 3)
        self.again = self._field("确认新密码", 4)
        self.error = ttk.Label(self, text="", bootstyle="danger", wraplength=340, justify="left")
        self.error.grid(row=5, column=0, columnspan=2, sticky="w", pady=4)
        buttons = ttk.Frame(self)
        buttons.grid(row=6, column=0, columnspan=2, pady=(4, 0))
        self.ok = ttk.Button(buttons, text="确定", bootstyle="primary", width=12, command=self.submit)
        self.ok.pack(side="left")
        self.cancel: Optional[ttk.Button] = None
        if on_cancel is not None:
            self.cancel = ttk.Button(buttons, text="取消", bootstyle="secondary", width=12, command=on_cancel)
            self.cancel.pack(side="left", padx=(8, 0))
        for entry in (self.old, self.new, self.again):
            entry.bind("<Return>", lambda e: self.submit())
        self.old.focus_set()

    def _field(self, label: str, row: int) -> ttk.Entry:
        ttk.Label(self, text=label).grid(row=row, column=0, sticky="e", padx=(0, 8), pady=4)
        entry = ttk.Entry(self, show="*", width=24)
        entry.grid(row=row, column=1, sticky="w", pady=4)
        return entry

    def submit(self) -> None:
        if str(self.ok.cget("state")) == "disabled":
            return
        old, new, again = self.old.get(), self.new.get(), self.again.get()
        self.ok.configure(state="disabled")
        self.error.configure(text="")
        self.loop.submit(lambda: self.core.accounts.change_password(self.user, old, new, again),
                           self._done, self._failed)

    def _done(self, result: Dict[str, Any]) -> None:
        self.ok.configure(state="normal")
        self.on_done(result)

    def _failed(self, exc: BaseException) -> None:
        if self.ok.winfo_exists():
            self.ok.configure(state="normal")
        if not isinstance(exc, UserError):
            raise exc
        self.error.configure(text="{}\n{}".format(exc.cause, exc.remedy).strip())


class PasswordDialog(tk.Toplevel):
    """The form in its own small modal window (修改密码), centred on the main window;
    closes itself when done, on 取消 and on Esc."""

    def __init__(self, shell: Any, user: str, on_done: Optional[Callable[[Dict[str, Any]], None]] = None) -> None:
        super().__init__(shell.root)
        self.title("修改密码")
        self.resizable(False, False)
        self._after_done = on_done
        self.form = PasswordForm(self, shell.loop, shell.core, user, self._done, on_cancel=self.destroy)
        self.form.pack(fill="both", expand=True)
        self.protocol("WM_DELETE_WINDOW", self.destroy)
        self.bind("<Escape>", lambda e: self.destroy())
        center_on(self, shell.root)
        modal(self, shell.root)
        self.form.old.focus_set()

    def _done(self, result: Dict[str, Any]) -> None:
        self.destroy()
        if self._after_done is not None:
            self._after_done(result)
