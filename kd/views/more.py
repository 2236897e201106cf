"""The 更多 (≡) menu of the main window (manual §6): each entry is one core call.

    系统初始化(U)   core.system.initialize_allowed first (a worker): refused at once, with
                    the reason, during a formal exam with unreported data; otherwise two
                    confirmations, then the site code typed again → core.system.initialize
    模考转正考(V)   a confirmation → core.system.to_formal
    修改密码(W)     a dialog (原密码, 新密码, 确认新密码) → core.accounts.change_password
    系统备份(Y)     a folder and a note → core.system.backup (busy bar while it writes)
    系统恢复(Z)     a .bak file, then ``RestoreDialog`` (the manual's 系统数据恢复 window with
                    详情): core.system.restore_preview in a worker verifies the file and
                    compares it with what is here (备份时间, 备注, and per row: 备份文件 |
                    本系统当前 | 恢复后), says what is kept from here and whether the restore
                    is refused; 确定 (enabled only when allowed) → core.system.restore
                    (busy bar), 取消 closes it

Restore, initialisation and 模考转正考 answer ``restart_required``: the shell tells the
user and ends (``Shell.restart``); main.py then starts kaodian again as a new process
(``kd.relaunch``). Every refusal is the core's
``UserError`` shown as a dialog. The menu entries underline their letters (Alt+letter
while the menu is open).
"""

import tkinter as tk
from typing import Any, Dict, List, Optional, Tuple

import ttkbootstrap as ttk

from kd.core.labels import shown
from kd.core.model import MODE_LABELS
from kd.errors import UserError
from kd.views.dialogs import BAK_TYPES, center_on
from kd.views.password import PasswordDialog
from kd.views.widgets import Table

INIT_WARNING = "执行初始化操作, 系统将会还原到初始安装状态, 确认要执行初始化吗?"
INIT_AGAIN = "初始化将清除考点代码和全部考试数据（考场、授权、注册、回收的数据），且不能撤销。确定继续吗?"
TO_FORMAL_WARNING = ("模考转正考将清除模拟考试的全部考试数据（考场、授权、注册、回收的数据），"
                     "并转为正式考试。确定继续吗?")
INIT_REFUSED_REMEDY = "请先完成数据回收和考后上报，再执行系统初始化。"
RESTORE_INTRO = ("系统恢复将用备份文件中的数据替换本系统当前的数据。本机已回收而备份中没有的考试结果、"
                 "上报回执和当前的账号密码会保留。请核对下面的详情后点【确定】。")
CHECKING = "正在校验备份文件并与本系统当前的数据比较…"
OK_COLOUR, BAD_COLOUR = "#2e7d32", "#c0392b"
#: the rows of 详情: (key of the core's holds, label)
DETAIL_ROWS: List[Tuple[str, str]] = [
    ("site_code", "考点代码"), ("mode", "考试模式"), ("exam_name", "考试名称"), ("rooms", "考场数"),
    ("rooms_registered", "已注册考场"), ("rooms_started", "已开考（考场·场次）"),
    ("results_recovered", "已回收结果"), ("results_uploaded", "已上报结果"), ("conflicts", "冲突结果包")]
DETAIL_COLUMNS = [("item", "项目", 140), ("backup", "备份文件", 170), ("current", "本系统当前", 170),
                  ("after", "恢复后", 170)]


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
        self.restore_dialog: Optional[RestoreDialog] = None

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
        """The rule first (a worker): refused at once, before any confirmation."""
        shell = self.shell
        shell.call(shell.core.system.initialize_allowed, self._initialize_checked, busy="正在检查考试数据…")

    def _initialize_checked(self, answer: Tuple[bool, str]) -> None:
        allowed, reason = answer
        d = self.shell.dialogs
        if not allowed:
            d.warning("不能初始化", reason, INIT_REFUSED_REMEDY)
            return
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
        if self.restore_dialog is not None and self.restore_dialog.winfo_exists():
            self.restore_dialog.lift()
            return
        path = self.shell.dialogs.open_file("系统恢复：选择系统备份文件", BAK_TYPES)
        if not path:
            return
        self.restore_dialog = RestoreDialog(self.shell, path)


class RestoreDialog(tk.Toplevel):
    """系统数据恢复: the chosen backup, its 详情 next to what is here, 确定 / 取消.

    ``phase``: ``checking`` (the preview runs in a worker), ``ready`` (确定 enabled),
    ``refused`` (the core's refusal shown in red, 确定 disabled), ``failed`` (the file
    did not verify), ``restoring``. ``preview`` is the core's last answer.
    """

    def __init__(self, shell: Any, path: str) -> None:
        super().__init__(shell.root)
        self.shell = shell
        self.path = path
        self.phase = "checking"
        self.preview: Optional[Dict[str, Any]] = None
        self._asked = 0  # the preview whose answer counts (a newer file choice wins)
        self.title("系统数据恢复")
        self.transient(shell.root)
        self.resizable(False, False)
        self._build()
        self.bind("<Escape>", lambda e: self._on_escape())
        center_on(self, shell.root)
        self.check(path)

    def _on_escape(self) -> None:
        if self.phase != "restoring":
            self.destroy()

    def _build(self) -> None:
        frame = ttk.Frame(self, padding=16)
        frame.pack(fill="both", expand=True)
        ttk.Label(frame, text=RESTORE_INTRO, justify="left", wraplength=640).grid(
            row=0, column=0, columnspan=3, sticky="w")
        ttk.Label(frame, text="备份文件").grid(row=1, column=0, sticky="w", pady=(10, 4))
        self.file_label = ttk.Label(frame, text="", width=60)
        self.file_label.grid(row=1, column=1, sticky="w", padx=6, pady=(10, 4))
        self.choose = ttk.Button(frame, text="选择备份文件…", command=self._on_choose)
        self.choose.grid(row=1, column=2, sticky="e", pady=(10, 4))
        self.backup_label = ttk.Label(frame, text="", justify="left")
        self.backup_label.grid(row=2, column=0, columnspan=3, sticky="w")
        ttk.Label(frame, text="详情：").grid(row=3, column=0, sticky="w", pady=(8, 2))
        self.table = Table(frame, DETAIL_COLUMNS, height=len(DETAIL_ROWS))
        self.table.grid(row=4, column=0, columnspan=3, sticky="ew")
        self.kept_label = ttk.Label(frame, text="", justify="left", wraplength=640)
        self.kept_label.grid(row=5, column=0, columnspan=3, sticky="w", pady=(8, 0))
        self.status = ttk.Label(frame, text="", justify="left", wraplength=640)
        self.status.grid(row=6, column=0, columnspan=3, sticky="w", pady=(8, 0))
        buttons = ttk.Frame(frame)
        buttons.grid(row=7, column=0, columnspan=3, sticky="e", pady=(12, 0))
        self.ok = ttk.Button(buttons, text="确定", bootstyle="danger", width=10, state="disabled",
                             command=self._on_ok)
        self.ok.pack(side="left", padx=4)
        self.cancel = ttk.Button(buttons, text="取消", width=10, command=self.destroy)
        self.cancel.pack(side="left", padx=4)

    # -- the preview -------------------------------------------------------------------------
    def check(self, path: str) -> None:
        """Verify ``path`` and compare it with what is here (a worker); 确定 waits for the answer."""
        self.path = path
        self._asked += 1
        asked = self._asked
        self.phase = "checking"
        self.preview = None
        self.file_label.configure(text=path)
        self.backup_label.configure(text="")
        self.kept_label.configure(text="")
        self.table.set_rows([])
        self.ok.configure(state="disabled")
        self.status.configure(text=CHECKING, foreground="")
        system, user = self.shell.core.system, self.shell.user
        self.shell.loop.submit(lambda: system.restore_preview(path, user),
                                 lambda preview: self._previewed(asked, preview),
                                 lambda exc: self._preview_failed(asked, exc))

    def _on_choose(self) -> None:
        path = self.shell.dialogs.open_file("系统恢复：选择系统备份文件", BAK_TYPES)
        if path:
            self.check(path)

    def _previewed(self, asked: int, preview: Dict[str, Any]) -> None:
        if asked != self._asked or not self.winfo_exists():
            return
        self.preview = preview
        self.render(preview)

    def _preview_failed(self, asked: int, exc: BaseException) -> None:
        if asked != self._asked or not self.winfo_exists():
            return
        if not isinstance(exc, UserError):
            self.status.configure(text="无法读取该备份文件。", foreground=BAD_COLOUR)
            self.phase = "failed"
            raise exc
        self.phase = "failed"
        self.status.configure(text="{}\n{}".format(exc.cause, exc.remedy).strip(), foreground=BAD_COLOUR)

    def render(self, preview: Dict[str, Any]) -> None:
        self.backup_label.configure(text="备份时间：{}    备注：{}".format(
            shown(preview.get("created_at")), preview.get("note") or "无"))
        self.table.set_rows(detail_rows(preview))
        lines = list(preview.get("lines") or []) + list(preview.get("warnings") or [])
        self.kept_label.configure(text="\n".join(lines), foreground=BAD_COLOUR if preview.get("warnings") else "")
        refusal = preview.get("refusal")
        if refusal:
            self.phase = "refused"
            self.ok.configure(state="disabled")
            self.status.configure(text="不能恢复该备份：{}\n{}".format(refusal["cause"], refusal["remedy"]).strip(),
                                  foreground=BAD_COLOUR)
            return
        self.phase = "ready"
        self.ok.configure(state="normal")
        self.status.configure(text="校验通过。点【确定】开始恢复，恢复后系统将重新启动。", foreground=OK_COLOUR)

    # -- the restore -------------------------------------------------------------------------
    def _on_ok(self) -> None:
        if self.phase != "ready":
            return
        self.phase = "restoring"
        self.ok.configure(state="disabled")
        self.choose.configure(state="disabled")
        self.cancel.configure(state="disabled")
        self.status.configure(text="正在系统恢复…", foreground="")
        shell, path = self.shell, self.path
        system, user = shell.core.system, shell.user
        shell.set_busy("正在系统恢复…")
        shell.loop.submit(lambda: system.restore(path, user), self._restored, self._restore_failed)

    def _restored(self, result: Dict[str, Any]) -> None:
        self.shell.set_busy(None)
        if self.winfo_exists():
            self.destroy()
        self.shell.restart(restored_text(result))

    def _restore_failed(self, exc: BaseException) -> None:
        self.shell.set_busy(None)
        if self.winfo_exists():
            self.choose.configure(state="normal")
            self.cancel.configure(state="normal")
            self.check(self.path)  # what holds now (the refusal, if that was it)
        raise exc  # shown by the shell (a UserError as a dialog)


def detail_rows(preview: Dict[str, Any]) -> List[Dict[str, Any]]:
    """详情: one row per item, the backup's value next to what is here now and what follows."""
    rows = []
    for key, label in DETAIL_ROWS:
        row: Dict[str, Any] = {"item": label}
        for column in ("backup", "current", "after"):
            value = (preview.get(column) or {}).get(key)
            if key == "mode":
                value = MODE_LABELS.get(value or "", "未设置")
            elif value in (None, ""):
                value = "—"
            row[column] = value
        rows.append(row)
    return rows


def restored_text(result: Dict[str, Any]) -> str:
    lines = ["系统恢复完成（备份时间 {}）。".format(shown(result.get("created_at")))]
    lines.extend(result.get("lines") or [])
    lines.extend(result.get("warnings") or [])
    return "\n".join(lines)


def _cleared_text(head: str, result: Dict[str, Any]) -> str:
    return "{}。".format(head)
