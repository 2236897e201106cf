"""恢复注册 (manual §3.2.2): what restoring a KDINFO changes, and the restore itself.

``RegistrationRestore(ctx, loading, rooms_in_order, connected)`` is the part of
``kd.core.registration.RegistrationService`` that reads a KDINFO (``kd.formats.kdinfo``)
back; the service delegates ``restore_preview`` and ``restore`` to it.

- ``restore_preview(path)``: what 恢复注册 from that KDINFO would change (the same checks
  as ``restore``, nothing changes): the file's export time and, per room, whether its
  registration is lost, changed (IP or code: its token is voided), gained or unchanged
  (``LOSES``, ``CHANGES``, ``GAINS``, ``SAME``), and whether the room is connected now
  (``connected``: the monitor's 是否与考场连接); ``restore_lines(preview)`` says it in
  Chinese.
- ``restore(path, actor, confirm=None)``: a tampered or foreign file is refused and nothing
  changes. ``confirm`` is the preview's ``"confirm"``: the restore is then refused unless
  the file, every room's registration and the connected rooms it cuts off are still what
  the preview showed. Without it, a restore that would drop or change a connected room's
  registration is refused (``ConfirmationRequired``), so no caller does that unasked.
"""

import base64
import datetime
import hashlib
import hmac
import logging
import os
from typing import Any, Callable, Dict, List, Optional

from kd.core import labels, model, names, records
from kd.core.context import Context
from kd.core.loading import LoadingService, not_loaded
from kd.core.ports import DongleSignature
from kd.core.records import JsonObject
from kd.errors import FormatError, UserError
from kd.formats import kdinfo
from kd.formats.signing import canonical_json
from kd.formats.timeutil import read_time

log = logging.getLogger(__name__)


class RegistrationRestore:
    """恢复注册 from a KDINFO: the preview and the restore."""

    def __init__(self, ctx: Context, loading: LoadingService, rooms_in_order: Callable[[], List[records.Room]],
                 connected: Optional[Callable[[str], bool]] = None) -> None:
        """``rooms_in_order()``: the runtime room docs in package order; ``connected(room_code)``:
        whether the room's proctor is connected now (without it no room counts as connected)."""
        self.ctx = ctx
        self.loading = loading
        self.rooms_in_order = rooms_in_order
        self.connected = connected

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
        current = {d["code"]: d for d in self.rooms_in_order()}
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

    def restore_preview(self, kdinfo_path: str) -> JsonObject:
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

    def restore(self, kdinfo_path: str, actor: str, confirm: Optional[str] = None) -> List[str]:
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
        Returns the codes of the rooms whose registration was reset.
        """
        ctx = self.ctx
        info = self._read_kdinfo(kdinfo_path)
        with ctx.lock:
            plan = self._restore_plan(info)
            at_risk = _at_risk(plan)
            if confirm is not None and not hmac.compare_digest(str(confirm).encode("utf-8"),
                                                              self._confirm_token(info, plan).encode("utf-8")):
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
            ctx.record(actor, names.REGISTRATION_RESTORED, file=kdinfo_path, rooms=len(info.rooms),
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
        return reset


#: what a room's registration becomes when a KDINFO is restored (``restore_preview``)
LOSES, CHANGES, GAINS, SAME = "loses", "changes", "gains", "same"
CHANGE_KINDS = (LOSES, CHANGES, GAINS, SAME)
CHANGE_LABELS = labels.CHANGE_LABELS  # {LOSES: 将失去注册, CHANGES: 注册将改变, GAINS: 将恢复注册, SAME: 不变}
CONNECTED_MARK = labels.CONNECTED_MARK
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


_shown = labels.shown


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
