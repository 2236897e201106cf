"""时间线's rows and alarm lines, and 考场管理's ``alarm`` tag (issue 15), on the page's pure
formatters: built from ``build_timeline`` items and real ``Alarm`` records, no window."""

import datetime

from kd.core.timeline import Alarm
from kd.core.timelinebuild import Item
from kd.core.timelinerules import AlarmKind, ItemState
from tests.unit.test_monitor_rows import row, snapshot

CST = datetime.timezone(datetime.timedelta(hours=8))
T = datetime.datetime(2026, 12, 1, 9, 0, tzinfo=CST)


def item(state, rooms_left=(), completed=None, id_="started"):
    return Item("1", id_, "全部考场开考", T, T, T, state, completed, "runtime room_sessions/<room|id>.started_at",
                rooms_left)


def alarm(n, room=None):
    return Alarm("1/started/R{}".format(n), AlarmKind.OVERDUE, "1", "started", room,
                 "第一场次 考场 R{}：全部考场开考逾期".format(n), "2026-12-01T09:05:00+08:00")


def test_item_rows():
    from kd.views.timeline import item_row  # noqa: PLC0415 - imports ttkbootstrap, no window

    late = item_row(item(ItemState.OVERDUE, ("R2", "R3"), completed=T))
    assert late["state"] == "逾期" and late["_tags"] == ("overdue",) and late["due"] == "2026-12-01 09:00"
    assert late["detail"] == "未完成考场：R2、R3" and late["completed"] == ""  # not done: no 完成时间
    done = item_row(item(ItemState.DONE, completed=T + datetime.timedelta(minutes=3)))
    assert done["completed"] == "2026-12-01 09:03" and done["detail"] == "各考场开考记录" and done["_tags"] == ("done",)
    pending = item_row(item(ItemState.PENDING, ("R1", "R2")))
    assert pending["detail"] == "各考场开考记录" and "_tags" not in pending  # not due yet: no room list
    lost = item_row(item(ItemState.ACTIVE, ("R4",), id_="connected"))
    assert lost["detail"] == "失去连接考场：R4"


def test_alarm_lines():
    from kd.views.timeline import ALARM_LINES, alarm_lines  # noqa: PLC0415

    assert alarm_lines(()) == ""
    lines = alarm_lines([alarm(i) for i in range(ALARM_LINES + 2)]).split("\n")
    assert lines[0] == "告警 {}：".format(ALARM_LINES + 2)
    assert lines[1] == "· 第一场次 考场 R0：全部考场开考逾期（2026-12-01 09:05）"
    assert len(lines) == 1 + ALARM_LINES + 1 and lines[-1] == "……另有 2 条"


def test_monitor_marks_rooms_with_an_open_alarm():
    from kd.views.monitor import format_rows  # noqa: PLC0415

    rows, _total = format_rows(snapshot(row("A", True, True, False), row("B", False, False, False),
                                        row("C", True, False, False)), frozenset({"B", "C"}))
    assert {r["room"]: r.get("_tags") for r in rows} == {"A": None, "B": ("alarm",), "C": ("alarm",)}
