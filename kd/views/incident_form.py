"""考场情况记录 → 登记情况: the form of an incident added by hand (docs/操作手册.md §4.3.2).

``IncidentForm(parent, rooms, room, start, on_submit)`` is a ``Toplevel`` (centred on the
main window, modal while open, never waiting in a nested loop): 考场 (the session's rooms),
类别 (the five of ``kd.core.incidents.Category``, by index: the form never compares labels),
开始 / 结束 (``YYYY-MM-DD HH:MM``, Beijing time; 结束 may stay empty: not ended yet),
受影响考生 (tickets separated by commas, spaces or 、; empty: the whole room) and 说明.
确定 calls ``on_submit(fields)`` with a ``FormFields`` of the raw texts; the caller parses
them (``parse_fields``, Tk-free) and stores in a worker, and closes the form only when that
succeeded (``close()``): a refusal shows its ``UserError`` over the form, which stays open
with what was typed, and nothing is stored. 取消 / Esc / the close button close it.
"""

import datetime
import re
import tkinter as tk
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence

import ttkbootstrap as ttk

from kd.core.incidents import CATEGORY_LABELS, Category
from kd.errors import UserError
from kd.views.dialogs import CANCEL, OK, center_on, modal

#: how a time is typed (and prefilled)
TIME_FORMAT = "%Y-%m-%d %H:%M"
TIME_HINT = "时间格式：YYYY-MM-DD HH:MM（北京时间），例如 2026-12-01 09:20；结束时间不填表示尚未结束。"
CATEGORIES: List[Category] = list(Category)


class FormFields(NamedTuple):
    """What the form holds, as typed (``category``: an index of ``CATEGORIES``, -1 when none)."""

    room: str
    category: int
    start: str
    end: str
    candidates: str
    description: str


def parse_time_text(text: str, tz: Optional[datetime.tzinfo], what: str) -> datetime.datetime:
    """``YYYY-MM-DD HH:MM`` in the site's zone ``tz``; ``UserError`` naming ``what`` otherwise."""
    try:
        parsed = datetime.datetime.strptime(text.strip(), TIME_FORMAT)
    except ValueError:
        raise UserError("{}“{}”不是有效的时间。".format(what, text.strip()),
                        "请按 YYYY-MM-DD HH:MM 填写，例如 2026-12-01 09:20。") from None
    return parsed.replace(tzinfo=tz)


def parse_fields(fields: FormFields, tz: Optional[datetime.tzinfo]) -> Dict[str, Any]:
    """The keyword arguments of ``IncidentService.add`` (but ``session`` and ``actor``) from the
    form's texts; ``UserError`` for a missing room or category, an unreadable time, no
    description. The core checks the rest (room in the package, end after start, tickets)."""
    if not fields.room:
        raise UserError("请选择考场。", "在“考场”一栏选择发生情况的考场。")
    if not 0 <= fields.category < len(CATEGORIES):
        raise UserError("请选择情况类别。", "类别为：{}。".format("、".join(CATEGORY_LABELS[c] for c in CATEGORIES)))
    if not fields.start.strip():
        raise UserError("请填写开始时间。", "请按 YYYY-MM-DD HH:MM 填写，例如 2026-12-01 09:20。")
    start = parse_time_text(fields.start, tz, "开始时间")
    end = parse_time_text(fields.end, tz, "结束时间") if fields.end.strip() else None
    if not fields.description.strip():
        raise UserError("情况说明不能为空。", "请写明发生了什么、如何处理。")
    tickets = [t for t in re.split(r"[\s,，、;；]+", fields.candidates) if t]
    return {"room": fields.room, "category": CATEGORIES[fields.category].value, "start": start, "end": end,
            "candidates": tickets, "description": fields.description.strip()}


class IncidentForm(tk.Toplevel):
    """The 登记情况 form (see the module docstring)."""

    def __init__(self, parent: tk.Misc, rooms: Sequence[str], room: Optional[str], start: str,
                 on_submit: Callable[[FormFields], None], session_name: str = "") -> None:
        super().__init__(parent.winfo_toplevel())
        self.withdraw()
        self.title("登记考场情况")
        self.resizable(False, False)
        self._on_submit = on_submit
        frame = ttk.Frame(self, padding=(18, 14, 18, 12))
        frame.pack(fill="both", expand=True)
        frame.columnconfigure(1, weight=1)
        row = 0
        if session_name:
            ttk.Label(frame, text="场次：").grid(row=row, column=0, sticky="e", pady=3)
            ttk.Label(frame, text=session_name).grid(row=row, column=1, sticky="w", pady=3)
            row += 1
        ttk.Label(frame, text="考场：").grid(row=row, column=0, sticky="e", pady=3)
        self.room = ttk.Combobox(frame, state="readonly", values=list(rooms), width=14)
        if room is not None and room in rooms:
            self.room.current(list(rooms).index(room))
        self.room.grid(row=row, column=1, sticky="w", pady=3)
        row += 1
        ttk.Label(frame, text="类别：").grid(row=row, column=0, sticky="e", pady=3)
        self.category = ttk.Combobox(frame, state="readonly", width=14,
                                     values=[CATEGORY_LABELS[c] for c in CATEGORIES])
        self.category.grid(row=row, column=1, sticky="w", pady=3)
        row += 1
        self.start = self._entry(frame, row, "开始时间：", start)
        self.end = self._entry(frame, row + 1, "结束时间：", "")
        self.candidates = self._entry(frame, row + 2, "受影响考生：", "", width=40)
        row += 3
        ttk.Label(frame, text="准考证号，用逗号分隔；不填表示全考场。", bootstyle="secondary").grid(
            row=row, column=1, sticky="w")
        row += 1
        ttk.Label(frame, text="情况说明：").grid(row=row, column=0, sticky="ne", pady=3)
        self.description = tk.Text(frame, width=44, height=4, wrap="char", font="TkTextFont")
        self.description.grid(row=row, column=1, sticky="ew", pady=3)
        row += 1
        ttk.Label(frame, text=TIME_HINT, bootstyle="info", wraplength=420, justify="left").grid(
            row=row, column=0, columnspan=2, sticky="w", pady=(6, 0))
        bar = ttk.Frame(self, padding=(18, 0, 18, 14))
        bar.pack(fill="x")
        self.cancel_button = ttk.Button(bar, text=CANCEL, width=8, bootstyle="secondary", command=self.close)
        self.cancel_button.pack(side="right", padx=(6, 0))
        self.ok_button = ttk.Button(bar, text=OK, width=8, bootstyle="primary", command=self.submit)
        self.ok_button.pack(side="right")
        self.protocol("WM_DELETE_WINDOW", self.close)
        self.bind("<Escape>", lambda e: self.close())
        center_on(self, parent)
        self.deiconify()
        modal(self, parent)
        (self.category if self.room.get() else self.room).focus_set()

    @staticmethod
    def _entry(frame: ttk.Frame, row: int, label: str, value: str, width: int = 20) -> ttk.Entry:
        ttk.Label(frame, text=label).grid(row=row, column=0, sticky="e", pady=3)
        entry = ttk.Entry(frame, width=width)
        entry.insert(0, value)
        entry.grid(row=row, column=1, sticky="w", pady=3)
        return entry

    def fields(self) -> FormFields:
        """What the form holds now."""
        return FormFields(self.room.get(), self.category.current(), self.start.get(), self.end.get(),
                          self.candidates.get(), self.description.get("1.0", "end-1c"))

    def fill(self, *, room: Optional[str] = None, category: Optional[Category] = None, start: Optional[str] = None,
             end: Optional[str] = None, candidates: Optional[str] = None, description: Optional[str] = None) -> None:
        """Type into the form (tests and the screenshot scene)."""
        if room is not None:
            self.room.set(room)
        if category is not None:
            self.category.current(CATEGORIES.index(category))
        for entry, value in ((self.start, start), (self.end, end), (self.candidates, candidates)):
            if value is not None:
                entry.delete(0, "end")
                entry.insert(0, value)
        if description is not None:
            self.description.delete("1.0", "end")
            self.description.insert("1.0", description)

    def submit(self) -> None:
        self._on_submit(self.fields())

    def busy(self, flag: bool) -> None:
        """确定 disabled while the record is being stored."""
        if self.winfo_exists():
            self.ok_button.configure(state="disabled" if flag else "normal")

    def close(self) -> None:
        try:
            self.grab_release()
        except tk.TclError:
            pass
        self.destroy()
