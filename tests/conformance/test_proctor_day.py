"""A proctor machine written from docs/lan-protocol.md alone, through a whole day against a real server.

``Proctor`` below uses nothing of ``kd.lan``: a socket, ``struct`` for the length prefix,
``json`` for the header, ``hashlib`` and ``zipfile`` for the room data and the result
package, each as the document (and docs/formats.md, which it points to for the files)
describes them. The site side is real: the platform simulator and the dongle emulator
(``tests.support.env``), the core services, and a ``LanServer`` on 127.0.0.1 port 0.

The document's examples are the yardstick: every request the proctor sends has the keys
of a documented request of its type (§7), and every reply it gets has the *shape* of a
documented reply of its kind — the same keys and JSON types, nested (``5`` is not ``5.0``)
— so the examples cannot drift from the server. ``test_doc_examples_are_byte_exact``
checks the examples themselves: each length prefix is its header's real length, and the
header is exactly the compact JSON a proctor would send.
"""

import datetime
import hashlib
import io
import json
import os
import re
import socket
import struct
import zipfile
from typing import Any, Dict, Iterable, List, NamedTuple, Optional, Tuple

import pytest

from kd.core import model
from kd.lan.server import LanOptions, LanServer
from tests.integration.live_helpers import loaded_env, sync
from tests.support.fixtures import closed_after

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DOC = os.path.join(ROOT, "docs", "lan-protocol.md")
LOOPBACK = "127.0.0.1"
CST = datetime.timezone(datetime.timedelta(hours=8))
SEQ_MAX = 2 ** 31 - 1


# -- the document ------------------------------------------------------------------------

class DocFrame(NamedTuple):
    direction: str  # ">" proctor to server, "<" server to proctor
    prefix: int  # the length prefix as written
    text: str  # the header as written (continuation lines joined)
    body: Optional[int]  # "+ N bytes"
    line: int  # where it starts in the document


_FRAME = re.compile(r"^([<>]) \[((?:[0-9a-f]{2} ){3}[0-9a-f]{2})\] (.*)$")
_BODY = re.compile(r" \+ (\d+) bytes$")


def _read_doc() -> str:
    with open(DOC, encoding="utf-8") as f:
        return f.read()


def doc_blocks(text: str) -> List[List[DocFrame]]:
    """The example frames of each code block, in order (notation: docs/lan-protocol.md §2)."""
    blocks: List[List[DocFrame]] = []
    frames: List[DocFrame] = []
    pending: Optional[List[Any]] = None
    inside = False

    def flush() -> None:
        if pending is not None:
            body = _BODY.search(pending[2])
            header = pending[2][:body.start()] if body else pending[2]
            frames.append(DocFrame(pending[0], pending[1], header, int(body.group(1)) if body else None, pending[3]))

    for number, line in enumerate(text.split("\n"), 1):
        if line.startswith("```"):
            flush()
            pending = None
            if inside and frames:
                blocks.append(frames)
            frames = []
            inside = not inside
            continue
        if not inside:
            continue
        match = _FRAME.match(line)
        if match:
            flush()
            pending = [match.group(1), int(match.group(2).replace(" ", ""), 16), match.group(3), number]
        elif pending is not None and line.startswith("    "):
            pending[2] += line[4:]
        else:
            flush()
            pending = None
    return blocks


def shape(value: Any) -> Any:
    """Keys and JSON types, nested: what a reply must have in common with a documented one."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    if isinstance(value, list):
        shapes = [shape(item) for item in value]
        assert all(s == shapes[0] for s in shapes), value
        return ("list", shapes[0] if shapes else None)
    return type(value).__name__  # bool, int, float, str, NoneType


class Doc:
    """What docs/lan-protocol.md says, as the proctor below uses it."""

    def __init__(self) -> None:
        self.text = _read_doc()
        self.blocks = doc_blocks(self.text)
        self.requests: Dict[str, List[Dict[str, Any]]] = {}
        self.replies: Dict[str, List[Dict[str, Any]]] = {}  # request type -> its ok replies
        self.errors: Dict[str, List[Dict[str, Any]]] = {}  # code -> error replies
        for block in self.blocks:
            last: Optional[Dict[str, Any]] = None
            for frame in block:
                header = json.loads(frame.text)
                if frame.direction == ">":
                    self.requests.setdefault(header["type"], []).append(header)
                    last = header
                elif header["type"] == "ok":
                    assert last is not None, frame
                    self.replies.setdefault(last["type"], []).append(header)
                else:
                    self.errors.setdefault(header["code"], []).append(header)
        # §5: the closing codes ("| `E_…` | yes |")
        self.closing = set(re.findall(r"^\| `(E_[A-Z_]+)` \| yes \|", self.text, re.M))
        # §4 heartbeat: the fields of `state` (the table after "Request: `room`, `token`, `state`")
        table = self.text.split("Request: `room`, `token`, `state`", 1)[1].split("\n\n", 2)[1]
        self.state_fields = set(re.findall(r"^\| `([a-z_]+)` \|", table, re.M))

    def check_request(self, header: Dict[str, Any]) -> None:
        documented = self.requests.get(header["type"])
        assert documented, "no example of a {} request in the document".format(header["type"])
        assert any(set(header) == set(d) for d in documented), (header, documented)
        if "state" in header:
            assert set(header["state"]) <= self.state_fields, header["state"]

    def check_reply(self, kind: str, reply: Dict[str, Any]) -> None:
        documented = self.replies.get(kind)
        assert documented, "no example of a reply to {} in the document".format(kind)
        assert any(shape(reply) == shape(d) for d in documented), (reply, documented)

    def check_error(self, reply: Dict[str, Any]) -> None:
        documented = self.errors.get(reply["code"])
        assert documented, "no example of a {} reply in the document".format(reply["code"])
        assert any(shape(reply) == shape(d) for d in documented), (reply, documented)


DOCUMENT = Doc()


def test_doc_examples_are_byte_exact() -> None:
    frames = [frame for block in DOCUMENT.blocks for frame in block]
    assert len(frames) >= 40
    for frame in frames:
        raw = frame.text.encode("utf-8")
        where = "docs/lan-protocol.md line {}".format(frame.line)
        assert frame.prefix == len(raw), where
        header = json.loads(frame.text)
        assert json.dumps(header, ensure_ascii=False, separators=(",", ":"), allow_nan=False) == frame.text, where
        assert header["v"] == 1 and re.fullmatch(r"[a-z0-9_]{1,32}", header["type"]), where
        assert isinstance(header["seq"], int) and 0 <= header["seq"] <= SEQ_MAX, where
        assert header["body_len"] == (frame.body or 0), where
        assert (frame.body is not None) == (header["type"] in ("upload_chunk",) or
                                            (header["type"] == "ok" and header["body_len"] > 0)), where
        if frame.direction == ">":
            assert header["seq"] != 0, where  # §1: 0 marks the server's closing errors
        elif header["type"] == "error" and header["code"] in DOCUMENT.closing:
            assert header["seq"] == 0, where
    for block in DOCUMENT.blocks:  # a reply echoes the seq of the request before it
        request = None
        for frame in block:
            header = json.loads(frame.text)
            if frame.direction == ">":
                request = header
            elif header["seq"] != 0:
                assert request is not None and header["seq"] == request["seq"], frame.line
                request = None
    # §2's worked example names its prefix and length in prose
    match = re.search(r"is 4 \+ (\d+) bytes on the wire: the length prefix\s+`([0-9a-f ]+)` \((\d+)\)", DOCUMENT.text)
    assert match is not None
    first = next(b for b in DOCUMENT.blocks if b[0].line > DOCUMENT.text[:match.start()].count("\n"))[0]
    assert int(match.group(1)) == int(match.group(3)) == int(match.group(2).replace(" ", ""), 16) == first.prefix


def test_every_message_and_closing_code_is_shown() -> None:
    for kind in ("register", "hello", "data", "data_imported", "heartbeat", "permit", "upload_begin",
                 "upload_chunk", "upload_commit", "bye"):
        assert kind in DOCUMENT.requests and kind in DOCUMENT.replies, kind
    assert DOCUMENT.closing == {"E_FRAME", "E_TOO_LARGE", "E_VERSION", "E_TIMEOUT", "E_SLOW", "E_BUSY", "E_SHUTDOWN"}


# -- the proctor (from the document) -------------------------------------------------------

class Refused(Exception):
    """An error reply."""

    def __init__(self, header: Dict[str, Any]) -> None:
        super().__init__("{}: {}".format(header.get("code"), header.get("message")))
        self.header = header
        self.code = header.get("code")


class Proctor:
    """One room's proctor machine: one connection, strict request/reply (§1)."""

    def __init__(self, port: int, ip: str = LOOPBACK) -> None:
        self.port = port
        self.ip = ip
        self.sock: Optional[socket.socket] = None
        self.seq = 0
        self.room: Optional[str] = None
        self.token: Optional[str] = None
        self.heartbeat_s: Any = None
        self.raw_replies: List[bytes] = []

    def connect(self) -> None:
        self.sock = socket.create_connection((LOOPBACK, self.port), timeout=30, source_address=(self.ip, 0))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def send(self, header: Dict[str, Any], body: bytes = b"") -> None:
        raw = json.dumps(header, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        assert 1 <= len(raw) <= 16384 and len(body) <= 1048576
        assert self.sock is not None
        self.sock.sendall(struct.pack(">I", len(raw)) + raw + body)  # one go (§3, the minimum rate)

    def _exact(self, n: int) -> bytes:
        assert self.sock is not None
        out = bytearray()
        while len(out) < n:
            got = self.sock.recv(n - len(out))
            if not got:
                raise EOFError("connection closed after {} of {} bytes".format(len(out), n))
            out += got
        return bytes(out)

    def receive(self) -> Tuple[Dict[str, Any], bytes]:
        (length,) = struct.unpack(">I", self._exact(4))
        assert 1 <= length <= 16384
        raw = self._exact(length)
        self.raw_replies.append(raw)
        header = json.loads(raw.decode("utf-8"))
        assert header["v"] == 1 and 0 <= header["body_len"] <= 1048576
        return header, self._exact(header["body_len"])

    def closed_by_server(self) -> bool:
        """True when the server has closed the connection (EOF, nothing more to read)."""
        assert self.sock is not None
        try:
            return self.sock.recv(1) == b""
        except ConnectionError:
            return True

    def request(self, kind: str, body: bytes = b"", auth: bool = True, **fields: Any) -> Tuple[Dict[str, Any], bytes]:
        """Send one request, return the ok reply's header and body; ``Refused`` for an error reply."""
        if self.sock is None:
            self.connect()
        self.seq = self.seq + 1 if self.seq < SEQ_MAX else 1
        header: Dict[str, Any] = {"v": 1, "type": kind, "seq": self.seq, "body_len": len(body)}
        if auth:
            header["room"], header["token"] = self.room, self.token
        header.update(fields)
        DOCUMENT.check_request(header)
        self.send(header, body)
        reply, reply_body = self.receive()
        if reply["type"] == "error":
            DOCUMENT.check_error(reply)
            assert reply["seq"] in (0, header["seq"])
            if reply["code"] in DOCUMENT.closing:
                assert reply["seq"] == 0  # §1: a closing code answers no request
            if reply["code"] in DOCUMENT.closing or reply.get("closing") is True:
                assert self.closed_by_server()
                self.close()
            raise Refused(reply)
        assert reply["type"] == "ok" and reply["seq"] == header["seq"]
        assert reply["body_len"] == len(reply_body)
        DOCUMENT.check_reply(kind, reply)
        return reply, reply_body

    # the messages of §4
    def register(self, room: str, reg_code: str) -> Dict[str, Any]:
        reply, _ = self.request("register", auth=False, room=room, reg_code=reg_code, client="conformance/1")
        self.room, self.token, self.heartbeat_s = room, reply["token"], reply["heartbeat_s"]
        return reply

    def download(self, expected_sha256: str, chunk: int = 1000) -> bytes:
        data, size, sha = bytearray(), None, None
        while size is None or len(data) < size:
            reply, body = self.request("data", offset=len(data), length=chunk)
            if sha is not None and reply["sha256"] != sha:  # the site reloaded: again from 0
                data, size, sha = bytearray(), None, None
                continue
            sha, size = reply["sha256"], reply["size"]
            assert reply["offset"] == len(data) and len(body) == min(chunk, size - len(data))
            data += body
        assert hashlib.sha256(bytes(data)).hexdigest() == sha == expected_sha256
        return bytes(data)

    def heartbeat(self, session: str, started: bool = False, ended: bool = False, candidates: int = 0,
                  logged_in: int = 0, in_exam: int = 0, **extra: Any) -> Dict[str, Any]:
        state = {"session": session, "started": started, "ended": ended, "candidates": candidates,
                 "logged_in": logged_in, "in_exam": in_exam, **extra}
        return self.request("heartbeat", state=state)[0]

    def upload_begin(self, session: str, package: bytes) -> Dict[str, Any]:
        return self.request("upload_begin", session=session, size=len(package),
                            sha256=hashlib.sha256(package).hexdigest())[0]

    def send_from(self, package: bytes, offset: int, chunk: int = 4096, stop_at: Optional[int] = None) -> int:
        while offset < len(package) and (stop_at is None or offset < stop_at):
            reply, _ = self.request("upload_chunk", package[offset:offset + chunk], offset=offset)
            offset = reply["offset"]
        return offset


# -- the files (docs/formats.md "Room data file", "考场结果包") -------------------------------

def read_room_data(raw: bytes, room: str) -> Dict[str, Any]:
    data = json.loads(raw.decode("utf-8"))
    assert data["format"] == "kd-room-data/1" and data["room"] == room
    assert all(c["room"] == room for c in data["candidates"])
    return data


def roster(data: Dict[str, Any], session: str) -> Tuple[List[Dict[str, Any]], List[str]]:
    """The session's candidates and subject codes (lan-protocol.md §6.1)."""
    people = [c for c in data["candidates"] if c["session"] == session]
    subjects = next(s["subjects"] for s in data["sessions"] if s["id"] == session)
    return people, subjects


def result_package(site_code: str, room: str, session: str, people: Iterable[Dict[str, Any]],
                   subjects: List[str], absent: Iterable[str] = ()) -> bytes:
    """A result package built by the steps of docs/formats.md (考场结果包, "Building one")."""
    absent = set(absent)
    counts = {code: {"code": code, "candidates": 0, "present": 0, "absent": 0, "collected": 0} for code in subjects}
    candidates, members, files = [], [], []
    for person in people:
        present = person["ticket"] not in absent
        answer = None
        if present:
            answer = "answers/{}.dat".format(person["ticket"])
            data = hashlib.sha256(person["ticket"].encode("ascii")).digest() * 64
            members.append({"name": answer, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()})
            files.append((answer, data))
        candidates.append({"ticket": person["ticket"], "subject": person["subject"],
                           "status": "参考" if present else "缺考", "answer": answer})
        count = counts[person["subject"]]
        count["candidates"] += 1
        count["present" if present else "absent"] += 1
        count["collected"] += answer is not None
    body = {"format_version": 1, "kind": "room_result", "site_code": site_code, "room_code": room,
            "session_id": session, "created_at": datetime.datetime.now(CST).replace(microsecond=0).isoformat(),
            "subjects": [counts[code] for code in subjects], "candidates": candidates, "members": members}
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        zf.writestr("result.json", json.dumps(body, ensure_ascii=False, indent=1).encode("utf-8"),
                    compress_type=zipfile.ZIP_DEFLATED)
        for name, data in files:
            zf.writestr(name, data, compress_type=zipfile.ZIP_STORED)
    return out.getvalue()


# -- the site ------------------------------------------------------------------------------

class Site:
    """The real site (platform simulator, dongle emulator, core) with its LAN service on loopback."""

    def __init__(self, tmp_path: Any) -> None:
        self.env = loaded_env(tmp_path, rooms=2, sessions=2, candidates=5, first_start_in=30)
        self.ctx = self.env.ctx
        core = self.env.core
        self.core = core
        self.server = LanServer(self.ctx, registration=core.registration, verification=core.verification,
                                monitor=core.monitor, recovery=core.recovery, loading=core.loading,
                                options=LanOptions(host=LOOPBACK, port=0), extra_time=core.extra_time,
                                clock_skew=core.clock_skew).start()
        self.port = self.server.port()

    def rooms(self) -> List[str]:
        return [r["code"] for r in self.ctx.manifest()["rooms"]]

    def reg_code(self, room: str) -> str:
        return self.ctx.stores.runtime.get(model.ROOMS, room)["reg_code"]

    def record(self, room: str, session: str) -> Dict[str, Any]:
        return self.ctx.stores.runtime.get(model.ROOM_SESSIONS, model.rs_key(room, session)) or {}

    def authorize_and_verify(self, session: str) -> None:
        self.core.authorization.authorize_online(session, "admin")
        sync(self.env)
        self.core.verification.verify_online(session, "admin")

    def close(self) -> None:
        self.server.stop()
        self.env.close()


site = closed_after(Site)


def refused(call: Any, *args: Any, **kw: Any) -> Refused:
    with pytest.raises(Refused) as e:
        call(*args, **kw)
    return e.value


# -- the day -------------------------------------------------------------------------------

def test_a_whole_proctor_day(site):
    room = site.rooms()[0]
    p = Proctor(site.port)

    # 1. register; the reply is as documented, heartbeat_s a JSON integer
    reg = p.register(room, site.reg_code(room))
    assert reg["room"] == room and reg["site_code"] == site.ctx.site_code()
    assert [s["id"] for s in reg["sessions"]] == ["1", "2"]
    assert reg["heartbeat_s"] == 5 and b'"heartbeat_s":5' in p.raw_replies[-1]
    assert p.request("hello")[0]["data_imported"] is False

    # 2. the room data, its roster; no permit before the import (even for a verified session)
    raw = p.download(reg["data"]["sha256"])
    assert len(raw) == reg["data"]["size"]
    data = read_room_data(raw, room)
    site.authorize_and_verify("1")
    assert "考场数据" in refused(p.request, "permit", session="1").header["message"]
    assert p.request("data_imported", sha256=reg["data"]["sha256"])[0]["sha256"] == reg["data"]["sha256"]
    assert p.request("hello")[0]["data_imported"] is True

    # 3. heartbeats while candidates log in; E_STATE for an end without a start changes nothing
    people, subjects = roster(data, "1")
    assert len(people) == 5 and subjects
    beat = p.heartbeat("1", candidates=len(people), logged_in=3)
    assert beat["heartbeat_s"] == 5 and "warning" not in beat
    e = refused(p.heartbeat, "1", ended=True, candidates=len(people), logged_in=3)
    assert e.code == "E_STATE" and p.sock is not None  # not closing
    assert not site.record(room, "1").get("ended_at")
    p.heartbeat("1", candidates=len(people), logged_in=4)  # §4: did not start, so ended false

    # 4. the permit, then the start at the session's start
    permit = p.request("permit", session="1")[0]["permit"]
    assert permit["granted"] is True and permit["room"] == room and permit["session"] == "1"
    assert permit["start"] == next(s["start"] for s in reg["sessions"] if s["id"] == "1")
    assert "warning" not in p.heartbeat("1", started=True, candidates=5, logged_in=4, in_exam=4)
    p.heartbeat("1", started=True, ended=True, candidates=5, logged_in=4, in_exam=0)
    record = site.record(room, "1")
    assert record["permitted_at"] and record["started_at"] and record["ended_at"]
    assert not record.get("unpermitted_at")

    # 5. the result package; the commit's reply is lost; the begin says committed, the commit repeats it
    absent = people[0]["ticket"]
    package = result_package(reg["site_code"], room, "1", people, subjects, absent=[absent])
    sha = hashlib.sha256(package).hexdigest()
    assert p.upload_begin("1", package) == {"v": 1, "type": "ok", "seq": p.seq, "body_len": 0, "offset": 0}
    assert p.send_from(package, 0) == len(package)
    committed = site.ctx.hub.subscribe(["lan.committed"])
    p.seq += 1
    p.send({"v": 1, "type": "upload_commit", "seq": p.seq, "body_len": 0, "room": room, "token": p.token})
    p.close()  # before the reply arrives
    assert committed.wait_for(lambda ev: ev.data["sha256"] == sha, 30) is not None
    begin = p.upload_begin("1", package)  # a new connection: the credentials authenticate it
    assert begin["offset"] == len(package) and begin["committed"] is True
    e = refused(p.request, "upload_chunk", package[:10], offset=0)  # nothing to send
    assert e.code == "E_STATE"
    done = p.request("upload_commit")[0]
    assert (done["room"], done["session"], done["sha256"], done["size"]) == (room, "1", sha, len(package))
    result = done["result"]
    assert result["duplicate"] is True and result["source"] == "lan" and result["sha256"] == sha
    assert result["counts"]["candidates"] == 5 and result["counts"]["absent"] == 1
    assert result["counts"]["collected"] == 4
    assert site.record(room, "1")["result"]["sha256"] == sha

    # 6. session 2 (two subjects) is not authorized: a start anyway is 未经许可开考, with a warning
    people2, subjects2 = roster(data, "2")
    assert len(subjects2) == 2 and {c["subject"] for c in people2} == set(subjects2)
    assert refused(p.request, "permit", session="2").code == "E_PERMIT"
    warned = p.heartbeat("2", started=True, candidates=5, logged_in=5, in_exam=5)
    assert warned["warning"]["code"] == "W_UNPERMITTED"
    p.heartbeat("2", started=True, ended=True, candidates=5, logged_in=5)
    assert site.record(room, "2")["unpermitted_at"]

    # 7. an upload cut half-way: the chunk on the new connection is E_STATE, the begin says where to go on
    package2 = result_package(reg["site_code"], room, "2", people2, subjects2)
    assert p.upload_begin("2", package2)["offset"] == 0
    half = p.send_from(package2, 0, stop_at=len(package2) // 2)
    p.close()
    e = refused(p.request, "upload_chunk", package2[half:half + 4096], offset=half)
    assert e.code == "E_STATE"
    begin = p.upload_begin("2", package2)
    assert begin["offset"] == half and "committed" not in begin
    p.send_from(package2, half)
    done = p.request("upload_commit")[0]
    assert done["result"]["duplicate"] is False and done["result"]["counts"]["present"] == 5
    assert [s["code"] for s in done["result"]["counts"]["subjects"]] == subjects2

    # 8. goodbye: the server closes the connection
    p.request("bye", auth=False)
    assert p.closed_by_server()
    p.close()


# -- the error paths the document promises ------------------------------------------------

def test_revoked_token_is_e_auth_and_registering_again_recovers(site):
    room = site.rooms()[0]
    p = Proctor(site.port)
    reg = p.register(room, site.reg_code(room))
    p.download(reg["data"]["sha256"])
    p.request("data_imported", sha256=reg["data"]["sha256"])
    site.core.registration.revoke(room, "admin")  # 撤销注册: the server closes the connection, no reply
    assert p.closed_by_server()
    p.close()
    e = refused(p.heartbeat, "1")  # first request on a new connection: one try
    assert e.code == "E_AUTH" and e.header["closing"] is True and p.sock is None
    old = p.token
    p.register(room, site.reg_code(room))  # §4 "On E_AUTH": register again
    assert p.token != old
    assert p.request("hello")[0]["data_imported"] is False  # revoked: import again
    p.request("data_imported", sha256=reg["data"]["sha256"])
    assert p.request("hello")[0]["data_imported"] is True


def test_registering_again_replaces_the_token(site):
    room = site.rooms()[0]
    first = Proctor(site.port)
    first.register(room, site.reg_code(room))
    second = Proctor(site.port)  # the same machine (address), e.g. the proctor software reinstalled
    second.register(room, site.reg_code(room))
    e = refused(first.heartbeat, "1")  # authenticated connection: E_AUTH, stays open
    assert e.code == "E_AUTH" and "closing" not in e.header and first.sock is not None
    first.register(room, site.reg_code(room))  # on the same connection
    first.heartbeat("1")
    assert refused(second.heartbeat, "1").code == "E_AUTH"
    first.close()
    second.close()


def test_the_room_of_the_register_reply_is_the_one_to_use(site):
    room = site.rooms()[0]
    p = Proctor(site.port)
    reply, _ = p.request("register", auth=False, room=" {} ".format(room), reg_code=" {} ".format(
        site.reg_code(room).lower()), client="conformance/1")  # typed with spaces, in lower case
    assert reply["room"] == room
    p.room, p.token = reply["room"], reply["token"]
    p.heartbeat("1")  # the same connection serves that room
    p.close()


@pytest.mark.parametrize("token", ["", 12345, None, "x" * 300, "not-the-token"])
def test_a_token_the_server_does_not_accept_is_e_auth(site, token):
    room = site.rooms()[0]
    Proctor(site.port).register(room, site.reg_code(room))
    p = Proctor(site.port)
    p.room, p.token = room, token
    e = refused(p.heartbeat, "1")
    assert e.code == "E_AUTH" and e.header["closing"] is True
    p.room, p.token = "not a room!", "x"
    assert refused(p.request, "hello").code == "E_AUTH"


def test_a_locked_out_address_is_told_how_long_to_wait(site):
    room = site.rooms()[1]
    guesser = Proctor(site.port, ip="127.0.0.2")
    wrong = "AAAAAAAA" if site.reg_code(room) != "AAAAAAAA" else "BBBBBBBB"
    for _ in range(10):
        e = refused(guesser.register, room, wrong)
        assert e.code == "E_REGISTER" and e.header["closing"] is True and "retry_after" not in e.header
    e = refused(guesser.register, room, site.reg_code(room))  # refused even with the right code
    assert e.code == "E_REGISTER" and e.header["closing"] is True
    assert isinstance(e.header["retry_after"], int) and 0 < e.header["retry_after"] <= 300
    proctor = Proctor(site.port)  # the room's own machine is not locked out
    proctor.register(room, site.reg_code(room))
    proctor.close()


def test_closing_errors_carry_seq_0(site):
    p = Proctor(site.port)
    p.connect()
    p.send({"v": 1, "type": "hello", "seq": 5})  # no body_len: not a frame
    header, _ = p.receive()
    assert header["type"] == "error" and header["code"] == "E_FRAME" and header["seq"] == 0
    DOCUMENT.check_error(header)
    assert p.closed_by_server()
    p.close()


def test_extra_time_rides_the_heartbeat_reply_until_acknowledged(site):
    """§4 heartbeat, "补时 in the reply": the grant as documented, the ack, the reply without it."""
    room = site.rooms()[0]
    p = Proctor(site.port)
    reg = p.register(room, site.reg_code(room))
    p.request("data_imported", sha256=reg["data"]["sha256"])
    site.authorize_and_verify("1")
    p.request("permit", session="1")
    assert "extra_time" not in p.heartbeat("1", started=True, candidates=5, logged_in=5, in_exam=5)
    site.core.extra_time.grant(room, "1", 12, actor="admin", reason="网络中断 12 分钟")
    offered = p.heartbeat("1", started=True, candidates=5, logged_in=5, in_exam=5)["extra_time"]
    session = next(s for s in reg["sessions"] if s["id"] == "1")
    start = datetime.datetime.fromisoformat(session["start"])
    end = start + datetime.timedelta(minutes=session["duration_min"] + offered["total_min"])
    assert (offered["session_id"], offered["minutes"], offered["total_min"]) == ("1", 12, 12)
    assert datetime.datetime.fromisoformat(offered["expected_end"]) == end
    # not acknowledged: offered again; acknowledged: this reply and the next no longer carry it
    assert p.heartbeat("1", started=True, candidates=5, logged_in=5, in_exam=5)["extra_time"] == offered
    assert "extra_time" not in p.heartbeat("1", started=True, candidates=5, logged_in=5, in_exam=5,
                                           extra_time_ack=offered["id"])
    assert "extra_time" not in p.heartbeat("1", started=True, candidates=5, logged_in=5, in_exam=5)
    p.close()


def test_a_heartbeat_with_the_proctors_clock_is_estimated_as_documented(site):
    """§4 heartbeat, "Clock skew": `clock` (ISO with offset and milliseconds) and `rtt_ms` of the previous
    beat; offset = clock + rtt/2 − the site's receive time, the median of the last five; an old proctor
    (neither field) stays valid and 未知; a bad value is no error."""
    room = site.rooms()[0]
    p = Proctor(site.port)
    reg = p.register(room, site.reg_code(room))
    p.request("data_imported", sha256=reg["data"]["sha256"])
    assert "server_time" in p.heartbeat("1", candidates=5, logged_in=3)  # an old proctor: no clock, no rtt_ms
    assert site.core.clock_skew.estimate(room) is None
    state = {"session": "1", "started": False, "ended": False, "candidates": 5, "logged_in": 3, "in_exam": 0}
    for _ in range(5):
        ahead = datetime.datetime.now(CST) + datetime.timedelta(minutes=5)
        p.request("heartbeat", state=state, rtt_ms=1.8, clock=ahead.isoformat(timespec="milliseconds"))
    estimate = site.core.clock_skew.estimate(room)
    assert estimate is not None and estimate.samples == 5 and estimate.uncertainty_s == pytest.approx(0.0009)
    assert 240.0 < estimate.offset_s <= 300.001  # the site reads it after the proctor sent it
    # a clock that is no time is ignored (logged), the heartbeat taken
    assert "server_time" in p.request("heartbeat", state=state, rtt_ms=1.8, clock="08:25")[0]
    assert site.core.clock_skew.estimate(room) == estimate
    p.close()
