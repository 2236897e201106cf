"""考场注册 (manual §3.2, §3.2.2): proctor machines register their room; export and restore.

``RegistrationService(ctx, loading=...)`` (the composition root, ``kd.core.services.Core``,
builds one and hands it the core's ``LoadingService``; the LAN server and the UI share it):

- ``register(room_code, reg_code, ip)`` → ``{"token", "site_code", "sessions",
  "room_data_sha256"}``. Rules: an unknown room and a wrong code get the same answer;
  at most ``ROOM_MAX_FAILURES`` (10) wrong codes per room (as typed) *and source
  address*, and ``IP_MAX_FAILURES`` (30) per address over all rooms, within ``WINDOW``
  (5 min), after which that room from that address (or that address for every room) is
  refused even with the right code until the window has passed — the room's proctor on
  its own address is never locked out by another address's guesses; a room registered
  from one IP is refused from another until 撤销注册; registering again from the same IP
  gives a new token (``secrets.token_urlsafe``), bound to room and IP. Wrong-code counts
  live in memory, in the service instance (one per running site), follow ``ctx.now()``,
  and are bounded (``MAX_TRACKED_IPS`` addresses, ``MAX_TRACKED_PAIRS`` room/address
  pairs; the ones with the oldest last failure are forgotten first): ``kd.core.ratelimit``.
- Refused registrations (``registration.failed``, ``registration.blocked``,
  ``registration.conflicted``) are audited per (action, room, source address) and
  ``AUDIT_WINDOW`` (60 s): the first of a window at once (``count`` 1), the others
  counted and written as one line (``count``, ``from``, ``to``, ``aggregated``) when the
  window has closed (``flush_refusals()``: the LAN service calls it from its accept loop,
  and with ``everything=True`` when it stops), so a flood of N wrong codes writes
  O(windows) lines, not O(N). Unknown room codes from one address share one window
  (``unknown_room``); beyond ``AUDIT_MAX_KEYS`` open windows the rest of a flood is counted
  in one line per action and window (``overflow``). A kill loses what was counted and not
  yet written: at most one window's repeated refusals (never the first of a window).
- ``registered_ips()``: the addresses rooms are registered from (the LAN service keeps
  connection slots for them).
- ``authenticate(room_code, token, ip)`` → the room doc, or ``RegistrationRefused``.
- ``mark_data_imported(room_code, token, ip, sha256)``: the proctor imported its room
  data file; the hash must be the loaded package's.
- ``revoke(room_code, actor)``: 撤销注册 (and ``ctx.lan.disconnect_room``).
- ``export_site_info(folder, actor, server_address, port)``: the printable HTML sheet
  and ``考点信息表(<site>).KDINFO`` (``kd.formats.kdinfo``, signed by the dongle); without
  ``server_address`` the sheet names ``kd.core.status.told_address``. The address and port
  the sheet names are kept in runtime ``checks/site_info`` (封场检测 connects to them).
- ``restore_preview(path)`` / ``restore(path, actor, confirm=None)``: 恢复注册 from a
  KDINFO (``kd.core.regrestore``: what it changes per room, the confirmation, the
  refusals); ``restore_lines(preview)`` says a preview in Chinese.
- ``snapshot()``: the §3.2 table (考场代码 | 注册码 | 注册IP | 封场检测 | 备注) and the
  counts 已注册 / 未注册.
"""

import datetime
import hmac
import logging
import os
import secrets
import socket
from typing import Any, Callable, Dict, List, Optional, Set

from kd import fileio
from kd.core import model, names, printing, ratelimit, records, regrestore
from kd.core.context import Context
from kd.core.loading import LoadingService, not_loaded
from kd.core.ratelimit import AUDIT_WINDOW, Limiter, Line, Refusals
from kd.core.records import JsonObject
from kd.core.regrestore import RegistrationRestore
from kd.core.snapshots import RegistrationRow, RegistrationSnapshot
from kd.core.states import RegistrationState
from kd.errors import FormatError, RegistrationRefused, StoreError, UserError
from kd.formats import kdinfo
from kd.formats.timeutil import format_time

log = logging.getLogger(__name__)

#: the limits, and what 恢复注册 raises, where callers have always found them
ROOM_MAX_FAILURES, IP_MAX_FAILURES, WINDOW = ratelimit.ROOM_MAX_FAILURES, ratelimit.IP_MAX_FAILURES, ratelimit.WINDOW
AUDIT_MAX_KEYS, MAX_TRACKED_IPS, MAX_TRACKED_PAIRS = (ratelimit.AUDIT_MAX_KEYS, ratelimit.MAX_TRACKED_IPS,
                                                      ratelimit.MAX_TRACKED_PAIRS)
ConfirmationRequired, restore_lines = regrestore.ConfirmationRequired, regrestore.restore_lines

TOKEN_BYTES = 24
MAX_INPUT = 64

COLUMNS = ["考场代码", "注册码", "注册IP", "封场检测", "备注"]

WRONG = ("考场代码或注册码错误，注册失败。", "请核对考点信息表上的考场代码和注册码后重试。")

def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))


def default_address() -> str:
    """This PC's LAN address as best known without sending anything (``127.0.0.1`` if none)."""
    try:
        address = socket.gethostbyname(socket.gethostname())
    except OSError:
        return "127.0.0.1"
    return address or "127.0.0.1"


class RegistrationService:
    """考场注册: rooms, codes, proctor IPs and tokens."""

    def __init__(self, ctx: Context, *, loading: Optional[LoadingService] = None,
                 connected: Optional[Callable[[str], bool]] = None) -> None:
        """``loading``: the core's ``LoadingService`` (standalone use, as in the core tests,
        falls back to one over the same context: it keeps no state of its own).
        ``connected(room_code)``: whether the room's proctor is connected now (the core
        hands ``MonitorService.connected``, the 是否与考场连接 of 考场监控); without it no
        room counts as connected."""
        self.ctx = ctx
        self.loading = loading if loading is not None else LoadingService(ctx)
        self.connected = connected
        #: wrong-code counts, used under ``ctx.lock``
        self._limiter = Limiter()
        #: refused registrations not yet audited (own lock)
        self._refusals = Refusals()
        #: 恢复注册 (kd.core.regrestore)
        self._restore = RegistrationRestore(ctx, self.loading, self._rooms_in_order, connected)

    # -- proctor side (called by the LAN service) --------------------------------------
    def register(self, room_code: str, reg_code: str, ip: str) -> JsonObject:
        """Register a proctor machine for a room. Returns ``{"token", "site_code", "sessions",
        "room_data_sha256"}`` (sessions: the room's sessions with id, name, start, duration_min).

        Raises ``RegistrationRefused``: wrong code or unknown room (one answer), too many
        wrong codes (its ``retry_at``: when the lockout ends), registered from another IP,
        no package loaded. A new token replaces the room's previous one at once.
        """
        room_code = str(room_code or "").strip()[:MAX_INPUT]
        reg_code = str(reg_code or "").strip().upper()[:MAX_INPUT]
        ip = str(ip or "")[:MAX_INPUT]
        ctx = self.ctx
        with ctx.lock:
            # only this room's part of the manifest: a full copy holds every candidate
            manifest = ctx.manifest_view(lambda m: {"site_code": m["site_code"],
                                                    "sessions": self._room_sessions(m, room_code)})
            if manifest is None:
                raise RegistrationRefused("考点尚未导入考务，暂不能注册考场。",
                                          "请等考点管理员完成“导入考务”后再注册。")
            now = ctx.now()
            room = records.room(ctx.stores.runtime, room_code) if room_code else None
            until = self._limiter.blocked_until(room_code, ip, now)
            if until is not None:
                if self._refused(names.REGISTRATION_BLOCKED, room_code, room is not None, ip, now):
                    log.warning("registration of %r from %s refused: too many wrong codes (further refusals "
                                "within %d s are counted, not logged one by one)", room_code, ip,
                                AUDIT_WINDOW.total_seconds())
                blocked = RegistrationRefused(
                    "注册码错误次数过多，已暂停注册。",
                    "请在 {} 之后重试，并核对考点信息表上的考场代码和注册码。".format(format_time(until)[11:19]))
                blocked.retry_at = until  # the LAN reply's retry_after
                raise blocked
            if room is None or not _same(reg_code, room["reg_code"]):
                self._limiter.fail(room_code, ip, now)
                if self._refused(names.REGISTRATION_FAILED, room_code, room is not None, ip, now):
                    log.info("wrong registration code for room %r from %s", room_code, ip)
                raise RegistrationRefused(*WRONG)
            if room.get("ip") and room["ip"] != ip:
                self._refused(names.REGISTRATION_CONFLICTED, room_code, True, ip, now, registered_ip=room["ip"])
                raise RegistrationRefused(
                    "考场 {} 已在另一台监考机（{}）上注册。".format(room_code, room["ip"]),
                    "如需更换监考机，请在考点管理系统“考场注册”中对该考场“撤销注册”后重新注册。")
            again = room.get("ip") == ip
            token = secrets.token_urlsafe(TOKEN_BYTES)
            ctx.stores.runtime.update(model.ROOMS, room_code, {
                "ip": ip, "token": token, "registered_at": format_time(now)})
            ctx.record("proctor", names.ROOM_REGISTERED, room=room_code, ip=ip, again=again)
        return {"token": token, "site_code": manifest["site_code"], "sessions": manifest["sessions"],
                "room_data_sha256": self.loading.room_data_sha256(room_code)}

    @staticmethod
    def _room_sessions(manifest: records.Manifest, room_code: str) -> List[Dict[str, Any]]:
        ids = {c["session"] for c in manifest["candidates"] if c["room"] == room_code}
        return [{"id": s["id"], "name": s["name"], "start": s["start"], "duration_min": s["duration_min"]}
                for s in manifest["sessions"] if s["id"] in ids]

    def _refused(self, action: str, room: str, known: bool, ip: str, now: datetime.datetime,
                 **extra: Any) -> bool:
        """Count a refused registration; audit it when it opens a window (then True), and windows that closed.

        The opening line is written before the refusal is answered (``StoreError`` when it
        cannot be: the answer is then that error).
        """
        closed, opening = self._refusals.note(action, room, known, ip, now, **extra)
        for line in closed:
            self._write_summary(line)
        if opening is not None:
            self.ctx.record("proctor", opening[0], **opening[1])
        return opening is not None

    def _write_summary(self, line: Line) -> bool:
        action, details = line
        log.warning("%s: %d more for room %r from %s between %s and %s", action, details["count"],
                    details.get("room"), details.get("ip"), details.get("from"), details.get("to"))
        try:
            self.ctx.record("proctor", action, **details)
        except StoreError as e:
            log.error("could not audit %d refused registrations (%s, room %r from %s): %s", details["count"],
                      action, details.get("room"), details.get("ip"), e.cause)
            return False
        return True

    def flush_refusals(self, everything: bool = False) -> int:
        """Audit the counted refusals of the windows that have closed (all of them with ``everything``:
        at a clean stop); the number of lines written. Takes no core lock (any thread)."""
        lines = self._refusals.everything() if everything else self._refusals.due(self.ctx.now())
        return sum(1 for line in lines if self._write_summary(line))

    def registered_ips(self) -> Set[str]:
        """The source addresses rooms are registered from now."""
        with self.ctx.lock:
            return {r["ip"] for r in records.rooms(self.ctx.stores.runtime) if r["ip"]}

    def authenticate(self, room_code: str, token: str, ip: str) -> records.Room:
        """The room doc when ``token`` is the room's current token and ``ip`` its registered IP.

        Raises ``RegistrationRefused`` otherwise (revoked, re-registered, other IP).
        """
        with self.ctx.lock:
            room = records.room(self.ctx.stores.runtime, str(room_code or "")[:MAX_INPUT]) if room_code else None
            if (room is None or not room.get("token") or not isinstance(token, str)
                    or not _same(token, room["token"] or "") or room.get("ip") != ip):
                raise RegistrationRefused("监考机的考场注册已失效。", "请在监考机上重新注册考场。")
            return room

    def mark_data_imported(self, room_code: str, token: str, ip: str, sha256: str) -> records.Room:
        """Record that the room's proctor machine imported its room data file (hash ``sha256``).

        Raises ``RegistrationRefused`` (bad token) or ``FormatError`` (not the loaded
        package's room file). Returns the updated room doc.
        """
        with self.ctx.lock:
            self.authenticate(room_code, token, ip)
            expected = self.loading.room_data_sha256(room_code)
            if expected is None or not isinstance(sha256, str) or sha256.lower() != expected:
                raise FormatError("监考机导入的考场数据与考点当前的考场数据包不一致。",
                                  "请在监考机上重新下载并导入本考场的考场数据。",
                                  detail="room {} data {} != {}".format(room_code, sha256, expected))
            doc = records.update_room(self.ctx.stores.runtime, room_code, {
                "data_sha256": expected, "data_imported_at": format_time(self.ctx.now())})
            self.ctx.record("proctor", names.ROOM_DATA_IMPORTED, room=room_code, ip=ip, sha256=expected)
            return doc

    # -- admin side --------------------------------------------------------------------
    def revoke(self, room_code: str, actor: str) -> records.Room:
        """撤销注册: forget the room's IP, token and data import; disconnect it from the LAN service.

        Raises ``UserError`` for an unknown room. Returns the updated room doc.
        """
        with self.ctx.lock:
            room = records.room(self.ctx.stores.runtime, room_code)
            if room is None:
                raise UserError("没有考场 {}。".format(room_code), "请从考场列表中选择考场。")
            doc = records.update_room(self.ctx.stores.runtime, room_code, {
                "ip": None, "token": None, "registered_at": None, "data_sha256": None, "data_imported_at": None})
            self.ctx.record(actor, names.REGISTRATION_REVOKED, room=room_code, ip=room.get("ip"))
        if self.ctx.lan is not None:
            try:
                self.ctx.lan.disconnect_room(room_code)
            except Exception:  # noqa: BLE001 - the revocation stands; the LAN service logs its own trouble
                log.exception("could not disconnect room %s from the LAN service", room_code)
        return doc

    def _rooms_in_order(self) -> List[records.Room]:
        docs = {d["code"]: d for d in records.rooms(self.ctx.stores.runtime)}
        return [docs[r["code"]] for r in self.loading.rooms() if r["code"] in docs]

    def export_site_info(self, folder: str, actor: str, server_address: Optional[str] = None,
                         port: int = model.LAN_PORT) -> Dict[str, str]:
        """导出考点信息: ``{"html": path, "kdinfo": path}`` written into ``folder``.

        The HTML sheet has one page per room (room code, registration code, server
        address, port); the KDINFO is signed by the dongle. Raises ``NotLoaded``,
        ``LockError`` (no dongle), ``StoreError`` (folder not writable).
        """
        ctx = self.ctx
        if server_address is None:  # the address proctors are told (kd.core.status.told_address)
            from kd.core.status import told_address  # noqa: PLC0415 - status reads the LAN port too

            server_address = told_address(ctx) or default_address()
        with ctx.lock:
            manifest = ctx.manifest()
            meta = self.loading.meta()
            if manifest is None or meta is None:
                raise not_loaded()
            rooms = self._rooms_in_order()
            site = manifest["site_code"]
            body = kdinfo.make_body(site, meta["manifest_sha256"], format_time(ctx.now()),
                                    [records.as_doc(r) for r in rooms])
            dongle = ctx.dongle_or_raise()
            sig = dongle.sign(kdinfo.body_digest(body))
            data = kdinfo.build_kdinfo(body, sig.lock_id, sig.clock_ms, sig.signature)
            page = printing.site_info_html(site, manifest["exam_name"], server_address, port, rooms)
            html_path = os.path.join(folder, "考点信息表({}).html".format(site))
            info_path = os.path.join(folder, kdinfo.file_name(site))
            try:
                os.makedirs(folder, exist_ok=True)
                fileio.write_file_durably(html_path, page.encode("utf-8"))
                fileio.write_file_durably(info_path, data)
            except OSError as e:
                raise StoreError("无法写入考点信息文件（{}）。".format(folder),
                                 "请检查所选文件夹（U盘）是否可写、空间是否足够。",
                                 detail=repr(e)) from e
            ctx.stores.runtime.put(model.CHECKS, model.SITE_INFO, {  # what 封场检测 connects to
                "address": server_address, "port": int(port), "exported_at": format_time(ctx.now())})
            ctx.record(actor, names.SITE_INFO_EXPORTED, folder=folder, kdinfo=info_path, html=html_path,
                       rooms=len(rooms), registered=sum(1 for r in rooms if r.get("ip")))
        return {"html": os.path.abspath(html_path), "kdinfo": os.path.abspath(info_path)}

    # -- 恢复注册 (kd.core.regrestore) --------------------------------------------------------
    def restore_preview(self, kdinfo_path: str) -> JsonObject:
        """What 恢复注册 from ``kdinfo_path`` would change; changes nothing
        (``RegistrationRestore.restore_preview``: its keys, and the refusals of ``restore``)."""
        return self._restore.restore_preview(kdinfo_path)

    def restore(self, kdinfo_path: str, actor: str, confirm: Optional[str] = None) -> JsonObject:
        """恢复注册 from a KDINFO file (``RegistrationRestore.restore``: the checks, ``confirm``,
        what is reset, the refusals); returns ``snapshot()``."""
        self._restore.restore(kdinfo_path, actor, confirm)
        return self.snapshot()

    def view(self) -> RegistrationSnapshot:
        """The §3.2 table (``kd.core.snapshots.RegistrationSnapshot``): one row per room in package
        order (``data_imported``: the room's 封场检测 condition, its proctor imported the loaded
        package's room data) and the counts."""
        with self.ctx.lock:
            rows = []
            for room in self._rooms_in_order():
                expected = self.loading.room_data_sha256(room["code"])
                state = registration_state(room, expected)
                rows.append(RegistrationRow(
                    code=room["code"], reg_code=room["reg_code"], ip=room.get("ip"),
                    registered=state != RegistrationState.UNREGISTERED, registered_at=room.get("registered_at"),
                    data_imported=state == RegistrationState.DATA_IMPORTED,
                    data_imported_at=room.get("data_imported_at"), note=room.get("note") or "", state=state))
        registered = sum(1 for r in rows if r.registered)
        return RegistrationSnapshot(columns=tuple(COLUMNS), rooms=tuple(rows), registered=registered,
                                    unregistered=len(rows) - registered)

    def snapshot(self) -> JsonObject:
        """The §3.2 table as plain JSON (``view().as_dict()``)."""
        return self.view().as_dict()


def registration_state(room: records.Room, expected_sha256: Optional[str]) -> RegistrationState:
    """A room's registration: unregistered (no IP), registered, or its data imported (the loaded
    package's room data, ``expected_sha256``)."""
    if not room.get("ip"):
        return RegistrationState.UNREGISTERED
    if expected_sha256 is not None and room.get("data_sha256") == expected_sha256:
        return RegistrationState.DATA_IMPORTED
    return RegistrationState.REGISTERED
