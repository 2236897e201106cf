"""kd/formats/timeutil.py: the one accepted shape of a timestamp."""

import datetime

import pytest

from kd.errors import FormatError
from kd.formats.timeutil import CST, format_time, parse_time, require_aware


@pytest.mark.parametrize("text,offset_h", [
    ("2026-06-13T09:00:00+08:00", 8),
    ("2026-06-13T01:00:00Z", 0),
    ("2026-06-13T09:00:00.123+08:00", 8),
    ("2026-06-13T09:00:00.123456-05:00", -5),
])
def test_accepted(text, offset_h):
    moment = parse_time(text)
    assert moment.utcoffset() == datetime.timedelta(hours=offset_h)


@pytest.mark.parametrize("text", [
    "2026-06-13T09:00:00", "2026-06-13", "2026-06-13 09:00:00+08:00", "20260613T090000+0800",
    "2026-02-30T09:00:00+08:00", "2026-06-13T09:00:00.12+08:00", "2026-06-13T09:00:00+0800", "", None, 1781312400,
    "２０２６-06-13T09:00:00+08:00",
])
def test_refused(text):
    with pytest.raises(FormatError):
        parse_time(text, "start", "考试授权文件")


def test_round_trip_and_naive_refused():
    moment = datetime.datetime(2026, 6, 13, 9, 0, 0, 999, tzinfo=CST)
    assert format_time(moment) == "2026-06-13T09:00:00+08:00"
    assert parse_time(format_time(moment)) == moment.replace(microsecond=0)
    with pytest.raises(ValueError):
        format_time(datetime.datetime(2026, 6, 13))
    with pytest.raises(ValueError):
        require_aware("2026-06-13T09:00:00+08:00")
