"""The ``incidents`` report (kd.core.incidentreport) over real parts: the site's outbox delivering over
HTTP to the platform simulator, whose ``/_sim/received`` is read over HTTP too; the site reopened from
its files for the restart."""

import datetime
import json
import urllib.request

import pytest

from kd.core import model
from kd.core.incidentreport import KIND, content_sha256
from kd.errors import PlatformRefused
from kd.lock.coreport import DonglePort
from kd.lock.driver import LockDriver
from kd.platform.client import new_report_key
from kd.site import open_site
from tests.integration.live_helpers import authorized_env
from tests.support.clocks import FakeMonotonic
from tests.support.fixtures import closed_after

env = closed_after(authorized_env)


def received(env):
    """``GET /_sim/received`` over HTTP."""
    with urllib.request.urlopen(env.sim.url + "/_sim/received", timeout=30) as answer:  # noqa: S310 - loopback
        return json.loads(answer.read().decode("utf-8"))


def sent_incidents(env):
    return [line["report"] for line in received(env)["reports"] if line["report"]["kind"] == KIND]


def stored(core, session="1"):
    """The session's stored reports by version (the outbox's own order within a second is its ids')."""
    found = [d for d in core.outbox.items() if d["kind"] == KIND and d["session_id"] == session]
    return sorted(found, key=lambda d: d["data"]["version"])


def rooms_of(ctx, session="1"):
    return sorted({c["room"] for c in ctx.manifest()["candidates"] if c["session"] == session})


def end_session(core, ctx, session="1"):
    """Every room of ``session`` starts and ends by its heartbeats; the monitor's tick reports the end."""
    core.monitor.clock = FakeMonotonic()
    rooms = rooms_of(ctx, session)
    for room in rooms:
        core.monitor.heartbeat(room, {"session_id": session, "started": True})
    return rooms


def test_one_report_at_the_end_none_again_after_a_restart_and_version_2_after_a_confirm(env):
    ctx, core = env.ctx, env.core
    rooms = end_session(core, ctx)
    now = ctx.now()
    added = core.incidents.add(room=rooms[0], session="1", category="设备故障", start=now,
                               end=now + datetime.timedelta(minutes=3, seconds=1), description="考生机<蓝屏>",
                               actor="admin")
    drafts = core.incidents.tick()  # started without a permit: 未经许可开考 drafted for each room
    assert drafts and all(d["state"] == "drafted" for d in drafts)
    grant = core.extra_time.grant(rooms[0], "1", 4, actor="admin", reason="设备故障", incident_ids=[added["id"]])
    assert stored(core) == []  # the session is under way: nothing yet
    for room in rooms:
        core.monitor.heartbeat(room, {"session_id": "1", "started": True, "ended": True})
    assert "session_ended" in [r["kind"] for r in core.monitor.tick()]
    (item,) = stored(core)  # enqueued with the end, before the tick returned
    data = item["data"]
    assert (data["session_id"], data["mode"], data["version"]) == ("1", "formal", 1)
    assert data["content_sha256"] == content_sha256(data)
    assert [i["id"] for i in data["incidents"]] == sorted([added["id"]] + [d["id"] for d in drafts], key=int)
    first = next(i for i in data["incidents"] if i["id"] == added["id"])
    assert (first["room_code"], first["kind"], first["category"], first["state"], first["lost_min"]) == (
        rooms[0], "manual", "device", "confirmed", 4)
    assert first["description"] == "考生机<蓝屏>" and first["candidates"] == []
    assert [(g["id"], g["minutes"], g["total_min"], g["tier"], g["dongle"]) for g in data["extra_time"]] == [
        (grant["id"], 4, 4, "on_site", None)]
    # nothing changed: no second version, however often asked
    assert core.incident_report.report("1") is None and core.incident_report.tick() == []
    assert core.outbox.deliver_once() >= 1
    assert core.outbox.get(item["id"])["state"] == "sent"
    (sent,) = sent_incidents(env)
    assert sent["data"] == data and sent["session_id"] == "1"
    (view,) = received(env)["incidents"]
    assert (view["session_id"], view["mode"], view["version"], view["versions"]) == ("1", "formal", 1, [1])

    # a restart: the reopened site's start catches up nothing (the report is stored and sent)
    env.site.close()
    reopened = open_site(env.data_dir, hub=env.hub, platform=env.client, dongle=DonglePort(env.driver), gate=False)
    try:
        again = reopened.core
        again.start()
        assert again.stop(30)
        assert len(stored(again)) == 1 and len(sent_incidents(env)) == 1
        # a draft confirmed after the end: version 2 goes out, and only it
        again.incidents.confirm(drafts[0]["id"], "admin", "已核实")
        reports = stored(again)
        assert [r["data"]["version"] for r in reports] == [1, 2] and reports[1]["key"] != reports[0]["key"]
        second = reports[1]["data"]
        assert next(i for i in second["incidents"] if i["id"] == drafts[0]["id"])["state"] == "confirmed"
        assert again.outbox.deliver_once() == 1 and again.outbox.deliver_once() == 0
        assert sorted(r["data"]["version"] for r in sent_incidents(env)) == [1, 2]
        (view,) = received(env)["incidents"]
        assert (view["version"], view["versions"], view["content_sha256"]) == (2, [1, 2], second["content_sha256"])
    finally:
        reopened.close()


def test_the_catch_up_after_a_crash_between_the_end_and_the_report(env):
    ctx, core = env.ctx, env.core
    rooms = end_session(core, ctx)
    for room in rooms:
        core.monitor.heartbeat(room, {"session_id": "1", "started": True, "ended": True})
    core.monitor.tick()
    (item,) = stored(core)
    assert item["data"]["incidents"] == [] and item["data"]["extra_time"] == []  # a quiet session is reported too
    # as if the process died between the session_ended report and this one
    assert ctx.stores.runtime.delete(model.OUTBOX, item["id"])
    env.site.close()
    reopened = open_site(env.data_dir, hub=env.hub, platform=env.client, dongle=DonglePort(env.driver), gate=False)
    try:
        again = reopened.core
        assert stored(again) == []
        again.start()  # the catch-up, then the sender delivers it
        assert again.stop(30)
        (caught,) = stored(again)
        assert caught["data"]["version"] == 1
        again.outbox.deliver_once()
        assert [r["data"]["version"] for r in sent_incidents(env)] == [1]
        assert again.incident_report.tick() == []
    finally:
        reopened.close()


def good_data(session="1"):
    data = {"session_id": session, "incidents": [{
        "id": "1", "room_code": "11003001", "kind": "manual", "category": "device",
        "start": "2026-06-13T09:10:00+08:00", "end": "2026-06-13T09:13:00+08:00", "lost_min": 3, "candidates": [],
        "description": "停电", "recorded_by": "admin", "recorded_at": "2026-06-13T09:20:00+08:00",
        "state": "confirmed", "decided_by": None, "decided_at": None, "note": ""}],
        "extra_time": [{
            "id": "1", "room_code": "11003001", "minutes": 3, "total_min": 3, "tier": "on_site", "reason": "停电",
            "incidents": ["1"], "granted_by": "admin", "granted_at": "2026-06-13T09:21:00+08:00", "dongle": None,
            "expected_end": "2026-06-13T10:33:00+08:00", "acked_at": None}]}
    return dict(data, mode="mock", version=1, content_sha256=content_sha256(data))


def rehash(data):
    data["content_sha256"] = content_sha256(data)


@pytest.mark.parametrize("spoil,field", [
    (lambda d: d.pop("version"), "data.version"),
    (lambda d: d.update(version=0), "data.version"),
    (lambda d: d.update(mode="test"), "data.mode"),
    (lambda d: d.update(content_sha256="0" * 64), "data.content_sha256"),
    (lambda d: d["incidents"][0].update(note="改过") , "data.content_sha256"),  # the content no longer hashes
    (lambda d: (d["incidents"][0].update(category="power"), rehash(d)), "data.incidents[0].category"),
    (lambda d: (d["incidents"][0].update(start="09:10"), rehash(d)), "data.incidents[0].start"),
    (lambda d: (d["incidents"][0].pop("state"), rehash(d)), "data.incidents[0].state"),
    (lambda d: (d["extra_time"][0].update(minutes="3"), rehash(d)), "data.extra_time[0].minutes"),
    (lambda d: (d["extra_time"][0].update(dongle={"lock_id": "LK1"}), rehash(d)), "data.extra_time[0].dongle.clock_ms"),
    (lambda d: d.update(incidents="none"), "data.incidents"),
    (lambda d: (d.update(session_id="2"), rehash(d)), "data.session_id"),
])
def test_the_simulator_refuses_a_bad_incidents_report(env, spoil, field):
    data = good_data()
    spoil(data)
    with pytest.raises(PlatformRefused) as caught:
        env.client.post_report(KIND, data, new_report_key(), session_id="1")
    assert caught.value.status == 400 and field in str(caught.value)
    assert sent_incidents(env) == []


def test_the_simulator_records_a_good_incidents_report_once(env):
    data = good_data()
    key = new_report_key()
    first = env.client.post_report(KIND, data, key, session_id="1", created_at="2026-06-13T10:40:00+08:00")
    again = env.client.post_report(KIND, data, key, session_id="1", created_at="2026-06-13T10:40:00+08:00")
    assert first["duplicate"] is False and again["duplicate"] is True and again["report_id"] == first["report_id"]
    (view,) = received(env)["incidents"]
    assert (view["session_id"], view["mode"], view["version"]) == ("1", "mock", 1)
    assert view["report_id"] == first["report_id"]
    # the formal exam's version 1 of the same session is another record (模考转正考 starts the versions again)
    formal = env.client.post_report(KIND, dict(data, mode="formal"), new_report_key(), session_id="1")
    assert [(v["mode"], v["report_id"]) for v in received(env)["incidents"]] == [
        ("formal", formal["report_id"]), ("mock", first["report_id"])]
    assert view["incidents"] == data["incidents"] and view["extra_time"] == data["extra_time"]


def test_a_change_made_by_a_command_line_process_is_stored_as_the_next_version(env):
    """``main.py incident add`` after the end (no instance running): version 2 is stored by that
    process, pending, and the next running site sends it."""
    from tests.support.cli import admin_account, kd  # noqa: PLC0415 - tests.support.cli imports main

    ctx, core = env.ctx, env.core
    rooms = end_session(core, ctx)
    for room in rooms:
        core.monitor.heartbeat(room, {"session_id": "1", "started": True, "ended": True})
    core.monitor.tick()
    assert [r["data"]["version"] for r in stored(core)] == [1]
    ctx.stores.settings.put(model.ACCOUNTS, "admin", admin_account())
    env.site.close()
    env.driver.stop()  # the command line process opens the dongle itself
    added = kd(env, env.data_dir, "incident", "add", "--room", rooms[0], "--session", "1", "--category", "其他",
               "--start", "2026-06-07 09:10", "--description", "考后补记：考生提前离场")
    assert added.returncode == 0, added.stderr
    driver = LockDriver(env.lock_url, env.hub, keepalive=None).start(wait=True)  # the site's dongle again
    reopened = open_site(env.data_dir, hub=env.hub, platform=env.client, dongle=DonglePort(driver), gate=False)
    try:
        again = reopened.core
        reports = stored(again)
        assert [(r["data"]["version"], r["state"]) for r in reports] == [(1, "pending"), (2, "pending")]
        assert [i["description"] for i in reports[1]["data"]["incidents"]] == ["考后补记：考生提前离场"]
        again.outbox.deliver_once()
        (view,) = received(env)["incidents"]
        assert view["version"] == 2 and sorted(view["versions"]) == [1, 2]
    finally:
        reopened.close()
        driver.stop()
