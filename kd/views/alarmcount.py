"""The title bar's open-alarm count (``告警 N``), its notification and, on Windows, a short sound.

``AlarmCount(shell)`` adds a red label to the shell's top bar, left of the 演练 line (or of
the 修改密码 button outside drill mode), shown only while N > 0; N is the timeline's open
alarms (``core.timeline.open_count()``, read once in a worker at start, then the
``open_alarms`` of each ``alarm.opened`` / ``alarm.closed`` hub event, docs/timeline.md §3).
On ``alarm.opened`` the shell notifies (kind ``danger``: ``告警：<label>``) and, on Windows
only, ``winsound.MessageBeep`` plays (guarded import: nothing elsewhere). The shell calls
``on_event`` for every event it gets; the view never ticks the timeline.
"""

import logging
import sys
from typing import Any

import ttkbootstrap as ttk

from kd.core import names as n

log = logging.getLogger(__name__)

ALARM_BG, ALARM_FG = "#c0392b", "#ffffff"


def beep() -> None:
    """A short warning sound on Windows; nothing elsewhere."""
    if sys.platform != "win32":
        return
    try:
        import winsound  # noqa: PLC0415 - Windows only

        winsound.MessageBeep(winsound.MB_ICONHAND)
    except Exception:  # noqa: BLE001 - a sound is never worth failing for
        log.debug("no alarm sound", exc_info=True)


class AlarmCount:
    def __init__(self, shell: Any) -> None:
        self.shell = shell
        self.count = 0
        self.label = ttk.Label(shell.top, text="", foreground=ALARM_FG, background=ALARM_BG,
                               padding=(8, 1), font=(getattr(shell, "family", "TkDefaultFont"), 11, "bold"))
        self.label.bind("<Configure>", shell._refit_note, add="+")
        timeline = getattr(shell.core, "timeline", None)
        if timeline is not None:
            shell.loop.submit(timeline.open_count, self.show, lambda exc: log.warning("open alarms: %s", exc))

    @property
    def text(self) -> str:
        """What the title bar shows ("" when no alarm is open)."""
        return str(self.label.cget("text")) if self.label.winfo_manager() else ""

    def show(self, count: int) -> None:
        """Show ``告警 <count>`` (hide it at 0)."""
        self.count = int(count or 0)
        if self.count <= 0:
            self.label.pack_forget()
            return
        self.label.configure(text="告警 {}".format(self.count))
        if not self.label.winfo_manager():
            drill = getattr(self.shell, "drill", None)
            anchor = drill.status if drill is not None else self.shell.key_button
            self.label.pack(side="right", padx=(8, 4), after=anchor)

    def on_event(self, event: Any) -> None:
        if event.name not in (n.ALARM_OPENED, n.ALARM_CLOSED):
            return
        data = event.data or {}
        if "open_alarms" in data:
            self.show(data["open_alarms"])
        if event.name == n.ALARM_OPENED:
            self.shell.notify("告警：{}".format(data.get("label") or "时间线有逾期项目"), "danger")
            beep()
