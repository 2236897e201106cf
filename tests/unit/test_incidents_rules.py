"""Pure functions of 考场情况记录 and 补时: incidents.draft, OutageTracker, extratime rules."""

import datetime

import pytest

from kd.core.extratime import ExtraTimeRules, Tier, tier_for, union_minutes
from kd.core.incidents import (
    TRANSITIONS,
    Category,
    DraftRules,
    Facts,
    IncidentEvent,
    IncidentState,
    Kind,
    Outage,
    OutageTracker,
    RoomFact,
    SessionFact,
    category_of,
    draft,
)
from kd.errors import UserError
from kd.formats.timeutil import CST

T = datetime.datetime(2026, 6, 7, 9, 0, tzinfo=CST)
SESSION = SessionFact("1", T, 120)


def at(minutes: float) -> datetime.datetime:
    return T + datetime.timedelta(minutes=minutes)


def facts(rooms, outages=(), now=None):
    return Facts([SESSION], rooms, list(outages), now or at(30))


def kinds(drafts):
    return sorted((d.kind, d.room) for d in drafts)


def test_on_time_room_without_outage_drafts_nothing():
    assert draft(facts([RoomFact("101", "1", at(1), False, None)])) == []


def test_late_start_over_five_minutes():
    got = draft(facts([RoomFact("101", "1", at(6), False, None), RoomFact("102", "1", at(5), False, None)]))
    assert kinds(got) == [(Kind.LATE_START, "101")]
    (d,) = got
    assert d.category == Category.STAFF and d.start == T and d.end == at(6) and "6 分钟" in d.description
    assert d.key == "late_start|101|1"


def test_unpermitted_start_is_drafted_once_per_room_session():
    rooms = [RoomFact("101", "1", at(0), True, None)]
    first, again = draft(facts(rooms)), draft(facts(rooms, now=at(40)))
    assert kinds(first) == [(Kind.UNPERMITTED, "101")]
    assert [d.key for d in first] == [d.key for d in again]


def test_never_ended_after_fifteen_minutes_past_the_end_and_its_extra_time():
    room = RoomFact("101", "1", at(0), False, None)
    assert draft(facts([room], now=at(135))) == []
    assert kinds(draft(facts([room], now=at(135.1)))) == [(Kind.NOT_ENDED, "101")]
    extended = room._replace(extra_min=20)
    assert draft(facts([extended], now=at(150))) == []
    assert kinds(draft(facts([extended], now=at(155.1)))) == [(Kind.NOT_ENDED, "101")]
    ended = room._replace(ended_at=at(120))
    assert draft(facts([ended], now=at(300))) == []


def test_outage_over_thirty_seconds_during_the_exam_only():
    room = RoomFact("101", "1", at(1), False, at(100))
    short = Outage("101", at(10), at(10) + datetime.timedelta(seconds=30))
    long = Outage("101", at(20), at(20) + datetime.timedelta(seconds=31))
    before = Outage("101", at(0), at(5))
    after = Outage("101", at(100), at(110))
    other = Outage("102", at(20), at(25))
    got = draft(facts([room], [short, long, before, after, other]))
    assert kinds(got) == [(Kind.OUTAGE, "101")]
    (d,) = got
    assert d.start == long.start and d.end == long.end and d.category == Category.NETWORK and "31 秒" in d.description


def test_an_open_outage_counts_until_now():
    room = RoomFact("101", "1", at(1), False, None)
    open_one = Outage("101", at(10), None)
    assert draft(facts([room], [open_one], now=at(10) + datetime.timedelta(seconds=30))) == []
    (d,) = draft(facts([room], [open_one], now=at(10) + datetime.timedelta(seconds=31)))
    assert d.end is None and "仍未恢复" in d.description


def test_rules_are_data():
    room = RoomFact("101", "1", at(3), False, None)
    assert draft(facts([room])) == []
    assert kinds(draft(facts([room]), DraftRules(late_start_min=2))) == [(Kind.LATE_START, "101")]


def test_tracker_opens_after_the_threshold_and_closes_at_the_next_heartbeat():
    tracker = OutageTracker(30)
    now = at(10)
    tracker.observe("101", 0.0, now)
    tracker.observe("101", 30.0, now + datetime.timedelta(seconds=30))
    assert tracker.outages() == []
    tracker.observe("101", 31.0, now + datetime.timedelta(seconds=31))
    assert tracker.outages() == [Outage("101", now, None)]
    tracker.observe("101", 50.0, now + datetime.timedelta(seconds=50))  # the start stays
    assert tracker.outages() == [Outage("101", now, None)]
    back = now + datetime.timedelta(seconds=90)
    tracker.observe("101", 0.5, back + datetime.timedelta(seconds=0.5))
    assert tracker.outages() == [Outage("101", now, back)]
    tracker.observe("101", 1.0, back + datetime.timedelta(seconds=6))  # regular beats: nothing new
    assert len(tracker.outages()) == 1


def test_tracker_sees_a_gap_between_two_sparse_ticks():
    tracker = OutageTracker(30)
    tracker.observe("101", 2.0, at(10))
    tracker.observe("101", 1.0, at(11))  # ticks a minute apart; the beats 59 s apart
    assert tracker.outages() == [Outage("101", at(10) - datetime.timedelta(seconds=2),
                                        at(11) - datetime.timedelta(seconds=1))]


def test_tracker_forgets_a_room_it_stops_watching():
    tracker = OutageTracker(30)
    tracker.observe("101", 2.0, at(10))
    tracker.observe("102", 2.0, at(10))
    tracker.watched({"101", "102"})
    tracker.observe("102", 62.0, at(11))  # 102 went silent; 101 is no longer watched (its session ended)
    tracker.watched({"102"})
    tracker.observe("101", 1.0, at(13))  # watched again two minutes later: no gap
    tracker.watched({"101", "102"})
    assert tracker.outages() == [Outage("102", at(10) - datetime.timedelta(seconds=2), None)]


def test_tracker_ignores_rooms_never_heard():
    tracker = OutageTracker(30)
    tracker.observe("101", None, at(10))
    assert tracker.outages() == []


def test_transitions():
    assert TRANSITIONS[(IncidentState.DRAFTED, IncidentEvent.CONFIRM)] == IncidentState.CONFIRMED
    assert TRANSITIONS[(IncidentState.DRAFTED, IncidentEvent.DISMISS)] == IncidentState.DISMISSED
    assert (IncidentState.DISMISSED, IncidentEvent.CONFIRM) not in TRANSITIONS
    assert (IncidentState.CONFIRMED, IncidentEvent.CONFIRM) not in TRANSITIONS


def test_category_by_code_or_label():
    assert category_of("network") == category_of("网络中断") == Category.NETWORK
    with pytest.raises(UserError):
        category_of("停电")


@pytest.mark.parametrize("total, tier", [(0, Tier.NONE), (1, Tier.ON_SITE), (30, Tier.ON_SITE), (31, Tier.DONGLE),
                                         (45, Tier.DONGLE), (46, Tier.RESCHEDULE)])
def test_the_30_45_rules(total, tier):
    assert tier_for(total) == tier


def test_the_rules_are_data():
    rules = ExtraTimeRules(on_site_max_min=10, dongle_max_min=20)
    assert [tier_for(n, rules) for n in (10, 11, 20, 21)] == [Tier.ON_SITE, Tier.DONGLE, Tier.DONGLE, Tier.RESCHEDULE]


def test_lost_minutes_union_rounds_up_and_counts_overlaps_once():
    assert union_minutes([]) == 0
    assert union_minutes([(at(0), at(0) + datetime.timedelta(seconds=61))]) == 2
    assert union_minutes([(at(0), at(10)), (at(5), at(12)), (at(20), at(21))]) == 13
    assert union_minutes([(at(5), at(5))]) == 0
