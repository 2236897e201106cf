"""授权验证 (screens.md §4.2) and the proctors' start permit.

``VerificationService(ctx)`` verifies a session, online (``verify_online``: the platform's
授权验证 data for the session and the site's dongle) or from a file
(``import_verification``: a ``.KDV`` the platform issued). In this order, each step
refusing with a ``UserError`` (Chinese cause + remedy) and writing nothing:

1. 导入考务 done, the session is in the package, and it is authorized (考试授权 first);
2. the package's dongle is attached and proves its identity (``ctx.dongle.verify``); the
   clock it signed is within ``max_clock_skew_s`` (120 s) of the system clock;
3. the dongle holds a platform-signed sync ticket (``ctx.dongle.get_ticket``) that is
   valid (trusted signature, this dongle, this site, ``server_time <= now < valid_until``)
   and whose sync lies within the hour before the session starts
   (``kd.formats.documents.require_sync_for_session``);
4. the verification data is valid: trusted signature, this site, this session, this
   dongle, ``valid_from <= now < valid_until``.

Only then ``runtime sessions/<id>`` gets ``verified_at``, ``verification_source``
(``online``/``manual``), ``verification`` (base64 of the document bytes),
``lock_clock_skew_s`` (dongle minus system, seconds) and ``lock_synced_at`` (the sync
ticket's server time).

``start_permit(room_code, session_id)`` answers a proctor: granted only for a registered
room and a verified session, else ``PermitRefused`` with the reason. The first grant for a
room and session is recorded: ``runtime room_sessions/<room|session>.permitted_at``
(audited ``room.permitted``); later grants read it and write nothing. The monitor takes a
start as permitted only with that record (kd/core/monitor.py, 未经许可开考).
"""

import base64
import datetime
import logging
import os
from typing import Any, Dict, List, Optional

from kd.core import labels, lifecycle, model, names, records
from kd.core.context import Context
from kd.core.lifecycle import RoomSessionEvent, SessionEvent
from kd.core.records import JsonObject
from kd.core.snapshots import VerificationSnapshot, session_row
from kd.errors import FormatError, LockError, PermitRefused, UserError
from kd.formats import documents
from kd.formats.signing import MAX_DOCUMENT_BYTES
from kd.formats.timeutil import format_time, parse_time

log = logging.getLogger(__name__)

ONLINE, MANUAL = "online", "manual"
SOURCE_LABELS = labels.VERIFICATION_SOURCE_LABELS  # {ONLINE: 联网验证, MANUAL: 手工导入}
FALLBACK = "“手工导入”授权验证文件（.KDV）"


class VerificationService:
    """授权验证 per session, and the start permit that depends on it."""

    def __init__(self, ctx: Context, *, max_clock_skew_s: float = 120.0,
                 sync_window: datetime.timedelta = documents.SYNC_WINDOW) -> None:
        self.ctx = ctx
        self.max_clock_skew_s = float(max_clock_skew_s)
        self.sync_window = sync_window

    # -- preconditions ------------------------------------------------------------------
    def _manifest(self) -> records.Manifest:
        manifest = self.ctx.manifest()
        if manifest is None:
            raise UserError("尚未导入考务，无法进行授权验证。", "请先完成“导入考务”。")
        return manifest

    @staticmethod
    def _session(manifest: records.Manifest, session_id: str) -> records.SessionDef:
        for session in manifest.get("sessions") or []:
            if session.get("id") == session_id:
                return session
        raise UserError("考场数据包中没有{}。".format(labels.session_label(session_id)), "请选择考场数据包中的场次。")

    def _require_authorized(self, manifest: records.Manifest, session_id: str) -> None:
        if not lifecycle.authorized(records.session(self.ctx.stores.runtime, session_id)):
            raise UserError("{} 尚未完成考试授权，不能进行授权验证。".format(
                labels.session_label(session_id, manifest)),
                            "请先在“考试授权”中为该场次授权（联网授权或手工导入 .PTQ），再做授权验证。")

    def _check_dongle(self, manifest: records.Manifest, session: records.SessionDef,
                      now: datetime.datetime) -> JsonObject:
        """Steps 2 and 3: identity, clock, sync ticket. Returns the evidence."""
        lock = manifest["lock"]
        lock_id = lock["id"]
        dongle = self.ctx.dongle_or_raise()
        clock_ms = dongle.verify(lock_id, base64.b64decode(lock["public_key"]))
        skew = clock_ms / 1000.0 - now.timestamp()
        if abs(skew) > self.max_clock_skew_s:
            raise LockError(
                "机考锁时间与系统时间相差 {:.0f} 秒（机考锁{}），超过 {:.0f} 秒，授权验证未通过。".format(
                    abs(skew), "偏快" if skew > 0 else "偏慢", self.max_clock_skew_s),
                "请确认本机系统时间为北京时间；再在开考前一小时内用联网电脑为机考锁校时，"
                "看到“校时授权成功!”后插回本机重试。",
                detail="dongle clock {} ms, system {}".format(clock_ms, now.isoformat()))
        raw = dongle.get_ticket()
        if not raw:
            raise LockError("机考锁中没有校时凭证（尚未校时）。", documents.REMEDY_SYNC_TICKET)
        ticket = documents.load_sync_ticket(raw, self.ctx.trusted, now, lock_id=lock_id,
                                            site_code=self.ctx.site_code() or manifest.get("site_code"),
                                            skew=datetime.timedelta(seconds=self.max_clock_skew_s))
        start = parse_time(session.get("start"), "start", "考场数据包")
        if not documents.synced_for_session(ticket, start, self.sync_window):
            minutes = int(self.sync_window.total_seconds() // 60)
            raise FormatError(
                "机考锁校时不符合要求：校时时间 {} 不在{}开考时间 {} 前 {} 分钟内。".format(
                    labels.shown(ticket.server_time), labels.session_label(session.get("id"), session.get("name")),
                    labels.shown(start), minutes),
                documents.REMEDY_SYNC_TICKET,
                detail="sync at {} not within {} before {}".format(ticket.server_time, self.sync_window, start))
        return {"lock_id": lock_id, "skew": round(skew, 3), "synced_at": format_time(ticket.server_time)}

    def _prepare(self, session_id: str) -> Any:
        manifest = self._manifest()
        session = self._session(manifest, session_id)
        self._require_authorized(manifest, session_id)
        now = self.ctx.now()
        evidence = self._check_dongle(manifest, session, now)
        return manifest, now, evidence

    def _load(self, data: bytes, manifest: records.Manifest, session_id: str,
              now: datetime.datetime) -> documents.AuthorizationVerification:
        return documents.load_authorization_verification(
            data, self.ctx.trusted, self.ctx.site_code() or manifest["site_code"], now,
            session_id=session_id, lock_id=manifest["lock"]["id"])

    # -- verify -------------------------------------------------------------------------
    def verify_online(self, session_id: str, actor: str) -> JsonObject:
        """Verify ``session_id`` with the platform's verification data; the session's row.

        Raises ``UserError`` (not loaded, unknown or unauthorized session), ``LockError``
        (dongle missing, wrong, clock off, no sync ticket), ``FormatError`` (ticket or
        data invalid, sync not within the hour before the start), ``PlatformError`` (the
        platform unreachable or refusing: the remedy names the manual import).
        """
        manifest, now, evidence = self._prepare(session_id)
        platform = self.ctx.platform_or_raise(FALLBACK)
        doc = platform.download_verification(session_id, manifest["lock"]["id"])
        checked = self._load(doc.raw, manifest, session_id, now)
        return self._store(session_id, checked, ONLINE, evidence, actor)

    def import_verification(self, path: str, session_id: str, actor: str) -> JsonObject:
        """Verify ``session_id`` with a ``.KDV`` file; raises as ``verify_online`` (no platform needed)."""
        manifest, now, evidence = self._prepare(session_id)
        data = _read_document(path)
        checked = self._load(data, manifest, session_id, now)
        return self._store(session_id, checked, MANUAL, evidence, actor)

    def _store(self, session_id: str, doc: documents.AuthorizationVerification, source: str,
               evidence: Dict[str, Any], actor: str) -> JsonObject:
        with self.ctx.lock:
            current = records.session(self.ctx.stores.runtime, session_id) or {"id": session_id}
            if not lifecycle.authorized(current):  # an authorization revoked meanwhile
                raise UserError("{} 尚未完成考试授权，不能进行授权验证。".format(
                    labels.session_label(session_id, self.ctx.manifest())), "请先完成考试授权。")
            changes = {"verified_at": format_time(self.ctx.now()), "verification_source": source,
                       "verification": base64.b64encode(doc.raw).decode("ascii"),
                       "lock_clock_skew_s": evidence["skew"], "lock_synced_at": evidence["synced_at"]}
            current = lifecycle.advance_session(
                self.ctx, current, SessionEvent.VERIFY, changes, actor=actor, action=names.SESSION_VERIFIED,
                session_id=session_id, source=source, lock_id=evidence["lock_id"], lock_clock_skew_s=evidence["skew"],
                lock_synced_at=evidence["synced_at"])
        log.info("session %s verified (%s)", session_id, source)
        return session_row(self._session(self._manifest(), session_id), current).as_dict()

    # -- permit -------------------------------------------------------------------------
    def start_permit(self, room_code: str, session_id: str) -> JsonObject:
        """The start permit of a room for a session: ``{"room", "session", "start", "duration_min", "verified_at"}``.

        Raises ``PermitRefused`` (reason in Chinese) for an unknown or unregistered room,
        an unknown session, or a session not yet verified.
        """
        # the sessions only: proctors poll for their permit, a full manifest copy holds every candidate
        manifest = self.ctx.manifest_view(lambda m: {"sessions": m.get("sessions") or []})
        if manifest is None:
            raise PermitRefused("考点尚未导入考务，不能开考。", "请联系考点管理员完成考前准备。")
        room = self.ctx.stores.runtime.get(model.ROOMS, room_code) if isinstance(room_code, str) else None
        if room is None or not room.get("registered_at"):
            raise PermitRefused("考场 {} 未在考点注册，不能开考。".format(room_code),
                                "请先完成考场注册（考场代码和注册码）。")
        session = None
        for s in manifest.get("sessions") or []:
            if s.get("id") == session_id:
                session = s
        if session is None:
            raise PermitRefused("没有{}，不能开考。".format(labels.session_label(session_id)), "请选择考点当前的场次。")
        doc = records.session(self.ctx.stores.runtime, session_id) or {"id": session_id}
        if not lifecycle.authorized(doc):
            raise PermitRefused("{} 尚未完成考试授权，不能开考。".format(labels.session_label(session_id, manifest)),
                                "请联系考点管理员完成考试授权和授权验证。")
        if not lifecycle.verified(doc):
            raise PermitRefused("{} 尚未通过授权验证，不能开考。".format(labels.session_label(session_id, manifest)),
                                "请联系考点管理员在“授权验证”中完成该场次的验证。")
        self._record_permit(room_code, session_id)
        return {"room": room_code, "session": session_id, "session_name": session.get("name"),
                "start": session.get("start"), "duration_min": session.get("duration_min"),
                "verified_at": doc.get("verified_at")}

    def _record_permit(self, room_code: str, session_id: str) -> None:
        """``permitted_at`` of the room's record for the session, once (proctors may ask again)."""
        runtime = self.ctx.stores.runtime
        if lifecycle.permitted(records.room_session(runtime, room_code, session_id)):
            return
        with self.ctx.lock:
            doc = records.room_session(runtime, room_code, session_id) or records.new_room_session(room_code,
                                                                                                   session_id)
            if lifecycle.permitted(doc):
                return
            lifecycle.advance(self.ctx, doc, lifecycle.Step(RoomSessionEvent.PERMIT, names.ROOM_PERMITTED,
                                                            {"room_code": room_code, "session_id": session_id}),
                              actor=room_code)
        log.info("room %s permitted to start session %s", room_code, session_id)

    # -- view ---------------------------------------------------------------------------
    def sync_state(self, sessions: List[Dict[str, Any]]) -> JsonObject:
        """The dongle's 校时 state for 授权验证: attached, lock ids, the ticket's times, and for
        each of ``sessions`` whether the sync lies within the hour before its start. Read-only;
        problems are reported in ``problem``, not raised."""
        ctx = self.ctx
        manifest: records.Manifest = ctx.manifest() or {}
        expected = _lock_id(manifest)
        state: Dict[str, Any] = {"attached": False, "lock_id": None, "expected": expected, "ticket": None,
                                 "problem": "", "for_session": {}}
        dongle = ctx.dongle
        if dongle is None or not dongle.attached():
            state["problem"] = "未检测到机考锁"
            return state
        state["attached"] = True
        state["lock_id"] = dongle.lock_id()
        try:
            raw = dongle.get_ticket()
        except UserError as e:
            state["problem"] = e.cause
            return state
        if not raw:
            state["problem"] = "机考锁中没有校时凭证（尚未校时）"
            return state
        try:
            ticket = documents.load_sync_ticket(raw, ctx.trusted, ctx.now(), lock_id=expected,
                                                site_code=ctx.site_code() or manifest.get("site_code"))
        except FormatError as e:
            state["problem"] = e.cause
            return state
        state["ticket"] = {"lock_id": ticket.lock_id, "server_time": format_time(ticket.server_time),
                           "valid_until": format_time(ticket.valid_until)}
        for s in sessions:
            try:
                start = parse_time(s.get("start"), "start", "考场数据包")
            except FormatError:
                continue
            state["for_session"][s["id"]] = documents.synced_for_session(ticket, start)
        return state

    def view(self) -> VerificationSnapshot:
        """Sessions (场次 | 场次名称 | 开考时间 | 考试时长 | 考试授权状态 | 授权验证状态) with their
        states, the current one and the package's lock (``kd.core.snapshots.VerificationSnapshot``)."""
        manifest: records.Manifest = self.ctx.manifest() or {}
        runtime = self.ctx.stores.runtime
        rows = tuple(session_row(s, records.session(runtime, s["id"])) for s in manifest.get("sessions") or [])
        return VerificationSnapshot(sessions=rows, current=current_session([r.as_dict() for r in rows], self.ctx.now()),
                                    lock_id=_lock_id(manifest))

    def snapshot(self) -> JsonObject:
        """``view()`` as plain JSON."""
        return self.view().as_dict()


def _lock_id(manifest: records.Manifest) -> Optional[str]:
    lock = manifest.get("lock")
    return lock["id"] if lock else None


def current_session(sessions: List[Dict[str, Any]], now: datetime.datetime) -> Optional[str]:
    """The session to act on: the first not yet over (start + duration), else the last; None if none."""
    chosen = None
    for s in sorted(sessions, key=lambda s: s.get("start") or ""):
        chosen = s.get("id")
        try:
            end = parse_time(s.get("start")) + datetime.timedelta(minutes=int(s.get("duration_min") or 0))
        except (FormatError, TypeError, ValueError):
            continue
        if now < end:
            return chosen
    return chosen


def _read_document(path: str) -> bytes:
    """The bytes of a chosen .KDV file (at most ``MAX_DOCUMENT_BYTES``); ``UserError`` when unreadable."""
    try:
        size = os.path.getsize(path)
        if size > MAX_DOCUMENT_BYTES:
            raise FormatError("所选文件过大（{} 字节），不是授权验证文件。".format(size), documents.REMEDY_VERIFICATION)
        with open(path, "rb") as f:
            return f.read(MAX_DOCUMENT_BYTES + 1)
    except OSError as e:
        raise UserError("无法读取所选文件：{}".format(path), "请确认文件存在且未被其他程序占用后重试。",
                        detail=repr(e)) from e
