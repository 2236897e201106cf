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
  pairs; the ones with the oldest last failure are forgotten first).
- Refused registrations (``registration_failed``, ``registration_blocked``,
  ``registration_conflict``) are audited per (action, room, source address) and
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
  and ``考点信息表(<site>).KDINFO`` (``kd.formats.kdinfo``, signed by the dongle).
- ``restore_preview(path)``: what 恢复注册 from that KDINFO would change (the same checks
  as ``restore``, nothing changes): the file's export time and, per room, whether its
  registration is lost, changed (IP or code: its token is voided), gained or unchanged,
  and whether the room is connected now (``connected``, handed in by the core: the
  monitor's 是否与考场连接); ``restore_lines(preview)`` says it in Chinese.
- ``restore(path, actor, confirm=None)``: 恢复注册 from a KDINFO; a tampered or foreign
  file is refused and nothing changes. ``confirm`` is the preview's ``"confirm"``: the
  restore is then refused unless the file, every room's registration and the connected
  rooms it cuts off are still what the preview showed. Without it, a restore that would
  drop or change a connected room's registration is refused (``ConfirmationRequired``), so
  no caller does that unasked.
- ``snapshot()``: the §3.2 table (考场代码 | 注册码 | 注册IP | 封场检测 | 备注) and the
  counts 已注册 / 未注册.
"""

import base64
import datetime
import hashlib
import hmac
import logging
import os
import secrets
import socket
import threading
from collections import OrderedDict, deque
from typing import Any, Callable, Deque, Dict, List, Optional, Set, Tuple

from kd import fileio
from kd.core import model, printing
from kd.core.context import Context
from kd.core.loading import LoadingService, not_loaded
from kd.core.ports import DongleSignature
from kd.errors import FormatError, RegistrationRefused, StoreError, UserError
from kd.formats import kdinfo
from kd.formats.signing import canonical_json
from kd.formats.timeutil import format_time, read_time

log = logging.getLogger(__name__)

WINDOW = datetime.timedelta(minutes=5)
#: wrong codes per room and source address within ``WINDOW``; then that address is refused for that room
ROOM_MAX_FAILURES = 10
#: wrong codes per source address (every room together) within ``WINDOW``; then it is refused for every room
IP_MAX_FAILURES = 30
#: addresses, and (room, address) pairs, whose wrong codes are remembered at most
MAX_TRACKED_IPS = 4096
MAX_TRACKED_PAIRS = 4 * MAX_TRACKED_IPS
#: repeated refused registrations are audited as one line per (room, address) and window
AUDIT_WINDOW = datetime.timedelta(seconds=60)
#: audit windows open at once at most; beyond, a flood is counted in one line per action and window
AUDIT_MAX_KEYS = 256
TOKEN_BYTES = 24
MAX_INPUT = 64

COLUMNS = ["考场代码", "注册码", "注册IP", "封场检测", "备注"]

WRONG = ("考场代码或注册码错误，注册失败。", "请核对考点信息表上的考场代码和注册码后重试。")

Times = Deque[datetime.datetime]
Line = Tuple[str, Dict[str, Any]]


class _Limiter:
    """Wrong-code times per (room, address) and per address within ``WINDOW`` (in memory, bounded).

    Each table is ordered by last failure: keys whose window has passed are dropped from
    its front, and beyond its cap the key with the oldest last failure is forgotten.
    """

    def __init__(self) -> None:
        self.pairs: OrderedDict[Tuple[str, str], Times] = OrderedDict()
        self.ips: OrderedDict[str, Times] = OrderedDict()

    @staticmethod
    def _recent(table: "OrderedDict[Any, Times]", key: Any, now: datetime.datetime) -> Times:
        times = table.get(key)
        if times is None:
            return deque()
        while times and (now - times[0] >= WINDOW or times[0] > now):
            times.popleft()
        if not times:
            del table[key]
        return times

    def blocked_until(self, room: str, ip: str, now: datetime.datetime) -> Optional[datetime.datetime]:
        pair_times = self._recent(self.pairs, (room, ip), now)
        ip_times = self._recent(self.ips, ip, now)
        until = None
        if len(pair_times) >= ROOM_MAX_FAILURES:
            until = pair_times[-ROOM_MAX_FAILURES] + WINDOW
        if len(ip_times) >= IP_MAX_FAILURES:
            ip_until = ip_times[-IP_MAX_FAILURES] + WINDOW
            until = ip_until if until is None else max(until, ip_until)
        return until

    def fail(self, room: str, ip: str, now: datetime.datetime) -> None:
        self._add(self.pairs, (room, ip), ROOM_MAX_FAILURES, MAX_TRACKED_PAIRS, now)
        self._add(self.ips, ip, IP_MAX_FAILURES, MAX_TRACKED_IPS, now)

    @staticmethod
    def _add(table: "OrderedDict[Any, Times]", key: Any, keep: int, cap: int, now: datetime.datetime) -> None:
        times = table.pop(key, None)
        if times is None:
            times = deque(maxlen=keep)  # blocked_until needs only the last ``keep``
        times.append(now)
        table[key] = times  # at the end: the newest last failure
        while table:
            oldest = next(iter(table.values()))
            if len(table) <= cap and oldest and now - oldest[-1] < WINDOW:
                break
            table.popitem(last=False)


class _Window:
    """One audit window of refusals: what, where from, since when, how many not yet written."""

    def __init__(self, action: str, room: Optional[str], ip: Optional[str], now: datetime.datetime,
                 extra: Dict[str, Any]) -> None:
        self.action, self.room, self.ip, self.opened, self.extra = action, room, ip, now, extra
        self.count = 0
        self.first: Optional[datetime.datetime] = None
        self.last: Optional[datetime.datetime] = None

    def add(self, now: datetime.datetime) -> None:
        self.count += 1
        self.first = self.first or now
        self.last = now

    def due(self, now: datetime.datetime) -> bool:
        return now - self.opened >= AUDIT_WINDOW or now < self.opened  # (a clock set back closes it too)

    def summary(self) -> Line:
        details = dict(self.extra, room=self.room, ip=self.ip, count=self.count,
                       window_s=int(AUDIT_WINDOW.total_seconds()), aggregated=True,
                       **{"from": format_time(self.first) if self.first else None,
                          "to": format_time(self.last) if self.last else None})
        return self.action, details


class _Refusals:
    """Refused registrations, audited once per (action, room, address) and ``AUDIT_WINDOW``.

    ``note()`` returns the lines to write now: windows that have closed (their counted
    refusals), and this refusal's own line when it opens a window. ``due()`` /
    ``everything()`` return the closed (or all) windows' lines. Own lock; never calls out.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: OrderedDict[Tuple[str, Optional[str], str], _Window] = OrderedDict()
        self._overflow: Dict[str, _Window] = {}

    def note(self, action: str, room: str, known: bool, ip: str, now: datetime.datetime,
             **extra: Any) -> Tuple[List[Line], Optional[Line]]:
        """Count one refusal: (the closed windows' lines, this refusal's own line if it opens a window)."""
        key = (action, room if known else None, ip)
        with self._lock:
            closed = self._due(now)
            window = self._open.get(key)
            if window is not None:
                window.add(now)
                return closed, None
            if len(self._open) >= AUDIT_MAX_KEYS:
                over = self._overflow.get(action)
                if over is None:
                    over = self._overflow[action] = _Window(action, None, None, now, {"overflow": True})
                over.add(now)
                return closed, None
            details = dict(extra) if known else dict(extra, unknown_room=True)
            self._open[key] = _Window(action, room, ip, now, details)
            return closed, (action, dict(details, room=room, ip=ip, count=1,
                                         window_s=int(AUDIT_WINDOW.total_seconds())))

    def _due(self, now: datetime.datetime) -> List[Line]:
        closed = [key for key, window in self._open.items() if window.due(now)]
        windows = [self._open.pop(key) for key in closed]
        windows += [self._overflow.pop(action) for action, w in list(self._overflow.items()) if w.due(now)]
        return [w.summary() for w in windows if w.count]

    def due(self, now: datetime.datetime) -> List[Line]:
        with self._lock:
            if not self._open and not self._overflow:
                return []
            first = next(iter(self._open.values()), None)
            if (first is None or not first.due(now)) and not any(w.due(now) for w in self._overflow.values()):
                return []
            return self._due(now)

    def everything(self) -> List[Line]:
        with self._lock:
            windows = list(self._open.values()) + list(self._overflow.values())
            self._open.clear()
            self._overflow.clear()
        return [w.summary() for w in windows if w.count]


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
        self._limiter = _Limiter()
        #: refused registrations not yet audited (own lock)
        self._refusals = _Refusals()

    # -- proctor side (called by the LAN service) --------------------------------------
    def register(self, room_code: str, reg_code: str, ip: str) -> Dict[str, Any]:
        """Register a proctor machine for a room. Returns ``{"token", "site_code", "sessions",
        "room_data_sha256"}`` (sessions: the room's sessions with id, name, start, duration_min).

        Raises ``RegistrationRefused``: wrong code or unknown room (one answer), too many
        wrong codes, registered from another IP, no package loaded.
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
            room = ctx.stores.runtime.get(model.ROOMS, room_code) if room_code else None
            until = self._limiter.blocked_until(room_code, ip, now)
            if until is not None:
                if self._refused("registration_blocked", room_code, room is not None, ip, now):
                    log.warning("registration of %r from %s refused: too many wrong codes (further refusals "
                                "within %d s are counted, not logged one by one)", room_code, ip,
                                AUDIT_WINDOW.total_seconds())
                raise RegistrationRefused(
                    "注册码错误次数过多，已暂停注册。",
                    "请在 {} 之后重试，并核对考点信息表上的考场代码和注册码。".format(format_time(until)[11:19]))
            if room is None or not _same(reg_code, room["reg_code"]):
                self._limiter.fail(room_code, ip, now)
                if self._refused("registration_failed", room_code, room is not None, ip, now):
                    log.info("wrong registration code for room %r from %s", room_code, ip)
                raise RegistrationRefused(*WRONG)
            if room.get("ip") and room["ip"] != ip:
                self._refused("registration_conflict", room_code, True, ip, now, registered_ip=room["ip"])
                raise RegistrationRefused(
                    "考场 {} 已在另一台监考机（{}）上注册。".format(room_code, room["ip"]),
                    "如需更换监考机，请在考点管理系统“考场注册”中对该考场“撤销注册”后重新注册。")
            again = room.get("ip") == ip
            token = secrets.token_urlsafe(TOKEN_BYTES)
            ctx.stores.runtime.update(model.ROOMS, room_code, {
                "ip": ip, "token": token, "registered_at": format_time(now)})
            ctx.record("proctor", "room_registered", room=room_code, ip=ip, again=again)
        return {"token": token, "site_code": manifest["site_code"], "sessions": manifest["sessions"],
                "room_data_sha256": self.loading.room_data_sha256(room_code)}

    @staticmethod
    def _room_sessions(manifest: Dict[str, Any], room_code: str) -> List[Dict[str, Any]]:
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
            return {r["ip"] for r in self.ctx.stores.runtime.all(model.ROOMS) if r.get("ip")}

    def authenticate(self, room_code: str, token: str, ip: str) -> Dict[str, Any]:
        """The room doc when ``token`` is the room's current token and ``ip`` its registered IP.

        Raises ``RegistrationRefused`` otherwise (revoked, re-registered, other IP).
        """
        with self.ctx.lock:
            room = self.ctx.stores.runtime.get(model.ROOMS, str(room_code or "")[:MAX_INPUT]) if room_code else None
            if (room is None or not room.get("token") or not isinstance(token, str)
                    or not _same(token, room["token"]) or room.get("ip") != ip):
                raise RegistrationRefused("监考机的考场注册已失效。", "请在监考机上重新注册考场。")
            return room

    def mark_data_imported(self, room_code: str, token: str, ip: str, sha256: str) -> Dict[str, Any]:
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
            doc = self.ctx.stores.runtime.update(model.ROOMS, room_code, {
                "data_sha256": expected, "data_imported_at": format_time(self.ctx.now())})
            self.ctx.record("proctor", "room_data_imported", room=room_code, ip=ip, sha256=expected)
            return doc

    # -- admin side --------------------------------------------------------------------
    def revoke(self, room_code: str, actor: str) -> Dict[str, Any]:
        """撤销注册: forget the room's IP, token and data import; disconnect it from the LAN service.

        Raises ``UserError`` for an unknown room. Returns the updated room doc.
        """
        with self.ctx.lock:
            room = self.ctx.stores.runtime.get(model.ROOMS, room_code)
            if room is None:
                raise UserError("没有考场 {}。".format(room_code), "请从考场列表中选择考场。")
            doc = self.ctx.stores.runtime.update(model.ROOMS, room_code, {
                "ip": None, "token": None, "registered_at": None, "data_sha256": None, "data_imported_at": None})
            self.ctx.record(actor, "registration_revoked", room=room_code, ip=room.get("ip"))
        if self.ctx.lan is not None:
            try:
                self.ctx.lan.disconnect_room(room_code)
            except Exception:  # noqa: BLE001 - the revocation stands; the LAN service logs its own trouble
                log.exception("could not disconnect room %s from the LAN service", room_code)
        return doc

    def _rooms_in_order(self) -> List[Dict[str, Any]]:
        docs = {d["code"]: d for d in self.ctx.stores.runtime.all(model.ROOMS)}
        return [docs[r["code"]] for r in self.loading.rooms() if r["code"] in docs]

    def export_site_info(self, folder: str, actor: str, server_address: Optional[str] = None,
                         port: int = model.LAN_PORT) -> Dict[str, str]:
        """导出考点信息: ``{"html": path, "kdinfo": path}`` written into ``folder``.

        The HTML sheet has one page per room (room code, registration code, server
        address, port); the KDINFO is signed by the dongle. Raises ``NotLoaded``,
        ``LockError`` (no dongle), ``StoreError`` (folder not writable).
        """
        ctx = self.ctx
        if server_address is None:
            server_address = ctx.lan.address() if ctx.lan is not None else default_address()
        with ctx.lock:
            manifest = ctx.manifest()
            meta = self.loading.meta()
            if manifest is None or meta is None:
                raise not_loaded()
            rooms = self._rooms_in_order()
            site = manifest["site_code"]
            body = kdinfo.make_body(site, meta["manifest_sha256"], format_time(ctx.now()), rooms)
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
            ctx.record(actor, "site_info_exported", folder=folder, kdinfo=info_path, html=html_path,
                       rooms=len(rooms), registered=sum(1 for r in rooms if r.get("ip")))
        return {"html": os.path.abspath(html_path), "kdinfo": os.path.abspath(info_path)}

    # -- 恢复注册 ------------------------------------------------------------------------
    def _read_kdinfo(self, kdinfo_path: str) -> kdinfo.KdInfo:
        try:
            with open(kdinfo_path, "rb") as f:
                data = f.read(kdinfo.MAX_BYTES + 1)
        except OSError as e:
            raise FormatError("无法读取考点信息备份文件：{}".format(kdinfo_path), kdinfo.REMEDY, detail=repr(e)) from e
        return kdinfo.parse_kdinfo(data)

    def _restore_plan(self, info: kdinfo.KdInfo) -> List[Dict[str, Any]]:
        """Check ``info`` against this site (under ``ctx.lock``) and say what it changes, per room.

        The checks, in order: a package is loaded, the site code and the package
        (manifest hash), the lock id and the dongle signature by the package's lock key,
        every room of the file in the package. Raises ``NotLoaded``, ``FormatError``.
        """
        ctx = self.ctx
        manifest = ctx.manifest()
        meta = self.loading.meta()
        if manifest is None or meta is None:
            raise not_loaded()
        kdinfo.check_binding(info, ctx.site_code(), meta["manifest_sha256"])
        lock = manifest["lock"]
        if info.lock_id != lock["id"]:
            raise kdinfo.signature_error("kdinfo lock {} != package lock {}".format(info.lock_id, lock["id"]))
        if ctx.dongle is None:
            raise kdinfo.signature_error("no dongle port to check the signature")
        public_key = base64.b64decode(lock["public_key"])
        sig = DongleSignature(info.lock_id, info.clock_ms, info.signature)
        if not ctx.dongle.check_signature(public_key, info.digest, sig):
            raise kdinfo.signature_error("kdinfo signature does not verify")
        current = {d["code"]: d for d in self._rooms_in_order()}
        unknown = [r["code"] for r in info.rooms if r["code"] not in current]
        if unknown:
            raise FormatError("考点信息备份文件中的考场不在当前考场数据包中：{}".format("、".join(unknown[:5])),
                              kdinfo.REMEDY)
        restored = {r["code"]: r for r in info.rooms}
        plan = []
        for code, doc in current.items():  # package order; a room the file lacks stays as it is
            room = restored.get(code)
            ip, reg = doc.get("ip") or None, doc.get("reg_code")
            new_ip = (room["ip"] or None) if room is not None else ip
            new_reg = room["reg_code"] if room is not None else reg
            if new_ip == ip and new_reg == reg:
                change = SAME
            elif ip and not new_ip:
                change = LOSES
            elif not ip and new_ip and new_reg == reg:
                change = GAINS
            else:
                change = CHANGES
            plan.append({"code": code, "change": change, "in_file": room is not None,
                         "ip": ip, "reg_code": reg, "registered_at": doc.get("registered_at"),
                         "new_ip": new_ip, "new_reg_code": new_reg,
                         "new_registered_at": room["registered_at"] if room is not None and new_ip else None,
                         "connected": self._connected(code)})
        return plan

    def _connected(self, room_code: str) -> bool:
        if self.connected is None:
            return False
        try:
            return bool(self.connected(room_code))
        except Exception:  # noqa: BLE001 - an unknown state counts as connected: never drop it unasked
            log.exception("could not tell whether room %s is connected", room_code)
            return True

    @staticmethod
    def _confirm_token(info: kdinfo.KdInfo, plan: List[Dict[str, Any]]) -> str:
        """What a confirmation confirms: this file, every room's registration before and after,
        and which connected rooms it cuts off."""
        shown = [[r["code"], r["ip"], r["reg_code"], r["new_ip"], r["new_reg_code"]] for r in plan]
        text = canonical_json({"file": info.digest.hex(), "rooms": shown, "at_risk": _at_risk(plan)})
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def restore_preview(self, kdinfo_path: str) -> Dict[str, Any]:
        """What 恢复注册 from ``kdinfo_path`` would change; changes nothing.

        The same checks as ``restore`` (and the same refusals: ``FormatError``,
        ``NotLoaded``, ``LockError``). Returns ``{"file", "created_at" (the file's export
        time), "rooms": [{"code", "change" (loses | changes | gains | same), "in_file",
        "ip", "reg_code", "registered_at", "new_ip", "new_reg_code", "new_registered_at",
        "connected"}] (package order), "loses", "changes", "gains", "same" (room codes),
        "connected" (rooms connected now), "at_risk" (connected rooms that lose or change
        their registration: their proctor is disconnected), "registered_after" (the
        latest registration time here later than the export, or None), "confirm" (pass it
        to ``restore``), "lines" (the same in Chinese, see ``restore_lines``)}``.
        """
        info = self._read_kdinfo(kdinfo_path)
        with self.ctx.lock:
            plan = self._restore_plan(info)
        created = info.body["created_at"]
        later = [r["registered_at"] for r in plan if r["ip"] and r["registered_at"]
                 and _later(r["registered_at"], created)]
        preview: Dict[str, Any] = {
            "file": os.path.abspath(kdinfo_path), "created_at": created, "rooms": plan,
            "connected": [r["code"] for r in plan if r["connected"]],
            "at_risk": _at_risk(plan),
            "registered_after": max(later, key=_sort_time) if later else None,
            "confirm": self._confirm_token(info, plan),
        }
        for kind in CHANGE_KINDS:
            preview[kind] = [r["code"] for r in plan if r["change"] == kind]
        preview["lines"] = restore_lines(preview)
        return preview

    def restore(self, kdinfo_path: str, actor: str, confirm: Optional[str] = None) -> Dict[str, Any]:
        """恢复注册 from a KDINFO file: registration codes and IPs of every room in it.

        Checked first, nothing changes on refusal: the file's form, the site code, the
        loaded package (manifest hash), the dongle signature by the package's lock key.
        ``confirm`` is the ``"confirm"`` of ``restore_preview`` the administrator agreed
        to: when given, the restore is refused unless the file, every room's registration
        and the connected rooms it cuts off are still what the preview showed; without it, the restore is
        refused when it would drop or change the registration of a room connected now
        (``ConfirmationRequired``). A room whose IP or registration code changes loses
        its token and data import, and its LAN connections are closed. Raises
        ``FormatError``, ``NotLoaded``, ``LockError``, ``ConfirmationRequired``.
        Returns ``snapshot()``.
        """
        ctx = self.ctx
        info = self._read_kdinfo(kdinfo_path)
        with ctx.lock:
            plan = self._restore_plan(info)
            at_risk = _at_risk(plan)
            if confirm is not None and not _same(str(confirm), self._confirm_token(info, plan)):
                raise ConfirmationRequired(
                    "确认之后考场的注册或连接情况又有变化（例如又有考场注册或连接），未恢复注册。",
                    "请重新点击“恢复注册”，核对将要改变的考场后再确认。",
                    detail="confirmation {} does not match the current plan".format(str(confirm)[:16]))
            if confirm is None and at_risk:
                raise ConfirmationRequired(
                    "恢复注册将使当前已连接的考场 {} 失去或改变注册（其监考机会断开），未恢复注册。".format(
                        "、".join(at_risk[:10]) + ("等" if len(at_risk) > 10 else "")),
                    "请先查看恢复注册将改变哪些考场（“考场注册”页面的“恢复注册”会列出并请您确认），"
                    "确认选择的是正确的考点信息备份文件后再恢复。",
                    detail="connected rooms at risk: {}".format(at_risk))
            runtime = ctx.stores.runtime
            reset = []
            with runtime.transaction():
                for room in plan:
                    if room["change"] == SAME:  # its registration, token and data import stay
                        continue
                    runtime.update(model.ROOMS, room["code"], {
                        "reg_code": room["new_reg_code"], "ip": room["new_ip"],
                        "registered_at": room["new_registered_at"],
                        "token": None, "data_sha256": None, "data_imported_at": None})
                    if room["ip"]:
                        reset.append(room["code"])
            ctx.record(actor, "registration_restored", file=kdinfo_path, rooms=len(info.rooms),
                       registered=sum(1 for r in info.rooms if r["ip"]), created_at=info.body["created_at"],
                       loses=[r["code"] for r in plan if r["change"] == LOSES],
                       changes=[r["code"] for r in plan if r["change"] == CHANGES],
                       reset=reset, disconnected=at_risk, confirmed=confirm is not None)
        if ctx.lan is not None:
            for code in reset:  # their tokens are void: close their connections now, as 撤销注册 does
                try:
                    ctx.lan.disconnect_room(code)
                except Exception:  # noqa: BLE001 - the restore stands; the LAN service logs its own trouble
                    log.exception("could not disconnect room %s from the LAN service", code)
        return self.snapshot()

    def snapshot(self) -> Dict[str, Any]:
        """The §3.2 table: one row per room (``code``, ``reg_code``, ``ip``, ``registered``,
        ``registered_at``, ``data_imported`` (the room's 封场检测 condition: its proctor
        imported the loaded package's room data), ``note``) and the counts."""
        with self.ctx.lock:
            rooms = self._rooms_in_order()
            rows = []
            for room in rooms:
                expected = self.loading.room_data_sha256(room["code"])
                rows.append({
                    "code": room["code"], "reg_code": room["reg_code"], "ip": room.get("ip"),
                    "registered": bool(room.get("ip")), "registered_at": room.get("registered_at"),
                    "data_imported": bool(room.get("ip")) and expected is not None
                    and room.get("data_sha256") == expected,
                    "data_imported_at": room.get("data_imported_at"), "note": room.get("note") or "",
                })
        registered = sum(1 for r in rows if r["registered"])
        return {"columns": COLUMNS, "rooms": rows, "registered": registered, "unregistered": len(rows) - registered}


# -- 恢复注册: what a KDINFO changes ------------------------------------------------------

#: what a room's registration becomes when a KDINFO is restored (``restore_preview``)
LOSES, CHANGES, GAINS, SAME = "loses", "changes", "gains", "same"
CHANGE_KINDS = (LOSES, CHANGES, GAINS, SAME)
CHANGE_LABELS = {LOSES: "将失去注册", CHANGES: "注册将改变", GAINS: "将恢复注册", SAME: "不变"}
CONNECTED_MARK = "当前已连接"
#: rooms named per line of ``restore_lines`` (the rest counted)
LINE_ROOMS = 20


class ConfirmationRequired(UserError):
    """恢复注册 would drop or change a connected room's registration, or differs from what was confirmed."""


def _at_risk(plan: List[Dict[str, Any]]) -> List[str]:
    """The connected rooms a restore cuts off (they lose or change their registration)."""
    return [r["code"] for r in plan if r["connected"] and r["change"] in (LOSES, CHANGES)]


def _sort_time(text: str) -> datetime.datetime:
    return read_time(text)


def _later(text: str, than: str) -> bool:
    try:
        return read_time(text) > read_time(than)
    except ValueError:
        return False


def _shown(text: Optional[str]) -> str:
    """An ISO time as the screens show it: ``2026-06-13 08:10:00``."""
    return str(text or "")[:19].replace("T", " ")


def _room_text(room: Dict[str, Any]) -> str:
    notes = []
    if room["connected"]:
        notes.append(CONNECTED_MARK)
    if room["change"] == CHANGES:
        if room["ip"] != room["new_ip"]:
            notes.append("注册IP {} → {}".format(room["ip"] or "无", room["new_ip"] or "无"))
        if room["reg_code"] != room["new_reg_code"]:
            notes.append("注册码 {} → {}".format(room["reg_code"], room["new_reg_code"]))
    elif room["change"] == LOSES:
        notes.append("注册IP {}".format(room["ip"]))
    elif room["change"] == GAINS:
        notes.append("注册IP {}".format(room["new_ip"]))
    return "{}（{}）".format(room["code"], "；".join(notes)) if notes else room["code"]


def restore_lines(preview: Dict[str, Any]) -> List[str]:
    """``restore_preview`` in Chinese, one line per kind of change (the 恢复注册 confirmation, the CLI)."""
    lines = ["文件导出时间：{}".format(_shown(preview["created_at"]))]
    if preview.get("registered_after"):
        lines.append("注意：此文件导出之后，本机又有考场注册（最近一次 {}），"
                     "它可能不是最新导出的考点信息备份文件。".format(_shown(preview["registered_after"])))
    by_code = {r["code"]: r for r in preview["rooms"]}
    for kind in CHANGE_KINDS:
        codes = preview[kind]
        if not codes:
            continue
        rooms = sorted((by_code[c] for c in codes), key=lambda r: not r["connected"])  # connected first
        if kind == SAME:
            named = [r["code"] + ("（{}）".format(CONNECTED_MARK) if r["connected"] else "") for r in rooms]
        else:
            named = [_room_text(r) for r in rooms]
        more = len(named) - LINE_ROOMS
        lines.append("{}（{}个）：{}{}".format(CHANGE_LABELS[kind], len(codes), "、".join(named[:LINE_ROOMS]),
                                            "等" if more > 0 else ""))
    if preview["at_risk"]:
        lines.append("当前已连接的考场 {} 的监考机将断开，需要在监考机上重新注册。".format(
            "、".join(preview["at_risk"])))
    if not any(preview[kind] for kind in (LOSES, CHANGES, GAINS)):
        lines.append("此文件与本机当前的注册信息相同，恢复后不会有变化。")
    return lines
