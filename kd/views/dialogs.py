"""Every dialog the UI opens, behind one object so tests can answer them; and where windows open.

``Dialogs`` shows the project's own message and question boxes (``MessageBox``,
``TextBox``: ttk ``Toplevel``s with the manual's buttons 确定 / 取消 / 是 / 否, never Tk's
or ttkbootstrap's English OK/Cancel/Yes/No) and Tk's file choosers (with Tk's message
catalog set to ``zh_cn`` so the X11 chooser speaks Chinese too; on Windows they are the
system's own). GUI tests give the shell a ``ScriptedDialogs`` (tests/support) that records
each call and returns planned answers, as IDLE's tests replace ``messagebox``. Views never
call ``tkinter.messagebox``, ``simpledialog`` or ``filedialog`` directly.

The boxes are modal (``transient`` to the main window, ``grab_set``) and wait in a nested
event loop (``wait_window``) like Tk's: the root's ``TkLoop`` keeps ticking underneath.
Enter is the default button, Esc and the window's close button the cancelling answer
(取消 / 否; 确定 for a box that only informs).

Where a window opens: ``center_on(window, parent)`` places any ``Toplevel`` at the middle
of the parent's main window (kept on the screen); ``modal(window, parent)`` makes it
transient and grabs the input (数据上报, 修改密码...). Every ``Toplevel`` of the views opens
through ``center_on``.
"""

import logging
import tkinter as tk
from tkinter import filedialog
from typing import Any, List, Optional, Sequence, Tuple

import ttkbootstrap as ttk

from kd.errors import UserError

log = logging.getLogger(__name__)

FileTypes = Sequence[Tuple[str, str]]

#: the manual's button texts
OK, CANCEL, YES, NO = "确定", "取消", "是", "否"
#: the message catalog Tk's own dialogs (the X11 file chooser) use
LOCALE = "zh_cn"
#: how wide a box's text wraps, in pixels
WRAP = 420
#: the icon glyph and its colour style per kind of box
KINDS = {"info": ("ℹ", "info"), "warning": ("⚠", "warning"), "error": ("✖", "danger"), "question": ("？", "primary")}


def apply_locale(widget: tk.Misc) -> bool:
    """Tk's message catalog in Chinese (``::msgcat::mclocale zh_cn``): the buttons and labels
    of Tk's file chooser on X11 (打开, 取消, 文件名...). False when Tk has no msgcat."""
    try:
        widget.tk.eval("package require msgcat")
        widget.tk.call("::msgcat::mclocale", LOCALE)
        return True
    except tk.TclError as e:
        log.warning("Tk's message catalog cannot be set to %s: %s", LOCALE, e)
        return False


def center_on(window: tk.Misc, parent: Optional[tk.Misc]) -> Tuple[int, int]:
    """Place ``window`` (a Toplevel) at the middle of ``parent``'s main window; returns (x, y).

    The window's requested size is used (call after it is built); it is kept on the screen.
    Without a mapped parent the window is centred on the screen.
    """
    window.update_idletasks()
    width = max(window.winfo_width(), window.winfo_reqwidth())
    height = max(window.winfo_height(), window.winfo_reqheight())
    top = parent.winfo_toplevel() if parent is not None else None
    if top is not None and top.winfo_ismapped() and top.winfo_width() > 1:
        x = top.winfo_rootx() + (top.winfo_width() - width) // 2
        y = top.winfo_rooty() + (top.winfo_height() - height) // 2
    else:
        x = (window.winfo_screenwidth() - width) // 2
        y = (window.winfo_screenheight() - height) // 2
    x = max(0, min(x, window.winfo_screenwidth() - width))
    y = max(0, min(y, window.winfo_screenheight() - height))
    window.geometry("+{}+{}".format(x, y))
    return x, y


def modal(window: tk.Toplevel, parent: Optional[tk.Misc]) -> None:
    """``window`` stays above ``parent``'s main window and takes the input until it closes.

    Transient only to a viewable window (a transient of a window hidden to the tray would
    never show), as ``tkinter.simpledialog`` does.
    """
    top = parent.winfo_toplevel() if parent is not None else None
    if top is not None and top.winfo_viewable():
        window.transient(top)
    previous = window.grab_current()  # a modal window under this one gets the input back
    try:
        window.wait_visibility()
        window.grab_set()
    except tk.TclError as e:  # not viewable (the main window hidden to the tray): not modal then
        log.debug("no grab for %s: %s", window, e)
    window.focus_set()
    if previous is not None and previous is not window:
        def grab_again() -> None:
            try:
                if previous.winfo_exists() and previous.winfo_viewable():
                    previous.grab_set()
            except tk.TclError as e:
                log.debug("the grab of %s not given back: %s", previous, e)

        def give_back(event: Any) -> None:
            if event.widget is window and previous.winfo_exists():
                previous.after_idle(grab_again)  # once this window's own grab is gone

        window.bind("<Destroy>", give_back, add="+")


class _Box(tk.Toplevel):
    """A modal box: an icon, the text, a detail, the buttons; ``answer`` once closed."""

    def __init__(self, parent: tk.Misc, title: str, kind: str, buttons: Sequence[Tuple[str, Any]],
                 cancel: Any) -> None:
        super().__init__(parent.winfo_toplevel())
        self.withdraw()
        self.title(title)
        self.resizable(False, False)
        self.answer = cancel
        self._cancel = cancel
        self.body = ttk.Frame(self, padding=(18, 16, 18, 12))
        self.body.pack(fill="both", expand=True)
        glyph, style = KINDS.get(kind, KINDS["info"])
        ttk.Label(self.body, text=glyph, bootstyle=style, font=("", 22, "bold")).grid(
            row=0, column=0, rowspan=3, sticky="n", padx=(0, 14))
        self.body.columnconfigure(1, weight=1)
        self.bar = ttk.Frame(self, padding=(18, 0, 18, 14))
        self.bar.pack(fill="x")
        self.buttons: List[ttk.Button] = []
        for index, (text, value) in enumerate(buttons):
            button = ttk.Button(self.bar, text=text, width=8, bootstyle="primary" if index == 0 else "secondary",
                                command=lambda v=value: self.close(v))
            self.buttons.append(button)
        for button in reversed(self.buttons):
            button.pack(side="right", padx=(6, 0))
        self.protocol("WM_DELETE_WINDOW", lambda: self.close(self._cancel))
        self.bind("<Escape>", lambda e: self.close(self._cancel))
        self.bind("<Return>", lambda e: self._default())

    def _default(self) -> None:
        focus = self.focus_get()
        if isinstance(focus, ttk.Button) and focus in self.buttons:
            focus.invoke()
        elif self.buttons:
            self.buttons[0].invoke()

    def close(self, value: Any) -> None:
        self.answer = value
        try:
            self.grab_release()
        except tk.TclError:
            pass
        self.destroy()

    def run(self, parent: tk.Misc, focus: Optional[tk.Misc] = None) -> Any:
        """Show the box centred on ``parent``'s window, wait until it closes; its answer."""
        center_on(self, parent)
        self.deiconify()
        modal(self, parent)
        (focus or (self.buttons[0] if self.buttons else self)).focus_set()
        self.wait_window()
        return self.answer


class MessageBox(_Box):
    """A message (``kind`` info / warning / error) with 确定, or a question with 是 / 否."""

    def __init__(self, parent: tk.Misc, title: str, text: str, detail: str = "", kind: str = "info",
                 question: bool = False) -> None:
        buttons = [(YES, True), (NO, False)] if question else [(OK, True)]
        super().__init__(parent, title, "question" if question else kind, buttons, False if question else True)
        self.text = ttk.Label(self.body, text=text, wraplength=WRAP, justify="left", font=("", 11))
        self.text.grid(row=0, column=1, sticky="w")
        self.detail = ttk.Label(self.body, text=detail, wraplength=WRAP, justify="left", bootstyle="secondary")
        if detail:
            self.detail.grid(row=1, column=1, sticky="w", pady=(8, 0))


class TextBox(_Box):
    """A question with a text field: 确定 (the text) / 取消 (None)."""

    def __init__(self, parent: tk.Misc, title: str, prompt: str, secret: bool = False, initial: str = "") -> None:
        super().__init__(parent, title, "question", [(OK, "ok"), (CANCEL, None)], None)
        ttk.Label(self.body, text=prompt, wraplength=WRAP, justify="left").grid(row=0, column=1, sticky="w")
        self.entry = ttk.Entry(self.body, width=36, show="*" if secret else "")
        self.entry.grid(row=1, column=1, sticky="ew", pady=(8, 0))
        if initial:
            self.entry.insert(0, initial)
            self.entry.select_range(0, "end")
        self.entry.bind("<Return>", lambda e: (self.buttons[0].invoke(), "break")[1])
        self.value: Optional[str] = None

    def close(self, value: Any) -> None:
        if value == "ok":
            self.value = self.entry.get()
        super().close(value)


class Dialogs:
    def __init__(self, parent: tk.Misc) -> None:
        self.parent = parent
        apply_locale(parent)

    def _parent(self) -> tk.Misc:
        """The window a box belongs to: the one holding the input (an open dialog) or the main window."""
        grabbed = self.parent.grab_current()
        return grabbed if grabbed is not None else self.parent

    def error(self, err: UserError, title: str = "提示") -> None:
        """A ``UserError``: its cause, then what to do."""
        self._message(title, err.cause, err.remedy or "", "error")

    def info(self, title: str, text: str, detail: str = "") -> None:
        self._message(title, text, detail, "info")

    def warning(self, title: str, text: str, detail: str = "") -> None:
        self._message(title, text, detail, "warning")

    def confirm(self, title: str, text: str, detail: str = "") -> bool:
        parent = self._parent()
        return bool(MessageBox(parent, title, text, detail, question=True).run(parent))

    def _message(self, title: str, text: str, detail: str, kind: str) -> None:
        parent = self._parent()
        MessageBox(parent, title, text, detail, kind=kind).run(parent)

    def open_file(self, title: str, filetypes: FileTypes) -> Optional[str]:
        path = filedialog.askopenfilename(title=title, filetypes=list(filetypes) + [("所有文件", "*.*")],
                                          parent=self._parent())
        return path or None

    def choose_dir(self, title: str) -> Optional[str]:
        path = filedialog.askdirectory(title=title, mustexist=True, parent=self._parent())
        return path or None

    def ask_text(self, title: str, prompt: str, secret: bool = False, initial: str = "") -> Optional[str]:
        parent = self._parent()
        box = TextBox(parent, title, prompt, secret=secret, initial=initial)
        box.run(parent, focus=box.entry)
        return box.value


#: the file types of the manual's import dialogs
ZIP_TYPES: List[Tuple[str, str]] = [("考场数据包", "*.zip")]
PTQ_TYPES: List[Tuple[str, str]] = [("考试授权文件", "*.PTQ *.ptq")]
KDV_TYPES: List[Tuple[str, str]] = [("授权验证文件", "*.KDV *.kdv")]
KDINFO_TYPES: List[Tuple[str, str]] = [("考点信息备份文件", "*.KDINFO *.kdinfo")]
BAK_TYPES: List[Tuple[str, str]] = [("系统备份文件", "*.bak")]
RESULT_TYPES: List[Tuple[str, str]] = [("考场结果包", "*.zip")]
