"""考点时间线 over a real site: facts read from the stores, alarms opened and closed once, persisted.

Real parts: the platform simulator, the dongle emulator (授权验证), a loaded package with
its rooms registered; the wall clock is ``ShiftedWall`` (moved by the test), the
monitor's heartbeat clock ``FakeMonotonic``. The LAN test drives real proctor clients on
loopback: their heartbeats go through the LAN server into the monitor, then stop.
"""

import datetime

import pytest

from kd.core import model, names
from kd.core.monitor import MonitorService
from kd.core.outbox import Outbox
from kd.core.timeline import ALARMS, TimelineService
from kd.core.timelinerules import ItemState
from kd.core.verification import VerificationService
from kd.formats.timeutil import parse_time
from tests.integration.lan_support import LanSite
from tests.integration.live_helpers import authorized_env, room_codes
from tests.support.clocks import FakeMonotonic, ShiftedWall


@pytest.fixture
def site(tmp_path):
    wall = ShiftedWall()
    env = authorized_env(tmp_path, clock=wall)
    VerificationService(env.ctx).verify_online("1", "admin")
    clock = FakeMonotonic()
    monitor = MonitorService(env.ctx, Outbox(env.ctx), clock=clock)
    env.wall, env.clock, env.monitor = wall, clock, monitor
    env.timeline = TimelineService(env.ctx, monitor)
    yield env
    env.close()


def start_of(env, session="1"):
    for s in env.ctx.manifest()["sessions"]:
        if s["id"] == session:
            return parse_time(s["start"])
    raise AssertionError(session)


def move_to(env, minutes_from_start):
    """The site's wall clock at T + minutes of session 1."""
    target = start_of(env) + datetime.timedelta(minutes=minutes_from_start)
    env.wall.offset += target - env.ctx.now()


def items(env, session="1"):
    return {(i.session, i.id): i for i in env.timeline.timeline(session).items}


def beat(env, room, started=False, ended=False, session="1"):
    env.monitor.heartbeat(room, {"session_id": session, "started": started, "ended": ended,
                                 "logged_in": 1, "in_exam": 1 if started else 0})


def alarm_lines(env):
    return [e for e in env.ctx.audit.entries() if e["action"] in (names.ALARM_OPENED, names.ALARM_CLOSED)]


def test_facts_from_the_records(site):
    got = items(site)
    # loaded, registered with data, verified (which needs the dongle synced within the hour): done
    for key in ((None, "package"), ("1", "rooms_ready"), ("1", "verified"), ("1", "clock")):
        assert got[key].state is ItemState.DONE, key
        assert got[key].completed_at is not None
    sdoc = site.ctx.stores.runtime.get(model.SESSIONS, "1")
    assert got[("1", "verified")].completed_at == parse_time(sdoc["verified_at"])
    assert got[("1", "clock")].completed_at == parse_time(sdoc["lock_synced_at"])
    assert got[(None, "seal")].state is ItemState.ACTIVE  # T-30: 封场检测 is due at T-20, not run
    assert got[("1", "started")].state is ItemState.PENDING
    assert got[("1", "started")].rooms_left == tuple(room_codes(site)[:len(got[("1", "started")].rooms_left)])
    # session 2's items are not in session 1's timeline, the site's are
    assert {s for s, _ in got} == {None, "1"}
    assert {i.session for i in site.timeline.timeline().items} == {None, "1", "2"}


def test_alarms_open_and_close_once_and_persist(site):
    events = site.hub.subscribe([names.ALARM_OPENED, names.ALARM_CLOSED])
    assert site.timeline.tick() == [] and site.timeline.open_count() == 0
    move_to(site, -20)  # 封场检测 not passed at T-20
    changes = site.timeline.tick()
    assert [(c.opened, c.alarm.key) for c in changes] == [(True, "-/seal/-")]
    assert site.timeline.tick() == []  # not once per tick
    event = events.get(timeout=5)
    assert event.name == names.ALARM_OPENED and event.data["key"] == "-/seal/-" and event.data["open_alarms"] == 1

    codes = [c for c in items(site)[("1", "started")].rooms_left]
    first, rest = codes[0], codes[1:]
    VerificationService(site.ctx).start_permit(first, "1")
    beat(site, first, started=True)
    move_to(site, 5)  # 开考 + 5: the other rooms have not started
    opened = {c.alarm.key for c in site.timeline.tick() if c.opened}
    assert opened == {"1/started/{}".format(r) for r in rest}
    assert site.timeline.open_count() == 1 + len(rest)

    site.clock.now += 30  # the started room's heartbeats stop for 30 s
    assert [(c.opened, c.alarm.key, c.alarm.kind.value) for c in site.timeline.tick()] == [
        (True, "1/connected/{}".format(first), "room_lost")]
    beat(site, first, started=True)  # it is back
    assert [(c.opened, c.alarm.key) for c in site.timeline.tick()] == [(False, "1/connected/{}".format(first))]

    for room in rest:
        beat(site, room, started=True)  # 未经许可开考 still counts as started
    closed = {c.alarm.key for c in site.timeline.tick() if not c.opened}
    assert closed == {"1/started/{}".format(r) for r in rest}
    assert items(site)[("1", "started")].state is ItemState.DONE

    lines = alarm_lines(site)
    per_key = {}
    for line in lines:
        per_key.setdefault(line["details"]["key"], []).append(line["action"])
    assert per_key["-/seal/-"] == [names.ALARM_OPENED]
    assert per_key["1/connected/{}".format(first)] == [names.ALARM_OPENED, names.ALARM_CLOSED]
    for room in rest:
        assert per_key["1/started/{}".format(room)] == [names.ALARM_OPENED, names.ALARM_CLOSED]
    assert all(line["actor"] == "system" for line in lines)
    closing = [line for line in lines if line["action"] == names.ALARM_CLOSED and line["details"]["item"] == "started"]
    assert all(line["details"]["resolved"] == "completed" for line in closing)

    # the open alarms are stored: a new service (a restart) neither re-opens nor forgets them
    stored = site.ctx.stores.runtime.get(model.CHECKS, ALARMS)
    assert set(stored["open"]) == {"-/seal/-"}
    again = TimelineService(site.ctx, site.monitor)
    assert [a.key for a in again.open_alarms()] == ["-/seal/-"]
    assert again.tick() == []
    assert len(alarm_lines(site)) == len(lines)
    assert again.snapshot("1")["open_alarms"] == 1


def test_room_lost_over_the_lan(tmp_path):
    """Real proctor clients heartbeat through the LAN server; one stops: its alarm opens, then closes."""
    lan = LanSite(tmp_path, rooms=2, sessions=1)
    try:
        ctx = lan.ctx
        timeline = TimelineService(ctx, lan.monitor)
        rooms = lan.rooms()
        clients = {room: lan.registered(room, ip="127.0.0.{}".format(20 + i), imported=True)
                   for i, room in enumerate(rooms)}
        # the exam is under way: move the site's clock past the start
        start = parse_time(ctx.manifest()["sessions"][0]["start"])
        ctx.clock = lambda: start + datetime.timedelta(minutes=10)
        for client in clients.values():
            client.heartbeat({"session": "1", "started": True, "ended": False, "logged_in": 2, "in_exam": 2})
        assert [c for c in timeline.tick() if c.alarm.item == "connected"] == []
        lost, kept = rooms
        for second in range(1, 31):  # 30 s: the kept room beats every 5 s, the lost one is silent
            lan.clock.now += 1
            if second % 5 == 0:
                clients[kept].heartbeat({"session": "1", "started": True, "ended": False,
                                         "logged_in": 2, "in_exam": 2})
            changes = [c for c in timeline.tick() if c.alarm.item == "connected"]
            if second < 30:
                assert changes == [], second
        assert [(c.opened, c.alarm.room) for c in changes] == [(True, lost)]
        assert "失去连接" in changes[0].alarm.label
        clients[lost].heartbeat({"session": "1", "started": True, "ended": False, "logged_in": 2, "in_exam": 2})
        assert [(c.opened, c.alarm.room) for c in timeline.tick() if c.alarm.item == "connected"] == [(False, lost)]
    finally:
        lan.close()


def test_a_listener_may_ask_the_service_while_an_alarm_is_recorded(site):
    """``hub.on`` listeners run in the ticking thread: one that reads the open alarms must not block it."""
    import threading  # noqa: PLC0415

    seen = []
    site.hub.on(names.ALARM_OPENED, lambda event: seen.append((event.data["key"], site.timeline.open_count())))
    move_to(site, -20)
    ticking = threading.Thread(target=site.timeline.tick, daemon=True)
    ticking.start()
    ticking.join(60)
    assert not ticking.is_alive(), "tick() blocked on its own listener"
    assert seen == [("-/seal/-", 1)]
