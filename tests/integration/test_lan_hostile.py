"""Hostile proctors: garbage, oversized frames, lies about lengths, trickles, floods, brute force.

Each test uses short deadlines through ``LanOptions`` so it is quick, and ends by
checking that an honest proctor is still served.
"""

import hashlib
import json
import os
import socket
import struct
import threading

import pytest

from kd.lan import framing
from kd.lan.client import LanError
from tests.integration.lan_support import OTHER_IP, LanSite, closed_by_peer, recv, send


@pytest.fixture
def site(tmp_path):
    s = LanSite(tmp_path, idle_timeout=1.5, request_timeout=3.0, min_rate=2000.0, rate_grace=0.5,
                max_per_ip=8, max_connections=64)
    yield s
    s.close()


def still_serves(site, ip=OTHER_IP):
    room = site.rooms()[-1]
    c = site.client(ip)
    try:
        reply = c.register(room, site.reg_code(room))
        return reply["room"] == room
    finally:
        c.close()


def error_then_close(sock):
    frame = recv(sock)
    assert frame.header["type"] == "error" and frame.header["seq"] == 0
    assert closed_by_peer(sock)
    return frame.header["code"]


@pytest.mark.parametrize("payload,code", [
    (struct.pack(">I", 5) + b"hello", "E_FRAME"),                       # not JSON
    (struct.pack(">I", 2) + b"[]", "E_FRAME"),                          # not an object
    (struct.pack(">I", 2) + b"\xff\xfe", "E_FRAME"),                    # not UTF-8
    (struct.pack(">I", 0), "E_FRAME"),                                  # empty header
    (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "E_TOO_LARGE"),              # a web browser
    (framing.encode_frame({"type": "hello", "seq": 1})[:4] + b'{"v":2,"type":"hello","seq":1,"body_len":0}'
     .ljust(len(framing.encode_frame({"type": "hello", "seq": 1})) - 4), "E_VERSION"),
])
def test_garbage_frames_are_refused_and_closed(site, payload, code):
    sock = site.raw()
    sock.sendall(payload)
    assert error_then_close(sock) == code
    assert still_serves(site)


def test_header_fields_are_checked(site):
    for header in ({"v": 1, "type": "hello", "seq": -1, "body_len": 0},
                   {"v": 1, "type": "Hello!", "seq": 1, "body_len": 0},
                   {"v": 1, "type": "hello", "seq": 1},
                   {"v": 1, "type": "hello", "seq": 1, "body_len": True},
                   {"v": "1", "type": "hello", "seq": 1, "body_len": 0}):
        raw = json.dumps(header).encode()
        sock = site.raw()
        sock.sendall(struct.pack(">I", len(raw)) + raw)
        assert error_then_close(sock) == "E_FRAME", header
    sock = site.raw()
    raw = b'{"v":1,"type":"hello","seq":1,"body_len":0,"x":NaN}'
    sock.sendall(struct.pack(">I", len(raw)) + raw)
    assert error_then_close(sock) == "E_FRAME"


def test_oversized_header_is_refused_before_it_is_read(site):
    sock = site.raw()
    sock.sendall(struct.pack(">I", framing.HEADER_MAX + 1))  # and nothing else: the server must not wait
    assert error_then_close(sock) == "E_TOO_LARGE"
    sock = site.raw()
    sock.sendall(struct.pack(">I", 0xFFFFFFFF))
    assert error_then_close(sock) == "E_TOO_LARGE"
    assert still_serves(site)


def test_oversized_body_is_refused_before_it_is_read(site):
    sock = site.raw()
    raw = json.dumps({"v": 1, "type": "upload_chunk", "seq": 1, "body_len": framing.BODY_MAX + 1}).encode()
    sock.sendall(struct.pack(">I", len(raw)) + raw)
    assert error_then_close(sock) == "E_TOO_LARGE"
    assert still_serves(site)


def test_a_body_where_none_belongs_is_refused(site):
    c = site.registered()
    with pytest.raises(LanError) as e:
        c.request("hello", body=b"surprise")
    assert e.value.code == "E_ARG"
    assert c.hello()["room"] == c.room  # the frame was consumed whole: still in step


def test_body_longer_than_declared(site, tmp_path):
    room = site.rooms()[0]
    session = site.sessions_of(room)[0]
    c = site.registered(room)
    data = site.result_package(room, session)
    sha = hashlib.sha256(data).hexdigest()
    sock = site.raw()
    send(sock, {"type": "upload_begin", "seq": 1, "room": room, "token": c.token, "session": session,
                "size": len(data), "sha256": sha})
    assert recv(sock).header["offset"] == 0
    head = framing.encode_header({"type": "upload_chunk", "seq": 2, "room": room, "token": c.token,
                                  "offset": 0}, 100)
    sock.sendall(head + data[:100] + b"\x00\x00\x40\x01" + data[100:3000])  # 2900 bytes more than declared
    assert recv(sock).header["offset"] == 100  # the declared 100 bytes, nothing more
    assert error_then_close(sock) == "E_TOO_LARGE"  # the rest is read as a frame and refused
    assert site.server.partial_uploads()[0]["bytes"] == 100
    path = tmp_path / "r.zip"
    path.write_bytes(data)
    assert c.upload(str(path), session)["sha256"] == sha  # resumes at 100 and the result is intact


def test_silent_connection_is_dropped_at_the_idle_deadline(site):
    sock = site.raw()
    assert error_then_close(sock) == "E_TIMEOUT"


def test_stalled_frame_is_dropped(site):
    sock = site.raw()
    raw = framing.encode_frame({"type": "hello", "seq": 1, "room": "x", "token": "y"})
    sock.sendall(raw[:10])  # and then nothing: the rate rule cuts it before the idle deadline
    assert error_then_close(sock) == "E_SLOW"


def test_one_byte_per_tick_trickle_is_dropped_by_the_rate_rule(site):
    sock = site.raw()
    raw = framing.encode_frame({"type": "hello", "seq": 1, "room": "11003001", "token": "t" * 900})
    stop = threading.Event()

    def trickle():
        for i in range(len(raw)):
            try:
                sock.send(raw[i:i + 1])
            except OSError:
                return
            if stop.wait(0.05):  # ~20 bytes/s against a 2000 bytes/s minimum
                return

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    try:
        frame = recv(sock)
        assert frame.header["code"] == "E_SLOW"
    finally:
        stop.set()
        thread.join(5)
    assert still_serves(site)


def test_slow_upload_chunk_is_dropped(site):
    c = site.registered()
    room = c.room
    session = site.sessions_of(room)[0]
    sock = site.raw()
    send(sock, {"type": "upload_begin", "seq": 1, "room": room, "token": c.token, "session": session,
                "size": 100000, "sha256": "a" * 64})
    assert recv(sock).header["offset"] == 0
    head = framing.encode_header({"type": "upload_chunk", "seq": 2, "room": room, "token": c.token,
                                  "offset": 0}, 2000)
    sock.sendall(head + b"x" * 500)  # a 2 kB chunk (due within 0.5 s + 1 s at 2000 B/s): 500 bytes arrive
    assert error_then_close(sock) == "E_SLOW"
    assert site.server.partial_uploads()[0]["bytes"] == 0  # nothing of the torn chunk was written


@pytest.fixture
def patient_site(tmp_path):
    """Idle deadline longer than the test, so no admitted connection is dropped meanwhile."""
    s = LanSite(tmp_path, idle_timeout=60.0, max_per_ip=8, max_connections=64)
    yield s
    s.close()


def test_500_idle_connections_cannot_exhaust_the_server(patient_site):
    site = patient_site
    before = threading.active_count()
    cap = site.options.max_per_ip
    refused = site.ctx.hub.subscribe(["lan.refused"])
    socks = []
    try:
        for _ in range(500):
            socks.append(socket.create_connection(("127.0.0.1", site.port), timeout=10))
        for _ in range(500 - cap):
            assert refused.get(10) is not None
        snap = site.server.snapshot()
        assert snap["connections"] == cap and snap["refused"] == 500 - cap
        assert threading.active_count() <= before + cap + 1
        assert still_serves(site, ip=OTHER_IP)  # another machine is not locked out
        busy = waiting = 0
        for s in socks:  # the refused ones were told why; the admitted ones hear nothing yet
            s.setblocking(False)
            try:
                data = s.recv(65536)
            except BlockingIOError:
                waiting += 1
                continue
            except ConnectionResetError:
                busy += 1
                continue
            (n,) = struct.unpack(">I", data[:4])
            header = json.loads(data[4:4 + n])
            assert header["type"] == "error" and header["code"] == "E_BUSY" and header["retry_after"] > 0
            busy += 1
        assert (busy, waiting) == (500 - cap, cap)
    finally:
        for s in socks:
            s.close()


def test_total_connection_cap(tmp_path):
    site = LanSite(tmp_path, max_connections=4, max_per_ip=100, idle_timeout=30)
    try:
        socks = [site.raw() for _ in range(4)]
        extra = site.raw(OTHER_IP)
        frame = recv(extra)
        assert frame.header["code"] == "E_BUSY"
        assert closed_by_peer(extra)
        sub = site.ctx.hub.subscribe(["lan.closed"])
        socks[0].close()
        assert sub.get(10) is not None
        assert still_serves(site)  # a slot is free again
    finally:
        site.close()


def test_wrong_code_brute_force_is_stopped(site):
    room = site.rooms()[0]
    right = site.reg_code(room)
    c = site.client()
    tried = 0
    for i in range(10):
        guess = "{:08d}".format(i).translate(str.maketrans("0123456789", "ABCDEFGHIJ"))
        if guess == right:
            continue
        with pytest.raises(LanError) as e:
            c.register(room, guess)
        assert e.value.code == "E_REGISTER"
        tried += 1
    while tried < 10:
        with pytest.raises(LanError):
            c.register(room, "ZZZZZZZ" + chr(65 + tried))
        tried += 1
    with pytest.raises(LanError) as e:
        c.register(room, right)  # the right code no longer helps for a while, from this address
    assert e.value.code == "E_REGISTER" and "过多" in e.value.cause
    assert not c.connected  # each refused try before authenticating closes the connection
    proctor = site.client(OTHER_IP)  # the room's own proctor, on its own address, is not locked out
    assert proctor.register(room, right)["room"] == room
    # the guessing IP is blocked for other rooms as well after 30 tries
    other_room = site.rooms()[1]
    for i in range(20):
        with pytest.raises(LanError):
            c.register("9{:07d}".format(i), "AAAAAAAA")
    with pytest.raises(LanError) as e:
        c.register(other_room, site.reg_code(other_room))
    assert "过多" in e.value.cause
    assert still_serves(site, ip=OTHER_IP)  # an honest machine elsewhere registers


def test_client_chosen_names_never_reach_the_file_system(site):
    c = site.registered()
    for session in ("../../etc", "1/../2", "a" * 40, "", "CON\x00"):
        with pytest.raises(LanError) as e:
            c.request("upload_begin", {"session": session, "size": 10, "sha256": "a" * 64})
        assert e.value.code == "E_ARG"
    assert os.listdir(site.server.upload_dir) == []
