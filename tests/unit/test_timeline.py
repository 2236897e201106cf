"""考点时间线's pure part: ``build_timeline(facts, now, rules)`` at each offset of the default rules.

The facts are built by hand (``kd.core.timeline.SiteFacts``) and ``now`` is moved minute by
minute around each deadline: every state of every item, the alarm conditions, the rules
as data (``Rules.replace``, ``lost_after_s``).
"""

import datetime

import pytest

from kd.core.timeline import RoomFacts, SessionFacts, SiteFacts, alarm_key, build_timeline
from kd.core.timelinerules import DEFAULT_RULES, SITE_ITEMS, STATE_LABELS, AlarmKind, ItemState, Rules
from kd.formats.timeutil import CST

T = datetime.datetime(2026, 12, 1, 9, 0, tzinfo=CST)
DURATION = 120
E = T + datetime.timedelta(minutes=DURATION)
P, A, D, LATE = ItemState.PENDING, ItemState.ACTIVE, ItemState.DONE, ItemState.OVERDUE


def at(minutes: float, base: datetime.datetime = T) -> datetime.datetime:
    return base + datetime.timedelta(minutes=minutes)


def room(code: str, **kw) -> RoomFacts:
    return RoomFacts(code=code, **kw)


def site(*rooms: RoomFacts, **session_kw) -> SiteFacts:
    session = SessionFacts(id="S1", name="第一场次", start=T, duration_min=DURATION, rooms=tuple(rooms),
                           **session_kw)
    return SiteFacts(sessions=(session,))


def item(line, item_id, session="S1"):
    found = [i for i in line.items if i.id == item_id and i.session == (None if item_id in SITE_ITEMS
                                                                         else session)]
    assert len(found) == 1, item_id
    return found[0]


def states(facts, item_id, minutes, base=T):
    return [item(build_timeline(facts, at(m, base)), item_id).state for m in minutes]


def keys(line):
    return sorted(c.key for c in line.conditions)


def test_labels_are_one_table():
    assert [STATE_LABELS[s] for s in (P, A, D, LATE)] == ["未到", "进行中", "已完成", "逾期"]


def test_no_sessions_no_items():
    line = build_timeline(SiteFacts(), T)
    assert line.items == () and line.conditions == ()


def test_item_order_and_due_times():
    line = build_timeline(site(room("R1")), at(-200))
    assert [(i.session, i.id) for i in line.items] == [
        (None, "package"), (None, "seal"), (None, "site_clock"), ("S1", "clock"), ("S1", "skew"),
        ("S1", "rooms_ready"), ("S1", "verified"),
        ("S1", "started"), ("S1", "connected"), ("S1", "ended"), ("S1", "recovered"), ("S1", "backup"),
        ("S1", "uploaded")]
    due = {i.id: i.due_at for i in line.items}
    assert due["package"] == at(-60) and due["seal"] == at(-20) and due["clock"] == T
    assert due["rooms_ready"] == at(-30) and due["verified"] == at(-15) and due["started"] == T
    assert due["ended"] == E and due["recovered"] == at(30, E) and due["backup"] == at(45, E)
    assert due["uploaded"] == at(60, E)
    assert item(line, "started").alarm_at == at(5) and item(line, "ended").alarm_at == at(15, E)
    assert item(line, "clock").opens_at == at(-60)
    assert item(line, "connected").closes_at == E


def test_clock_window():
    # not synced: 未到 before T-60, 进行中 in the window, 逾期 at T
    assert states(site(room("R1")), "clock", [-61, -60, -1, 0, 1]) == [P, A, A, LATE, LATE]
    # synced inside the window: done at the sync time, whatever now is
    synced = site(room("R1"), lock_synced_at=at(-40))
    line = build_timeline(synced, at(-50))
    assert item(line, "clock").state is D and item(line, "clock").completed_at == at(-40)
    # synced before the window (the ticket is too old for this session): not done
    assert states(site(room("R1"), lock_synced_at=at(-61)), "clock", [-30, 0]) == [A, LATE]


def test_rooms_ready_at_t_minus_30():
    facts = site(room("R1", registered_at=at(-100), data_imported_at=at(-90)), room("R2", registered_at=at(-80)))
    assert states(facts, "rooms_ready", [-121, -120, -31, -30]) == [P, A, A, LATE]
    line = build_timeline(facts, at(-30))
    assert item(line, "rooms_ready").rooms_left == ("R2",)
    assert "S1/rooms_ready/-" in keys(line)  # one alarm for the item, not one per room
    assert not [k for k in keys(line) if k.startswith("S1/rooms_ready/R")]
    done = site(room("R1", registered_at=at(-100), data_imported_at=at(-90)),
                room("R2", registered_at=at(-80), data_imported_at=at(-70)))
    line = build_timeline(done, at(-10))
    assert item(line, "rooms_ready").state is D and item(line, "rooms_ready").completed_at == at(-70)
    assert "S1/rooms_ready/-" not in keys(line)


def test_verified_at_t_minus_15():
    assert states(site(room("R1")), "verified", [-61, -60, -16, -15]) == [P, A, A, LATE]
    line = build_timeline(site(room("R1"), verified_at=at(-20)), at(10))
    assert item(line, "verified").state is D and item(line, "verified").completed_at == at(-20)


def test_site_items_anchor_on_the_first_session():
    second = SessionFacts(id="S2", name="第二场次", start=at(240), duration_min=60)
    first = SessionFacts(id="S1", name="第一场次", start=T, duration_min=60)
    facts = SiteFacts(sessions=(second, first))
    line = build_timeline(facts, at(-61))
    assert [i.session for i in line.items[:4]] == [None, None, None, "S1"]  # sessions by start time
    assert item(line, "package").due_at == at(-60)
    assert [item(build_timeline(facts, at(m)), "package").state for m in (-181, -180, -61, -60)] == [P, A, A, LATE]
    assert [item(build_timeline(facts, at(m)), "seal").state for m in (-121, -120, -21, -20)] == [P, A, A, LATE]
    passed = SiteFacts(sessions=(first,), package_verified_at=at(-300), seal_passed_at=at(-25))
    line = build_timeline(passed, at(-10))
    assert item(line, "package").state is D and item(line, "seal").completed_at == at(-25)
    assert not [c for c in line.conditions if c.session is None]


def test_started_alarms_per_room_at_t_plus_5():
    facts = site(room("R1", started_at=at(1)), room("R2"), room("R3"))
    assert states(facts, "started", [-16, -15, 0, 4.9, 5]) == [P, A, A, A, LATE]
    line = build_timeline(facts, at(5))
    assert item(line, "started").rooms_left == ("R2", "R3")
    overdue = [c for c in line.conditions if c.item == "started"]
    assert [(c.key, c.kind) for c in overdue] == [("S1/started/R2", AlarmKind.OVERDUE),
                                                  ("S1/started/R3", AlarmKind.OVERDUE)]
    assert "R2" in overdue[0].label and "逾期" in overdue[0].label
    every = site(room("R1", started_at=at(1)), room("R2", started_at=at(6)))
    line = build_timeline(every, at(7))
    assert item(line, "started").state is D and item(line, "started").completed_at == at(6)


def test_ended_alarms_per_room_at_end_plus_15():
    facts = site(room("R1", started_at=T, ended_at=at(-1, E)), room("R2", started_at=T))
    assert states(facts, "ended", [-16, -15, 14.9, 15], base=E) == [P, A, A, LATE]
    line = build_timeline(facts, at(15, E))
    assert [c.key for c in line.conditions if c.item == "ended"] == ["S1/ended/R2"]


def test_room_lost_during_the_exam():
    lost = room("R1", started_at=T, silent_s=30.0)
    quiet = room("R2", started_at=T, silent_s=29.9)
    waiting = room("R3", silent_s=500.0)  # not started: that is 开考's alarm, not a lost room
    facts = site(lost, quiet, waiting)
    line = build_timeline(facts, at(10))
    connected = item(line, "connected")
    assert connected.state is LATE and connected.rooms_left == ("R1",)
    lost_alarms = [c for c in line.conditions if c.kind is AlarmKind.ROOM_LOST]
    assert [c.key for c in lost_alarms] == ["S1/connected/R1"] and "失去连接" in lost_alarms[0].label
    # before T nobody is lost (a proctor machine may be off until the exam)
    assert item(build_timeline(facts, at(-1)), "connected").state is P
    assert not [c for c in build_timeline(facts, at(-1)).conditions if c.kind is AlarmKind.ROOM_LOST]
    # an ended room is not lost, however silent
    ended = site(room("R1", started_at=T, ended_at=at(100), silent_s=9999.0))
    line = build_timeline(ended, at(110))
    assert item(line, "connected").state is D and item(line, "connected").completed_at == at(100)
    # heartbeats flowing: 进行中
    assert item(build_timeline(site(quiet), at(10)), "connected").state is A
    # the threshold is data
    strict = Rules(lost_after_s=10.0)
    assert [c.key for c in build_timeline(site(quiet), at(10), strict).conditions
            if c.kind is AlarmKind.ROOM_LOST] == ["S1/connected/R2"]


def test_after_the_exam_recovered_backup_uploaded():
    done = dict(started_at=T, ended_at=at(-5, E))
    facts = site(room("R1", recovered_at=at(10, E), **done), room("R2", **done))
    assert states(facts, "recovered", [-1, 0, 29, 30], base=E) == [P, A, A, LATE]
    assert item(build_timeline(facts, at(30, E)), "recovered").rooms_left == ("R2",)
    assert states(facts, "backup", [44, 45], base=E) == [A, LATE]
    assert states(facts, "uploaded", [59, 60], base=E) == [A, LATE]
    line = build_timeline(facts, at(60, E))
    assert {"S1/recovered/-", "S1/backup/-", "S1/uploaded/-"} <= set(keys(line))
    full = dict(done, recovered_at=at(10, E), backed_up=True, uploaded_at=at(20, E))
    finished = site(room("R1", **full), room("R2", **dict(full, uploaded_at=at(25, E))), backup_at=at(15, E),
                    verified_at=at(-20), lock_synced_at=at(-30))
    line = build_timeline(finished, at(90, E))
    assert item(line, "recovered").state is D and item(line, "backup").completed_at == at(15, E)
    assert item(line, "uploaded").completed_at == at(25, E)
    # a backup that misses a room is not done, even with a verified copy
    partial = site(room("R1", **full), room("R2", **dict(full, backed_up=False)), backup_at=at(15, E))
    assert item(build_timeline(partial, at(90, E)), "backup").rooms_left == ("R2",)
    assert item(build_timeline(partial, at(90, E)), "backup").state is LATE


def test_offsets_are_data():
    rules = DEFAULT_RULES.replace(started=(-30, 0, 10))
    facts = site(room("R1"))
    assert [item(build_timeline(facts, at(m), rules), "started").state for m in (-31, -30, 9, 10)] == [P, A, A, LATE]
    with pytest.raises(ValueError):
        DEFAULT_RULES.replace(started=(0, 10, 5))  # alarm before due
    with pytest.raises(ValueError):
        Rules(lost_after_s=0)


def test_as_dict_keeps_iso_and_labels():
    line = build_timeline(site(room("R1")), at(5))
    doc = item(line, "started").as_dict()
    assert doc["due_at"] == "2026-12-01T09:00:00+08:00" and doc["state"] == "overdue"
    assert doc["state_label"] == "逾期" and doc["rooms_left"] == ["R1"]
    assert alarm_key(None, "seal", None) == "-/seal/-"
