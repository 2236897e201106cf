"""KDLAN frames over a real socket pair: round trip, caps, header checks, deadlines."""

import json
import struct

import pytest

from kd.lan import framing
from kd.lan.framing import BODY_MAX, HEADER_MAX, Closed, FrameError, Limits

FAST = Limits(idle=2.0, request=2.0, min_rate=1000.0, grace=0.2)


def test_round_trip_with_and_without_body(pair):
    a, b = pair
    framing.send_frame(a, {"type": "hello", "seq": 1, "room": "考场"})
    body = bytes(range(256)) * 300  # above the single-write threshold
    framing.send_frame(a, {"type": "upload_chunk", "seq": 2, "offset": 0}, body)
    first = framing.read_frame(b, FAST)
    assert first.header == {"type": "hello", "seq": 1, "room": "考场", "v": 1, "body_len": 0}
    assert first.body == b""
    second = framing.read_frame(b, FAST)
    assert (second.type, second.seq, bytes(second.body)) == ("upload_chunk", 2, body)
    a.close()
    with pytest.raises(Closed):
        framing.read_frame(b, FAST)


def test_wire_layout():
    raw = framing.encode_frame({"type": "bye", "seq": 7}, b"xy")
    (n,) = struct.unpack(">I", raw[:4])
    assert json.loads(raw[4:4 + n]) == {"type": "bye", "seq": 7, "v": 1, "body_len": 2}
    assert raw[4 + n:] == b"xy"


def test_sender_refuses_what_the_receiver_would_refuse():
    with pytest.raises(ValueError):
        framing.encode_frame({"type": "x", "seq": 1}, b"\0" * (BODY_MAX + 1))
    with pytest.raises(ValueError):
        framing.encode_frame({"type": "x", "seq": 1, "pad": "a" * HEADER_MAX})
    with pytest.raises(ValueError):
        framing.encode_frame({"type": "Bad Type", "seq": 1})
    with pytest.raises(ValueError):
        framing.encode_frame({"type": "x", "seq": -1})
    with pytest.raises(ValueError):
        framing.encode_frame({"type": "x", "seq": 1, "n": float("nan")})


@pytest.mark.parametrize("raw,code", [
    (b'{"v":1,"type":"x","seq":1,"body_len":0', "E_FRAME"),
    (b'{"v":2,"type":"x","seq":1,"body_len":0}', "E_VERSION"),
    (b'{"v":true,"type":"x","seq":1,"body_len":0}', "E_FRAME"),
    (b'{"v":1,"type":"x","seq":2147483648,"body_len":0}', "E_FRAME"),
    (b'{"v":1,"type":"x","seq":1,"body_len":-1}', "E_FRAME"),
    (b'{"v":1,"type":"x","seq":1,"body_len":1048577}', "E_TOO_LARGE"),
    (b'{"v":1,"type":"x","seq":1,"body_len":0,"n":Infinity}', "E_FRAME"),
    (b"[" * 5000 + b"]" * 5000, "E_FRAME"),
])
def test_bad_headers(raw, code):
    with pytest.raises(FrameError) as e:
        framing.decode_header(raw)
    assert e.value.code == code


def test_caps_checked_before_reading(pair):
    a, b = pair
    a.sendall(struct.pack(">I", HEADER_MAX + 1))
    with pytest.raises(FrameError) as e:
        framing.read_frame(b, FAST)
    assert e.value.code == "E_TOO_LARGE"


def test_idle_and_stall_deadlines(pair):
    a, b = pair
    with pytest.raises(FrameError) as e:
        framing.read_frame(b, Limits(idle=0.2, request=2.0, min_rate=1000.0, grace=0.2))
    assert e.value.code == "E_TIMEOUT"
    a.sendall(framing.encode_frame({"type": "hello", "seq": 1})[:6])
    with pytest.raises(FrameError) as e:
        framing.read_frame(b, FAST)
    assert e.value.code == "E_SLOW"


def test_absolute_deadline(pair):
    a, b = pair
    a.sendall(framing.encode_frame({"type": "hello", "seq": 1})[:6])
    with pytest.raises(FrameError) as e:
        framing.read_frame(b, Limits(idle=2.0, request=0.2, min_rate=1.0, grace=10.0))
    assert e.value.code == "E_TIMEOUT"


def test_end_of_stream_inside_a_frame(pair):
    a, b = pair
    a.sendall(framing.encode_frame({"type": "hello", "seq": 1})[:10])
    a.close()
    with pytest.raises(FrameError) as e:
        framing.read_frame(b, FAST)
    assert e.value.code == "E_FRAME"
