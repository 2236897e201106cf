"""The outbox against the platform simulator over HTTP: stored first, delivered once, backoff."""

import socket
import time

import pytest

from kd.app import open_context
from kd.core import model
from kd.core.outbox import FAILED, PENDING, SENT, Outbox
from kd.formats.signing import TrustedKeys
from kd.platform.client import PlatformClient


@pytest.fixture
def env(tmp_path):
    from tests.support.env import make_env

    e = make_env(tmp_path, rooms=2, sessions=1, candidates=2)
    yield e
    e.close()


def reports(env, key=None):
    got = env.sim.received()["reports"]
    return [r for r in got if key is None or r["idempotency_key"] == key]


def test_enqueue_is_stored_before_delivery(env):
    outbox = Outbox(env.ctx)
    doc = outbox.enqueue("seal_check", {"passed": True}, session_id="1")
    stored = env.ctx.stores.runtime.get(model.OUTBOX, doc["id"])
    assert stored["state"] == PENDING and stored["key"].startswith("kd-") and len(stored["key"]) == 35
    assert stored["created_at"] and stored["tries"] == 0
    assert reports(env) == []  # nothing sent until asked
    other = outbox.enqueue("seal_check", {"passed": True})
    assert other["key"] != doc["key"] and other["id"] != doc["id"]


def test_bad_kind_or_data_stores_nothing(env):
    outbox = Outbox(env.ctx)
    with pytest.raises(ValueError):
        outbox.enqueue("no_such_kind", {})
    with pytest.raises(ValueError):
        outbox.enqueue("room_status", ["not", "a", "dict"])  # type: ignore[arg-type]
    assert env.ctx.stores.runtime.all(model.OUTBOX) == []


def test_survives_restart_and_is_delivered_once_when_platform_returns(env):
    outbox = Outbox(env.ctx)
    env.sim.faults.set(refuse=503)
    doc = outbox.enqueue("session_started", {"rooms": 2}, session_id="1")
    assert outbox.deliver_once() == 0
    pending = outbox.get(doc["id"])
    assert pending["state"] == PENDING and pending["tries"] == 1 and "503" in pending["last_error"]
    assert pending["next_try_at"] > pending["created_at"]
    assert outbox.snapshot()["counts"] == {PENDING: 1, SENT: 0, FAILED: 0}
    # the app stops; a new context over the same data folder finds the report
    env.ctx.stores.close()
    ctx2 = open_context(env.data_dir, env.hub, platform=env.client, trusted=env.trusted)
    try:
        again = Outbox(ctx2)
        assert again.get(doc["id"])["key"] == doc["key"]
        env.sim.faults.clear()
        assert again.deliver_once() == 1
        sent = again.get(doc["id"])
        assert sent["state"] == SENT and sent["sent_at"] and sent["report_id"] and sent["tries"] == 2
        assert again.deliver_once() == 0  # nothing left
        got = reports(env, doc["key"])
        assert len(got) == 1 and got[0]["report"]["kind"] == "session_started"
        assert got[0]["report"]["session_id"] == "1" and got[0]["report"]["created_at"] == doc["created_at"]
        # an answer lost after the platform stored it: the retry is the same request, recorded once
        ctx2.stores.runtime.update(model.OUTBOX, doc["id"], {"state": PENDING})
        assert again.deliver_once() == 1
        assert len(reports(env, doc["key"])) == 1
        assert again.get(doc["id"])["report_id"] == sent["report_id"]
    finally:
        ctx2.stores.close()


def test_refused_is_failed_with_message_and_not_retried(env):
    outbox = Outbox(env.ctx)
    env.sim.faults.set(refuse=403)
    doc = outbox.enqueue("room_status", {"rooms": []}, session_id="1")
    assert outbox.deliver_once() == 0
    failed = outbox.get(doc["id"])
    assert failed["state"] == FAILED and failed["failed_at"] and "403" in failed["last_error"]
    row = outbox.snapshot()["items"][0]
    assert row["state_label"] == "上报失败" and row["last_error"] == failed["last_error"]
    env.sim.faults.clear()
    assert outbox.deliver_once() == 0  # not retried by itself
    assert outbox.get(doc["id"])["tries"] == 1
    outbox.retry(doc["id"], "admin")  # the admin retries after fixing the cause
    assert outbox.deliver_once() == 1
    assert outbox.get(doc["id"])["state"] == SENT and len(reports(env, doc["key"])) == 1


def test_no_platform_stays_pending(env):
    env.ctx.platform = None
    outbox = Outbox(env.ctx)
    doc = outbox.enqueue("seal_check", {"passed": True})
    assert outbox.deliver_once() == 0
    kept = outbox.get(doc["id"])
    assert kept["state"] == PENDING and "监控平台" in kept["last_error"]


def test_backoff_grows_is_bounded_and_jittered(env):
    outbox = Outbox(env.ctx, base_delay=1.0, max_delay=60.0)
    for tries in range(1, 40):
        raw = min(60.0, 2.0 ** (tries - 1))
        values = {outbox.backoff(tries) for _ in range(20)}
        assert all(raw * 0.5 <= v <= raw for v in values)
        assert len(values) > 1  # jittered
    with pytest.raises(ValueError):
        Outbox(env.ctx, base_delay=0)


def test_due_only_waits_for_next_try(env):
    outbox = Outbox(env.ctx, base_delay=1000.0, max_delay=2000.0)
    env.sim.faults.set(refuse=503)
    doc = outbox.enqueue("seal_check", {"passed": True})
    outbox.deliver_once()
    env.sim.faults.clear()
    assert outbox.deliver_once(due_only=True) == 0  # next try is minutes away
    assert outbox.get(doc["id"])["tries"] == 1
    assert outbox.deliver_once() == 1  # "send now" (CLI --send) ignores the backoff


def test_sender_thread_delivers_and_stops_at_once(env):
    outbox = Outbox(env.ctx, base_delay=500.0, max_delay=1000.0)
    sub = env.hub.subscribe(["outbox.sent"])
    outbox.start()
    try:
        doc = outbox.enqueue("seal_check", {"passed": True})
        event = sub.wait_for(lambda e: e.data.get("id") == doc["id"], timeout=20)
        assert event is not None and outbox.get(doc["id"])["state"] == SENT
        # now a failure: the thread waits hundreds of seconds for the next try ...
        env.sim.faults.set(refuse=503)
        deferred = env.hub.subscribe(["outbox.deferred"])
        second = outbox.enqueue("seal_check", {"passed": False})
        event = deferred.wait_for(lambda e: e.data.get("id") == second["id"], timeout=20)
        assert event is not None and outbox.running
    finally:
        outbox.stop(timeout=10)  # ... and still stops at once
    assert not outbox.running
    assert outbox.get(second["id"])["state"] == PENDING and outbox.get(second["id"])["tries"] == 1


@pytest.fixture
def silent_platform():
    """A client (deadline 3 s) for a port that completes TCP handshakes but never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    client = PlatformClient("http://127.0.0.1:{}".format(server.getsockname()[1]), "11003", "x", TrustedKeys(),
                            deadline=3.0, backoff=0.5)
    yield client
    client.close()
    server.close()


def test_a_round_stops_at_the_first_report_the_platform_does_not_answer(env, silent_platform):
    outbox = Outbox(env.ctx)
    docs = [outbox.enqueue("room_status", {"rooms": [], "n": n}, session_id="1") for n in range(3)]
    env.ctx.platform = silent_platform
    start = time.monotonic()
    assert outbox.deliver_once() == 0
    # one call deadline (3 s) in all, not one per pending report; a coarse bound
    assert time.monotonic() - start < 3.0 + 4.0
    stored = [outbox.get(d["id"]) for d in docs]
    (first,) = [d for d in stored if d["tries"] == 1]  # the oldest (ids order the reports of one second)
    assert first["id"] == outbox.items()[0]["id"] and "无法连接监控平台" in first["last_error"]
    assert all(d["state"] == PENDING and d["tries"] == 0 for d in stored if d is not first)  # they keep their place
    snap = outbox.snapshot()
    assert snap["held_until"] == first["next_try_at"] and snap["counts"][PENDING] == 3
    assert outbox.deliver_once(due_only=True) == 0  # the sender holds off until the first one's next try
    assert sorted(outbox.get(d["id"])["tries"] for d in docs) == [0, 0, 1]
    env.ctx.platform = env.client  # the platform is back: "send now" delivers them all
    assert outbox.deliver_once() == 3
    assert outbox.snapshot()["held_until"] is None
    assert [len(reports(env, d["key"])) for d in docs] == [1, 1, 1]


def test_sender_holds_off_the_other_reports_during_an_outage(env):
    outbox = Outbox(env.ctx, base_delay=500.0, max_delay=1000.0)
    env.sim.faults.set(refuse=503)
    ids = {outbox.enqueue("seal_check", {"passed": p})["id"] for p in (True, False)}
    deferred = env.hub.subscribe(["outbox.deferred"])
    outbox.start()
    try:
        event = deferred.wait_for(lambda e: e.data.get("id") in ids, timeout=20)
        assert event is not None
    finally:
        outbox.stop(timeout=10)  # a round under way ends before stop returns
    (other,) = ids - {event.data["id"]}
    assert outbox.get(event.data["id"])["tries"] == 1
    assert outbox.get(other)["tries"] == 0 and outbox.get(other)["state"] == PENDING  # not tried in the outage
    assert outbox.snapshot()["held_until"] is not None
    outbox.retry(other, "admin")  # a retry by the administrator ends the hold
    assert outbox.snapshot()["held_until"] is None
