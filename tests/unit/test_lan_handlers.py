"""The LAN request handlers without a network: recording core services, a peer object.

Each ``Recording*`` service lists the calls it receives and answers as the real one does
for the cases here; ``bind`` records which connection was bound to which room.
"""

import os
import re

import pytest

from kd.errors import PermitRefused, RegistrationRefused
from kd.lan.framing import Frame
from kd.lan.handlers import BODY_TYPES, HANDLERS, Services
from kd.lan.replies import Reply

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOKEN = "t" * 32


class Peer:
    def __init__(self, ip="10.0.0.1", room=None):
        self.ip, self.room = ip, room


class RecordingRegistration:
    def __init__(self):
        self.calls = []

    def register(self, room, reg_code, ip):
        self.calls.append(("register", room, reg_code, ip))
        if reg_code != "GOODCODE":
            raise RegistrationRefused("注册码不正确。", "请核对注册码。")
        return {"token": TOKEN, "site_code": "S1", "sessions": []}

    def authenticate(self, room, token, ip):
        self.calls.append(("authenticate", room, token, ip))
        if token != TOKEN:
            raise RegistrationRefused("令牌无效。", "请重新注册。")
        return {"code": room}


class RecordingLoading:
    def __init__(self):
        self.calls = []

    def room_data_sha256(self, room):
        self.calls.append(("room_data_sha256", room))
        return None

    def room_file_path(self, room):
        self.calls.append(("room_file_path", room))
        return "/nonexistent/{}.dat".format(room)


class RecordingVerification:
    def __init__(self):
        self.calls = []

    def start_permit(self, room, session):
        self.calls.append(("start_permit", room, session))
        if session != "S1":
            raise PermitRefused("场次尚未完成授权验证。", "请稍候。")
        return {"verified_at": "2026-01-01 08:00:00"}


class RecordingMonitor:
    interval = 5.0

    def __init__(self):
        self.calls = []

    def heartbeat(self, room, beat):
        self.calls.append(("heartbeat", room, beat))
        return {}


@pytest.fixture
def desk():
    bound = []
    services = Services(ctx=None, registration=RecordingRegistration(), verification=RecordingVerification(),
                        monitor=RecordingMonitor(), loading=RecordingLoading(), uploads=None, max_upload=1000,
                        bind=lambda peer, room: bound.append((peer, room)))
    return services, bound


def call(services, peer, kind, **fields):
    fields.update({"type": kind, "seq": 1, "v": 1, "body_len": 0})
    return HANDLERS[kind](services, peer, Frame(fields, b""))


def refused(code, *args, **fields):
    with pytest.raises(Reply) as e:
        call(*args, **fields)
    assert e.value.code == code, (e.value.code, e.value.message)
    return e.value


def test_the_table_serves_every_documented_message_type():
    with open(os.path.join(ROOT, "docs", "lan-protocol.md"), encoding="utf-8") as f:
        documented = set(re.findall(r"^### `([a-z_]+)`", f.read(), re.M))
    assert set(HANDLERS) == documented
    assert BODY_TYPES == {"upload_chunk"}


def test_register_binds_the_connection_to_its_room(desk):
    services, bound = desk
    peer = Peer()
    reply, body = call(services, peer, "register", room="R01", reg_code="GOODCODE", client="proctor 1.0")
    assert reply["token"] == TOKEN and reply["room"] == "R01" and reply["heartbeat_s"] == 5.0
    assert reply["data"] == {"sha256": None, "size": None} and body == b""
    assert services.registration.calls == [("register", "R01", "GOODCODE", "10.0.0.1")]
    assert bound == [(peer, "R01")]


def test_a_wrong_code_is_e_register_and_binds_nothing(desk):
    services, bound = desk
    refused("E_REGISTER", services, Peer(), "register", room="R01", reg_code="BADCODE")
    assert bound == []


def test_a_connection_serves_one_room(desk):
    services, bound = desk
    peer = Peer(room="R01")
    refused("E_AUTH", services, peer, "register", room="R02", reg_code="GOODCODE")
    refused("E_AUTH", services, peer, "permit", room="R02", token=TOKEN, session="S1")
    assert services.registration.calls == [] and bound == []


def test_every_other_request_authenticates_first(desk):
    services, bound = desk
    peer = Peer()
    refused("E_AUTH", services, peer, "permit", room="R01", token="wrong", session="S1")
    assert services.verification.calls == [] and bound == []
    # a room or token that cannot be one is E_AUTH too (the proctor registers again), not E_ARG
    refused("E_AUTH", services, peer, "permit", room="R 01", token=TOKEN, session="S1")
    refused("E_AUTH", services, peer, "permit", room="R01", token=12345, session="S1")
    refused("E_AUTH", services, peer, "permit", room="R01", session="S1")
    assert services.verification.calls == [] and bound == []
    reply, _ = call(services, peer, "permit", room="R01", token=TOKEN, session="S1")
    assert reply == {"session": "S1", "permit": {"verified_at": "2026-01-01 08:00:00", "session": "S1",
                                                 "granted": True}}
    assert bound == [(peer, "R01")]
    refused("E_PERMIT", services, peer, "permit", room="R01", token=TOKEN, session="S2")


def test_no_permit_before_the_room_imported_its_current_data(desk):
    services, bound = desk
    services.loading.room_data_sha256 = lambda room: "a" * 64
    services.registration.authenticate = lambda room, token, ip: {"code": room, "data_sha256": None}
    refused("E_PERMIT", services, Peer(), "permit", room="R01", token=TOKEN, session="S1")
    services.registration.authenticate = lambda room, token, ip: {"code": room, "data_sha256": "b" * 64}
    refused("E_PERMIT", services, Peer(), "permit", room="R01", token=TOKEN, session="S1")  # an older file
    assert services.verification.calls == []  # nothing recorded as granted
    services.registration.authenticate = lambda room, token, ip: {"code": room, "data_sha256": "a" * 64}
    assert call(services, Peer(), "permit", room="R01", token=TOKEN, session="S1")[0]["permit"]["granted"]


def test_a_heartbeat_is_checked_before_the_monitor_sees_it(desk):
    services, _ = desk
    peer = Peer()
    base = {"room": "R01", "token": TOKEN}
    refused("E_ARG", services, peer, "heartbeat", state="started", **base)
    refused("E_ARG", services, peer, "heartbeat", state={"session": "S1", "started": 1, "logged_in": 0,
                                                         "in_exam": 0}, **base)
    refused("E_ARG", services, peer, "heartbeat", state={"session": "S1", "logged_in": -1, "in_exam": 0}, **base)
    refused("E_ARG", services, peer, "heartbeat", state={"session": "S1", "logged_in": True, "in_exam": 0}, **base)
    assert services.monitor.calls == []


def test_room_data_not_loaded_is_refused(desk):
    services, _ = desk
    refused("E_REFUSED", services, Peer(), "data", room="R01", token=TOKEN, offset=0, length=10)
