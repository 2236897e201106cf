"""What the five 考前 step pages share besides their layout (kd/views/table_page.py): the
acting user, the manual's import fallback after a failed download, a label/value
footer, and labels that wrap to their container's width (times and marks are shown by
``kd.core.labels.shown`` / ``mark``).

``fallback_import(page, exc, title, filetypes, importer)`` is the rule of screens.md
§3.1/§3.3/§4.2: when an online call failed because the platform could not be reached or
refused (``PlatformUnreachable`` / ``PlatformRefused``), say so in a notification and
open the import file dialog; the chosen file goes to ``importer(path)`` in a worker.
Any other ``UserError`` is shown in a dialog with its cause and remedy.
"""

import tkinter as tk
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

import ttkbootstrap as ttk

from kd.errors import PlatformRefused, PlatformUnreachable, UserError


def actor(shell: Any) -> str:
    """Who acts (audit): the logged-in user of the shell, ``admin`` when unknown."""
    return str(getattr(shell, "user", None) or "admin")


def platform_failed(exc: BaseException) -> bool:
    """True when a download failed for want of the platform (the manual import applies)."""
    return isinstance(exc, (PlatformUnreachable, PlatformRefused))


def fallback_import(page: Any, exc: UserError, title: str, filetypes: Sequence[Tuple[str, str]],
                    importer: Callable[[str], Any], on_done: Optional[Callable[[Any], None]] = None,
                    button: Optional[tk.Widget] = None) -> None:
    """After a failed download: notify and open the import dialog; else show the error (Tk thread)."""
    shell = page.shell
    if not platform_failed(exc):
        shell.dialogs.error(exc)
        return
    shell.notify("{}（请手工导入）".format(exc.cause), kind="warning")
    path = shell.dialogs.open_file(title, filetypes)
    if not path:
        return
    page.run(lambda: importer(path), on_done, button=button)


def auto_wrap(label: ttk.Label, container: tk.Misc, margin: int = 16) -> None:
    """Keep ``label`` wrapped to the width of ``container`` (minus ``margin`` pixels)."""
    def resize(event: Any) -> None:
        width = max(200, int(event.width) - margin)
        if int(str(label.cget("wraplength") or 0)) != width:
            label.configure(wraplength=width)

    container.bind("<Configure>", resize, add="+")


class InfoLine(ttk.Frame):
    """A row of ``label：value`` pairs (the manual's page footers); ``set(key, text)``, ``set_label``."""

    def __init__(self, parent: tk.Misc, fields: Sequence[Tuple[str, str]], **kw: Any) -> None:
        super().__init__(parent, **kw)
        self.values: Dict[str, ttk.Label] = {}
        self.labels: Dict[str, ttk.Label] = {}
        for index, (key, label) in enumerate(fields):
            name = ttk.Label(self, text=label + "：")
            name.grid(row=0, column=2 * index, sticky="w", padx=(12 if index else 0, 0))
            self.labels[key] = name
            value = ttk.Label(self, text="", bootstyle="primary")
            value.grid(row=0, column=2 * index + 1, sticky="w")
            self.values[key] = value

    def set(self, key: str, text: str) -> None:
        self.values[key].configure(text=text)

    def set_label(self, key: str, label: str) -> None:
        self.labels[key].configure(text=label + "：")

    def text(self, key: str) -> str:
        return str(self.values[key].cget("text"))
