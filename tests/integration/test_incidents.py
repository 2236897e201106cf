"""考场情况记录 and 补时 over real parts: a real LanServer with real proctor clients on loopback, the
platform simulator, the dongle emulator, the site's stores reopened from their files.

Time is injected: the monitor's monotonic clock (``FakeMonotonic``) and the site's wall clock
(``ShiftedWall``) move together, so an outage of 90 s is 90 s of moved clocks, never a wait.
"""

import datetime

import pytest

from kd.core import model
from kd.core.authorization import AuthorizationService
from kd.core.extratime import EXTRA_TIME, ExtraTimeService, Tier
from kd.core.incidents import INCIDENTS, IncidentService, IncidentState, Kind
from kd.errors import LockError, StateRefused, UserError
from kd.formats.timeutil import read_time
from kd.lock.coreport import DonglePort
from kd.site import open_site
from tests.integration.lan_support import LanSite
from tests.integration.live_helpers import authorized_env, sync
from tests.support.clocks import FakeMonotonic, ShiftedWall
from tests.support.fixtures import closed_after

site = closed_after(LanSite)
env = closed_after(authorized_env)


def moved(wall: ShiftedWall, mono: FakeMonotonic, seconds: float) -> None:
    wall.offset += datetime.timedelta(seconds=seconds)
    mono.now += seconds


def state(started=True, ended=False, session="1"):
    return {"session": session, "started": started, "ended": ended, "logged_in": 3, "in_exam": 3}


def audited(ctx, action):
    return [e for e in ctx.audit.entries() if e["action"] == action]


def started_room_site(site):
    """Session 1 verified, each of its rooms' proctors permitted and started; the wall clock injected."""
    wall = ShiftedWall()
    site.ctx.clock = wall
    rooms = [r for r in site.rooms() if "1" in site.sessions_of(r)]
    clients = {room: site.registered(room, ip="127.0.0.{}".format(10 + i), imported=True)
               for i, room in enumerate(rooms)}
    AuthorizationService(site.ctx).authorize_online("1", "admin")
    sync(site.env)
    site.verification.verify_online("1", "admin")
    for room in rooms:
        clients[room].permit("1")
        clients[room].heartbeat(state())
    return wall, rooms, clients


def test_an_outage_on_loopback_is_drafted_once_and_closed_when_the_room_comes_back(site):
    wall, rooms, clients = started_room_site(site)
    mono = site.clock
    incidents = IncidentService(site.ctx, site.monitor)
    lost, others = rooms[0], rooms[1:]
    assert incidents.tick() == []
    last_beat = site.ctx.now()
    # the lost room's proctor stops; the others go on every 5 s
    for _ in range(6):
        moved(wall, mono, 5)
        for room in others:
            clients[room].heartbeat(state())
        assert incidents.tick() == []  # 30 s: not yet
    moved(wall, mono, 1)
    drafted = incidents.tick()
    assert [(d["kind"], d["room"], d["state"], d["end"]) for d in drafted] == [("outage", lost, "drafted", None)]
    outage = drafted[0]
    assert abs((read_time(outage["start"]) - last_beat).total_seconds()) <= 1
    assert outage["category"] == "network" and outage["session"] == "1"
    # the site restarts while the room is away: a new service, the room's last heartbeat forgotten
    site.monitor.forget(lost)
    incidents = IncidentService(site.ctx, site.monitor)
    for _ in range(11):  # 59 s more: the same outage, drafted once
        moved(wall, mono, 5)
        for room in others:
            clients[room].heartbeat(state())
        assert incidents.tick() == []
    moved(wall, mono, 4)
    clients[lost].heartbeat(state())  # back after 90 s
    back = site.ctx.now()
    updated = incidents.tick()
    assert [d["id"] for d in updated] == [outage["id"]]
    end = read_time(updated[0]["end"])
    assert abs((end - back).total_seconds()) <= 1
    assert 89 <= (end - read_time(updated[0]["start"])).total_seconds() <= 91
    assert incidents.tick() == []
    assert len(audited(site.ctx, "incident.drafted")) == 1 and len(audited(site.ctx, "incident.updated")) == 1
    assert [d["id"] for d in incidents.list(session="1")] == [outage["id"]]

    # a new service (a restarted site) over the same stores drafts nothing again
    again = IncidentService(site.ctx, site.monitor)
    assert again.tick() == []

    # confirmed, its 90 s are 2 minutes to make up, granted on site
    incidents.confirm(outage["id"], "admin", "已核实")
    extra = ExtraTimeService(site.ctx, incidents)
    proposal = extra.proposal(lost, "1")
    assert (proposal.lost_min, proposal.proposed_min, proposal.tier, proposal.incidents) == (
        2, 2, Tier.ON_SITE, [outage["id"]])
    scheduled = extra.expected_end(lost, "1")
    events = site.ctx.hub.subscribe(["extra_time.granted"])
    grant = extra.grant(lost, "1", proposal.proposed_min, actor="admin", reason="网络中断", incident_ids=[outage["id"]])
    assert extra.expected_end(lost, "1") == scheduled + datetime.timedelta(minutes=2)
    assert events.get(timeout=5).data["grant_id"] == grant["id"]
    assert extra.proposal(lost, "1").proposed_min == 0
    # what the heartbeat handler will hand the proctor, and its acknowledgement
    assert extra.pending(lost) == {"id": grant["id"], "session_id": "1", "minutes": 2, "total_min": 2,
                                   "expected_end": grant["expected_end"], "reason": "网络中断"}
    assert extra.pending(others[0]) is None
    assert extra.acknowledge(others[0], grant["id"]) is False
    assert extra.acknowledge(lost, grant["id"]) is True
    assert extra.acknowledge(lost, grant["id"]) is False
    assert extra.pending(lost) is None
    assert len(audited(site.ctx, "extra_time.acknowledged")) == 1


def test_confirm_dismiss_and_the_transition_table(site):
    wall, rooms, _clients = started_room_site(site)
    incidents = IncidentService(site.ctx, site.monitor)
    room = rooms[0]
    start = wall()
    tickets = [c["ticket"] for c in site.ctx.manifest()["candidates"] if c["room"] == room and c["session"] == "1"]
    foreign = next(c["ticket"] for c in site.ctx.manifest()["candidates"] if c["room"] != room)
    with pytest.raises(UserError, match="不在考场"):
        incidents.add(room=room, session="1", category="考生原因", start=start, end=None, description="x",
                      actor="admin", candidates=[foreign])
    with pytest.raises(UserError, match="早于"):
        incidents.add(room=room, session="1", category="other", start=start, end=start - datetime.timedelta(1),
                      description="x", actor="admin")
    with pytest.raises(UserError, match="没有考场"):
        incidents.add(room="nope", session="1", category="other", start=start, end=None, description="x",
                      actor="admin")
    added = incidents.add(room=room, session="1", category="考生原因", start=start, end=None,
                          description="考生突发疾病", actor="admin", candidates=tickets[:1])
    assert added["state"] == "confirmed" and added["candidates"] == tickets[:1] and added["kind"] == "manual"
    with pytest.raises(StateRefused):
        incidents.confirm(added["id"], "admin")
    incidents.dismiss(added["id"], "admin", "误记")
    with pytest.raises(StateRefused):
        incidents.confirm(added["id"], "admin")
    with pytest.raises(StateRefused):
        incidents.dismiss(added["id"], "admin")
    got = incidents.get(added["id"])
    assert (got["state"], got["decided_by"], got["note"]) == ("dismissed", "admin", "误记")
    with pytest.raises(UserError, match="没有编号"):
        incidents.get("999")
    # a room starting session 2 without its permit: 未经许可开考 drafted once, dismissed straight from drafted
    bad = next(r for r in rooms if "2" in site.sessions_of(r))
    _clients[bad].heartbeat(state(session="2"))
    (drafted,) = incidents.tick()
    assert (drafted["kind"], drafted["room"], drafted["session"], drafted["state"]) == (
        "unpermitted", bad, "2", "drafted")
    assert incidents.tick() == []
    incidents.dismiss(drafted["id"], "admin", "监考机误报")
    assert incidents.tick() == []  # a dismissed draft is not drafted again
    actions = [e["action"] for e in site.ctx.audit.entries() if e["action"].startswith("incident.")]
    assert actions == ["incident.recorded", "incident.dismissed", "incident.drafted", "incident.dismissed"]


def test_the_30_45_rules_with_the_dongle(env):
    ctx, core = env.ctx, env.core
    room = next(r["code"] for r in ctx.manifest()["rooms"])
    extra = core.extra_time
    with pytest.raises(UserError):
        extra.grant(room, "1", 0, actor="admin", reason="x")
    with pytest.raises(UserError):
        extra.grant(room, "1", 5, actor="admin", reason=" ")
    first = extra.grant(room, "1", 30, actor="admin", reason="停电")
    assert first["tier"] == "on_site" and first["dongle"] is None
    with pytest.raises(StateRefused, match="二次确认"):
        extra.grant(room, "1", 1, actor="admin", reason="又停电")  # 31 in total
    second = extra.grant(room, "1", 15, actor="admin", reason="又停电", confirmed=True)
    assert second["tier"] == "dongle" and second["total_min"] == 45
    assert second["dongle"]["lock_id"] == ctx.manifest()["lock"]["id"] and second["dongle"]["clock_ms"] > 0
    with pytest.raises(StateRefused, match="改期"):
        extra.grant(room, "1", 1, actor="admin", reason="再停电", confirmed=True)
    assert extra.expected_end(room, "1") == extra.scheduled_end("1") + datetime.timedelta(minutes=45)
    doc = ctx.stores.runtime.get(model.ROOM_SESSIONS, model.rs_key(room, "1"))
    assert doc["extra_time_min"] == 45 and read_time(doc["expected_end"]) == extra.expected_end(room, "1")
    other = [r["code"] for r in ctx.manifest()["rooms"]][1]
    extra.grant(other, "1", 10, actor="admin", reason="停电")
    env.driver.stop()  # the dongle pulled out: over 30 needs it
    with pytest.raises(LockError):
        extra.grant(other, "1", 25, actor="admin", reason="又停电", confirmed=True)
    assert extra.granted_min(other, "1") == 10
    entries = audited(ctx, "extra_time.granted")
    assert [(e["details"]["total_min"], e["details"]["tier"]) for e in entries] == [
        (30, "on_site"), (45, "dongle"), (10, "on_site")]
    assert extra.proposal(room, "1").tier == Tier.DONGLE  # the total granted so far


def test_a_stale_room_marked_ended_lets_the_session_close(env):
    ctx, core = env.ctx, env.core
    mono = FakeMonotonic()
    core.monitor.clock = mono
    rooms = [r for r in {c["room"] for c in ctx.manifest()["candidates"] if c["session"] == "1"}]
    rooms.sort()
    for room in rooms:
        core.monitor.heartbeat(room, {"session_id": "1", "started": True})
    stale = rooms[-1]
    with pytest.raises(StateRefused, match="仍与考点机连接"):
        core.incidents.end_stale(stale, "1", "监考机损坏", "admin")
    for room in rooms[:-1]:
        core.monitor.heartbeat(room, {"session_id": "1", "started": True, "ended": True})
    core.monitor.tick()
    assert ctx.stores.runtime.get(model.SESSIONS, "1").get("ended_reported_at") is None
    mono.now += 16
    with pytest.raises(UserError, match="原因"):
        core.incidents.end_stale(stale, "1", "", "admin")
    incident = core.incidents.end_stale(stale, "1", "监考机损坏无法恢复", "admin")
    assert (incident["kind"], incident["category"], incident["state"]) == ("stale_end", "device", "confirmed")
    doc = ctx.stores.runtime.get(model.ROOM_SESSIONS, model.rs_key(stale, "1"))
    assert doc["ended_at"]
    ended = [e for e in audited(ctx, "room.ended") if e["details"]["room_code"] == stale]
    assert ended[0]["details"]["stale"] is True and ended[0]["details"]["incident_id"] == incident["id"]
    kinds = [r["kind"] for r in core.monitor.tick()]
    assert "session_ended" in kinds
    with pytest.raises(StateRefused, match="已经结束"):
        core.incidents.end_stale(stale, "1", "again", "admin")
    never = next(c["room"] for c in ctx.manifest()["candidates"] if c["session"] == "2")
    assert not (ctx.stores.runtime.get(model.ROOM_SESSIONS, model.rs_key(never, "2")) or {}).get("started_at")
    with pytest.raises(StateRefused, match="没有开考记录"):
        core.incidents.end_stale(never, "2", "x", "admin")


def test_incidents_and_grants_survive_a_reopen_of_the_site(env):
    ctx, core = env.ctx, env.core
    room = ctx.manifest()["rooms"][0]["code"]
    now = ctx.now()
    added = core.incidents.add(room=room, session="1", category="设备故障", start=now,
                               end=now + datetime.timedelta(minutes=7), description="考生机蓝屏", actor="admin")
    grant = core.extra_time.grant(room, "1", 7, actor="admin", reason="设备故障", incident_ids=[added["id"]])
    expected = core.extra_time.expected_end(room, "1")
    env.site.close()
    reopened = open_site(env.data_dir, hub=env.hub, platform=env.client, dongle=DonglePort(env.driver), gate=False)
    try:
        again = reopened.core
        assert again.incidents.get(added["id"]) == added
        assert again.extra_time.grants() == [grant]
        assert again.extra_time.expected_end(room, "1") == expected
        assert again.extra_time.pending(room)["id"] == grant["id"]
        assert set(reopened.ctx.stores.runtime.tables()) >= {INCIDENTS, EXTRA_TIME}
        nxt = again.incidents.add(room=room, session="1", category="other", start=now, end=None,
                                  description="其他", actor="admin")
        assert int(nxt["id"]) == int(added["id"]) + 1
        assert again.incidents.list(states=[IncidentState.CONFIRMED])[0]["kind"] == Kind.MANUAL.value
    finally:
        reopened.close()


def test_a_room_session_of_a_session_no_longer_in_the_package_is_not_watched(env):
    ctx, core = env.ctx, env.core
    room = ctx.manifest()["rooms"][0]["code"]
    ctx.stores.runtime.put(model.ROOM_SESSIONS, model.rs_key(room, "9"), {
        "room": room, "session": "9", "started_at": ctx.now().isoformat(), "ended_at": None, "result": None,
        "upload": None})
    assert core.incidents.tick() == []


def test_the_pause_between_two_sessions_is_no_outage(env):
    """A room beats through session 1, on between the sessions (its proctor waits for 开考时间),
    then starts session 2: the two minutes in which no session of the room was under way (and
    the tick did not watch it) are no 网络中断 of session 1."""
    ctx, core = env.ctx, env.core
    wall, mono = ShiftedWall(), FakeMonotonic()
    ctx.clock, core.monitor.clock = wall, mono
    rooms_of = {sid: sorted({c["room"] for c in ctx.manifest()["candidates"] if c["session"] == sid})
                for sid in ("1", "2")}
    both = [r for r in rooms_of["1"] if r in rooms_of["2"]]
    assert both, rooms_of

    def beat(session, started, ended=False):
        for room in rooms_of[session]:
            core.monitor.heartbeat(room, {"session_id": session, "started": started, "ended": ended})

    def drafted_outages():
        core.incidents.tick()
        return [(d["room"], d["session"]) for d in ctx.stores.runtime.all(INCIDENTS) if d["kind"] == "outage"]

    beat("1", True)
    for _ in range(12):  # session 1 runs a minute, a beat and a tick every 5 s
        moved(wall, mono, 5)
        beat("1", True)
        assert drafted_outages() == []
    moved(wall, mono, 2)  # each room ends between two ticks
    beat("1", True, ended=True)
    assert drafted_outages() == []
    for _ in range(24):  # two minutes between the sessions: beats every 5 s, no session under way
        moved(wall, mono, 5)
        beat("1", True, ended=True)
        assert drafted_outages() == []
    beat("2", True)  # session 2 starts
    for _ in range(3):
        assert drafted_outages() == []
        moved(wall, mono, 5)
        beat("2", True)
