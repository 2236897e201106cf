"""kd.drillwatch's pure parts: the drill's scaled rules, its schedule and speed, and the checks.

The whole drill runs in tests/integration/test_drill_watch.py; here each check's failure
is named from plain report fields.
"""

from kd.core.incidentdraft import DEFAULT_RULES as DRAFT_DEFAULTS
from kd.core.timelinerules import DEFAULT_RULES
from kd.drill import DrillOptions
from kd.drillwatch import (
    WATCH_SPEED,
    Injected,
    check,
    scaled_rules,
    schedule_of,
    speed_of,
    time_scale,
    watched_schedule,
)


def test_the_scale_is_the_speed_only_where_it_can_be_resolved():
    assert time_scale(20.0) == 20.0 and time_scale(3600.0) == 1.0
    timeline, draft = scaled_rules(20.0)
    assert timeline.lost_after_s == 1.5 and draft.outage_s == 1.5
    assert timeline.max_skew_s == DEFAULT_RULES.max_skew_s  # the other rules are kept
    connected = {r.id: r for r in timeline.items}["connected"]
    assert (connected.opens, connected.due, connected.alarm) == (-60, -60, -60)
    # the defaults themselves are untouched (only the drill site gets these)
    assert DEFAULT_RULES.lost_after_s == 30.0 and DRAFT_DEFAULTS.outage_s == 30.0
    assert {r.id: r for r in DEFAULT_RULES.items}["connected"].opens == 0


def test_schedule_and_speed():
    assert watched_schedule(30, 15) == (8, 37)  # the sessions start when they did
    assert watched_schedule(5, 0) == (5, 0)
    fast = DrillOptions(rooms=2)
    assert schedule_of(fast) == (30, 15) and speed_of(fast) == 30 * 60 / 0.5
    watched = DrillOptions(rooms=2, outage=1)
    assert schedule_of(watched) == (8, 37) and speed_of(watched) == WATCH_SPEED


def _fields(**kw):
    base = {"time_scale": 20.0, "injected": {"outage": 0, "skew": 0}, "alarms": {}, "incidents": [],
            "extra_time_granted": [], "clock_skew_max_s": 0.2}
    base.update(kw)
    return base


def _outage_fields(lost=1.67, state="confirmed"):
    return _fields(alarms={"room_lost": 1, "overdue": 3},
                   incidents=[{"room": "R1", "session": "1", "kind": "outage", "lost_min": lost, "state": state}],
                   extra_time_granted=[{"room": "R1", "session": "1", "minutes": 2}])


def test_what_was_injected_passes():
    assert check(_fields(), Injected(), [], [], {}, 0, []) == []
    assert check(_outage_fields(), Injected(outage=1), ["R1"], [], {"room_lost": ["R1"]}, 1, [True]) == []
    skewed = _fields(alarms={"clock_skew": 2}, clock_skew_max_s=299.8)
    assert check(skewed, Injected(skew=1), [], ["R2"], {"clock_skew": ["R2", "R2"]}, 0, []) == []


def test_each_mismatch_is_named():
    assert check(_outage_fields(), Injected(), ["R1"], [], {"room_lost": ["R1"]}, 1, [True]) == [
        "outage: 1 room_lost alarms, expected 0", "outage: 1 outage incidents drafted, expected 0",
        "outage: 1 grants of 补时, expected 0"]
    assert check(_outage_fields(lost=5.0, state="drafted"), Injected(outage=1), ["R1"], [], {"room_lost": ["R1"]},
                 1, [False]) == [
        "outage: room R1 lost 5.0 minutes, the outage lasted 1.5 (expected 1.3 … 3.0)",
        "outage: the incident of room R1 is drafted, not confirmed",
        "outage: 1 of 1 grants not acknowledged by the proctor"]
    assert check(_fields(), Injected(outage=1), ["R1"], [], {}, 0, [])[0] == \
        "outage: the proctors lost their connection 0 times, 1 were injected"
    late = _fields(incidents=[{"room": "R1", "session": "1", "kind": "late_start", "lost_min": 6.0,
                               "state": "drafted"}])
    assert check(late, Injected(), [], [], {}, 0, []) == ["outage: unexpected incidents ['R1:late_start']"]
    assert check(_fields(clock_skew_max_s=None), Injected(skew=1), [], ["R2"], {"clock_skew": ["R3", None]}, 0,
                 []) == ["skew: clock_skew alarms of rooms ['R3'], the skewed clocks were in ['R2']",
                         "skew: the site's own clock was alarmed (clock_skew without a room)",
                         "skew: clock_skew_max_s None, expected 300.0 ± 10.0"]
