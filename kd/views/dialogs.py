"""Every dialog the UI opens, behind one object so tests can answer them.

``Dialogs`` shows real Tk message boxes and file choosers; GUI tests give the shell a
``ScriptedDialogs`` (tests/support) that records each call and returns planned answers,
as IDLE's tests replace ``messagebox``. Views never call ``tkinter.messagebox`` or
``filedialog`` directly.
"""

import tkinter as tk
from tkinter import filedialog, messagebox
from typing import List, Optional, Sequence, Tuple

from kd.errors import UserError

FileTypes = Sequence[Tuple[str, str]]


class Dialogs:
    def __init__(self, parent: tk.Misc) -> None:
        self.parent = parent

    def error(self, err: UserError, title: str = "提示") -> None:
        """A ``UserError``: its cause, then what to do."""
        messagebox.showerror(title, err.cause, detail=err.remedy or None, parent=self.parent)

    def info(self, title: str, text: str, detail: str = "") -> None:
        messagebox.showinfo(title, text, detail=detail or None, parent=self.parent)

    def warning(self, title: str, text: str, detail: str = "") -> None:
        messagebox.showwarning(title, text, detail=detail or None, parent=self.parent)

    def confirm(self, title: str, text: str, detail: str = "") -> bool:
        return bool(messagebox.askyesno(title, text, detail=detail or None, parent=self.parent))

    def open_file(self, title: str, filetypes: FileTypes) -> Optional[str]:
        path = filedialog.askopenfilename(title=title, filetypes=list(filetypes) + [("所有文件", "*.*")],
                                          parent=self.parent)
        return path or None

    def choose_dir(self, title: str) -> Optional[str]:
        path = filedialog.askdirectory(title=title, mustexist=True, parent=self.parent)
        return path or None

    def ask_text(self, title: str, prompt: str, secret: bool = False) -> Optional[str]:
        from tkinter import simpledialog  # noqa: PLC0415

        return simpledialog.askstring(title, prompt, show="*" if secret else "", parent=self.parent)


#: the file types of the manual's import dialogs
ZIP_TYPES: List[Tuple[str, str]] = [("考场数据包", "*.zip")]
PTQ_TYPES: List[Tuple[str, str]] = [("考试授权文件", "*.PTQ *.ptq")]
KDV_TYPES: List[Tuple[str, str]] = [("授权验证文件", "*.KDV *.kdv")]
KDINFO_TYPES: List[Tuple[str, str]] = [("考点信息备份文件", "*.KDINFO *.kdinfo")]
BAK_TYPES: List[Tuple[str, str]] = [("系统备份文件", "*.bak")]
RESULT_TYPES: List[Tuple[str, str]] = [("考场结果包", "*.zip")]
