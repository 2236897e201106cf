"""The LAN service and the reference proctor client on loopback, over a real core Context."""

import hashlib
import os
import socket
import threading

import pytest

from kd.core import model
from kd.core.authorization import AuthorizationService
from kd.formats.timeutil import parse_time
from kd.lan.client import LanError, ProctorClient
from tests.integration.lan_support import OTHER_IP, LanSite, recv, send
from tests.integration.live_helpers import sync
from tests.support.fixtures import closed_after

site = closed_after(LanSite)


def test_port_contract_and_events(site):
    assert site.ctx.lan is site.server
    assert site.server.listening()
    assert site.server.port() == site.port > 0
    assert site.server.address() == "127.0.0.1"
    assert site.server.snapshot()["state"] == "运行"


def test_register_download_import(site, tmp_path):
    room = site.rooms()[0]
    c = site.client()
    reply = c.register(room, site.reg_code(room).lower())  # codes are case-insensitive as typed
    assert reply["site_code"] == site.ctx.site_code()
    assert [s["id"] for s in reply["sessions"]] == site.sessions_of(room)
    path = site.server.loading.room_file_path(room)
    with open(path, "rb") as f:
        content = f.read()
    assert reply["data"] == {"sha256": hashlib.sha256(content).hexdigest(), "size": len(content)}
    doc = site.ctx.stores.runtime.get(model.ROOMS, room)
    assert doc["ip"] == "127.0.0.1" and doc["token"] == reply["token"]

    got = c.download_data(str(tmp_path / "room.dat"), chunk=1000)  # several chunks
    with open(got["path"], "rb") as f:
        assert f.read() == content
    with pytest.raises(LanError) as e:
        c.data_imported("0" * 64)
    assert e.value.code == "E_REFUSED"
    assert not site.registration.snapshot()["rooms"][0]["data_imported"]
    c.data_imported(got["sha256"])
    assert site.registration.snapshot()["rooms"][0]["data_imported"]
    assert c.hello()["data_imported"] is True

    with pytest.raises(LanError) as e:
        c.request("data", {"offset": len(content) + 1, "length": 10})
    assert e.value.code == "E_ARG"
    h, body = c.request("data", {"offset": len(content), "length": 10})
    assert body == b"" and h["size"] == len(content)


def test_wrong_code_and_unknown_room_get_one_answer(site):
    room = site.rooms()[0]
    c = site.client()
    with pytest.raises(LanError) as wrong:
        c.register(room, "AAAAAAAA" if site.reg_code(room) != "AAAAAAAA" else "BBBBBBBB")
    with pytest.raises(LanError) as unknown:
        c.register("99999999", "AAAAAAAA")
    assert wrong.value.code == unknown.value.code == "E_REGISTER"
    assert wrong.value.cause == unknown.value.cause
    assert site.ctx.stores.runtime.get(model.ROOMS, room)["ip"] is None
    c.register(room, site.reg_code(room))  # the same connection still works


def test_registered_elsewhere_and_token_from_another_ip(site):
    room = site.rooms()[0]
    first = site.registered(room)
    other = site.client(OTHER_IP)
    with pytest.raises(LanError) as e:
        other.register(room, site.reg_code(room))
    assert e.value.code == "E_REGISTER" and "另一台监考机" in e.value.cause
    thief = site.client(OTHER_IP, room=room, token=first.token)
    with pytest.raises(LanError) as e:
        thief.heartbeat({"session": site.sessions_of(room)[0], "logged_in": 0, "in_exam": 0})
    assert e.value.code == "E_AUTH"
    with pytest.raises(LanError) as e:
        thief.request("data", {"offset": 0, "length": 10})
    assert e.value.code == "E_AUTH"
    assert not site.monitor.connected(room)
    first.heartbeat({"session": site.sessions_of(room)[0], "logged_in": 0, "in_exam": 0})
    assert site.monitor.connected(room)


def test_one_room_per_connection(site):
    a, b = site.rooms()[:2]
    c = site.registered(a)
    token_b = site.registered(b, ip=OTHER_IP).token
    with pytest.raises(LanError) as e:
        c.request("hello", {"room": b, "token": token_b}, auth=False)
    assert e.value.code == "E_AUTH"
    with pytest.raises(LanError) as e:
        c.register(b, site.reg_code(b))
    assert e.value.code == "E_AUTH"
    assert c.hello()["room"] == a


def test_revoke_closes_the_room_connection(site):
    room = site.rooms()[0]
    c = site.registered(room)
    sub = site.ctx.hub.subscribe(["lan.closed"])
    site.registration.revoke(room, "admin")
    event = sub.wait_for(lambda ev: ev.data["room"] == room, 10)
    assert event is not None and event.data["reason"] == "revoked"
    with pytest.raises(LanError) as e:
        c.hello()  # the old connection is gone...
    assert e.value.code == "E_NET"
    with pytest.raises(LanError) as e:
        c.hello()  # ...and on a new one the token no longer works
    assert e.value.code == "E_AUTH"


def test_permit_gated_by_data_import_authorization_and_verification(site):
    room = site.rooms()[0]
    session = site.sessions_of(room)[0]
    c = site.registered(room)
    with pytest.raises(LanError) as e:
        c.permit(session)
    assert e.value.code == "E_PERMIT" and "考场数据" in e.value.cause  # the room's data first
    c.data_imported(c.hello()["data"]["sha256"])
    with pytest.raises(LanError) as e:
        c.permit(session)
    assert e.value.code == "E_PERMIT" and "考试授权" in e.value.cause
    AuthorizationService(site.ctx).authorize_online(session, "admin")
    with pytest.raises(LanError) as e:
        c.permit(session)
    assert e.value.code == "E_PERMIT" and "授权验证" in e.value.cause
    sync(site.env)
    site.verification.verify_online(session, "admin")
    permit = c.permit(session)
    assert permit["granted"] is True and permit["session"] == session and permit["room"] == room
    with pytest.raises(LanError) as e:
        c.permit("no-such")
    assert e.value.code == "E_PERMIT"


def test_heartbeats_feed_the_monitor_and_time_out(site):
    rooms = site.rooms()
    session = site.sessions_of(rooms[0])[0]
    clients = [site.registered(room, ip="127.0.0.{}".format(10 + i)) for i, room in enumerate(rooms)]
    for i, c in enumerate(clients):
        reply = c.heartbeat({"session": session, "started": True, "ended": False, "candidates": 5,
                             "logged_in": 4 - i, "in_exam": 3 - i})
        assert reply["heartbeat_s"] == site.monitor.interval
    rows = {r["room"]: r for r in site.monitor.snapshot(session)["rows"]}
    assert [rows[r]["logged_in"] for r in rooms] == [4, 3, 2]
    assert all(rows[r]["connected"] for r in rooms)
    assert site.ctx.stores.runtime.get(model.ROOM_SESSIONS, model.rs_key(rooms[0], session))["started_at"]

    site.clock.now += site.monitor.interval * 2  # two heartbeats missed: still connected
    clients[0].heartbeat({"session": session, "started": True, "ended": True, "logged_in": 0, "in_exam": 0})
    site.clock.now += site.monitor.interval * 1.5  # rooms 2 and 3 have now missed 3
    rows = {r["room"]: r for r in site.monitor.snapshot(session)["rows"]}
    assert rows[rooms[0]]["connected"] and rows[rooms[0]]["ended"]
    assert not rows[rooms[1]]["connected"] and not rows[rooms[2]]["connected"]

    for bad in ({"session": session, "logged_in": -1, "in_exam": 0}, {"session": session, "in_exam": 0},
                {"session": "nope", "logged_in": 0, "in_exam": 0},
                {"session": session, "started": "yes", "logged_in": 0, "in_exam": 0}, "state"):
        with pytest.raises(LanError) as e:
            clients[1].heartbeat(bad)  # type: ignore[arg-type]
        assert e.value.code == "E_ARG"
    assert not site.monitor.connected(rooms[1])


def test_upload_resumes_after_a_cut(site, tmp_path):
    room, session, data, path = site.result_file(tmp_path)
    sha = hashlib.sha256(data).hexdigest()
    c = site.registered(room)
    with pytest.raises(LanError):
        c.upload(path, session, chunk=64 * 1024, abort_after=100 * 1024)
    assert site.server.partial_uploads() == [{"room": room, "session": session, "sha256": sha, "bytes": 100 * 1024}]
    assert not site.ctx.spool.has(sha)

    progress = []
    reply = c.upload(path, session, chunk=64 * 1024, progress=lambda done, total: progress.append(done))
    assert progress[0] == 100 * 1024 + 64 * 1024  # continued from the server's offset, not from 0
    assert reply["sha256"] == sha and reply["size"] == len(data)
    assert reply["result"]["source"] == "lan" and reply["result"]["duplicate"] is False
    with site.ctx.spool.open(sha) as f:
        assert f.read() == data
    doc = site.ctx.stores.runtime.get(model.ROOM_SESSIONS, model.rs_key(room, session))
    assert doc["result"]["sha256"] == sha
    assert site.server.partial_uploads() == []
    again = c.upload(path, session)  # the same package again: recorded once
    assert again["result"]["duplicate"] is True


def test_partial_upload_survives_a_server_restart(site, tmp_path):
    room, session, data, path = site.result_file(tmp_path)
    c = site.registered(room)
    with pytest.raises(LanError):
        c.upload(path, session, chunk=50000, abort_after=150000)
    site.server.stop()
    assert not site.server.listening()
    site.server = site.new_server()
    c.port = site.port
    h, _ = c.request("upload_begin", {"session": session, "size": len(data),
                                      "sha256": hashlib.sha256(data).hexdigest()})
    assert h["offset"] == 150000
    assert c.upload(path, session)["size"] == len(data)


def test_commit_reply_only_after_the_file_is_durable(site, tmp_path):
    room, session, data, path = site.result_file(tmp_path)
    sha = hashlib.sha256(data).hexdigest()
    c = site.registered(room)
    recorded = threading.Event()
    release = threading.Event()
    seen = {}

    def hold(event):  # runs in the handler thread, inside RecoveryService.receive
        seen["spooled"] = site.ctx.spool.has(sha) and site.ctx.spool.verify(sha)
        recorded.set()
        release.wait(10)

    site.ctx.hub.on("results.received", hold)
    done = threading.Event()
    out = {}

    def run():
        try:
            out["reply"] = c.upload(path, session)
        except LanError as e:
            out["error"] = e
        done.set()

    threading.Thread(target=run, daemon=True).start()
    assert recorded.wait(10)
    assert seen["spooled"] is True  # durable and verified before it is recorded...
    assert not done.is_set()  # ...and no reply while the core has not returned
    assert site.server.partial_uploads()  # the partial copy is kept until then
    release.set()
    assert done.wait(10)
    assert out["reply"]["sha256"] == sha
    assert site.server.partial_uploads() == []


def test_upload_rules(site, tmp_path):
    room, session, data, path = site.result_file(tmp_path)
    sha = hashlib.sha256(data).hexdigest()
    c = site.registered(room)
    with pytest.raises(LanError) as e:
        c.request("upload_chunk", {"offset": 0}, b"x")
    assert e.value.code == "E_STATE"
    with pytest.raises(LanError) as e:
        c.request("upload_commit")
    assert e.value.code == "E_STATE"
    for bad in ({"session": session, "size": 0, "sha256": sha}, {"session": session, "size": 10, "sha256": "x"},
                {"session": "../x", "size": 10, "sha256": sha}, {"session": session, "size": 3 * 1024 ** 3,
                                                                  "sha256": sha}):
        with pytest.raises(LanError) as e:
            c.request("upload_begin", bad)
        assert e.value.code == "E_ARG"
    other = [s for s in site.ctx.manifest()["sessions"] if s["id"] not in site.sessions_of(room)]
    if other:
        with pytest.raises(LanError) as e:
            c.request("upload_begin", {"session": other[0]["id"], "size": 10, "sha256": sha})
        assert e.value.code == "E_REFUSED"

    assert c.request("upload_begin", {"session": session, "size": len(data), "sha256": sha})[0]["offset"] == 0
    c.request("upload_chunk", {"offset": 0}, data[:1000])
    with pytest.raises(LanError) as e:
        c.request("upload_chunk", {"offset": 500}, data[500:1500])
    assert e.value.code == "E_OFFSET" and e.value.offset == 1000
    with pytest.raises(LanError) as e:
        c.request("upload_chunk", {"offset": 1000}, data[1000:] + b"extra")
    assert e.value.code == "E_ARG"
    with pytest.raises(LanError) as e:
        c.request("upload_commit")
    assert e.value.code == "E_OFFSET" and e.value.offset == 1000

    # another connection of the same proctor takes the upload over
    c2 = site.client(room=room, token=c.token)
    assert c2.request("upload_begin", {"session": session, "size": len(data), "sha256": sha})[0]["offset"] == 1000
    with pytest.raises(LanError) as e:
        c.request("upload_chunk", {"offset": 1000}, data[1000:2000])
    assert e.value.code == "E_STATE"

    # a new package for the same room and session discards the old partial copy
    tampered = bytearray(data)
    tampered[-30] ^= 0xFF
    bad_sha = hashlib.sha256(bytes(tampered)).hexdigest()
    c2.request("upload_begin", {"session": session, "size": len(data), "sha256": bad_sha})
    assert [p["sha256"] for p in site.server.partial_uploads()] == [bad_sha]
    # bytes that do not hash as declared: refused at commit, copy discarded, nothing recorded
    c2.request("upload_chunk", {"offset": 0}, data)
    with pytest.raises(LanError) as e:
        c2.request("upload_commit")
    assert e.value.code == "E_INTEGRITY" and e.value.offset == 0
    assert site.server.partial_uploads() == []
    assert site.ctx.stores.runtime.get(model.ROOM_SESSIONS, model.rs_key(room, session))["result"] is None


def test_conflicting_result_is_refused_and_the_first_kept(site, tmp_path):
    room, session, data, path = site.result_file(tmp_path)
    c = site.registered(room)
    first = c.upload(path, session)
    other = site.result_package(room, session, answer_kb=64, salt=b"second")
    other_path = tmp_path / "other.zip"
    other_path.write_bytes(other)
    with pytest.raises(LanError) as e:
        c.upload(str(other_path), session)
    assert e.value.code == "E_CONFLICT"
    doc = site.ctx.stores.runtime.get(model.ROOM_SESSIONS, model.rs_key(room, session))
    assert doc["result"]["sha256"] == first["sha256"]


def test_not_a_result_package_is_refused(site, tmp_path):
    room = site.rooms()[0]
    session = site.sessions_of(room)[0]
    junk = tmp_path / "junk.zip"
    junk.write_bytes(os.urandom(5000))
    c = site.registered(room)
    with pytest.raises(LanError) as e:
        c.upload(str(junk), session)
    assert e.value.code == "E_REFUSED"
    assert site.server.partial_uploads() == []
    assert not site.ctx.spool.has(hashlib.sha256(junk.read_bytes()).hexdigest())


def test_unknown_type_keeps_the_connection(site):
    c = site.registered()
    with pytest.raises(LanError) as e:
        c.request("teleport")
    assert e.value.code == "E_TYPE"
    assert c.connected
    assert c.hello()["room"] == site.rooms()[0]


def test_goodbye_and_stop(site):
    c = site.registered()
    c.bye()
    assert not c.connected
    idle = site.raw()
    waiting = site.registered(site.rooms()[1], ip=OTHER_IP)
    sub = site.ctx.hub.subscribe(["lan.stopped"])
    port = site.port
    site.server.stop()
    assert sub.get(5) is not None
    assert not site.server.listening() and site.server.snapshot()["state"] == "停止"
    frame = recv(idle)
    assert frame.header["code"] == "E_SHUTDOWN"
    with pytest.raises(LanError) as e:
        waiting.hello()
    assert e.value.code in ("E_SHUTDOWN", "E_NET")
    site.options = site.options._replace(port=port)
    site.server = site.new_server()  # the port is free again for the next start
    assert site.server.port() == port
    assert waiting.hello()["room"] == site.rooms()[1]  # the proctor reconnects


def test_raw_wire_heartbeat_echoes_seq_and_tells_the_time(site):
    c = site.registered()
    session = site.sessions_of(site.rooms()[0])[0]
    sock = site.raw()
    send(sock, {"type": "heartbeat", "seq": 5, "room": c.room, "token": c.token,
                "state": {"session": session, "logged_in": 1, "in_exam": 0}})
    frame = recv(sock)
    assert frame.header["type"] == "ok" and frame.header["seq"] == 5 and frame.header["v"] == 1
    assert parse_time(frame.header["server_time"]).utcoffset() is not None
    send(sock, {"type": "hello", "seq": 6, "room": c.room, "token": c.token})
    assert recv(sock).header["seq"] == 6


def test_client_without_server():
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    c = ProctorClient("127.0.0.1", port, connect_timeout=2)
    with pytest.raises(LanError) as e:
        c.register("11003001", "AAAAAAAA")
    assert e.value.code == "E_NET" and "无法连接考点机" in e.value.cause


def test_client_seq_wraps_to_1_never_0(site):
    c = site.registered()
    c._seq = 2 ** 31 - 2
    assert c.request("hello")[0]["seq"] == 2 ** 31 - 1
    assert c.request("hello")[0]["seq"] == 1  # 0 is the server's closing errors' (docs/lan-protocol.md §1)


def test_an_address_that_is_not_this_pcs_is_named_in_the_refusal(site):
    from kd.lan.server import LanOptions, LanServer, LanServiceError  # noqa: PLC0415

    server = LanServer(site.ctx, registration=site.registration, verification=site.verification,
                       monitor=site.monitor, recovery=site.recovery,
                       options=LanOptions(host="192.0.2.1", port=0))  # TEST-NET-1: never a local address
    with pytest.raises(LanServiceError) as e:
        server.start()
    assert "192.0.2.1" in e.value.cause and "--lan-host" in e.value.remedy
    assert site.ctx.lan is site.server
