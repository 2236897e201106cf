"""补时 over a real site (issue 15): a grant moves the room's end in 考点时间线 at once (the
records' cache drops on ``extra_time.granted``), so the room's 结束 alarm waits for its own end.

Real parts: the platform simulator, the dongle emulator (授权验证), a loaded package; the wall
clock is ``ShiftedWall`` (moved by the test); the room starts by a heartbeat into the monitor.
"""

import datetime

import pytest

from kd.core.timelinerules import ItemState
from kd.core.verification import VerificationService
from kd.formats.timeutil import parse_time
from tests.integration.live_helpers import authorized_env, room_codes
from tests.support.clocks import ShiftedWall


@pytest.fixture
def site(tmp_path):
    wall = ShiftedWall()
    env = authorized_env(tmp_path, clock=wall)
    VerificationService(env.ctx).verify_online("1", "admin")
    env.wall = wall
    yield env
    env.close()


def end_of(env, session="1"):
    s = next(s for s in env.ctx.manifest()["sessions"] if s["id"] == session)
    return parse_time(s["start"]) + datetime.timedelta(minutes=int(s["duration_min"]))


def move_to(env, minutes_from_end):
    target = end_of(env) + datetime.timedelta(minutes=minutes_from_end)
    env.wall.offset += target - env.ctx.now()


def ended(env):
    return next(i for i in env.core.timeline.timeline("1").items if i.id == "ended")


def open_keys(env):
    return {a.key for a in env.core.timeline.open_alarms()}


def test_a_grant_moves_the_rooms_end_alarm_at_once(site):
    core = site.core
    room = room_codes(site)[0]
    core.monitor.heartbeat(room, {"session_id": "1", "started": True, "ended": False, "logged_in": 1,
                                  "in_exam": 1})
    move_to(site, 5)
    core.timeline.tick()
    grant = core.extra_time.grant(room, "1", 10, actor="admin", reason="网络中断 10 分钟")
    item = ended(site)  # no tick, no wait: the grant's hub event dropped the timeline's cache
    assert [(e.room, e.minutes) for e in item.extra_time] == [(room, 10)]
    assert item.extra_time[0].expected_end == parse_time(grant["expected_end"]) == end_of(site) + \
        datetime.timedelta(minutes=10)
    key = "1/ended/{}".format(room)
    move_to(site, 15)
    assert key not in {c.key for c in core.timeline.timeline("1").conditions}
    core.timeline.tick()
    assert key not in open_keys(site)
    move_to(site, 25)  # E + 10 + 15
    assert key in {c.key for c in core.timeline.timeline("1").conditions}
    core.timeline.tick()
    assert key in open_keys(site) and ended(site).state is ItemState.OVERDUE
    # the monitor's row carries the room's expected end too
    row = next(r for r in core.monitor.view("1").rows if r.room == room)
    assert row.extra_time_min == 10 and parse_time(row.expected_end) == end_of(site) + datetime.timedelta(minutes=10)
    other = next(r for r in core.monitor.view("1").rows if r.room != room)
    assert other.extra_time_min == 0 and parse_time(other.expected_end) == end_of(site)
