"""考场监控 (§4.3) and the automatic reports (§4.4) with a loaded site and the platform simulator.

Time is injected: the monitor's clock is a list the test moves; nothing sleeps. Session 1
is authorized and verified (授权验证 with the dongle emulator); a room starts it the normal
way after its start permit (``VerificationService.start_permit``, as the LAN ``permit``).
"""

import pytest

from kd.core import model
from kd.core.monitor import COLUMNS, START_PERMITTED, START_UNPERMITTED, MonitorService, cell_text
from kd.core.outbox import Outbox
from kd.core.verification import VerificationService
from kd.errors import StateRefused, UserError
from tests.integration.live_helpers import authorized_env, room_codes
from tests.support.clocks import FakeMonotonic


@pytest.fixture
def env(tmp_path):
    e = authorized_env(tmp_path)
    VerificationService(e.ctx).verify_online("1", "admin")
    yield e
    e.close()


def permit(env, *codes, session="1"):
    service = VerificationService(env.ctx)
    for code in codes:
        service.start_permit(code, session)


def monitor(env, clock, **kw):
    kw.setdefault("status_every", 60.0)
    return MonitorService(env.ctx, Outbox(env.ctx), interval=5.0, clock=clock, **kw)


def rows(snap):
    return {r["room"]: r for r in snap["rows"]}


def beat(mon, room, started=False, ended=False, logged_in=0, in_exam=0, session="1"):
    mon.heartbeat(room, {"session_id": session, "started": started, "ended": ended,
                         "logged_in": logged_in, "in_exam": in_exam})


def test_snapshot_has_every_column_and_totals(env):
    clock = FakeMonotonic()
    mon = monitor(env, clock)
    codes = room_codes(env)
    snap = mon.snapshot()  # the current session by default
    assert snap["session"]["id"] == "1" and snap["session"]["start"]
    assert [label for _, label in COLUMNS] == ["考场编号", "注册IP", "考场数据导入状态", "考试授权状态", "授权验证状态",
                                               "是否结束考试", "是否已上报数据", "是否与考场连接", "考生人数", "已登录",
                                               "考试中"]
    manifest = env.ctx.manifest()
    expected = {c: sum(1 for x in manifest["candidates"] if x["room"] == c and x["session"] == "1") for c in codes}
    got = rows(snap)
    assert set(got) == set(codes)
    for code in codes:
        row = got[code]
        for key, _ in COLUMNS:
            assert key in row
        assert row["ip"] and row["data_imported"] and row["authorized"] and row["verified"]
        assert not row["ended"] and not row["reported"] and not row["connected"]
        assert row["candidates"] == expected[code] and row["logged_in"] == 0
    beat(mon, codes[0], logged_in=3, in_exam=0)
    beat(mon, codes[1], started=True, logged_in=4, in_exam=4)
    snap = mon.snapshot("1")
    got = rows(snap)
    assert got[codes[0]]["connected"] and got[codes[0]]["logged_in"] == 3
    assert got[codes[1]]["in_exam"] == 4 and not got[codes[2]]["connected"]
    totals = snap["totals"]
    assert totals["room"] == "人数统计" and totals["candidates"] == sum(expected.values())
    assert totals["logged_in"] == 7 and totals["in_exam"] == 4 and totals["connected"] == 2
    assert totals["started"] == 1 and totals["data_imported"] == 3
    assert cell_text("connected", True) == "是" and cell_text("verified", False) == "未验证"
    assert got[codes[1]]["start"] == START_UNPERMITTED and totals["unpermitted"] == 1  # no permit asked
    # live counts of another session do not show in this one
    assert rows(mon.snapshot("2"))[codes[0]]["logged_in"] == 0
    with pytest.raises(UserError):
        mon.snapshot("nope")


def test_disconnected_after_three_missed_heartbeats(env):
    clock = FakeMonotonic()
    mon = monitor(env, clock)
    code = room_codes(env)[0]
    beat(mon, code, logged_in=2)
    clock.now += 14.9  # two beats missed, the third not yet
    assert rows(mon.snapshot("1"))[code]["connected"] and mon.connected(code)
    clock.now += 0.1  # the third missed
    assert not rows(mon.snapshot("1"))[code]["connected"] and not mon.connected(code)
    beat(mon, code, logged_in=2)
    assert mon.connected(code)
    slow = monitor(env, clock, missed=5)
    beat(slow, code)
    clock.now += 20
    assert slow.connected(code)


def test_bad_heartbeats_are_refused(env):
    mon = monitor(env, FakeMonotonic())
    code = room_codes(env)[0]
    for state in ({"session_id": "nope"}, {"session_id": "1", "logged_in": -1}, {"session_id": "1", "in_exam": "3"},
                  {"session_id": "1", "logged_in": True}, "not a dict"):
        with pytest.raises(UserError):
            mon.heartbeat(code, state)  # type: ignore[arg-type]
    with pytest.raises(UserError):
        mon.heartbeat("99999999", {"session_id": "1"})
    assert not mon.connected(code)
    assert all(not d["started_at"] for d in env.ctx.stores.runtime.all(model.ROOM_SESSIONS))


def test_transitions_are_persisted_and_reported_once(env):
    clock = FakeMonotonic()
    mon = monitor(env, clock)
    codes = room_codes(env)
    permit(env, *codes)
    beat(mon, codes[0], started=True)
    beat(mon, codes[0], started=True)  # the same state again changes nothing
    doc = env.ctx.stores.runtime.get(model.ROOM_SESSIONS, model.rs_key(codes[0], "1"))
    assert doc["started_at"] and not doc["ended_at"]
    assert sum(1 for e in env.ctx.audit.entries() if e["action"] == "room.started") == 1
    kinds = [r["kind"] for r in mon.tick()]
    assert "session_started" not in kinds and kinds == ["room_status"]
    for code in codes[1:]:
        beat(mon, code, started=True)
    started = [r for r in mon.tick() if r["kind"] == "session_started"]
    assert len(started) == 1 and started[0]["session_id"] == "1"
    assert mon.tick() == []  # nothing due: reported once, status not yet again
    # a restart (a new service over the same stores) does not report again
    again = monitor(env, clock)
    assert [r["kind"] for r in again.tick()] == ["room_status"]
    assert env.ctx.stores.runtime.get(model.SESSIONS, "1")["started_reported_at"]
    assert not any(e["action"] == "room.started_unpermitted" for e in env.ctx.audit.entries())
    assert all(r["start"] == START_PERMITTED for r in again.snapshot("1")["rows"])
    # ended (after the start); all ended → one session_ended
    for code in codes[:-1]:
        beat(again, code, ended=True)
    assert all(r["kind"] != "session_ended" for r in again.tick())
    beat(again, codes[-1], ended=True)
    clock.now += 60
    kinds = [r["kind"] for r in again.tick()]
    assert kinds == ["session_ended"]  # no room status once every room ended
    assert again.tick() == [] and monitor(env, clock).tick() == []
    assert rows(again.snapshot("1"))[codes[0]]["ended"]
    # delivered to the platform, once each
    outbox = Outbox(env.ctx)
    outbox.deliver_once()
    got = [r["report"]["kind"] for r in env.sim.received()["reports"]]
    assert got.count("session_started") == 1 and got.count("session_ended") == 1
    assert all(r["report"]["data"]["unpermitted"] == [] for r in env.sim.received()["reports"]
               if r["report"]["kind"] in ("session_started", "session_ended"))
    snap = again.snapshot("1")
    assert snap["status_report"]["label"].startswith("成功 ")
    assert snap["session"]["started_reported_at"] and snap["session"]["ended_reported_at"]


def test_room_status_is_periodic(env):
    clock = FakeMonotonic()
    mon = monitor(env, clock, status_every=60.0)
    codes = room_codes(env)
    assert mon.tick() == []  # nothing under way yet
    beat(mon, codes[0], started=True, logged_in=5, in_exam=5)
    first = mon.tick()
    assert [r["kind"] for r in first] == ["room_status"]
    assert first[0]["data"]["totals"]["in_exam"] == 5 and len(first[0]["data"]["rooms"]) == 3
    clock.now += 30
    assert mon.tick() == []
    clock.now += 30
    assert [r["kind"] for r in mon.tick()] == ["room_status"]
    assert mon.snapshot("1")["status_report"]["label"] == "等待上报"


def test_start_without_permit_and_end_without_start(env):
    clock = FakeMonotonic()
    mon = monitor(env, clock)
    codes = room_codes(env)
    permit(env, codes[0])
    assert mon.heartbeat(codes[0], {"session_id": "1", "started": True, "logged_in": 1, "in_exam": 1}) == {
        "start": START_PERMITTED}
    # a verified session, but this room never asked for its permit
    for _ in range(2):
        assert mon.heartbeat(codes[1], {"session_id": "1", "started": True, "logged_in": 1, "in_exam": 1}) == {
            "start": START_UNPERMITTED}
    doc = env.ctx.stores.runtime.get(model.ROOM_SESSIONS, model.rs_key(codes[1], "1"))
    assert doc["started_at"] == doc["unpermitted_at"]
    assert [e["details"] for e in env.ctx.audit.entries() if e["action"] == "room.started_unpermitted"] == [
        {"room_code": codes[1], "session_id": "1", "reason": "no_permit"}]
    # ended without a start: refused, nothing taken, audited once
    for _ in range(2):
        with pytest.raises(StateRefused):
            beat(mon, codes[2], ended=True, logged_in=4)
    assert not mon.connected(codes[2])
    doc = env.ctx.stores.runtime.get(model.ROOM_SESSIONS, model.rs_key(codes[2], "1"))
    assert not doc["started_at"] and not doc["ended_at"]
    assert sum(1 for e in env.ctx.audit.entries() if e["action"] == "room.end_refused") == 1
    beat(mon, codes[2], started=True, ended=True)  # start and end in one beat: both recorded
    doc = env.ctx.stores.runtime.get(model.ROOM_SESSIONS, model.rs_key(codes[2], "1"))
    assert doc["started_at"] and doc["ended_at"] and doc["unpermitted_at"]
    started = [r for r in mon.tick() if r["kind"] == "session_started"]
    assert started[0]["data"]["unpermitted"] == [codes[1], codes[2]]


def test_monitor_view_rows_carry_their_room_session_state(env):
    from kd.core import lifecycle
    from kd.core.states import RoomSessionState, StartKind

    clock = FakeMonotonic()
    mon = monitor(env, clock)
    codes = room_codes(env)
    permit(env, codes[0])
    beat(mon, codes[0], started=True)
    beat(mon, codes[1], started=True)  # no permit: 未经许可开考
    beat(mon, codes[0], ended=True)
    view = mon.view("1")
    assert view.as_dict() == mon.snapshot("1")
    got = {r.room: r for r in view.rows}
    assert (got[codes[0]].state, got[codes[0]].start) == (RoomSessionState.ENDED, StartKind.PERMITTED)
    assert (got[codes[1]].state, got[codes[1]].start) == (RoomSessionState.STARTED_UNPERMITTED, StartKind.UNPERMITTED)
    assert (got[codes[2]].state, got[codes[2]].start) == (RoomSessionState.PLANNED, None)
    doc = env.ctx.stores.runtime.get(model.ROOM_SESSIONS, model.rs_key(codes[0], "1"))
    assert doc["permitted_at"] and doc["started_at"] and doc["ended_at"] and "unpermitted_at" not in doc
    assert lifecycle.room_session_state(doc) == RoomSessionState.ENDED
    actions = [e["action"] for e in env.ctx.audit.entries()]
    assert actions.count("room.permitted") == 1 and actions.count("room.started") == 1
    assert actions.count("room.started_unpermitted") == 1 and actions.count("room.ended") == 1
