"""The dongle driver against the emulator over ``socket://`` and over a pty (real pyserial)."""

import datetime
import os
import queue
import subprocess
import sys
import threading
import time

import pytest
import serial
from serial.tools.list_ports_common import ListPortInfo

from kd.events import EventHub
from kd.formats.documents import build_sync_ticket
from kd.formats.signing import Signer
from kd.lock import protocol as P
from kd.lock.driver import EVENT_ATTACHED, EVENT_DETACHED, ExpectedLock, LockDriver, candidate_ports
from kd.lock.emulator import Dongle, LockEmulator
from kd.lock.errors import (
    LockDisconnected,
    LockNotFound,
    LockProtocolError,
    LockRefused,
    LockTimeout,
    WrongLockError,
)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TRANSPORTS = ["tcp"] + (["pty"] if os.name == "posix" else [])
WAIT = 10.0  # upper bound for events; they normally come within milliseconds


@pytest.fixture(scope="module")
def platform():
    return Signer.generate()


@pytest.fixture(params=TRANSPORTS)
def emu(request, tmp_path, platform):
    e = LockEmulator(str(tmp_path / "lock"), trust=[platform.public_key])
    if request.param == "tcp":
        e.start_tcp()
    else:
        e.start_pty(link=str(tmp_path / "ttyKDLOCK"))
    yield e
    e.stop()


@pytest.fixture
def hub():
    return EventHub()


@pytest.fixture
def driver(emu, hub):
    d = LockDriver(emu.url, hub, timeout=WAIT, retry_interval=0.02, keepalive=None).start()
    yield d
    d.stop()


def now_ms():
    return int(time.time() * 1000)


def test_every_command(driver, emu):
    assert driver.info.lock_id == emu.lock_id and driver.info.public_key == emu.public_key
    assert driver.info.url == emu.url and driver.info.protocol == 1
    assert driver.read_version() == ("KDLOCK", 1, "emu-1.1")
    assert driver.info.site == P.SiteReading(P.SITE_NONE) and driver.info.site_code is None  # a blank dongle
    assert driver.read_site() == P.SiteReading(P.SITE_NONE)
    assert driver.read_id() == emu.lock_id
    assert driver.read_public_key() == emu.public_key
    before = now_ms()
    clock = driver.read_clock()
    assert before - 60_000 < clock < now_ms() + 60_000
    assert driver.get_ticket() is None
    state = driver.read_state()
    assert state["id"] == emu.lock_id and state["ticket"] == "0" and state["keys"] == "1"
    signed = driver.challenge(emu.public_key)
    assert before - 60_000 < signed < now_ms() + 60_000
    assert driver.verify(ExpectedLock(emu.lock_id, emu.public_key)) >= signed
    assert driver.command("ECHO", "hello") == ("hello",)
    with pytest.raises(LockRefused) as e:
        driver.command("NOPE")
    assert e.value.code == P.E_UNKNOWN


def test_ticket_put_get_over_the_wire(driver, emu, platform):
    emu.dongle.set_clock_offset(-3600)
    assert driver.read_clock() < now_ms() - 3_000_000
    moment = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    ticket = build_sync_ticket(platform, lock_id=emu.lock_id, site_code="11003", server_time=moment,
                               valid_until=moment + datetime.timedelta(hours=12))
    assert driver.put_ticket(ticket) >= int(moment.timestamp() * 1000)
    assert abs(driver.read_clock() - now_ms()) < 60_000
    assert driver.get_ticket() == ticket
    assert driver.read_state()["synced"] == str(int(moment.timestamp() * 1000))
    with pytest.raises(LockRefused) as e:
        driver.put_ticket(ticket)
    assert e.value.code == P.E_STALE and "拒绝了校时授权" in e.value.cause
    other = build_sync_ticket(Signer.generate(), lock_id=emu.lock_id, site_code="11003",
                              server_time=moment + datetime.timedelta(minutes=1),
                              valid_until=moment + datetime.timedelta(hours=12))
    with pytest.raises(LockRefused) as e:
        driver.put_ticket(other)
    assert e.value.code == P.E_TICKET
    assert driver.get_ticket() == ticket
    with pytest.raises(LockProtocolError):
        driver.put_ticket(b"x" * (P.MAX_TICKET_BYTES + 1))


def test_timeout_then_the_late_reply_is_never_taken_for_the_next(driver, emu):
    emu.reply_delay = 0.3
    with pytest.raises(LockTimeout) as e:
        driver.read_clock(timeout=0.05)
    assert "没有应答" in e.value.cause
    emu.reply_delay = 0.0
    # the late TIME reply arrives while KEY is pending: resync skips it
    assert driver.read_public_key() == emu.public_key
    assert driver.read_id() == emu.lock_id


def test_unplug_and_replug_publish_events_and_recover(driver, emu, hub):
    sub = hub.subscribe([EVENT_ATTACHED, EVENT_DETACHED])
    emu.unplug()
    gone = sub.wait_for(lambda ev: ev.name == EVENT_DETACHED, WAIT)
    assert gone is not None and gone.data["lock_id"] == emu.lock_id and gone.data["url"] == emu.url
    assert not driver.attached
    with pytest.raises(LockDisconnected):
        driver.read_id()
    emu.replug()
    back = sub.wait_for(lambda ev: ev.name == EVENT_ATTACHED, WAIT)
    assert back is not None and back.data["lock_id"] == emu.lock_id
    assert driver.read_id() == emu.lock_id
    assert driver.wait_attached(WAIT).lock_id == emu.lock_id
    # and once more, to show the cycle repeats
    emu.unplug()
    assert sub.wait_for(lambda ev: ev.name == EVENT_DETACHED, WAIT) is not None
    emu.replug()
    assert sub.wait_for(lambda ev: ev.name == EVENT_ATTACHED, WAIT) is not None
    assert driver.challenge(emu.public_key) > 0


def test_forged_signature_is_refused(driver, emu):
    emu.bad_signature = True
    with pytest.raises(WrongLockError) as e:
        driver.verify(ExpectedLock(emu.lock_id, emu.public_key))
    assert "身份验证失败" in e.value.cause
    with pytest.raises(WrongLockError):
        driver.challenge(emu.public_key)
    emu.bad_signature = False
    assert driver.challenge(emu.public_key) > 0


def test_wrong_dongle(driver, emu):
    other = Signer.generate().public_key
    with pytest.raises(WrongLockError) as e:
        driver.verify(ExpectedLock("KDLOCK-11003-01", emu.public_key))
    assert "不是本考点注册的机考锁" in e.value.cause and emu.lock_id in e.value.cause
    with pytest.raises(WrongLockError) as e:  # right id, another key: a cloned id
        driver.verify(ExpectedLock(emu.lock_id, other))
    assert "身份验证失败" in e.value.cause


def test_line_noise_and_overlong_lines_from_the_dongle_are_skipped(driver, emu):
    emu.garbage = True
    emu.overlong = True
    assert driver.read_id() == emu.lock_id
    assert driver.challenge(emu.public_key) > 0
    emu.garbage = emu.overlong = False
    emu.inject(b"\x00\xffnoise\n" + b"Z" * (P.MAX_LINE * 3) + b"\n")
    assert driver.read_public_key() == emu.public_key


def test_driver_refuses_requests_it_cannot_send(driver):
    for args in (("ECHO", "two words"), ("ECHO", "非ASCII"), ("ECHO", "x" * P.MAX_LINE), ("",)):
        with pytest.raises(LockProtocolError):
            driver.command(*args)
    assert driver.command("ECHO", "still-fine") == ("still-fine",)


def raw_port(url):
    return serial.serial_for_url(url, timeout=WAIT, write_timeout=WAIT)


def test_dongle_answers_garbage_and_overlong_requests(emu):
    port = raw_port(emu.url)
    try:
        def ask(data):
            port.write(data)
            return P.parse_reply(port.readline().rstrip(b"\r\n"))

        assert ask(b"\xff\xfe\x00\n").code == P.E_SYNTAX
        assert ask(b"A" * (P.MAX_LINE * 2) + b"\n").code == P.E_TOOLONG
        exact = b"ECHO " + b"x" * (P.MAX_LINE - 5)
        assert ask(exact + b"\n").fields == ("x" * (P.MAX_LINE - 5),)
        assert ask(exact + b"x\n").code == P.E_TOOLONG
        assert ask(b"\n\r\nVERSION\r\n").fields[0] == "KDLOCK"  # empty lines get no reply
        assert ask(b"TIME extra\n").code == P.E_ARG
    finally:
        port.close()


def test_a_second_host_is_turned_away_over_tcp(tmp_path):
    with LockEmulator(str(tmp_path / "lock")) as emu:
        emu.start_tcp()
        first = LockDriver(emu.url, keepalive=None).start()
        try:
            with pytest.raises(LockDisconnected):
                LockDriver(emu.url, keepalive=None, timeout=WAIT).start()
            assert first.read_id() == emu.lock_id
        finally:
            first.stop()


def test_no_dongle_at_the_url(tmp_path):
    with pytest.raises(LockNotFound) as e:
        LockDriver(str(tmp_path / "no-such-tty"), keepalive=None).start()
    assert "未检测到机考锁" in e.value.cause
    with pytest.raises(LockNotFound):
        LockDriver("socket://127.0.0.1:1", keepalive=None).start()
    with pytest.raises(LockNotFound):
        LockDriver("socket://nonsense", keepalive=None).start()


def test_a_device_that_is_not_a_dongle(tmp_path):
    """A TCP peer that answers every line with something else (an AT modem, say)."""
    import socket

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)

    def modem():
        conn, _ = server.accept()
        with conn:
            while conn.recv(4096):
                conn.sendall(b"OK\r\n")

    thread = threading.Thread(target=modem, daemon=True)
    thread.start()
    try:
        with pytest.raises(LockProtocolError) as e:
            LockDriver("socket://127.0.0.1:{}".format(server.getsockname()[1]), keepalive=None).start()
        assert "不是机考锁" in e.value.cause
    finally:
        server.close()
        thread.join(WAIT)


def test_start_without_wait_attaches_when_the_dongle_comes(tmp_path, hub):
    emu = LockEmulator(str(tmp_path / "lock"))
    emu.start_tcp()
    emu.unplug()
    sub = hub.subscribe([EVENT_ATTACHED])
    driver = LockDriver(emu.url, hub, retry_interval=0.02, keepalive=None).start(wait=False)
    try:
        assert not driver.attached
        emu.replug()
        assert sub.wait_for(lambda ev: True, WAIT) is not None
        assert driver.read_id() == emu.lock_id
    finally:
        driver.stop()
        emu.stop()


def test_keepalive_notices_a_dongle_that_stopped_answering(tmp_path, hub):
    with LockEmulator(str(tmp_path / "lock")) as emu:
        emu.start_tcp()
        sub = hub.subscribe([EVENT_DETACHED, EVENT_ATTACHED])
        driver = LockDriver(emu.url, hub, timeout=0.2, retry_interval=0.02, keepalive=0.05).start()
        try:
            emu.reply_delay = 5.0  # hangs, but the link stays up
            ev = sub.wait_for(lambda e: e.name == EVENT_DETACHED, WAIT)
            assert ev is not None and "keepalive" in ev.data["reason"]
            emu.reply_delay = 0.0
        finally:
            driver.stop()


@pytest.mark.skipif(os.name != "posix", reason="pty emulator")
def test_auto_detect_by_usb_id(tmp_path):
    with LockEmulator(str(tmp_path / "lock")) as emu:
        device = emu.start_pty()
        dongle = ListPortInfo(device, skip_link_detection=True)
        dongle.vid, dongle.pid = 0x1209, 0x4B44
        named = ListPortInfo("/dev/ttyACM9", skip_link_detection=True)
        named.description = "KDLOCK exam dongle"
        modem = ListPortInfo("/dev/ttyUSB0", skip_link_detection=True)
        modem.vid, modem.pid, modem.description = 0x0403, 0x6001, "FT232R USB UART"
        assert candidate_ports([modem, dongle, named]) == [device, "/dev/ttyACM9"]
        # the nonexistent ttyACM9 is probed after the pty and never reached; the modem never
        driver = LockDriver(None, ports=[modem, named, dongle], keepalive=None).start()
        try:
            assert driver.info.url == device and driver.read_id() == emu.lock_id
        finally:
            driver.stop()
        with pytest.raises(LockNotFound) as e:
            LockDriver(None, ports=[modem], keepalive=None).start()
        assert "1209:4B44" in e.value.detail


def _lines(stream, sink):
    for line in iter(stream.readline, ""):
        sink.put(line)


@pytest.mark.parametrize("mode", TRANSPORTS)
def test_emulator_command_line(tmp_path, hub, mode):
    where = ["--tcp", "127.0.0.1:0"] if mode == "tcp" else ["--pty", "--link", str(tmp_path / "tty")]
    proc = subprocess.Popen(
        [sys.executable, "-m", "kd.lock.emulator", "--state", str(tmp_path / "state"), "--lock-id", "KL-CLI1",
         "--site", "11003", "--clock-offset", "-120"] + where,
        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    out = queue.Queue()
    threading.Thread(target=_lines, args=(proc.stdout, out), daemon=True).start()
    try:
        url = out.get(timeout=30).strip()
        assert url.startswith("socket://127.0.0.1:") if mode == "tcp" else url == str(tmp_path / "tty")
        sub = hub.subscribe([EVENT_ATTACHED, EVENT_DETACHED])
        driver = LockDriver(url, hub, retry_interval=0.02, keepalive=None).start()
        try:
            assert driver.read_id() == "KL-CLI1" and driver.info.site_code == "11003"
            assert driver.read_clock() < now_ms() - 60_000
            proc.stdin.write("oldfw on\nunplug\n")  # applied in order: revision 1 when replugged
            proc.stdin.flush()
            assert sub.wait_for(lambda ev: ev.name == EVENT_DETACHED, WAIT) is not None
            proc.stdin.write("replug\n")
            proc.stdin.flush()
            assert sub.wait_for(lambda ev: ev.name == EVENT_ATTACHED, WAIT) is not None
            assert driver.read_id() == "KL-CLI1"
            assert driver.info.site == P.SiteReading(P.SITE_UNREPORTED)
        finally:
            driver.stop()
        proc.stdin.write("quit\n")
        proc.stdin.flush()
        assert proc.wait(WAIT) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# --- SITE (protocol revision 2) ------------------------------------------------------


@pytest.mark.parametrize("mode", TRANSPORTS)
def test_attach_reads_the_registered_site(tmp_path, hub, mode):
    with LockEmulator(str(tmp_path / "lock"), site_code="11003") as emu:
        url = emu.start_tcp() if mode == "tcp" else emu.start_pty(link=str(tmp_path / "tty"))
        sub = hub.subscribe([EVENT_ATTACHED, EVENT_DETACHED])
        driver = LockDriver(url, hub, timeout=WAIT, retry_interval=0.02, keepalive=None).start()
        try:
            assert driver.info.site == P.SiteReading(P.SITE_REGISTERED, "11003")
            assert driver.info.site_code == "11003" and driver.info.firmware == "emu-1.1"
            assert driver.read_site() == P.SiteReading(P.SITE_REGISTERED, "11003")
            assert driver.read_state()["site"] == "11003"
            # the same dongle, replugged with older firmware: asked again at attach, still attaches
            emu.unplug()
            assert sub.wait_for(lambda ev: ev.name == EVENT_DETACHED, WAIT) is not None
            emu.old_firmware = True
            emu.replug()
            assert sub.wait_for(lambda ev: ev.name == EVENT_ATTACHED, WAIT) is not None
            assert driver.wait_attached(WAIT).site == P.SiteReading(P.SITE_UNREPORTED)
            assert driver.info.firmware == "emu-1.0" and driver.info.site_code is None
            assert driver.read_site() == P.SiteReading(P.SITE_UNREPORTED)
            assert driver.challenge(emu.public_key) > 0  # a revision-1 dongle works as before
        finally:
            driver.stop()


class _ScriptedDongle:
    """A real ``Dongle`` on a TCP port whose SITE answer the test chooses (a broken firmware)."""

    def __init__(self, state_dir, site_reply):
        import socket

        self.dongle = Dongle(state_dir, site_code="11003")
        self.site_reply = site_reply
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(1)
        self.url = "socket://127.0.0.1:{}".format(self.server.getsockname()[1])
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        try:
            conn, _ = self.server.accept()
        except OSError:
            return
        framer = P.LineFramer()
        with conn:
            while True:
                data = conn.recv(4096)
                if not data:
                    return
                for frame in framer.feed(data):
                    reply = self.site_reply if frame == b"SITE" else self.dongle.handle(frame)
                    if reply:
                        conn.sendall(reply)

    def close(self):
        self.server.close()
        self.thread.join(WAIT)


@pytest.mark.parametrize("reply", [b"OK 11O03\n", b"OK 11003 11004\n", b"OK\n", b"ERR E_INTERNAL flash\n"])
def test_a_malformed_site_answer_is_a_protocol_error(tmp_path, reply):
    peer = _ScriptedDongle(str(tmp_path / "lock"), reply)
    try:
        with pytest.raises(LockProtocolError) as e:
            LockDriver(peer.url, keepalive=None, timeout=WAIT).start()
        assert "SITE" in e.value.detail
    finally:
        peer.close()

