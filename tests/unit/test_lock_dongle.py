"""The emulated dongle's behaviour without a transport (kd/lock/emulator.py ``Dongle``)."""

import datetime
import json
import os

import pytest

from kd.errors import LockError
from kd.formats.documents import build_sync_ticket
from kd.formats.signing import Signer, verify_raw
from kd.lock import protocol as P
from kd.lock.emulator import STATE_FILE, Dongle, Identity, read_identity

UTC = datetime.timezone.utc


class HostClock:
    """The PC clock the dongle sees, moved by the test."""

    def __init__(self, ms: int = 1_800_000_000_000) -> None:
        self.ms = ms

    def __call__(self) -> int:
        return self.ms


def ask(dongle, line):
    reply = dongle.handle(line)
    return P.parse_reply(reply.rstrip(b"\n"))


def ticket(signer, lock_id, server_ms, hours=12, site="11003"):
    moment = datetime.datetime.fromtimestamp(server_ms / 1000, UTC)
    return build_sync_ticket(signer, lock_id=lock_id, site_code=site, server_time=moment,
                             valid_until=moment + datetime.timedelta(hours=hours))


@pytest.fixture
def platform():
    return Signer.generate()


@pytest.fixture
def clock():
    return HostClock()


@pytest.fixture
def dongle(tmp_path, platform, clock):
    return Dongle(str(tmp_path / "lock"), trust=[platform.public_key], lock_id="KL-0001", host_clock=clock,
                  site_code="11003")


def test_every_command_answers(dongle, clock):
    assert ask(dongle, b"VERSION") == P.Reply(True, ("KDLOCK", "1", "emu-1.1"))
    assert ask(dongle, b"SITE") == P.Reply(True, ("11003",))
    assert ask(dongle, b"ID") == P.Reply(True, ("KL-0001",))
    assert ask(dongle, b"KEY").fields == (P.b64encode(dongle.public_key),)
    assert ask(dongle, b"TIME").fields == (str(clock.ms),)
    assert ask(dongle, b"ECHO tok") == P.Reply(True, ("tok",))
    assert ask(dongle, b"TICKET GET").code == P.E_NOTICKET
    state = P.parse_state(ask(dongle, b"STATE").fields)
    assert state == {"id": "KL-0001", "proto": "1", "fw": "emu-1.1", "time": str(clock.ms), "ticket": "0",
                     "synced": "0", "keys": "1", "site": "11003"}
    nonce = os.urandom(32)
    reply = ask(dongle, b"CHAL " + nonce.hex().encode())
    assert reply.ok and reply.fields[0] == str(clock.ms)
    assert verify_raw(dongle.public_key, P.challenge_message("KL-0001", nonce, clock.ms), P.b64decode(reply.fields[1]))
    assert dongle.handle(b"") is None


@pytest.mark.parametrize("line, code", [
    (b"FOO", P.E_UNKNOWN), (b"id", P.E_UNKNOWN), (b"ID 1", P.E_ARG), (b"ECHO", P.E_ARG),
    (b"CHAL 12", P.E_ARG), (b"CHAL " + b"g" * 64, P.E_ARG), (b"TICKET", P.E_ARG), (b"TICKET PUT", P.E_ARG),
    (b"TICKET PUT !!!", P.E_ARG), (b"TICKET DROP x", P.E_ARG), (b"ID\x00", P.E_SYNTAX), (b"\xe6\x97\xb6", P.E_SYNTAX),
    (b"SITE 11003", P.E_ARG), (b"site", P.E_UNKNOWN),
    (P.TOO_LONG, P.E_TOOLONG),
])
def test_bad_requests_get_err(dongle, line, code):
    reply = ask(dongle, line)
    assert not reply.ok and reply.code == code


def test_bad_signature_knob(dongle, clock):
    dongle.bad_signature = True
    nonce = os.urandom(32)
    reply = ask(dongle, b"CHAL " + nonce.hex().encode())
    assert not verify_raw(dongle.public_key, P.challenge_message("KL-0001", nonce, clock.ms),
                          P.b64decode(reply.fields[1]))


def test_clock_offset_and_drift(dongle, clock):
    dongle.set_clock_offset(-90)
    assert dongle.clock_ms() == clock.ms - 90_000
    dongle.drift_ppm = 100  # 100 ppm fast: +0.36 s per hour
    clock.ms += 3_600_000
    assert dongle.clock_ms() == clock.ms - 90_000 + 360
    dongle.drift_ppm = 0  # the drift so far is kept
    clock.ms += 3_600_000
    assert dongle.clock_ms() == clock.ms - 90_000 + 360


def test_ticket_sets_clock_and_is_stored(dongle, platform, clock, tmp_path):
    dongle.set_clock_offset(-600)  # ten minutes slow
    server_ms = clock.ms + 1000
    t = ticket(platform, "KL-0001", server_ms)
    assert ask(dongle, b"TICKET PUT " + P.b64encode(t).encode()) == P.Reply(True, (str(server_ms),))
    clock.ms += 5000
    assert dongle.clock_ms() == server_ms + 5000
    assert P.b64decode(ask(dongle, b"TICKET GET").fields[0]) == t
    assert P.parse_state(ask(dongle, b"STATE").fields)["synced"] == str(server_ms)
    # restarted on the same state: same identity, clock and ticket
    again = Dongle(str(tmp_path / "lock"), host_clock=clock)
    assert (again.lock_id, again.public_key) == (dongle.lock_id, dongle.public_key)
    assert again.clock_ms() == server_ms + 5000
    assert again.state.ticket == t and again.state.trusted_keys == [platform.public_key]


def test_refused_tickets_change_nothing(dongle, platform, clock, tmp_path):
    good = ticket(platform, "KL-0001", clock.ms)
    assert ask(dongle, b"TICKET PUT " + P.b64encode(good).encode()).ok
    before = (dongle.clock_ms(), dongle.state.ticket)
    state_file = (tmp_path / "lock" / STATE_FILE).read_bytes()
    envelope = json.loads(ticket(platform, "KL-0001", clock.ms + 60_000))
    envelope["body"] = envelope["body"].replace("KL-0001", "KL-0002")
    cases = [
        (good, P.E_STALE),  # replay of the stored ticket
        (ticket(platform, "KL-0001", clock.ms - 60_000), P.E_STALE),  # older
        (ticket(Signer.generate(), "KL-0001", clock.ms + 60_000), P.E_TICKET),  # untrusted key
        (ticket(platform, "KL-9999", clock.ms + 60_000), P.E_TICKET),  # another lock
        (json.dumps(envelope).encode(), P.E_TICKET),  # tampered
        (b'{"kind": "sync_ticket"}', P.E_TICKET),
        (b"not json", P.E_TICKET),
        (platform.sign_document("upload_receipt", {"lock_id": "KL-0001"}), P.E_TICKET),  # other kind
    ]
    for data, code in cases:
        reply = ask(dongle, b"TICKET PUT " + P.b64encode(data).encode())
        assert (reply.ok, reply.code) == (False, code), data[:80]
        assert (dongle.clock_ms(), dongle.state.ticket) == before
    too_big = P.b64encode(b"x" * (P.MAX_TICKET_BYTES + 1)).encode()
    assert ask(dongle, b"TICKET PUT " + too_big).code in (P.E_ARG, P.E_TOOLONG)
    assert (tmp_path / "lock" / STATE_FILE).read_bytes() == state_file


def test_a_corrupt_or_foreign_state_is_refused_and_left_alone(tmp_path, clock):
    folder = tmp_path / "lock"
    Dongle(str(folder), lock_id="KL-0001", host_clock=clock)
    with pytest.raises(LockError) as e:
        Dongle(str(folder), lock_id="KL-0002")
    assert "另一把模拟锁" in e.value.cause
    (folder / STATE_FILE).write_bytes(b'{"format": "kd-lock-emulator/1", "lock_id": "KL-0001"')
    with pytest.raises(LockError) as e:
        Dongle(str(folder))
    assert "状态文件损坏" in e.value.cause
    assert (folder / STATE_FILE).read_bytes().endswith(b'"KL-0001"')


def test_identity_file(tmp_path):
    path = tmp_path / "dongle.json"
    path.write_text(json.dumps({"lock_id": "KDLOCK-11003-01", "seed": "11" * 32, "public_key": "x",
                                "site_code": "11003"}))
    assert read_identity(str(path)) == Identity("KDLOCK-11003-01", b"\x11" * 32, "11003")
    d = Dongle(str(tmp_path / "lock"), lock_id="KDLOCK-11003-01", seed=b"\x11" * 32, site_code="11003")
    assert d.public_key == Signer(b"\x11" * 32).public_key and d.site_code == "11003"
    # an older simulator's file names no site
    path.write_text(json.dumps({"lock_id": "KDLOCK-11003-01", "seed": "11" * 32}))
    assert read_identity(str(path)) == Identity("KDLOCK-11003-01", b"\x11" * 32, None)
    for bad in ({"lock_id": "bad id", "seed": "11" * 32}, {"lock_id": "KL-1", "seed": "11" * 32, "site_code": "110"},
                {"lock_id": "KL-1", "seed": "11" * 32, "site_code": 11003}):
        path.write_text(json.dumps(bad))
        with pytest.raises(ValueError):
            read_identity(str(path))


def test_site_answers_registered_none_and_old_firmware(tmp_path, clock):
    """SITE: the registered code; E_NOSITE when registered to none; E_UNKNOWN from revision 1."""
    unregistered = Dongle(str(tmp_path / "blank"), lock_id="KL-0002", host_clock=clock)
    reply = ask(unregistered, b"SITE")
    assert (reply.ok, reply.code) == (False, P.E_NOSITE)
    assert P.site_reading(reply) == P.SiteReading(P.SITE_NONE)
    assert "site" not in P.parse_state(ask(unregistered, b"STATE").fields)

    old = Dongle(str(tmp_path / "old"), lock_id="KL-0003", host_clock=clock, site_code="11003")
    old.old_firmware = True
    assert ask(old, b"VERSION").fields == ("KDLOCK", "1", "emu-1.0")
    reply = ask(old, b"SITE")
    assert (reply.ok, reply.code) == (False, P.E_UNKNOWN)
    assert P.site_reading(reply) == P.SiteReading(P.SITE_UNREPORTED)
    state = P.parse_state(ask(old, b"STATE").fields)
    assert "site" not in state and state["fw"] == "emu-1.0"
    old.old_firmware = False
    assert P.site_reading(ask(old, b"SITE")) == P.SiteReading(P.SITE_REGISTERED, "11003")


def test_the_site_is_registered_once_and_never_moved(tmp_path, clock):
    folder = tmp_path / "lock"
    Dongle(str(folder), lock_id="KL-0001", host_clock=clock)  # an older emulator's state: no site
    doc = json.loads((folder / STATE_FILE).read_text())
    del doc["site_code"]  # as an older emulator wrote it
    (folder / STATE_FILE).write_text(json.dumps(doc))
    assert Dongle(str(folder), host_clock=clock).site_code is None
    registered = Dongle(str(folder), lock_id="KL-0001", site_code="11003", host_clock=clock)
    assert registered.site_code == "11003"
    assert json.loads((folder / STATE_FILE).read_text())["site_code"] == "11003"  # durably
    assert Dongle(str(folder), host_clock=clock).site_code == "11003"
    before = (folder / STATE_FILE).read_bytes()
    with pytest.raises(LockError) as e:
        Dongle(str(folder), site_code="11004", host_clock=clock)
    assert "另一考点（11003）" in e.value.cause
    assert (folder / STATE_FILE).read_bytes() == before
    with pytest.raises(ValueError):
        Dongle(str(tmp_path / "bad"), site_code="11 003", host_clock=clock)


def test_the_documented_site_test_vector(tmp_path):
    """docs/lock-protocol.md §3.1: the exact lines of SITE and STATE, registered, blank and revision 1."""
    d = Dongle(str(tmp_path / "v"), lock_id="KDLOCK-11003-01", seed=bytes(range(32)),
               host_clock=lambda: 1781226000000, site_code="11003")
    assert d.handle(b"VERSION") == b"OK KDLOCK 1 emu-1.1\n"
    assert d.handle(b"SITE") == b"OK 11003\n"
    assert d.handle(b"STATE") == (b"OK id=KDLOCK-11003-01 proto=1 fw=emu-1.1 time=1781226000000 ticket=0 synced=0 "
                                  b"keys=0 site=11003\n")
    d.old_firmware = True
    assert d.handle(b"VERSION") == b"OK KDLOCK 1 emu-1.0\n"
    assert d.handle(b"SITE") == b"ERR E_UNKNOWN unknown command\n"
    assert d.handle(b"STATE") == (b"OK id=KDLOCK-11003-01 proto=1 fw=emu-1.0 time=1781226000000 ticket=0 synced=0 "
                                  b"keys=0\n")
    blank = Dongle(str(tmp_path / "b"), lock_id="KDLOCK-11003-01", seed=bytes(range(32)),
                   host_clock=lambda: 1781226000000)
    assert blank.handle(b"SITE") == b"ERR E_NOSITE not registered to a site\n"


def test_the_documented_challenge_test_vector(tmp_path):
    """docs/lock-protocol.md §4: a compatible dongle must give exactly these answers."""
    d = Dongle(str(tmp_path / "v"), lock_id="KDLOCK-11003-01", seed=bytes(range(32)),
               host_clock=lambda: 1781226000000, site_code="11003")
    assert d.handle(b"KEY") == b"OK A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg=\n"
    nonce = bytes(range(100, 132))
    assert d.handle(b"CHAL " + nonce.hex().encode()) == (
        b"OK 1781226000000 sR9d1lr1cZzjyWkDk/m5WCPOv74gtHi7/OiEiatn+ikhdS4TfNW47jl7jIqWOGdqym7ROjzCebiO+1Wt/dTyBw==\n")
    assert P.challenge_message("KDLOCK-11003-01", nonce, 1781226000000).hex() == (
        "6b616f6469616e2d6c6f636b2d6368616c6c656e67652d7631" "00" "4b444c4f434b2d31313030332d3031" "00"
        + nonce.hex() + "00" + "31373831323236303030303030")
