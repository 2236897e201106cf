"""The control channel's frames (kd.control.framing, docs/control-protocol.md §2) over a real socket pair."""

import json
import socket
import threading
import time

import pytest

from kd.control import framing
from kd.control.server import proof


def test_the_documented_example_is_byte_exact():
    frame = framing.encode({"type": "line", "text": "密码"})
    payload = '{"type":"line","text":"密码"}'.encode()
    assert frame == b"\x00\x00\x00\x1f" + payload and len(payload) == 31  # docs/control-protocol.md §2


def test_round_trip_in_pieces(pair):
    a, b = pair
    obj = {"type": "out", "stream": "stdout", "text": "考场 11003001\n" * 1000}
    data = framing.encode(obj)

    def trickle():
        for i in range(0, len(data), 777):
            a.sendall(data[i:i + 777])

    writer = threading.Thread(target=trickle)
    writer.start()
    assert framing.recv(b, framing.REPLY_MAX) == obj
    writer.join()


def test_clean_end_between_frames_is_none(pair):
    a, b = pair
    framing.send(a, {"type": "exit", "code": 0})
    a.shutdown(socket.SHUT_WR)
    assert framing.recv(b, framing.REPLY_MAX) == {"type": "exit", "code": 0}
    assert framing.recv(b, framing.REPLY_MAX) is None


@pytest.mark.parametrize("raw", [
    b"\x00\x00\x00\x10{\"type\":",          # the stream ends inside the payload
    b"\x00\x00",                            # ... inside the length
])
def test_a_cut_frame_is_an_error(pair, raw):
    a, b = pair
    a.sendall(raw)
    a.shutdown(socket.SHUT_WR)
    with pytest.raises(framing.FrameError):
        framing.recv(b, framing.REQUEST_MAX)


def test_an_oversized_length_is_refused_before_its_payload(pair):
    a, b = pair
    a.sendall(framing.PREFIX.pack(framing.REQUEST_MAX + 1))  # no payload follows: nothing is waited for
    with pytest.raises(framing.FrameError, match="outside"):
        framing.recv(b, framing.REQUEST_MAX)
    a.sendall(b"POST / HTTP/1.1\r\n")  # a browser's request reads as a 1.3 GB length
    with pytest.raises(framing.FrameError, match="outside"):
        framing.recv(b, framing.REQUEST_MAX)


@pytest.mark.parametrize("payload", [b"[1, 2]", b"{\"text\": 1}", b"{\"type\": 3}", b"\xff\xfe{}", b"{bad"])
def test_a_payload_must_be_an_object_with_a_type(pair, payload):
    a, b = pair
    a.sendall(framing.PREFIX.pack(len(payload)) + payload)
    with pytest.raises(framing.FrameError):
        framing.recv(b, framing.REQUEST_MAX)


def test_the_deadline_and_the_cancel_end_a_wait(pair):
    a, b = pair
    a.sendall(framing.encode({"type": "line", "text": "x"})[:6])  # half a frame, then silence
    with pytest.raises(framing.FrameTimeout):
        framing.recv(b, framing.REQUEST_MAX, deadline=time.monotonic() + 0.2)
    stop = threading.Event()
    threading.Timer(0.1, stop.set).start()
    with pytest.raises(framing.FrameTimeout, match="cancelled"):
        framing.recv(b, framing.REQUEST_MAX, cancelled=stop.is_set)


def test_encode_is_compact_utf8_json():
    frame = framing.encode({"type": "run", "argv": ["revoke", "11003001"], "cwd": "D:\\考点"})
    (length,) = framing.PREFIX.unpack(frame[:4])
    assert length == len(frame) - 4
    assert json.loads(frame[4:].decode("utf-8"))["cwd"] == "D:\\考点"
    assert b" " not in frame[4:] and "考点".encode() in frame


def test_the_documented_proofs():
    """docs/control-protocol.md §3, worked example."""
    secret = bytes(range(32))
    server, client = "00112233445566778899aabbccddeeff", "ffeeddccbbaa99887766554433221100"
    assert proof(secret, "client", server, client) == \
        "ba4d39b2c377ce44060740c9feb1aaf6998904022d290b4655890f6ff4bd2ddd"
    assert proof(secret, "server", server, client) == \
        "c03385f402585dcf73e58573780a0966828d98c5b5e2258ca0b3013bfbf10711"
    assert framing.encode({"type": "exit", "code": 0})[:4] == b"\x00\x00\x00\x18"
