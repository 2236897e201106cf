"""What people read of 补时 and of the clock items (issue 15), on the pure formatters: 考场管理's
rows and line (``kd.views.monitor``), ``main.py monitor``'s text, the 时间线 page's 依据 column and
``main.py timeline``'s text — each from real ``build_timeline`` items / their JSON, no window."""

import dataclasses
import datetime

from kd.cli.live import _monitor_text
from kd.cli.timeline import timeline_text
from kd.core.livesnapshots import extra_time_line, row_cell
from kd.core.timeline import RoomFacts, SessionFacts, SiteFacts, Skew, build_timeline
from kd.formats.timeutil import CST, format_time
from tests.unit.test_monitor_rows import row, snapshot

T = datetime.datetime(2026, 12, 1, 9, 0, tzinfo=CST)
E = T + datetime.timedelta(minutes=120)
STARTED = T + datetime.timedelta(minutes=1)


def granted(r, minutes):
    return dataclasses.replace(r, extra_time_min=minutes,
                               expected_end=format_time(E + datetime.timedelta(minutes=minutes)))


def line_at(now, **site_kw):
    rooms = (RoomFacts("R1", started_at=STARTED), RoomFacts("R2", started_at=STARTED, extra_time_min=10))
    facts = SiteFacts(sessions=(SessionFacts(id="S1", name="第一场次", start=T, duration_min=120, rooms=rooms),),
                      **site_kw)
    return build_timeline(facts, now)


def find(line, item_id):
    return next(i for i in line.items if i.id == item_id)


def test_the_monitor_row_and_line_of_a_room_with_extra_time():
    from kd.views.monitor import format_rows  # noqa: PLC0415 - imports ttkbootstrap, no window

    snap = snapshot(row("A", True, True, False), granted(row("B", True, True, False), 10),
                    granted(row("C", False, True, True), 5))
    rows, _total = format_rows(snap)
    assert [r["ended"] for r in rows] == ["否", "否（补时）", "是"]
    assert extra_time_line(snap.rows) == ("补时：考场 B 10 分钟，预计 2026-12-01 11:10 结束；"
                                          "考场 C 5 分钟，预计 2026-12-01 11:05 结束")
    assert extra_time_line([row("A", True, True, False)]) == ""
    # the CLI reads the same from the snapshot's JSON
    doc = dict(snap.as_dict(), status_report={"state": None, "label": "", "sent_at": None})
    assert [row_cell(r, "ended") for r in doc["rows"]] == ["否", "否（补时）", "是"]
    text = _monitor_text(doc).split("\n")
    assert text[-1] == extra_time_line(snap.rows)
    assert "否（补时）" in text[3]


def test_the_timeline_page_detail():
    from kd.views.timeline import item_row  # noqa: PLC0415

    line = line_at(E + datetime.timedelta(minutes=15))
    assert item_row(find(line, "ended"))["detail"] == ("未完成考场：R1、R2；补时：R2 至 2026-12-01 11:10（10 分钟）")
    assert item_row(find(line, "connected"))["detail"].endswith("；补时：R2 至 2026-12-01 11:10（10 分钟）")
    skewed = line_at(T - datetime.timedelta(minutes=30), room_skew={"R1": Skew("R1", 300.2, 0.1)},
                     platform_skew_s=2.0, dongle_skew_s=-1.0)
    assert item_row(find(skewed, "skew"))["detail"] == "时钟偏差考场：R1（+300.2 秒）"
    assert item_row(find(skewed, "site_clock"))["detail"] == "监控平台 +2 秒，机考锁 -1 秒"
    calm = line_at(T - datetime.timedelta(minutes=30), room_skew={"R1": Skew("R1", 3.0)})
    assert item_row(find(calm, "skew"))["detail"] == "监考机心跳中的时钟"  # nothing off: the evidence
    assert item_row(find(calm, "site_clock"))["detail"] == "封场检测、授权验证的时钟比对记录"  # not measured


def test_the_timeline_cli_text():
    skewed = line_at(T - datetime.timedelta(minutes=30), room_skew={"R1": Skew("R1", 300.0, 0.1)},
                     platform_skew_s=2.0, platform_skew_at=T - datetime.timedelta(minutes=40))
    snap = {"at": format_time(skewed.at), "open_alarms": 0, "alarms": [], "items": [i.as_dict() for i in skewed.items]}
    text = timeline_text(snap)
    assert "逾期  考场时钟偏差（监考机对照考点机）（时钟偏差考场：R1（+300 秒））" in text
    assert "考点机时钟（对照监控平台、机考锁）（完成于 " in text and "（监控平台 +2 秒，机考锁 未知）" in text
    late = line_at(E + datetime.timedelta(minutes=15))
    text = timeline_text({"at": format_time(late.at), "open_alarms": 0, "alarms": [],
                          "items": [i.as_dict() for i in late.items]})
    assert "全部考场结束考试（未完成的考场：R1、R2）（补时：R2 至 2026-12-01 11:10（10 分钟））" in text


def test_both_pages_re_render_on_a_grant():
    from kd.core import names  # noqa: PLC0415
    from kd.views.monitor import MonitorPage  # noqa: PLC0415
    from kd.views.timeline import TimelinePage  # noqa: PLC0415

    assert names.EXTRA_TIME_GRANTED in MonitorPage.events and names.EXTRA_TIME_GRANTED in TimelinePage.events
