"""The KDLAN v1 requests: one function per message type and the table ``HANDLERS``.

Each handler is ``handler(services, peer, frame) -> (reply fields, reply body)``: it checks
the request's fields (``kd.lan.replies``), calls one core service or the upload store, and
returns the fields of the ``ok`` reply (the server adds ``type`` and ``seq``); a refusal
raises ``Reply`` (an error frame). The message types and their fields are in
docs/lan-protocol.md §4:

- ``register``       → ``RegistrationService.register`` (the connection then serves the room;
  a lockout for too many wrong codes answers ``E_REGISTER`` with ``retry_after``)
- every other request → ``RegistrationService.authenticate`` (token bound to room and IP; any
  ``room``/``token`` it cannot accept, a malformed one too, answers ``E_AUTH``)
- ``data_imported``  → ``RegistrationService.mark_data_imported``
- ``data``, ``hello`` → ``LoadingService.room_file_path / room_data_sha256 / room_detail``
- ``heartbeat``      → ``MonitorService.heartbeat`` (``StateRefused``, an end without a
  start, answers ``E_STATE``; a start recorded as 未经许可开考 adds ``warning`` to the reply);
  then ``ExtraTimeService.acknowledge`` for the state's ``extra_time_ack`` and
  ``ExtraTimeService.pending`` for the reply's ``extra_time`` (补时, docs/lan-protocol.md);
  its ``clock``/``rtt_ms`` feed ``kd.core.clockskew.ClockSkew.observe`` (read at the
  site's clock when the handler starts; bad values are ignored there, never refused)
- ``permit``         → ``VerificationService.start_permit``, only once the room imported its
  current data (``data_imported``), else ``E_PERMIT``
- ``upload_begin``, ``upload_chunk``, ``upload_commit`` → ``kd.lan.uploads.UploadStore``
- ``bye``            → nothing (the server closes the connection after the reply)

The handlers never write the stores themselves. ``Services`` is what they work with, built
once by the server; ``Peer`` is what they read of a connection (its address, the room it
serves once authenticated).
"""

import logging
import os
from typing import Any, Callable, Dict, NamedTuple, Optional, Protocol, Tuple, Union

from kd.core.context import Context
from kd.core.labels import session_label, session_names
from kd.core.loading import LoadingService
from kd.core.monitor import START_UNPERMITTED, UNPERMITTED_LABEL
from kd.errors import PermitRefused, RegistrationRefused, StateRefused, UserError
from kd.formats.timeutil import format_time
from kd.lan import framing
from kd.lan.framing import BODY_MAX
from kd.lan.replies import (
    CODE,
    MAX_TEXT,
    REMEDY_RETRY,
    Reply,
    bad,
    code,
    integer,
    seconds,
    seconds_until,
    sha256,
    text,
)
from kd.lan.uploads import UploadStore

log = logging.getLogger(__name__)

MAX_COUNT = 100000
#: ``{}``: the session as the tables name it (``kd.core.labels.session_label``: 第一场次), then the state
UNPERMITTED_MESSAGE = "本考场在考点机给予开考许可之前开考了{}，考点机已记为“{}”并报告考点管理员。"
UNPERMITTED_REMEDY = "请立即联系考点管理员核实；以后每场开考前须先获得开考许可（考点机完成授权验证后）。"
#: a ``room``/``token`` that cannot be a registration's (missing, not text, malformed): ``E_AUTH``, as a wrong one
BAD_CREDENTIALS = ("监考机发送的考场代码或考场令牌无效。", "请在监考机上重新注册考场。")
#: the token's length limit (tokens are 43 characters today)
MAX_TOKEN = 256
NOT_IMPORTED_MESSAGE = "考场 {} 尚未导入考点当前的考场数据，不能开考。"
NOT_IMPORTED_REMEDY = "请在监考机上下载并导入本考场的考场数据（考点机显示“已导入”后），再申请开考许可。"

Result = Tuple[Dict[str, Any], bytes]


class Peer(Protocol):
    """What a handler reads of a connection (``kd.lan.server.Connection``)."""

    ip: str
    #: the room it serves once authenticated (None before)
    room: Optional[str]


class Services(NamedTuple):
    """The collaborators of the handlers (built once by the server)."""

    ctx: Context
    registration: Any
    verification: Any
    monitor: Any
    loading: LoadingService
    uploads: UploadStore
    #: largest result package accepted (bytes)
    max_upload: int
    #: ``bind(peer, room)``: the connection authenticated for ``room`` (the server's registry)
    bind: Callable[[Any, str], None]
    #: ``ExtraTimeService`` (补时 in the heartbeat reply); None: the reply carries none
    extra_time: Any = None
    #: ``kd.core.clockskew.ClockSkew`` (the heartbeats' ``clock``/``rtt_ms``); None: not estimated
    clock_skew: Any = None


def _other_room(peer: Peer) -> Reply:
    return Reply("E_AUTH", "此连接已用于考场 {}。".format(peer.room), "请为每个考场使用单独的连接。")


def _no_data(room: str) -> Reply:
    return Reply("E_REFUSED", "考点机上没有考场 {} 的考场数据。".format(room), "请联系考点管理员先完成“导入考务”。")


def authenticate(services: Services, peer: Peer, header: Dict[str, Any]) -> Dict[str, Any]:
    """The room record of the request's ``room`` and ``token`` from this address; binds the connection.

    Any ``room``/``token`` the server does not accept is ``E_AUTH`` — also a missing or
    malformed one (never ``E_AUTH`` for some and ``E_ARG`` for others: the proctor's answer
    to both is to register again).
    """
    room, token = header.get("room"), header.get("token")
    if (not isinstance(room, str) or not CODE.match(room) or not isinstance(token, str)
            or not 0 < len(token) <= MAX_TOKEN):
        raise Reply("E_AUTH", *BAD_CREDENTIALS)
    if peer.room is not None and peer.room != room:
        raise _other_room(peer)
    try:
        doc: Dict[str, Any] = services.registration.authenticate(room, token, peer.ip)
    except RegistrationRefused as e:
        raise Reply("E_AUTH", e.cause, e.remedy) from None
    services.bind(peer, room)
    return doc


def _room_data(services: Services, room: str) -> Dict[str, Any]:
    sha = services.loading.room_data_sha256(room)
    try:
        size: Optional[int] = os.path.getsize(services.loading.room_file_path(room))
    except OSError:
        size = None
    return {"sha256": sha, "size": size}


def _heartbeat_s(services: Services) -> Union[int, float]:
    return seconds(getattr(services.monitor, "interval", 5.0))


def handle_register(services: Services, peer: Peer, frame: framing.Frame) -> Result:
    h = frame.header
    room = text(h, "room").strip()  # as the registration service reads it: the reply and the binding agree
    reg_code = text(h, "reg_code")
    if peer.room is not None and peer.room != room:
        raise _other_room(peer)
    try:
        result = services.registration.register(room, reg_code, peer.ip)
    except RegistrationRefused as e:
        extra: Dict[str, Any] = {}
        if e.retry_at is not None:  # locked out for too many wrong codes: how long, for the machine
            extra["retry_after"] = seconds_until((e.retry_at - services.ctx.now()).total_seconds())
        raise Reply("E_REGISTER", e.cause, e.remedy, **extra) from None
    services.bind(peer, room)
    client = h.get("client")
    log.info("room %s registered from %s (%s)", room, peer.ip, str(client)[:MAX_TEXT] if client else "-")
    return {"token": result["token"], "site_code": result["site_code"], "room": room,
            "sessions": result["sessions"], "data": _room_data(services, room),
            "heartbeat_s": _heartbeat_s(services)}, b""


def handle_hello(services: Services, peer: Peer, frame: framing.Frame) -> Result:
    doc = authenticate(services, peer, frame.header)
    room = doc["code"]
    detail = services.loading.room_detail(room)
    data = _room_data(services, room)
    sessions = [{k: s[k] for k in ("id", "name", "start", "duration_min")} for s in detail["sessions"]]
    return {"room": room, "site_code": detail["site_code"], "sessions": sessions, "data": data,
            "data_imported": bool(data["sha256"]) and doc.get("data_sha256") == data["sha256"],
            "heartbeat_s": _heartbeat_s(services)}, b""


def handle_data(services: Services, peer: Peer, frame: framing.Frame) -> Result:
    doc = authenticate(services, peer, frame.header)
    room = doc["code"]
    offset = integer(frame.header, "offset", 0, 2 ** 62)
    length = integer(frame.header, "length", 1, BODY_MAX)
    sha = services.loading.room_data_sha256(room)
    try:
        with open(services.loading.room_file_path(room), "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if offset > size:
                raise bad("offset {} 超出考场数据大小 {}".format(offset, size))
            f.seek(offset)
            body = f.read(min(length, size - offset))
    except OSError as e:
        raise _no_data(room) from e
    if sha is None:
        raise _no_data(room)
    return {"offset": offset, "size": size, "sha256": sha}, body


def handle_data_imported(services: Services, peer: Peer, frame: framing.Frame) -> Result:
    h = frame.header
    doc = authenticate(services, peer, h)
    sha = sha256(h)
    try:
        services.registration.mark_data_imported(doc["code"], h["token"], peer.ip, sha)
    except RegistrationRefused as e:
        raise Reply("E_AUTH", e.cause, e.remedy) from None
    return {"room": doc["code"], "sha256": sha}, b""


def handle_heartbeat(services: Services, peer: Peer, frame: framing.Frame) -> Result:
    # the clock skew's receive time: before the work of the heartbeat
    received = services.ctx.now() if services.clock_skew is not None else None
    doc = authenticate(services, peer, frame.header)
    state = frame.header.get("state")
    if not isinstance(state, dict):
        raise bad("state 应为对象")
    session = code(state, "session")
    beat: Dict[str, Any] = {"session_id": session}
    for name in ("started", "ended"):
        value = state.get(name, False)
        if not isinstance(value, bool):
            raise bad("state.{} 应为 true/false".format(name))
        beat[name] = value
    for name in ("logged_in", "in_exam"):
        beat[name] = integer(state, name, 0, MAX_COUNT)
    if "candidates" in state:
        beat["candidates"] = integer(state, "candidates", 0, MAX_COUNT)
    ack = code(state, "extra_time_ack") if "extra_time_ack" in state else None
    try:
        taken = services.monitor.heartbeat(doc["code"], beat)
    except StateRefused as e:
        raise Reply("E_STATE", e.cause, e.remedy) from None
    except UserError as e:
        raise Reply("E_ARG", e.cause, e.remedy) from None
    if services.clock_skew is not None and received is not None:  # taken (a refused one measures nothing)
        services.clock_skew.observe(doc["code"], frame.header.get("clock"), frame.header.get("rtt_ms"), received)
    reply: Dict[str, Any] = {"server_time": format_time(services.ctx.now()), "heartbeat_s": _heartbeat_s(services)}
    if services.extra_time is not None:
        pending = services.extra_time.pending(doc["code"])
        if pending is not None and ack is not None and services.extra_time.acknowledge(doc["code"], ack):
            pending = services.extra_time.pending(doc["code"])
        if pending is not None:
            reply["extra_time"] = pending
    if isinstance(taken, dict) and taken.get("start") == START_UNPERMITTED:
        reply["warning"] = {"code": "W_UNPERMITTED", "remedy": UNPERMITTED_REMEDY,
                            "message": UNPERMITTED_MESSAGE.format(
                                session_label(session, services.ctx.manifest_view(session_names)), UNPERMITTED_LABEL)}
    return reply, b""


def handle_permit(services: Services, peer: Peer, frame: framing.Frame) -> Result:
    doc = authenticate(services, peer, frame.header)
    session = code(frame.header, "session")
    current = services.loading.room_data_sha256(doc["code"])
    if current is not None and doc.get("data_sha256") != current:  # (no package: start_permit says so)
        raise Reply("E_PERMIT", NOT_IMPORTED_MESSAGE.format(doc["code"]), NOT_IMPORTED_REMEDY)
    try:
        permit = services.verification.start_permit(doc["code"], session)
    except PermitRefused as e:
        raise Reply("E_PERMIT", e.cause, e.remedy) from None
    permit = dict(permit)
    permit.setdefault("session", session)
    permit["granted"] = True
    return {"session": session, "permit": permit}, b""


def handle_upload_begin(services: Services, peer: Peer, frame: framing.Frame) -> Result:
    h = frame.header
    doc = authenticate(services, peer, h)
    room = doc["code"]
    if not CODE.match(room):
        raise Reply("E_REFUSED", "考场代码 {} 无法用于文件名。".format(room), REMEDY_RETRY)
    session = code(h, "session")
    size = integer(h, "size", 1, services.max_upload)
    sha = sha256(h)
    detail = services.loading.room_detail(room)
    if session not in {s["id"] for s in detail["sessions"]}:
        raise Reply("E_REFUSED", "考场 {} 在{}没有考生安排，不能上报结果。".format(
                    room, session_label(session, {s["id"]: s.get("name") for s in detail["sessions"]})),
                    "请核对监考机上的场次。")
    return services.uploads.begin(peer, room, session, sha, size), b""


def handle_upload_chunk(services: Services, peer: Peer, frame: framing.Frame) -> Result:
    authenticate(services, peer, frame.header)
    offset = integer(frame.header, "offset", 0, 2 ** 62)
    return {"offset": services.uploads.chunk(peer, offset, frame.body)}, b""


def handle_upload_commit(services: Services, peer: Peer, frame: framing.Frame) -> Result:
    authenticate(services, peer, frame.header)
    return services.uploads.commit(peer), b""


def handle_bye(services: Services, peer: Peer, frame: framing.Frame) -> Result:
    return {}, b""


Handler = Callable[[Services, Any, framing.Frame], Result]

#: message type -> its handler (a request of another type answers ``E_TYPE``)
HANDLERS: Dict[str, Handler] = {
    "register": handle_register,
    "hello": handle_hello,
    "data": handle_data,
    "data_imported": handle_data_imported,
    "heartbeat": handle_heartbeat,
    "permit": handle_permit,
    "upload_begin": handle_upload_begin,
    "upload_chunk": handle_upload_chunk,
    "upload_commit": handle_upload_commit,
    "bye": handle_bye,
}
#: the one request type that carries a body
BODY_TYPES = frozenset(["upload_chunk"])
