"""考点时间线's clock items: ``skew`` (each room's proctor clock, per session) and ``site_clock``
(this PC against the platform and the dongle), at each offset with facts built by hand."""

import datetime

import pytest

from kd.core.timeline import RoomFacts, SessionFacts, SiteFacts, Skew, build_timeline
from kd.core.timelinerules import DEFAULT_RULES, AlarmKind, ItemState, Rules
from kd.formats.timeutil import CST

T = datetime.datetime(2026, 12, 1, 9, 0, tzinfo=CST)
P, A, D, LATE = ItemState.PENDING, ItemState.ACTIVE, ItemState.DONE, ItemState.OVERDUE


def at(minutes: float) -> datetime.datetime:
    return T + datetime.timedelta(minutes=minutes)


def site(*rooms, **site_kw) -> SiteFacts:
    """A session of ``rooms``: codes, or ``(code, offset_s[, uncertainty_s[, at]])`` of a room with an estimate."""
    facts = [r if isinstance(r, tuple) else (r,) for r in rooms]
    skews = {f[0]: Skew(*f) for f in facts if len(f) > 1}
    return SiteFacts(sessions=(SessionFacts(id="S1", name="第一场次", start=T, duration_min=120,
                                            rooms=tuple(RoomFacts(f[0]) for f in facts)),),
                     room_skew=skews, **site_kw)


def item(line, item_id):
    return next(i for i in line.items if i.id == item_id)


def skewed(line):
    return sorted((c.kind, c.key) for c in line.conditions if c.kind is AlarmKind.CLOCK_SKEW)


ROOMS = (("R1", 300.2, 0.1, at(-50)), ("R2", -0.4), "R3")


def test_a_skewed_room_alarms_from_the_clock_window_until_t():
    facts = site(*ROOMS)
    assert [item(build_timeline(facts, at(m)), "skew").state for m in (-61, -60, -1, 0, 30)] == [P, LATE, LATE,
                                                                                                 LATE, LATE]
    assert skewed(build_timeline(facts, at(-61))) == []
    line = build_timeline(facts, at(-60))
    assert skewed(line) == [(AlarmKind.CLOCK_SKEW, "S1/skew/R1")]
    condition = next(c for c in line.conditions if c.kind is AlarmKind.CLOCK_SKEW)
    assert condition.label == "第一场次 考场 R1 监考机时钟偏差 +300.2 秒（±0.1），超过 60 秒"
    assert skewed(build_timeline(facts, at(-0.1))) == [(AlarmKind.CLOCK_SKEW, "S1/skew/R1")]
    assert skewed(build_timeline(facts, at(0))) == []  # a check before the start: no alarm from T on
    it = item(line, "skew")
    assert it.rooms_left == ("R1",) and it.due_at == T and it.closes_at == T
    assert [(s.source, s.offset_s) for s in it.skew] == [("R1", 300.2), ("R2", -0.4), ("R3", None)]
    doc = it.as_dict()["skew"]
    assert doc[0] == {"source": "R1", "offset_s": 300.2, "uncertainty_s": 0.1, "at": "2026-12-01T08:10:00+08:00",
                      "shown": "+300.2 秒（±0.1）"}
    assert doc[2]["shown"] == "未知" and doc[2]["offset_s"] is None


def test_rooms_within_the_limit_or_unknown_do_not_alarm():
    facts = site(("R1", 59.9), ("R2", -60.0), "R3")
    assert [item(build_timeline(facts, at(m)), "skew").state for m in (-61, -60, -1, 0)] == [P, A, A, D]
    assert item(build_timeline(facts, at(0)), "skew").completed_at == T
    assert skewed(build_timeline(facts, at(-30))) == []
    # behind by more than the limit counts as much as ahead
    assert skewed(build_timeline(site(("R1", -61.0)), at(-30))) == [(AlarmKind.CLOCK_SKEW,
                                                                                     "S1/skew/R1")]


def test_the_limit_is_data():
    rules = Rules(max_skew_s=600.0)
    assert skewed(build_timeline(site(*ROOMS), at(-30), rules)) == []
    assert skewed(build_timeline(site(*ROOMS), at(-30), DEFAULT_RULES.replace(skew=(-10, 0, 0)))) == []  # not open
    with pytest.raises(ValueError):
        Rules(max_skew_s=0)
    assert DEFAULT_RULES.max_skew_s == 60.0


def test_the_site_clock_against_the_platform_and_the_dongle():
    first = at(-180)  # the site item opens at F−180
    nothing = site("R1")
    assert [item(build_timeline(nothing, at(m)), "site_clock").state for m in (-181, -180, -20, 30)] == [P, A, A, A]
    assert skewed(build_timeline(nothing, at(30))) == []  # not measured: no alarm (封场检测 has its own)
    ok = site("R1", platform_skew_s=1.5, platform_skew_at=at(-100), dongle_skew_s=-0.2,
              dongle_skew_at=at(-14))
    line = build_timeline(ok, at(-10))
    it = item(line, "site_clock")
    assert it.state is D and it.completed_at == at(-14) and it.session is None
    assert [s.as_dict()["shown"] for s in it.skew] == ["+1.5 秒", "-0.2 秒"]
    off = site("R1", platform_skew_s=-75.0, platform_skew_at=at(-100))
    assert item(build_timeline(off, first - datetime.timedelta(minutes=1)), "site_clock").state is P
    line = build_timeline(off, at(-100))
    assert item(line, "site_clock").state is LATE and skewed(line) == [(AlarmKind.CLOCK_SKEW, "-/site_clock/-")]
    label = next(c.label for c in line.conditions if c.kind is AlarmKind.CLOCK_SKEW)
    assert label == "考点：考点机时钟偏差超过 60 秒（对照监控平台 -75 秒）"
    assert skewed(build_timeline(off, at(200))) == [(AlarmKind.CLOCK_SKEW, "-/site_clock/-")]  # site-wide: any time
    dongle_off = site("R1", platform_skew_s=0.0, dongle_skew_s=90.0)
    assert skewed(build_timeline(dongle_off, at(-10))) == [(AlarmKind.CLOCK_SKEW, "-/site_clock/-")]
