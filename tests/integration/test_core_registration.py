"""考场注册 (§3.2, §3.2.2): the registration rules, export, KDINFO restore; real dongle emulator."""

import datetime
import os
import socket
import threading

import pytest

from kd.core import model
from kd.core.labels import shown
from kd.core.loading import LoadingService, NotLoaded
from kd.core.monitor import MonitorService
from kd.core.outbox import Outbox
from kd.core.recovery import RecoveryService
from kd.core.registration import IP_MAX_FAILURES, ROOM_MAX_FAILURES, ConfirmationRequired, RegistrationService
from kd.core.verification import VerificationService
from kd.errors import FormatError, RegistrationRefused, UserError
from kd.formats import kdinfo
from kd.lan.client import LanError, ProctorClient
from kd.lan.server import LanOptions, LanServer
from tests.support.clocks import FakeMonotonic, ShiftedWall
from tests.support.env import make_env

ROOM, ROOM2 = "11003001", "11003002"
IP1, IP2 = "10.0.0.11", "10.0.0.12"


@pytest.fixture
def clock():
    return ShiftedWall()


@pytest.fixture
def env(tmp_path, clock):
    e = make_env(tmp_path, rooms=3, sessions=2, candidates=5, room_kb=4, clock=clock)
    LoadingService(e.ctx).load_online("admin")
    yield e
    e.close()


def code_of(env, room):
    return env.ctx.stores.runtime.get(model.ROOMS, room)["reg_code"]


def wrong_code(right):
    return "A" * 8 if right != "A" * 8 else "B" * 8


def test_register_returns_token_bound_to_room_and_ip(env):
    svc = RegistrationService(env.ctx)
    answer = svc.register(ROOM, code_of(env, ROOM).lower(), IP1)
    assert answer["site_code"] == "11003" and len(answer["token"]) >= 32
    assert [s["id"] for s in answer["sessions"]] == ["1", "2"]
    assert answer["room_data_sha256"] == LoadingService(env.ctx).room_data_sha256(ROOM)
    assert svc.authenticate(ROOM, answer["token"], IP1)["ip"] == IP1
    for room, token, ip in [(ROOM, answer["token"], IP2), (ROOM2, answer["token"], IP1), (ROOM, "x", IP1),
                            (ROOM, None, IP1), ("nope", answer["token"], IP1)]:
        with pytest.raises(RegistrationRefused):
            svc.authenticate(room, token, ip)
    again = svc.register(ROOM, code_of(env, ROOM), IP1)
    assert again["token"] != answer["token"]
    with pytest.raises(RegistrationRefused):
        svc.authenticate(ROOM, answer["token"], IP1)
    snap = svc.snapshot()
    assert (snap["registered"], snap["unregistered"]) == (1, 2)
    assert snap["rooms"][0]["ip"] == IP1 and snap["rooms"][0]["registered"]


def test_unknown_room_and_wrong_code_answer_alike(env):
    svc = RegistrationService(env.ctx)
    errors = []
    for room, code in [("99999999", code_of(env, ROOM)), (ROOM, wrong_code(code_of(env, ROOM))), ("", "")]:
        with pytest.raises(RegistrationRefused) as info:
            svc.register(room, code, IP1)
        errors.append((type(info.value), info.value.cause, info.value.remedy))
    assert errors[0] == errors[1] == errors[2]
    assert env.ctx.stores.runtime.get(model.ROOMS, ROOM)["ip"] is None


def test_brute_force_blocks_the_room_from_that_address_even_with_the_right_code(env, clock):
    svc = RegistrationService(env.ctx)
    right = code_of(env, ROOM)
    attacker = "10.0.1.66"
    for _ in range(ROOM_MAX_FAILURES):
        with pytest.raises(RegistrationRefused):
            svc.register(ROOM, wrong_code(right), attacker)
    with pytest.raises(RegistrationRefused) as info:
        svc.register(ROOM, right, attacker)
    assert "次数过多" in info.value.cause
    assert env.ctx.stores.runtime.get(model.ROOMS, ROOM)["ip"] is None
    # another room is not affected (the counts are the service's own: the site's core has one)
    svc.register(ROOM2, code_of(env, ROOM2), IP2)
    clock.offset += datetime.timedelta(minutes=4, seconds=59)
    with pytest.raises(RegistrationRefused):
        svc.register(ROOM, right, attacker)
    clock.offset += datetime.timedelta(seconds=2)
    assert svc.register(ROOM, right, attacker)["token"]


def test_wrong_codes_from_other_addresses_do_not_lock_out_the_rooms_proctor(env):
    """Issue 12 item 9: ten wrong codes every five minutes from anywhere kept a room from registering."""
    svc = RegistrationService(env.ctx)
    right = code_of(env, ROOM)
    for i in range(3 * ROOM_MAX_FAILURES):  # three other machines, each up to its own limit
        with pytest.raises(RegistrationRefused):
            svc.register(ROOM, wrong_code(right), "10.0.1.{}".format(i % 3))
    with pytest.raises(RegistrationRefused) as info:
        svc.register(ROOM, right, "10.0.1.0")
    assert "次数过多" in info.value.cause  # those addresses are locked out
    assert svc.register(ROOM, right, IP1)["token"]  # the room's proctor on its own address is not


def test_brute_force_unknown_rooms_blocked_too(env):
    svc = RegistrationService(env.ctx)
    for _ in range(ROOM_MAX_FAILURES):
        with pytest.raises(RegistrationRefused) as info:
            svc.register("11003999", "AAAAAAAA", IP1)
        assert "次数过多" not in info.value.cause
    with pytest.raises(RegistrationRefused) as info:
        svc.register("11003999", "AAAAAAAA", IP1)
    assert "次数过多" in info.value.cause
    with pytest.raises(RegistrationRefused) as info:
        svc.register("11003999", "AAAAAAAA", IP2)
    assert "次数过多" not in info.value.cause


def test_brute_force_per_ip(env):
    svc = RegistrationService(env.ctx)
    for i in range(IP_MAX_FAILURES):
        with pytest.raises(RegistrationRefused):
            svc.register("1100{:04d}".format(i), "AAAAAAAA", IP1)  # a new room each time
    with pytest.raises(RegistrationRefused) as info:
        svc.register(ROOM, code_of(env, ROOM), IP1)
    assert "次数过多" in info.value.cause
    assert svc.register(ROOM, code_of(env, ROOM), IP2)["token"]


class SocketLan:
    """A minimal LAN port over real sockets: one accepted connection per room; disconnect closes it."""

    def __init__(self):
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(4)
        self.conns = {}
        self.disconnected = threading.Event()

    def connect(self, room):
        client = socket.create_connection(self.server.getsockname(), timeout=5)
        self.conns[room], _ = self.server.accept()
        return client

    def listening(self):
        return True

    def address(self):
        return "127.0.0.1"

    def port(self):
        return self.server.getsockname()[1]

    def disconnect_room(self, room_code):
        conn = self.conns.pop(room_code, None)
        if conn is not None:
            conn.close()

    def close(self):
        for conn in self.conns.values():
            conn.close()
        self.server.close()


def test_second_ip_refused_until_revoke(env):
    lan = SocketLan()
    env.ctx.lan = lan
    try:
        svc = RegistrationService(env.ctx)
        right = code_of(env, ROOM)
        first = svc.register(ROOM, right, IP1)
        client = lan.connect(ROOM)
        with pytest.raises(RegistrationRefused) as info:
            svc.register(ROOM, right, IP2)
        assert IP1 in info.value.cause and "撤销注册" in info.value.remedy
        assert svc.authenticate(ROOM, first["token"], IP1)
        with pytest.raises(UserError):
            svc.revoke("nope", "admin")
        svc.revoke(ROOM, "admin")
        assert client.recv(1) == b""  # the LAN connection of the room was closed
        client.close()
        with pytest.raises(RegistrationRefused):
            svc.authenticate(ROOM, first["token"], IP1)
        assert svc.snapshot()["registered"] == 0
        assert svc.register(ROOM, right, IP2)["token"]
        assert [e["action"] for e in env.ctx.audit.entries()].count("registration.revoked") == 1
    finally:
        env.ctx.lan = None
        lan.close()


def test_mark_data_imported(env):
    svc = RegistrationService(env.ctx)
    token = svc.register(ROOM, code_of(env, ROOM), IP1)["token"]
    with pytest.raises(FormatError):
        svc.mark_data_imported(ROOM, token, IP1, "0" * 64)
    with pytest.raises(RegistrationRefused):
        svc.mark_data_imported(ROOM, "bad", IP1, LoadingService(env.ctx).room_data_sha256(ROOM))
    assert not svc.snapshot()["rooms"][0]["data_imported"]
    svc.mark_data_imported(ROOM, token, IP1, LoadingService(env.ctx).room_data_sha256(ROOM))
    assert svc.snapshot()["rooms"][0]["data_imported"]


def test_register_before_loading_refused(tmp_path):
    e = make_env(tmp_path, rooms=3, sessions=2, candidates=5, room_kb=4)
    try:
        with pytest.raises(RegistrationRefused):
            RegistrationService(e.ctx).register(ROOM, "AAAAAAAA", IP1)
        with pytest.raises(NotLoaded):
            RegistrationService(e.ctx).export_site_info(str(tmp_path / "out"), "admin", "127.0.0.1")
    finally:
        e.close()


def registrations(env):
    return sorted((r["code"], r["reg_code"], r["ip"]) for r in env.ctx.stores.runtime.all(model.ROOMS))


def test_export_tamper_restore(env, tmp_path):
    svc = RegistrationService(env.ctx)
    svc.register(ROOM, code_of(env, ROOM), IP1)
    svc.register(ROOM2, code_of(env, ROOM2), IP2)
    out = str(tmp_path / "usb")
    paths = svc.export_site_info(out, "admin", "192.168.1.5")
    assert os.path.basename(paths["kdinfo"]) == "考点信息表(11003).KDINFO"
    with open(paths["html"], encoding="utf-8") as f:
        page = f.read()
    assert page.count('<section class="page">') == 3 and "192.168.1.5" in page and "9190" in page
    assert code_of(env, ROOM) in page and "@page" in page
    with open(paths["kdinfo"], "rb") as f:
        good = f.read()
    exported = registrations(env)
    # change the registrations, then try tampered files: each refused, nothing changed
    svc.revoke(ROOM, "admin")
    before = registrations(env)
    audit_before = len(list(env.ctx.audit.entries()))
    positions = [len(good) // 2, good.index(b'"ip":"') + 8, len(good) - 5]
    for pos in positions:
        data = bytearray(good)
        data[pos] = data[pos] ^ 0x01
        bad = str(tmp_path / "bad.KDINFO")
        with open(bad, "wb") as f:
            f.write(data)
        with pytest.raises(FormatError):
            svc.restore(bad, "admin")
        assert registrations(env) == before
    # a re-signed body with another IP but the old signature
    forged = good.replace(IP1.encode(), b"10.0.0.99")
    bad = str(tmp_path / "forged.KDINFO")
    with open(bad, "wb") as f:
        f.write(forged)
    with pytest.raises(FormatError) as info:
        svc.restore(bad, "admin")
    assert "签名无效" in info.value.cause
    assert registrations(env) == before
    assert len(list(env.ctx.audit.entries())) == audit_before
    # the untouched file restores
    snap = svc.restore(paths["kdinfo"], "admin")
    assert registrations(env) == exported and snap["registered"] == 2
    # restored rooms accept their proctor again from the same IP only
    assert svc.register(ROOM, code_of(env, ROOM), IP1)["token"]
    with pytest.raises(RegistrationRefused):
        svc.register(ROOM2, code_of(env, ROOM2), IP1)


def test_restore_refuses_other_package_and_other_site(env, tmp_path):
    svc = RegistrationService(env.ctx)
    svc.register(ROOM, code_of(env, ROOM), IP1)
    paths = svc.export_site_info(str(tmp_path / "usb"), "admin", "127.0.0.1")
    # another site: same bytes, but this data dir's site code differs
    site = env.ctx.site()
    env.ctx.stores.settings.put(model.SETTINGS, model.SITE, dict(site, site_code="11004"))
    with pytest.raises(FormatError) as info:
        svc.restore(paths["kdinfo"], "admin")
    assert "考点代码不符" in info.value.cause
    env.ctx.stores.settings.put(model.SETTINGS, model.SITE, site)
    # a newer package loaded: the file belongs to the old one
    env.sim.republish()
    env.sim.data.config["publish_time"] = (env.ctx.now() + datetime.timedelta(minutes=1)).replace(
        microsecond=0).isoformat()
    LoadingService(env.ctx).load_online("admin")
    before = registrations(env)
    with pytest.raises(FormatError) as info:
        svc.restore(paths["kdinfo"], "admin")
    assert "考场数据包" in info.value.cause
    assert registrations(env) == before


def test_restore_on_a_fresh_data_dir(env, tmp_path):
    svc = RegistrationService(env.ctx)
    svc.register(ROOM, code_of(env, ROOM), IP1)
    paths = svc.export_site_info(str(tmp_path / "usb"), "admin", "127.0.0.1")
    exported = registrations(env)
    # a reinstalled server: new data folder, same platform, same dongle, same package
    from kd.app import open_context

    fresh_dir = str(tmp_path / "fresh")
    ctx = open_context(fresh_dir, env.hub, platform=env.client, dongle=env.ctx.dongle, trusted=env.trusted)
    try:
        ctx.stores.settings.put(model.SETTINGS, model.SITE, env.ctx.site())
        LoadingService(ctx).load_online("admin")
        fresh = RegistrationService(ctx)
        assert sorted((r["code"], r["reg_code"]) for r in ctx.stores.runtime.all(model.ROOMS)) != \
            sorted((c, r) for c, r, _ in exported)
        fresh.restore(paths["kdinfo"], "admin")
        assert sorted((r["code"], r["reg_code"], r["ip"]) for r in ctx.stores.runtime.all(model.ROOMS)) == exported
        assert fresh.register(ROOM, code_of(env, ROOM), IP1)["token"]
    finally:
        ctx.stores.close()


def test_kdinfo_format_refuses_garbage():
    for data in [b"", b"{}", b"[1]", b"\xff\xfe", b'{"format":"kd-kdinfo/1"}', b"x" * (kdinfo.MAX_BYTES + 1)]:
        with pytest.raises(FormatError):
            kdinfo.parse_kdinfo(data)


# -- 恢复注册 shows what it changes and never drops a connected room unasked ------------------

class LiveSite:
    """The LAN service over the core's registration and monitor (as ``kd.core.services.Core`` wires
    them: the registration asks the monitor which rooms are connected), proctors on their own
    loopback addresses, a monitor clock the test moves by hand."""

    def __init__(self, env):
        self.env = env
        self.ctx = env.ctx
        self.clock = FakeMonotonic()
        self.monitor = MonitorService(self.ctx, Outbox(self.ctx), clock=self.clock)
        self.registration = RegistrationService(self.ctx, connected=self.monitor.connected)
        self.server = LanServer(self.ctx, registration=self.registration, verification=VerificationService(self.ctx),
                                monitor=self.monitor, recovery=RecoveryService(self.ctx, Outbox(self.ctx)),
                                options=LanOptions(host="127.0.0.1", port=0)).start()
        self.rooms = [r["code"] for r in self.ctx.manifest()["rooms"]]
        self.clients = {}

    def ip(self, room):
        return "127.0.0.{}".format(11 + self.rooms.index(room))

    def proctor(self, room, ip=None):
        """The room's proctor machine registers (from its own address, or ``ip``)."""
        client = ProctorClient("127.0.0.1", self.server.port(), timeout=10.0, source_address=(ip or self.ip(room), 0))
        client.register(room, code_of(self.env, room))
        self.clients[room] = client
        return client

    def beat(self, room):
        session = self.ctx.manifest()["sessions"][0]["id"]
        return self.clients[room].heartbeat({"session": session, "started": False, "ended": False,
                                             "logged_in": 0, "in_exam": 0})

    def close(self):
        for client in self.clients.values():
            client.close()
        self.server.stop()


@pytest.fixture
def live(env):
    site = LiveSite(env)
    yield site
    site.close()


def export(svc, folder):
    """导出考点信息 into ``folder``: every export has the same file name, only the folder tells them apart."""
    return svc.export_site_info(folder, "admin", "127.0.0.1")["kdinfo"]


def audit_count(env):
    return len(list(env.ctx.audit.entries()))


def test_restore_preview_shows_what_an_early_kdinfo_would_drop(live, tmp_path, clock):
    env, svc = live.env, live.registration
    early = export(svc, str(tmp_path / "early"))  # exported before any room registered
    clock.offset += datetime.timedelta(minutes=10)
    for room in live.rooms:
        live.proctor(room)
    live.beat(live.rooms[0])
    live.beat(live.rooms[1])  # the third room registered but sends no heartbeat: not connected
    late = export(svc, str(tmp_path / "late"))
    assert os.path.basename(early) == os.path.basename(late)
    before, audit_before = registrations(env), audit_count(env)

    preview = svc.restore_preview(early)
    with open(early, "rb") as f:
        assert preview["created_at"] == kdinfo.parse_kdinfo(f.read()).body["created_at"]
    assert preview["loses"] == live.rooms and preview["changes"] == preview["gains"] == preview["same"] == []
    assert preview["connected"] == preview["at_risk"] == live.rooms[:2]
    assert preview["registered_after"] is not None  # registrations made after this export
    assert [(r["code"], r["change"], r["connected"], r["ip"], r["new_ip"]) for r in preview["rooms"]] == [
        (room, "loses", room in live.rooms[:2], live.ip(room), None) for room in live.rooms]
    text = "\n".join(preview["lines"])
    assert "文件导出时间：" + shown(preview["created_at"]) in text
    assert "将失去注册（3个）" in text and "可能不是最新" in text
    for room in live.rooms[:2]:
        assert "{}（当前已连接；注册IP {}）".format(room, live.ip(room)) in text
    assert "{}（注册IP {}）".format(live.rooms[2], live.ip(live.rooms[2])) in text
    # the preview changed nothing: registrations, audit, live connections
    assert registrations(env) == before and audit_count(env) == audit_before
    live.beat(live.rooms[0])

    # the late copy restores the same registrations: nothing changes, no question needed
    same = svc.restore_preview(late)
    assert same["same"] == live.rooms and same["at_risk"] == [] and same["registered_after"] is None
    assert same["lines"][-1] == "此文件与本机当前的注册信息相同，恢复后不会有变化。"
    svc.restore(late, "admin")
    assert registrations(env) == before
    live.beat(live.rooms[0])  # tokens kept: the proctors stay connected


def test_restore_refuses_to_drop_connected_rooms_without_the_matching_confirmation(live, tmp_path):
    env, svc = live.env, live.registration
    early = export(svc, str(tmp_path / "early"))
    for room in live.rooms:
        live.proctor(room)
    live.beat(live.rooms[0])
    live.beat(live.rooms[1])
    before, audit_before = registrations(env), audit_count(env)
    preview = svc.restore_preview(early)

    # no confirmation (as a command line that did not ask): refused, naming the connected rooms
    with pytest.raises(ConfirmationRequired) as info:
        svc.restore(early, "admin")
    assert all(room in info.value.cause for room in live.rooms[:2]) and info.value.remedy
    # a confirmation of something else: refused
    with pytest.raises(ConfirmationRequired):
        svc.restore(early, "admin", confirm="0" * 64)
    assert registrations(env) == before and audit_count(env) == audit_before
    live.beat(live.rooms[0])  # still registered and connected

    # what was confirmed is no longer what would happen: a room not connected when it was shown
    # connects meanwhile (the restore would cut it off too): refused
    live.beat(live.rooms[2])
    with pytest.raises(ConfirmationRequired) as info:
        svc.restore(early, "admin", confirm=preview["confirm"])
    assert "变化" in info.value.cause
    live.clock.now += 60  # every heartbeat is long past: nothing is connected any more
    assert svc.restore_preview(early)["at_risk"] == []
    live.beat(live.rooms[0])
    live.beat(live.rooms[1])
    assert svc.restore_preview(early)["confirm"] == preview["confirm"]  # the same as shown before
    # a room revoked meanwhile: refused
    svc.revoke(live.rooms[2], "admin")
    before = registrations(env)
    with pytest.raises(ConfirmationRequired) as info:
        svc.restore(early, "admin", confirm=preview["confirm"])
    assert "变化" in info.value.cause
    assert registrations(env) == before

    # confirmed against the current state: applied; the connected proctors are cut off
    preview = svc.restore_preview(early)
    assert preview["loses"] == live.rooms[:2] and preview["same"] == live.rooms[2:]
    svc.restore(early, "admin", confirm=preview["confirm"])
    assert all(ip is None for _, _, ip in registrations(env))
    for room in live.rooms[:2]:
        with pytest.raises(LanError) as info:
            live.beat(room)
        assert info.value.code == "E_NET"  # the server closed the room's connection
    [entry] = [e for e in env.ctx.audit.entries() if e["action"] == "registration.restored"]
    details = entry["details"]
    assert details["loses"] == details["reset"] == details["disconnected"] == live.rooms[:2]
    assert details["confirmed"] is True
    # the rooms register again as before
    assert live.proctor(live.rooms[0])


def test_restore_of_a_changed_registration_asks_and_an_unconnected_one_does_not(live, tmp_path):
    env, svc = live.env, live.registration
    room, other = live.rooms[0], live.rooms[1]
    live.proctor(room)
    live.proctor(other)
    exported = export(svc, str(tmp_path / "usb"))
    # the room moved to another proctor PC since the export, and is connected from there
    svc.revoke(room, "admin")
    live.proctor(room, ip="127.0.0.99")
    live.beat(room)
    svc.revoke(other, "admin")  # the other room lost its registration and has no proctor now

    preview = svc.restore_preview(exported)
    assert preview["changes"] == [room] and preview["gains"] == [other] and preview["at_risk"] == [room]
    assert "{}（当前已连接；注册IP 127.0.0.99 → {}）".format(room, live.ip(room)) in "\n".join(preview["lines"])
    with pytest.raises(ConfirmationRequired):
        svc.restore(exported, "admin")
    assert env.ctx.stores.runtime.get(model.ROOMS, room)["ip"] == "127.0.0.99"

    # once the room's new registration is revoked, nothing connected is at risk: no question
    svc.revoke(room, "admin")
    live.clock.now += 60  # its last heartbeat is long past
    assert svc.restore_preview(exported)["at_risk"] == []
    svc.restore(exported, "admin")
    assert env.ctx.stores.runtime.get(model.ROOMS, room)["ip"] == live.ip(room)
    assert env.ctx.stores.runtime.get(model.ROOMS, other)["ip"] == live.ip(other)


def test_restore_preview_refuses_what_restore_refuses(env, tmp_path):
    svc = RegistrationService(env.ctx)
    good = export(svc, str(tmp_path / "usb"))
    with open(good, "rb") as f:
        data = f.read()
    bad = str(tmp_path / "bad.KDINFO")
    with open(bad, "wb") as f:
        f.write(data.replace(b'"ip":null', b'"ip":"10.0.0.99"', 1))
    with pytest.raises(FormatError):
        svc.restore_preview(bad)
    with pytest.raises(FormatError):
        svc.restore_preview(str(tmp_path / "none.KDINFO"))
    site = env.ctx.site()
    env.ctx.stores.settings.put(model.SETTINGS, model.SITE, dict(site, site_code="11004"))
    with pytest.raises(FormatError) as info:
        svc.restore_preview(good)
    assert "考点代码不符" in info.value.cause
