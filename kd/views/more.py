"""The 更多 (≡) menu of the main window (manual §6): each entry is one core call.

    系统初始化(U)   two confirmations, then the site code typed again → core.system.initialize
    模考转正考(V)   a confirmation → core.system.to_formal
    修改密码(W)     a dialog (原密码, 新密码, 确认新密码) → core.accounts.change_password
    系统备份(Y)     a folder and a note → core.system.backup (busy bar while it writes)
    系统恢复(Z)     a .bak file and a confirmation → core.system.restore (busy bar)

Restore, initialisation and 模考转正考 answer ``restart_required``: the shell tells the
user and ends (``Shell.restart``); main.py then starts kaodian again as a new process
(``kd.relaunch``). Every refusal is the core's
``UserError`` shown as a dialog. The menu entries underline their letters (Alt+letter
while the menu is open).
"""

import tkinter as tk
from typing import Any, Dict

import ttkbootstrap as ttk

from kd.views.dialogs import BAK_TYPES
from kd.views.password import PasswordDialog

INIT_WARNING = "执行初始化操作, 系统将会还原到初始安装状态, 确认要执行初始化吗?"
INIT_AGAIN = "初始化将清除考点代码和全部考试数据（考场、授权、注册、回收的数据），且不能撤销。确定继续吗?"
TO_FORMAL_WARNING = ("模考转正考将清除模拟考试的全部考试数据（考场、授权、注册、回收的数据），"
                     "并转为正式考试。确定继续吗?")
RESTORE_WARNING = "系统恢复将用备份文件中的数据替换本系统当前的全部考试数据。确定继续吗?"


class MoreMenu:
    #: (label, underline index, method name)
    ENTRIES = [("系统初始化(U)", 6, "initialize"), ("模考转正考(V)", 6, "to_formal"),
               ("修改密码(W)", 5, "change_password"), ("系统备份(Y)", 5, "backup"),
               ("系统恢复(Z)", 5, "restore")]

    def __init__(self, shell: Any, button: ttk.Menubutton) -> None:
        self.shell = shell
        self.menu = tk.Menu(button, tearoff=False)
        for label, underline, method in self.ENTRIES:
            self.menu.add_command(label=label, underline=underline, command=getattr(self, method))
        button.configure(menu=self.menu)
        self.password_dialog: Any = None

    def index(self, label: str) -> int:
        """The menu index of the entry whose label starts with ``label`` (tests invoke it)."""
        for i, (text, _, _) in enumerate(self.ENTRIES):
            if text.startswith(label):
                return i
        raise KeyError(label)

    def invoke(self, label: str) -> None:
        self.menu.invoke(self.index(label))

    # -- entries -----------------------------------------------------------------------------
    def initialize(self) -> None:
        d = self.shell.dialogs
        if not d.confirm("系统初始化", INIT_WARNING):
            return
        if not d.confirm("系统初始化", INIT_AGAIN, "系统初始化会将系统还原回初始安装状态, 请谨慎使用"):
            return
        code = d.ask_text("系统初始化", "请输入本考点的考点代码以确认初始化（未设置时留空）：")
        if code is None:
            return
        shell = self.shell
        shell.call(lambda: shell.core.system.initialize(code.strip(), shell.user),
                   lambda r: shell.restart(_cleared_text("系统初始化完成", r)), busy="正在初始化系统…")

    def to_formal(self) -> None:
        if not self.shell.dialogs.confirm("模考转正考", TO_FORMAL_WARNING):
            return
        shell = self.shell
        shell.call(lambda: shell.core.system.to_formal(shell.user),
                   lambda r: shell.restart(_cleared_text("已转为正式考试", r)), busy="正在转为正式考试…")

    def change_password(self) -> None:
        if self.password_dialog is not None and self.password_dialog.winfo_exists():
            self.password_dialog.lift()
            return
        self.password_dialog = PasswordDialog(self.shell, self.shell.user, self._password_changed)

    def _password_changed(self, result: Dict[str, Any]) -> None:
        self.shell.notify("密码已修改", "success")

    def backup(self) -> None:
        d = self.shell.dialogs
        folder = d.choose_dir("系统备份：选择备份文件保存的文件夹")
        if not folder:
            return
        note = d.ask_text("系统备份", "备注（可不填）：")
        if note is None:
            return
        shell = self.shell
        shell.call(lambda: shell.core.system.backup(folder, note.strip(), shell.user), self._backed_up,
                   busy="正在系统备份…")

    def _backed_up(self, path: str) -> None:
        d = self.shell.dialogs
        warnings = getattr(path, "warnings", None)  # damaged result files left out (kd.core.backup)
        if warnings:
            d.warning("系统备份", "系统备份已完成，但有考试结果未能备份。",
                      "备份文件：{}\n{}".format(path, "\n".join(warnings)))
        else:
            d.info("系统备份", "系统备份完成。", "备份文件：{}".format(path))

    def restore(self) -> None:
        d = self.shell.dialogs
        path = d.open_file("系统恢复：选择系统备份文件", BAK_TYPES)
        if not path:
            return
        if not d.confirm("系统恢复", RESTORE_WARNING, "备份文件：{}".format(path)):
            return
        shell = self.shell
        shell.call(lambda: shell.core.system.restore(path, shell.user),
                   lambda r: shell.restart("系统恢复完成（备份时间 {}）。".format(r.get("created_at", ""))),
                   busy="正在系统恢复…")


def _cleared_text(head: str, result: Dict[str, Any]) -> str:
    return "{}。".format(head)
