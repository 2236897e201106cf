"""Whether an incident counts toward 补时: one rule in the core (``kd.core.extratime.counting``),
which the proposal applies and the 考场情况 page only words (``COUNTING_LABELS``)."""

from kd.core.extratime import COUNTING_LABELS, DEFAULT_RULES, Counting, counting


def doc(**kw):
    base = {"id": "3", "kind": "outage", "room": "R1", "session": "1", "start": "2026-12-01T09:20:00+08:00",
            "end": None, "candidates": [], "state": "drafted"}
    base.update(kw)
    return base


END = "2026-12-01T09:30:00+08:00"


def test_each_reason_in_order():
    assert counting(doc()) is Counting.DRAFTED
    assert counting(doc(state="confirmed")) is Counting.OPEN
    assert counting(doc(state="confirmed", end=END)) is Counting.COUNTS
    assert counting(doc(kind="manual", state="confirmed", end=END)) is Counting.COUNTS
    assert counting(doc(state="confirmed", end=END, candidates=["A1"])) is Counting.CANDIDATES
    assert counting(doc(kind="late_start", state="confirmed", end=END)) is Counting.KIND
    assert counting(doc(state="dismissed", end=END)) is Counting.DISMISSED
    assert counting(doc(kind="late_start", state="dismissed")) is Counting.DISMISSED  # dismissed first
    # the kinds are the rules' data
    assert counting(doc(kind="late_start", state="confirmed", end=END), ("late_start",)) is Counting.COUNTS
    assert counting(doc(state="confirmed", end=END), ("manual",)) is Counting.KIND
    assert DEFAULT_RULES.lost_kinds == ("outage", "manual")


def test_every_reason_has_its_words():
    assert set(COUNTING_LABELS) == set(Counting)
    assert COUNTING_LABELS[Counting.COUNTS] == "计入补时"
    assert COUNTING_LABELS[Counting.DRAFTED] == "确认后计入补时"
