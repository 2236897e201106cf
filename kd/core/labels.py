"""Labels for people: every Chinese text the core, the views and the CLI show for a state.

Records and snapshots carry codes (enum members, ``"pass"``, ``"formal"``...); this module
turns them into the words of the manual, in one place, so that the views and the CLI
show the same text and nobody decides anything by comparing Chinese strings.

- ``label(value)``: the label of any state enum member of ``kd.core.lifecycle`` (and of
  the other codes listed in ``LABELS``); unknown values are shown as they are.
- ``mark(flag)``: the manual's done marks ✓ / ✗.
- ``result_label(room, session)``: ``考场 X 第N场次``; ``summary(lines)``: at most three
  lines and the count; ``shown(time)``: an ISO time as the screens show it.
"""

import datetime
from enum import Enum
from typing import Any, Dict, List, Optional

#: the manual's done marks
YES_MARK, NO_MARK = "✓", "✗"


def mark(flag: Any) -> str:
    """✓ for a true value, ✗ otherwise (the manual's done marks)."""
    return YES_MARK if flag else NO_MARK


def result_label(room: Optional[str], session: Optional[str]) -> str:
    """How a room's result of a session is named to the administrator: ``考场 X 第N场次``."""
    return "考场 {} 第{}场次".format(room, session)


def summary(lines: List[str]) -> str:
    """Up to three lines joined with ``；``, then ``等 N 项``."""
    if len(lines) <= 3:
        return "；".join(lines)
    return "{} 等 {} 项".format("；".join(lines[:3]), len(lines))


def shown(text: Optional[str]) -> str:
    """An ISO time as the screens show it (``2026-06-13 08:30:00``); "" for none."""
    if not text:
        return ""
    try:
        return datetime.datetime.fromisoformat(str(text)).strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return str(text)


#: code → label, filled below and by ``register`` (a module that defines codes registers their labels)
LABELS: Dict[Any, str] = {}


def register(labels: Dict[Any, str]) -> None:
    """Add code → label pairs (used by this module only, at import time)."""
    LABELS.update(labels)


def label(value: Any) -> str:
    """The label of a state or code; the value itself (as text) when it has none; "" for None."""
    if value is None:
        return ""
    found = LABELS.get(value)
    if found is not None:
        return found
    if isinstance(value, Enum):
        return str(value.value)
    return str(value)
