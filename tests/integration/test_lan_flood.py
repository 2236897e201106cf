"""Hostile LAN clients on their own loopback addresses (issue 12 items 8 and 9).

Real sockets from distinct source addresses (127.0.0.5, 127.0.0.6, 127.0.1.x …: Linux
routes all of 127/8 to loopback) against the real ``LanServer`` over the real services:

- wrong registration codes from one address lock out that address, never the room's
  proctor on its own address;
- a failed ``register`` or authentication closes a connection that has not
  authenticated; one that does not authenticate within ``auth_timeout`` is closed;
- 500 idle bogus connections do not keep a registered room's proctor (or a new room's
  first registration) from getting a slot;
- a flood of wrong codes writes O(windows) audit lines, not O(attempts), and a clean stop
  writes what was counted;
- the audit log's rotation alarm reaches the hub.
"""

import datetime
import json
import os
import socket

import pytest

from kd.core import registration as reg
from kd.lan.client import LanError
from kd.store.audit import AuditLog
from tests.integration.lan_support import LOOPBACK, LanSite, closed_by_peer, recv, send
from tests.support.clocks import ShiftedWall

ATTACKER = "127.0.0.5"
PROCTOR = "127.0.0.6"


@pytest.fixture
def site(tmp_path):
    s = LanSite(tmp_path, rooms=3, sessions=1)
    s.ctx.clock = s.clock_wall = ShiftedWall()  # the refusal windows and lockouts follow ``ctx.now()``
    yield s
    s.close()


def wrong(site, room):
    return "ZZZZZZZZ" if site.reg_code(room) != "ZZZZZZZZ" else "YYYYYYYY"


def attempt(site, ip, room, code, seq=1):
    """One ``register`` on a new raw connection from ``ip``: the reply header, and whether the server closed."""
    sock = site.raw(ip)
    try:
        send(sock, {"type": "register", "seq": seq, "room": room, "reg_code": code})
        header = recv(sock).header
        return header, header.get("closing") is True and closed_by_peer(sock)
    finally:
        sock.close()


def audit_lines(site):
    with open(site.ctx.audit.path, "rb") as f:
        return [json.loads(line) for line in f.read().splitlines()]


# -- item 9: lockouts are per address ----------------------------------------------------------
def test_an_attacker_on_another_address_cannot_lock_out_the_rooms_proctor(site):
    room = site.rooms()[0]
    for _ in range(3 * reg.ROOM_MAX_FAILURES):  # well past the limit, as the "10 every 5 minutes"
        header, _ = attempt(site, ATTACKER, room, wrong(site, room))
        assert header["code"] == "E_REGISTER"
    header, _ = attempt(site, ATTACKER, room, site.reg_code(room))
    assert header["code"] == "E_REGISTER" and "过多" in header["message"]  # the attacker's address is locked out
    proctor = site.client(PROCTOR)
    assert proctor.register(room, site.reg_code(room))["room"] == room  # the room's proctor is not
    assert proctor.hello()["room"] == room


def test_the_per_address_ceiling_covers_every_room(site):
    rooms = site.rooms()
    for i in range(reg.IP_MAX_FAILURES):
        header, _ = attempt(site, ATTACKER, "9{:07d}".format(i), "AAAAAAAA")  # a new (unknown) room each time
        assert "过多" not in header["message"]
    header, _ = attempt(site, ATTACKER, rooms[1], site.reg_code(rooms[1]))
    assert "过多" in header["message"]
    assert site.client(PROCTOR).register(rooms[1], site.reg_code(rooms[1]))["room"] == rooms[1]


# -- item 9: unauthenticated connections ---------------------------------------------------------
def test_a_failed_register_or_authentication_closes_an_unauthenticated_connection(site):
    room = site.rooms()[0]
    header, closed = attempt(site, ATTACKER, room, wrong(site, room))
    assert header["code"] == "E_REGISTER" and header["closing"] is True and closed
    sock = site.raw(ATTACKER)
    send(sock, {"type": "hello", "seq": 1, "room": room, "token": "bogus" * 8})
    header = recv(sock).header
    assert header["code"] == "E_AUTH" and header["closing"] is True
    assert closed_by_peer(sock)
    # the reference client reconnects on its own for the next try
    c = site.client(PROCTOR)
    with pytest.raises(LanError) as e:
        c.register(room, wrong(site, room))
    assert e.value.code == "E_REGISTER" and not c.connected
    assert c.register(room, site.reg_code(room))["room"] == room
    # an authenticated connection is not closed by a refusal
    with pytest.raises(LanError) as e:
        c.request("hello", {"room": site.rooms()[1], "token": "x"}, auth=False)
    assert e.value.code == "E_AUTH" and c.connected
    assert c.hello()["room"] == room


def test_a_connection_that_does_not_authenticate_in_time_is_closed(tmp_path):
    site = LanSite(tmp_path, rooms=2, sessions=1, auth_timeout=1.0, idle_timeout=60.0)
    try:
        room = site.rooms()[0]
        proctor = site.registered(room, ip=PROCTOR)
        silent = site.raw(ATTACKER)
        busy = site.raw(ATTACKER)
        seq = 0
        while True:  # requests that never authenticate do not extend the deadline
            seq += 1
            send(busy, {"type": "teleport", "seq": seq})
            header = recv(busy).header
            if header.get("closing"):
                break
            assert header["code"] == "E_TYPE"
        assert header["code"] == "E_TIMEOUT" and "秒内没有完成考场注册或身份验证" in header["message"]
        assert closed_by_peer(busy)
        header = recv(silent).header
        assert header["code"] == "E_TIMEOUT" and header["closing"] is True
        assert closed_by_peer(silent)
        assert proctor.hello()["room"] == room  # authenticated before its deadline: kept (same connection)
        assert proctor.connected
    finally:
        site.close()


def bogus_connections(site, count, first_octet=1):
    """``count`` idle connections from 127.0.<first_octet>.1 … (8 per address: the per-address cap)."""
    socks = []
    for i in range(count):
        ip = "127.0.{}.{}".format(first_octet + i // (8 * 250), (i // 8) % 250 + 1)
        socks.append(socket.create_connection((LOOPBACK, site.port), timeout=10, source_address=(ip, 0)))
    return socks


def test_500_idle_bogus_connections_do_not_keep_a_proctor_out(site):
    """More idle bogus connections than the 512 slots (on main they held every slot: E_BUSY for the proctor)."""
    rooms = site.rooms()
    token = site.registered(rooms[0], ip=PROCTOR).token  # registered before the flood
    arrived = site.ctx.hub.subscribe(["lan.connected", "lan.refused"])
    count = site.options.max_connections + 8
    socks = bogus_connections(site, count)
    try:
        for _ in range(count):  # the server has taken in (or turned away) every one of them
            assert arrived.get(10) is not None
        # the registered room's proctor reconnects (a new connection, not yet authenticated)
        back = site.client(PROCTOR, room=rooms[0], token=token)
        assert back.hello()["room"] == rooms[0]
        # a room's first registration from a new machine gets in too (the oldest bogus one gives way)
        first = site.client("127.0.0.7")
        assert first.register(rooms[1], site.reg_code(rooms[1]))["room"] == rooms[1]
        snap = site.server.snapshot()
        cap = site.options.max_unauthenticated
        assert snap["unauthenticated"] <= cap  # they never hold more than their share
        assert snap["evicted"] + snap["refused"] >= count - cap
        assert arrived.dropped == 0
    finally:
        for s in socks:
            s.close()


def test_every_slot_taken_a_registered_proctor_still_connects(tmp_path):
    """511 bogus connections held every slot on main: a proctor reconnecting got E_BUSY."""
    site = LanSite(tmp_path, rooms=2, sessions=1, max_connections=32, idle_timeout=60.0)
    try:
        room = site.rooms()[0]
        token = site.registered(room, ip=PROCTOR).token
        socks = bogus_connections(site, 32)
        try:
            extra = site.raw("127.0.9.1")  # every slot taken: a stranger is refused …
            assert recv(extra).header["code"] == "E_BUSY"
            back = site.client(PROCTOR, room=room, token=token)  # … the registered proctor is not
            assert back.hello()["room"] == room
            assert site.server.snapshot()["evicted"] == 1
        finally:
            for s in socks:
                s.close()
    finally:
        site.close()


def test_bogus_token_hellos_do_not_hold_slots(site):
    room = site.rooms()[0]
    socks = []
    for i in range(100):
        sock = site.raw("127.0.3.{}".format(i % 100 + 1))
        send(sock, {"type": "hello", "seq": 1, "room": room, "token": "t{}".format(i) * 10})
        socks.append(sock)
    for sock in socks:
        assert recv(sock).header["code"] == "E_AUTH"
        assert closed_by_peer(sock)
    sub = site.ctx.hub.subscribe(["lan.closed"])
    probe = site.raw("127.0.3.200")
    probe.close()
    assert sub.get(10) is not None  # the server has handled the last close: nothing left of the 100
    assert site.server.snapshot()["connections"] == 0


# -- item 8: audit growth ----------------------------------------------------------------------------
def flood(site, ip, room, n):
    for i in range(n):
        header, _ = attempt(site, ip, room, wrong(site, room), seq=i + 1)
        assert header["code"] == "E_REGISTER"


def test_a_flood_of_wrong_codes_writes_one_line_per_window(site):
    room = site.rooms()[0]
    before = os.path.getsize(site.ctx.audit.path)
    lines_before = len(audit_lines(site))
    flood(site, ATTACKER, room, 1000)
    written = audit_lines(site)[lines_before:]
    # the first wrong code and the first refusal once locked out, at once; the rest counted
    assert [(e["action"], e["details"]["count"]) for e in written] == [
        ("registration.failed", 1), ("registration.blocked", 1)]
    assert written[0]["details"]["room"] == room and written[0]["details"]["ip"] == ATTACKER
    during = os.path.getsize(site.ctx.audit.path) - before
    sub = site.ctx.hub.subscribe(["registration.failed", "registration.blocked"])
    site.clock_wall.offset += reg.AUDIT_WINDOW + datetime.timedelta(seconds=1)  # the window closes
    summaries = []
    while len(summaries) < 2:  # the accept loop flushes it within a second
        event = sub.wait_for(lambda ev: ev.data.get("aggregated") is True, 10)
        assert event is not None
        summaries.append(event)
    written = audit_lines(site)[lines_before:]
    assert len(written) == 4
    assert sum(e["details"]["count"] for e in written) == 1000
    failed = [e for e in written if e["action"] == "registration.failed"]
    assert [e["details"]["count"] for e in failed] == [1, reg.ROOM_MAX_FAILURES - 1]
    assert failed[1]["details"]["window_s"] == 60 and failed[1]["details"]["from"] and failed[1]["details"]["to"]
    total = os.path.getsize(site.ctx.audit.path) - before
    print("audit bytes for 1000 wrong codes: {} at once, {} after the window".format(during, total))
    assert total < 2000  # on main: ~218,000 bytes (one ~218-byte line per attempt)
    assert site.ctx.audit.verify() is None
    # the next window starts again with one line
    flood(site, ATTACKER, room, 10)
    assert len(audit_lines(site)) == lines_before + 5


def test_a_clean_stop_writes_what_was_counted(site):
    room = site.rooms()[0]
    lines_before = len(audit_lines(site))
    flood(site, ATTACKER, room, 50)
    assert len(audit_lines(site)) == lines_before + 2
    site.server.stop()
    written = audit_lines(site)[lines_before:]
    assert sum(e["details"]["count"] for e in written) == 50 and len(written) == 4


def test_many_addresses_and_unknown_rooms_stay_bounded(site):
    """Garbage room codes share one window per address; past AUDIT_MAX_KEYS windows a flood is one line."""
    svc = site.registration
    lines_before = len(audit_lines(site))
    for i in range(200):  # 200 unknown room codes from one address: one window (then the address is locked)
        header, _ = attempt(site, ATTACKER, "8{:07d}".format(i), "AAAAAAAA", seq=i + 1)
        assert header["code"] == "E_REGISTER"
    assert [e["details"].get("unknown_room") for e in audit_lines(site)[lines_before:]] == [True, True]
    for i in range(reg.AUDIT_MAX_KEYS + 100):  # more addresses than windows (in the core: sockets are slow)
        with pytest.raises(reg.RegistrationRefused):
            svc.register(site.rooms()[0], "AAAAAAAA", "10.{}.{}.1".format(i // 250, i % 250))
    assert len(svc._refusals._open) <= reg.AUDIT_MAX_KEYS
    assert len(audit_lines(site)) <= lines_before + 2 + reg.AUDIT_MAX_KEYS
    site.server.stop()
    overflow = [e for e in audit_lines(site) if e["details"].get("overflow")]
    assert len(overflow) == 1 and overflow[0]["details"]["count"] >= 100
    assert len(svc._limiter.ips) <= reg.MAX_TRACKED_IPS and len(svc._limiter.pairs) <= reg.MAX_TRACKED_PAIRS


def test_the_audit_rotation_alarm_reaches_the_hub(site, tmp_path):
    sub = site.ctx.hub.subscribe(["audit.rotated", "audit.capped"])
    site.ctx.audit = AuditLog(str(tmp_path / "small" / "audit.log"), max_bytes=3000, keep=1, max_total=10 ** 6)
    room = site.rooms()[0]
    for i in range(60):  # registrations from new addresses: one line each
        header, _ = attempt(site, "127.0.4.{}".format(i + 1), room, wrong(site, room))
    event = sub.wait_for(lambda ev: ev.name == "audit.capped", 10)
    assert event is not None and event.data["file"] == "audit.log.1" and event.data["actor"] == "system"
    report = site.ctx.audit.verify_report()
    assert report.ok and report.rotated_away is not None and report.first_seq > 1
