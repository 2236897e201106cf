"""补时 moves a room's end in 考点时间线 (issue 15): the ``ended`` item judges each room against
its own expected end (E + its 补时), the session's other end items and the ``connected`` watch
use the latest expected end. Facts built by hand, ``now`` injected."""

import datetime

from kd.core.timeline import RoomFacts, SessionFacts, SiteFacts, build_timeline
from kd.core.timelinebuild import RoomEnd, extra_time_text, skew_text
from kd.core.timelinerules import AlarmKind, ItemState
from kd.formats.timeutil import CST

T = datetime.datetime(2026, 12, 1, 9, 0, tzinfo=CST)
E = T + datetime.timedelta(minutes=120)
A, D, LATE = ItemState.ACTIVE, ItemState.DONE, ItemState.OVERDUE


def at(minutes: float) -> datetime.datetime:
    return E + datetime.timedelta(minutes=minutes)


def site(*rooms: RoomFacts) -> SiteFacts:
    return SiteFacts(sessions=(SessionFacts(id="S1", name="第一场次", start=T, duration_min=120, rooms=rooms),))


def item(line, item_id):
    return next(i for i in line.items if i.id == item_id)


def overdue(line):
    return sorted(c.key for c in line.conditions if c.kind is AlarmKind.OVERDUE and c.item == "ended")


STARTED = T + datetime.timedelta(minutes=1)


def test_a_room_granted_10_minutes_is_alarmed_at_its_own_end_plus_15():
    facts = site(RoomFacts("R1", started_at=STARTED, extra_time_min=10))
    assert overdue(build_timeline(facts, at(15))) == []  # E+15: not late, its end is E+10
    assert item(build_timeline(facts, at(15)), "ended").state is A
    assert overdue(build_timeline(facts, at(24.9))) == []
    line = build_timeline(facts, at(25))  # E+10+15
    assert overdue(line) == ["S1/ended/R1"] and item(line, "ended").state is LATE
    ended = item(line, "ended")
    assert ended.due_at == at(10) and ended.alarm_at == at(25) and ended.opens_at == at(-5)
    assert ended.extra_time == (RoomEnd("R1", 10, at(10)),)
    assert ended.as_dict()["extra_time"] == [{"room": "R1", "minutes": 10, "expected_end": "2026-12-01T11:10:00+08:00"}]


def test_each_room_against_its_own_end():
    facts = site(RoomFacts("R1", started_at=STARTED), RoomFacts("R2", started_at=STARTED, extra_time_min=10))
    line = build_timeline(facts, at(15))
    assert overdue(line) == ["S1/ended/R1"]  # R1 has no 补时: late at E+15 as before
    ended = item(line, "ended")
    assert ended.state is LATE and ended.rooms_left == ("R1", "R2")
    assert ended.due_at == at(10)  # the latest of the rooms still to end
    assert overdue(build_timeline(facts, at(25))) == ["S1/ended/R1", "S1/ended/R2"]
    # R1 ended: what is still due is R2's
    facts = site(RoomFacts("R1", started_at=STARTED, ended_at=at(1)),
                 RoomFacts("R2", started_at=STARTED, extra_time_min=10))
    line = build_timeline(facts, at(15))
    assert overdue(line) == [] and item(line, "ended").state is A and item(line, "ended").rooms_left == ("R2",)
    done = site(RoomFacts("R1", started_at=STARTED, ended_at=at(1)),
                RoomFacts("R2", started_at=STARTED, ended_at=at(9), extra_time_min=10))
    assert item(build_timeline(done, at(30)), "ended").state is D
    assert item(build_timeline(done, at(30)), "ended").completed_at == at(9)


def test_without_extra_time_nothing_moves():
    facts = site(RoomFacts("R1", started_at=STARTED))
    line = build_timeline(facts, at(15))
    assert overdue(line) == ["S1/ended/R1"]
    ended = item(line, "ended")
    assert (ended.opens_at, ended.due_at, ended.alarm_at, ended.extra_time) == (at(-15), E, at(15), ())
    assert item(line, "connected").closes_at == E and item(line, "recovered").due_at == at(30)


def test_the_session_items_after_the_end_and_the_watch_follow_the_latest_end():
    facts = site(RoomFacts("R1", started_at=STARTED), RoomFacts("R2", started_at=STARTED, extra_time_min=20))
    line = build_timeline(facts, at(0))
    assert item(line, "connected").closes_at == at(20)
    assert item(line, "connected").extra_time == (RoomEnd("R2", 20, at(20)),)
    assert item(line, "recovered").due_at == at(50) and item(line, "backup").due_at == at(65)
    assert item(line, "uploaded").due_at == at(80)
    # the recovered item is not late 30 minutes after the scheduled end while R2 still answers
    assert item(build_timeline(facts, at(31)), "recovered").state is A
    # a silent started room is lost during its 补时, after the scheduled end
    lost = site(RoomFacts("R1", started_at=STARTED, extra_time_min=10, silent_s=31.0))
    line = build_timeline(lost, at(5))
    assert [c.key for c in line.conditions if c.kind is AlarmKind.ROOM_LOST] == ["S1/connected/R1"]


def test_texts():
    assert extra_time_text([("R2", 10, at(10))]) == "补时：R2 至 2026-12-01 11:10（10 分钟）"
    assert extra_time_text([("R2", 10, "2026-12-01T03:10:00+00:00"), ("R3", 5, at(5))]) == (
        "补时：R2 至 2026-12-01 11:10（10 分钟）、R3 至 2026-12-01 11:05（5 分钟）")
    assert extra_time_text([]) == ""
    assert skew_text("skew", [("R1", 300.2), ("R2", -0.4), ("R3", None)], ["R1"]) == "时钟偏差考场：R1（+300.2 秒）"
    assert skew_text("skew", [("R1", 30.0)], []) == ""
    assert skew_text("site_clock", [("platform", 2.0), ("dongle", -1.0)], []) == "监控平台 +2 秒，机考锁 -1 秒"
    assert skew_text("site_clock", [("platform", None), ("dongle", -75.0)], []) == "监控平台 未知，机考锁 -75 秒"
    assert skew_text("site_clock", [("platform", None), ("dongle", None)], []) == ""
