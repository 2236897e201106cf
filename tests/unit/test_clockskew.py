"""The clock-skew estimator (kd.core.clockskew): one sample per heartbeat, the median of the last five."""

import datetime
import logging

import pytest

from kd.core import clockskew
from kd.core.clockskew import ClockSkew, Estimate, Sample, parse_clock, parse_rtt, sample, shown, smooth
from kd.formats.timeutil import CST

T0 = datetime.datetime(2026, 6, 13, 8, 0, tzinfo=CST)


def at(seconds: float) -> datetime.datetime:
    return T0 + datetime.timedelta(seconds=seconds)


def iso(seconds: float) -> str:
    return at(seconds).isoformat(timespec="milliseconds")


def test_one_sample_is_clock_plus_half_the_rtt_minus_the_receive_time():
    s = sample(at(300.0), 200.0, at(0.0))  # the proctor says 08:05:00, the request took ~0.1 s
    assert s.offset_s == pytest.approx(300.1) and s.uncertainty_s == pytest.approx(0.1) and s.at == at(0)
    behind = sample(at(-42.5), 0.0, at(0.0))
    assert behind.offset_s == pytest.approx(-42.5) and behind.uncertainty_s == 0.0
    unknown = sample(at(10.0), None, at(0.0))  # no rtt: no half added, uncertainty unknown
    assert unknown.offset_s == pytest.approx(10.0) and unknown.uncertainty_s is None


def test_the_estimate_is_the_median_so_one_slow_beat_does_not_move_it():
    skew = ClockSkew()
    for i in range(4):
        skew.observe("R1", iso(i * 5 + 300.0), 10, at(i * 5))
    # one beat delayed by 40 s on the way (the proctor's clock is read 40 s before the server reads it)
    slow = skew.observe("R1", iso(20 + 300.0 - 40), 10, at(20))
    assert slow is not None and slow.offset_s == pytest.approx(300.005) and slow.samples == 5
    assert slow.uncertainty_s == pytest.approx(0.005) and slow.at == at(20)


def test_only_the_last_five_samples_count():
    skew = ClockSkew()
    for i in range(5):
        skew.observe("R1", iso(i), 0, at(i))  # in sync
    for i in range(5, 8):
        estimate = skew.observe("R1", iso(i + 120), 0, at(i))  # the proctor's clock jumped by 2 minutes
    assert estimate is not None and estimate.offset_s == pytest.approx(120.0) and estimate.samples == 5


def test_an_even_count_takes_the_mean_of_the_two_middle_and_unknown_uncertainties_are_left_out():
    est = smooth([Sample(1.0, None, at(0)), Sample(3.0, 0.2, at(1))])
    assert est == Estimate(2.0, 0.2, 2, at(1))
    assert smooth([Sample(1.0, None, at(0))]).uncertainty_s is None
    with pytest.raises(ValueError):
        smooth([])


@pytest.mark.parametrize("value", [None, 5, "", "08:00:00", "2026-06-13T08:00:00", "2026-06-13 08:00:00+08:00",
                                   "2026-13-13T08:00:00+08:00", "x" * 80, ["2026-06-13T08:00:00+08:00"]])
def test_a_bad_clock_is_refused_by_the_parser(value):
    with pytest.raises(ValueError):
        parse_clock(value)


def test_clocks_with_milliseconds_microseconds_seconds_or_z_are_read():
    assert parse_clock("2026-06-13T08:00:00.250+08:00") == at(0.25)
    assert parse_clock("2026-06-13T00:00:00.250000Z") == at(0.25)
    assert parse_clock("2026-06-13T08:00:00+08:00") == at(0)


@pytest.mark.parametrize("value", [True, -1, "12", 60001, float("nan"), float("inf"), [1]])
def test_a_bad_rtt_is_refused_by_the_parser(value):
    with pytest.raises(ValueError):
        parse_rtt(value)


def test_good_rtts():
    assert parse_rtt(None) is None and parse_rtt(0) == 0.0 and parse_rtt(12.5) == 12.5 and parse_rtt(60000) == 60000.0


def test_bad_values_are_ignored_and_logged_never_raised(caplog):
    skew = ClockSkew()
    with caplog.at_level(logging.DEBUG, logger="kd.core.clockskew"):
        assert skew.observe("R1", "not a time", 5, at(0)) is None
        assert skew.observe("R1", "not a time", 5, at(5)) is None
        assert skew.observe("R1", 12345, 5, at(5)) is None
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2  # once per room and reason, then at debug
    assert len([r for r in caplog.records if r.levelno == logging.DEBUG]) == 1
    # a bad rtt alone: the sample is taken without it
    est = skew.observe("R1", iso(60), "fast", at(0))
    assert est is not None and est.offset_s == pytest.approx(60.0) and est.uncertainty_s is None
    # an old proctor (no clock): nothing taken, nothing logged
    caplog.clear()
    assert skew.observe("R2", None, None, at(0)) is None and not caplog.records
    assert skew.estimate("R2") is None and set(skew.estimates()) == {"R1"}
    skew.forget("R1")
    assert skew.estimate("R1") is None


def test_shown():
    assert shown(None) == "未知" == clockskew.UNKNOWN
    assert shown(Estimate(300.04, 0.1, 5, at(0))) == "+300 秒（±0.1）"
    assert shown(Estimate(-2.46, None, 1, at(0))) == "-2.5 秒"
    assert shown(Estimate(-0.01, 0.0, 1, at(0))) == "0 秒（±0.0）"
    assert Estimate(300.0004, 0.1, 5, at(0)).as_dict() == {"offset_s": 300.0, "uncertainty_s": 0.1, "samples": 5,
                                                           "at": "2026-06-13T08:00:00+08:00"}
