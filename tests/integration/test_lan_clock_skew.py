"""Clock skew per room over a real LAN on loopback: real proctor clients send ``clock``/``rtt_ms``
in their heartbeats, the site estimates each room's offset, and the timeline alarms before T.

Real parts: the platform simulator and the dongle emulator (the loaded package), the LAN
server on 127.0.0.1 port 0, ``ProctorClient``s. The site's clock is injected (``ctx.clock``,
a fixed time the test moves); a proctor's clock is the site's plus its offset, so the
expected offset is exact up to half the measured round trip.
"""

import datetime

import pytest

from kd.core.clockskew import shown
from kd.core.timeline import TimelineService
from kd.core.timelinerules import AlarmKind, ItemState
from kd.formats.timeutil import parse_time
from tests.integration.lan_support import SkewSite

STATE = {"session": "1", "started": False, "ended": False, "logged_in": 0, "in_exam": 0}


@pytest.fixture
def lan(tmp_path):
    site = SkewSite(tmp_path, rooms=3, sessions=1)
    start = parse_time(site.ctx.manifest()["sessions"][0]["start"])
    site.now = start - datetime.timedelta(minutes=30)  # in the 校时 window (T−60 … T)
    site.ctx.clock = lambda: site.now
    site.start = start
    yield site
    site.close()


def proctor(lan, room, ip, offset_s=None):
    """A registered client whose clock is the site's plus ``offset_s`` (None: an old proctor, no clock)."""
    clock = None if offset_s is None else (lambda: lan.now + datetime.timedelta(seconds=offset_s))
    c = lan.client(ip, clock=clock)
    reply = c.register(room, lan.reg_code(room))
    c.data_imported(reply["data"]["sha256"])
    return c


def test_a_skewed_proctor_raises_the_alarm_before_t_and_an_old_one_stays_valid(lan):
    skewed, synced, old = lan.rooms()
    clients = {skewed: proctor(lan, skewed, "127.0.0.31", 300.0), synced: proctor(lan, synced, "127.0.0.32", 0.0),
               old: proctor(lan, old, "127.0.0.33")}
    timeline = TimelineService(lan.ctx, lan.monitor, skew=lan.skew)
    for _ in range(3):
        for client in clients.values():
            reply = client.heartbeat(dict(STATE))
            assert "server_time" in reply  # every one taken, the old proctor's too
    assert clients[skewed].last_rtt_ms is not None and clients[old].last_rtt_ms is None
    estimate = lan.skew.estimate(skewed)
    assert estimate is not None and estimate.samples == 3 and estimate.at == lan.now
    # the first beat has no rtt (exactly 300); the others 300 + rtt/2 with ± rtt/2
    assert 300.0 <= estimate.offset_s <= 330.0 and estimate.uncertainty_s is not None
    assert shown(estimate).startswith("+300")
    in_sync = lan.skew.estimate(synced)
    assert in_sync is not None and 0.0 <= in_sync.offset_s <= 30.0
    assert lan.skew.estimate(old) is None and shown(None) == "未知"

    changes = [c for c in timeline.tick() if c.alarm.kind is AlarmKind.CLOCK_SKEW]
    assert [(c.opened, c.alarm.key) for c in changes] == [(True, "1/skew/{}".format(skewed))]
    assert "监考机时钟偏差 +300" in changes[0].alarm.label
    item = next(i for i in timeline.timeline("1").items if i.id == "skew")
    assert item.state is ItemState.OVERDUE and item.rooms_left == (skewed,)
    by_room = {s.source: s.offset_s for s in item.skew}
    assert by_room[old] is None and by_room[skewed] == pytest.approx(estimate.offset_s)
    snapshot = timeline.snapshot("1")
    doc = next(i for i in snapshot["items"] if i["id"] == "skew")
    assert {s["source"]: s["shown"] for s in doc["skew"]}[old] == "未知"
    assert [a["kind"] for a in snapshot["alarms"]] == ["clock_skew"]

    # the proctor's clock is corrected: three good beats of the last five bring the median back, the alarm closes
    clients[skewed].clock = lambda: lan.now
    for _ in range(3):
        clients[skewed].heartbeat(dict(STATE))
    assert [(c.opened, c.alarm.key) for c in timeline.tick() if c.alarm.kind is AlarmKind.CLOCK_SKEW] == [
        (False, "1/skew/{}".format(skewed))]


def test_the_alarm_is_a_pre_start_check(lan):
    room = lan.rooms()[0]
    client = proctor(lan, room, "127.0.0.34", -120.0)
    timeline = TimelineService(lan.ctx, lan.monitor, skew=lan.skew)
    client.heartbeat(dict(STATE))
    assert [c.alarm.key for c in timeline.tick() if c.alarm.kind is AlarmKind.CLOCK_SKEW] == ["1/skew/{}".format(room)]
    lan.now = lan.start  # T: the alarm closes, the item keeps showing the room
    closed = [c for c in timeline.tick() if c.alarm.kind is AlarmKind.CLOCK_SKEW]
    assert [(c.opened, c.alarm.room) for c in closed] == [(False, room)]
    item = next(i for i in timeline.timeline("1").items if i.id == "skew")
    assert item.state is ItemState.OVERDUE and item.rooms_left == (room,)


def test_bad_clock_values_are_ignored_never_refused(lan, caplog):
    room = lan.rooms()[0]
    client = proctor(lan, room, "127.0.0.35")  # sends no clock of its own: the test writes the fields
    for fields in ({"clock": "08:00"}, {"clock": 12}, {"clock": "x" * 100},
                   {"clock": "2026-06-13T08:00:00+08:00", "rtt_ms": -1},
                   {"clock": "2026-06-13T08:00:00+08:00", "rtt_ms": True}, {"rtt_ms": "fast"}):
        header, _ = client.request("heartbeat", dict(fields, state=dict(STATE)))
        assert header["type"] == "ok"
    # the two with a good clock (their bad rtt dropped) were taken; nothing else
    estimate = lan.skew.estimate(room)
    assert estimate is not None and estimate.samples == 2 and estimate.uncertainty_s is None
    assert any("ignored for the clock skew" in r.getMessage() for r in caplog.records)
