"""未经许可开考 and "ended requires started" (issue 12 item 10), over a real LanServer and proctor clients.

Each room's proctor is a real ``ProctorClient`` on its own loopback address (127.0.0.10,
.11, .12) speaking KDLAN to the site's ``LanServer`` on 127.0.0.1; the permit is the
protocol's ``permit`` request, granted by ``VerificationService.start_permit`` after a
real 考试授权 and 授权验证 against the platform simulator and the dongle emulator.
"""

import pytest

from kd.core import model
from kd.core.authorization import AuthorizationService
from kd.core.monitor import START_PERMITTED, START_UNPERMITTED, UNPERMITTED_LABEL, MonitorService, row_cell
from kd.lan.client import LanError
from tests.integration.lan_support import LanSite
from tests.integration.live_helpers import sync
from tests.support.fixtures import closed_after

site = closed_after(LanSite)


def session_rooms(site, session="1"):
    return [r for r in site.rooms() if session in site.sessions_of(r)]


def proctors(site, rooms):
    return {room: site.registered(room, ip="127.0.0.{}".format(10 + i), imported=True)
            for i, room in enumerate(rooms)}


def verify(site, session="1"):
    AuthorizationService(site.ctx).authorize_online(session, "admin")
    sync(site.env)
    site.verification.verify_online(session, "admin")


def state(session="1", started=False, ended=False, logged_in=3, in_exam=0):
    return {"session": session, "started": started, "ended": ended, "logged_in": logged_in, "in_exam": in_exam}


def rs(site, room, session="1"):
    return site.ctx.stores.runtime.get(model.ROOM_SESSIONS, model.rs_key(room, session)) or {}


def audited(site, action):
    return [e for e in site.ctx.audit.entries() if e["action"] == action]


def rows(site, session="1"):
    return {r["room"]: r for r in site.monitor.snapshot(session)["rows"]}


def sent_reports(site, kind):
    site.outbox.deliver_once()
    return [r["report"] for r in site.env.sim.received()["reports"] if r["report"]["kind"] == kind]


def test_a_start_without_permit_is_recorded_audited_shown_and_reported(site):
    rooms = session_rooms(site)
    assert len(rooms) >= 2
    clients = proctors(site, rooms)
    verify(site)
    events = site.ctx.hub.subscribe(["room.started", "room.started_unpermitted", "room.permitted"])
    bad = rooms[-1]
    for room in rooms[:-1]:  # these ask for the permit first, as they must
        permit = clients[room].permit("1")
        assert permit["granted"] is True
        clients[room].permit("1")  # asked again: one record, one audit line
        reply = clients[room].heartbeat(state(started=True, in_exam=3))
        assert "warning" not in reply
    # the last room starts without asking: 未经许可开考, every heartbeat told, recorded once
    for _ in range(3):
        reply = clients[bad].heartbeat(state(started=True, in_exam=2))
        assert reply["warning"]["code"] == "W_UNPERMITTED" and UNPERMITTED_LABEL in reply["warning"]["message"]

    doc = rs(site, bad)
    assert doc["started_at"] and doc["unpermitted_at"] == doc["started_at"] and not doc.get("permitted_at")
    for room in rooms[:-1]:
        good = rs(site, room)
        assert good["permitted_at"] and good["started_at"] and not good.get("unpermitted_at")
    entries = audited(site, "room.started_unpermitted")
    assert len(entries) == 1
    assert entries[0]["details"] == {"room_code": bad, "session_id": "1", "reason": "no_permit"}
    assert sorted(e["details"]["room_code"] for e in audited(site, "room.started")) == sorted(rooms[:-1])
    assert len(audited(site, "room.permitted")) == len(rooms) - 1
    seen = []
    while True:
        event = events.get(timeout=0)
        if event is None:
            break
        seen.append((event.name, event.data.get("room_code")))
    assert seen.count(("room.started_unpermitted", bad)) == 1 and ("room.started", bad) not in seen

    got = rows(site)
    assert got[bad]["unpermitted"] is True and got[bad]["start"] == START_UNPERMITTED and got[bad]["started"]
    assert got[bad]["unpermitted_at"] == doc["unpermitted_at"]
    assert all(got[r]["start"] == START_PERMITTED and not got[r]["unpermitted"] for r in rooms[:-1])
    assert site.monitor.snapshot("1")["totals"]["unpermitted"] == 1
    assert UNPERMITTED_LABEL in row_cell(got[bad], "in_exam") and "2" in row_cell(got[bad], "in_exam")
    assert row_cell(got[rooms[0]], "in_exam") == "3"

    # the automatic reports carry it: 开考 names the room, the room status flags it
    kinds = [r["kind"] for r in site.monitor.tick()]
    assert "session_started" in kinds and "room_status" in kinds
    started = sent_reports(site, "session_started")
    assert len(started) == 1 and started[0]["data"]["unpermitted"] == [bad]
    assert started[0]["data"]["rooms"] == len(rooms)
    status = sent_reports(site, "room_status")[-1]["data"]
    assert {r["room"]: r["unpermitted"] for r in status["rooms"]}[bad] is True
    assert status["totals"]["unpermitted"] == 1

    # a permit asked for afterwards does not make that start a permitted one
    clients[bad].permit("1")
    clients[bad].heartbeat(state(started=True, in_exam=2))
    assert rs(site, bad)["unpermitted_at"] and rows(site)[bad]["unpermitted"]
    assert len(audited(site, "room.started_unpermitted")) == 1

    # a restarted site (a new monitor over the same stores) still knows it
    again = MonitorService(site.ctx, site.outbox, clock=site.clock)
    assert {r["room"]: r for r in again.snapshot("1")["rows"]}[bad]["unpermitted"] is True


def test_every_room_starting_a_session_never_verified(site):
    rooms = session_rooms(site)
    clients = proctors(site, rooms)
    with pytest.raises(LanError) as e:
        clients[rooms[0]].permit("1")  # not authorized: no permit
    assert e.value.code == "E_PERMIT"
    for room in rooms:
        reply = clients[room].heartbeat(state(started=True, in_exam=1))
        assert reply["warning"]["code"] == "W_UNPERMITTED"
    reasons = [e["details"]["reason"] for e in audited(site, "room.started_unpermitted")]
    assert reasons == ["not_authorized"] * len(rooms)
    assert not audited(site, "room.started")
    site.monitor.tick()
    started = sent_reports(site, "session_started")
    assert len(started) == 1 and sorted(started[0]["data"]["unpermitted"]) == sorted(rooms)
    # ended after an unpermitted start: accepted, the session ends, its report names the rooms too
    for room in rooms:
        clients[room].heartbeat(state(started=True, ended=True))
    site.clock.now += 60
    site.monitor.tick()
    ended = sent_reports(site, "session_ended")
    assert len(ended) == 1 and sorted(ended[0]["data"]["unpermitted"]) == sorted(rooms)
    assert all(rs(site, r)["ended_at"] and rs(site, r)["unpermitted_at"] for r in rooms)


def test_authorized_but_not_verified_start_names_the_reason(site):
    rooms = session_rooms(site)
    clients = proctors(site, rooms[:1])
    AuthorizationService(site.ctx).authorize_online("1", "admin")
    clients[rooms[0]].heartbeat(state(started=True))
    assert [e["details"]["reason"] for e in audited(site, "room.started_unpermitted")] == ["not_verified"]


def test_ended_without_started_is_refused_and_audited_once(site):
    rooms = session_rooms(site)
    clients = proctors(site, rooms[:2])
    room = rooms[0]
    for _ in range(3):
        with pytest.raises(LanError) as e:
            clients[room].heartbeat(state(ended=True, logged_in=5))
        assert e.value.code == "E_STATE" and "尚未开考" in e.value.cause
    doc = rs(site, room)
    assert not doc.get("started_at") and not doc.get("ended_at") and not doc.get("unpermitted_at")
    entries = audited(site, "room.end_refused")
    assert len(entries) == 1 and entries[0]["details"] == {"room_code": room, "session_id": "1"}
    assert not audited(site, "room.started") and not audited(site, "room.ended")
    row = rows(site)[room]
    assert not row["started"] and not row["ended"] and not row["connected"] and row["logged_in"] == 0
    assert site.monitor.tick() == []  # nothing started: nothing reported
    # the other room's refusal is its own audit line
    with pytest.raises(LanError):
        clients[rooms[1]].heartbeat(state(ended=True))
    assert len(audited(site, "room.end_refused")) == 2
    # the proctor that did start says so: its start (without a permit) and its end are recorded
    clients[room].heartbeat(state(started=True, ended=True))
    doc = rs(site, room)
    assert doc["started_at"] and doc["ended_at"] and doc["unpermitted_at"]
    assert len(audited(site, "room.started_unpermitted")) == 1 and len(audited(site, "room.ended")) == 1


def test_permitted_flow_is_unchanged(site):
    rooms = session_rooms(site)
    clients = proctors(site, rooms)
    verify(site)
    for room in rooms:
        clients[room].heartbeat(state())
        clients[room].permit("1")
        assert "warning" not in clients[room].heartbeat(state(started=True, in_exam=3))
    site.monitor.tick()
    for room in rooms:
        assert "warning" not in clients[room].heartbeat(state(started=True, ended=True))
    site.clock.now += 60
    site.monitor.tick()
    assert sent_reports(site, "session_started")[0]["data"]["unpermitted"] == []
    assert sent_reports(site, "session_ended")[0]["data"]["unpermitted"] == []
    assert not audited(site, "room.started_unpermitted") and not audited(site, "room.end_refused")
    assert len(audited(site, "room.started")) == len(rooms) == len(audited(site, "room.ended"))
    got = rows(site)
    assert all(got[r]["start"] == START_PERMITTED and got[r]["ended"] for r in rooms)
    assert site.monitor.snapshot("1")["totals"]["unpermitted"] == 0
