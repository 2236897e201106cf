"""封场检测 (screens.md §3.4): may the site be sealed? A go/no-go check with evidence.

``SealCheckService(ctx, outbox).run(actor, min_free_bytes=None)`` checks, in this order, each item giving
``{"id", "label", "status": "pass"|"fail"|"skipped", "detail", "remedy"}`` (Chinese):

==============  =====================================================================
package         the site package is loaded and was verified (exam package/meta)
registered      every room of the package is registered (runtime rooms/<code>)
room_data       every registered room has imported its room data (and the hash matches)
authorized      every session of the package is authorized (runtime sessions/<id>)
dongle          the package's dongle is attached and proves its identity
lan             the proctor LAN service is listening
lan_address     the LAN service answers on the address and port the 考点信息表 names (the
                last 导出考点信息, runtime ``checks/site_info``; before any export, the address
                the status bar shows): a real TCP connect and the harmless ``bye`` request
                (docs/lan-protocol.md §4), as a proctor machine would; fails also when the
                sheet names another address or port than the ones the site now serves
                and tells (re-export it), or a loopback address while the service also
                listens on this PC's other addresses (no other PC reaches 127.x); in drill
                mode a loopback sheet is right (the simulated proctors run on this PC)
disk            free space of the data folder's disk >= ``min_free_bytes`` (2 GB; the
                service's own, or the one a run is given: ``seal-check --min-free-gb``)
clock           system clock within ``max_clock_skew_s`` (120 s) of the platform's;
                ``skipped`` (not failed) when the platform cannot be reached; a measured
                item also carries ``skew_s`` (this PC minus the platform, seconds)
==============  =====================================================================

The check passes when no item fails. The result is stored in runtime ``checks/seal``
either way (``passed_at`` keeps the time of the last passing run); a passing run also
enqueues a ``seal_check`` report in the outbox, whose delivery state (上报成功 and its
time) is part of ``snapshot()``.
"""

import base64
import shutil
from typing import Any, Dict, List, Optional

from kd.core import labels, lifecycle, model, names, records
from kd.core.context import Context
from kd.core.outbox import FAILED, SENT, Outbox
from kd.core.records import JsonObject
from kd.core.snapshots import SealItem, SealReport, SealRoom, SealSnapshot
from kd.core.states import CheckStatus
from kd.core.status import told_address
from kd.errors import UserError
from kd.formats.timeutil import format_time

PASS, FAIL, SKIPPED = CheckStatus.PASS.value, CheckStatus.FAIL.value, CheckStatus.SKIPPED.value
STATUS_LABELS = {status.value: labels.label(status) for status in CheckStatus}  # 通过 / 未通过 / 未检测
GB = 1024 ** 3

LABELS = labels.SEAL_ITEM_LABELS


def _codes(codes: List[str], limit: int = 10) -> str:
    shown = "、".join(codes[:limit])
    return shown + ("等 {} 个".format(len(codes)) if len(codes) > limit else "")


class SealCheckService:
    """封场检测: ``run(actor)`` checks and stores; ``snapshot()`` shows the last result."""

    def __init__(self, ctx: Context, outbox: Outbox, *, min_free_bytes: int = 2 * GB,
                 max_clock_skew_s: float = 120.0) -> None:
        self.ctx = ctx
        self.outbox = outbox
        self.min_free_bytes = int(min_free_bytes)
        self.max_clock_skew_s = float(max_clock_skew_s)

    # -- the items ----------------------------------------------------------------------
    @staticmethod
    def _item(key: str, status: str, detail: str, remedy: str = "") -> JsonObject:
        return {"id": key, "label": LABELS[key], "status": status, "status_label": STATUS_LABELS[status],
                "detail": detail, "remedy": remedy if status == FAIL else ""}

    def _package(self, manifest: Optional[records.Manifest]) -> JsonObject:
        meta = self.ctx.stores.exam.get(model.PACKAGE, model.PACKAGE_META) or {}
        if manifest is None or not meta.get("verified_at"):
            return self._item("package", FAIL, "尚未导入考务（没有通过校验的考场数据包）。",
                              "请在“导入考务”中点击“载入”，或手工导入监控平台提供的考场数据包（.zip）。")
        return self._item("package", PASS, "考场数据包发布时间 {}，校验通过时间 {}。".format(
            _shown(manifest.get("publish_time")), _shown(meta.get("verified_at"))))

    def _registered(self, codes: List[str], rooms: Dict[str, Dict[str, Any]]) -> JsonObject:
        if not codes:
            return self._item("registered", FAIL, "没有考场（尚未导入考务）。", "请先完成“导入考务”。")
        missing = [c for c in codes if not rooms.get(c, {}).get("registered_at")]
        if missing:
            return self._item("registered", FAIL, "未注册考场 {} 个：{}。".format(len(missing), _codes(missing)),
                              "请在这些考场的监考机上用考场代码和注册码完成考场注册（可“导出考点信息”发给各考场）。")
        return self._item("registered", PASS, "已注册考场 {} 个，未注册考场 0 个。".format(len(codes)))

    def _room_data(self, codes: List[str], rooms: Dict[str, Dict[str, Any]],
                   manifest: Optional[records.Manifest]) -> JsonObject:
        registered = [c for c in codes if rooms.get(c, {}).get("registered_at")]
        if not registered:
            return self._item("room_data", FAIL, "没有已注册的考场。", "请先完成考场注册，再在监考机上导入考场数据。")
        expected = {}
        for entry in (manifest or {}).get("members") or []:
            if isinstance(entry, dict) and isinstance(entry.get("name"), str):
                expected[entry["name"]] = entry.get("sha256")
        missing, wrong = [], []
        for code in registered:
            room = rooms[code]
            if not room.get("data_imported_at"):
                missing.append(code)
                continue
            want = expected.get("rooms/{}.dat".format(code))
            if want and room.get("data_sha256") and room["data_sha256"] != want:
                wrong.append(code)
        if missing or wrong:
            parts = []
            if missing:
                parts.append("未导入考场数据 {} 个：{}".format(len(missing), _codes(missing)))
            if wrong:
                parts.append("考场数据与数据包不符 {} 个：{}".format(len(wrong), _codes(wrong)))
            return self._item("room_data", FAIL, "；".join(parts) + "。",
                              "请在这些考场的监考机上重新导入考场数据，完成后再做封场检测。")
        return self._item("room_data", PASS, "已注册的 {} 个考场均已导入考场数据。".format(len(registered)))

    def _authorized(self, manifest: Optional[records.Manifest]) -> JsonObject:
        sessions = [s["id"] for s in (manifest or {}).get("sessions") or []]
        if not sessions:
            return self._item("authorized", FAIL, "没有场次（尚未导入考务）。", "请先完成“导入考务”。")
        missing = [sid for sid in sessions
                   if not lifecycle.authorized(records.session(self.ctx.stores.runtime, sid))]
        if missing:
            return self._item("authorized", FAIL, "未授权场次 {} 个：{}。".format(len(missing), _codes(missing)),
                              "请在“考试授权”中联网授权，或手工导入这些场次的考试授权文件（.PTQ）。")
        return self._item("authorized", PASS, "{} 个场次均已授权。".format(len(sessions)))

    def _dongle(self, manifest: Optional[records.Manifest]) -> JsonObject:
        lock = (manifest or {}).get("lock")
        if not lock or not lock.get("id"):
            return self._item("dongle", FAIL, "尚未导入考务，不知道本考点登记的机考锁。", "请先完成“导入考务”。")
        dongle = self.ctx.dongle
        if dongle is None or not dongle.attached():
            return self._item("dongle", FAIL, "未检测到机考锁（本考点登记的机考锁：{}）。".format(lock["id"]),
                              "请插入本考点的机考锁后重新检测。")
        try:
            key = base64.b64decode(lock["public_key"])
            dongle.verify(lock["id"], key)
        except (UserError, ValueError, TypeError) as e:
            cause = e.cause if isinstance(e, UserError) else str(e)
            return self._item("dongle", FAIL, "机考锁验证未通过：{}".format(cause),
                              "请插入本考点登记的机考锁（{}）后重新检测。".format(lock["id"]))
        return self._item("dongle", PASS, "机考锁 {} 在位，身份验证通过。".format(lock["id"]))

    def _lan(self) -> JsonObject:
        lan = self.ctx.lan
        if lan is None:
            return self._item("lan", FAIL, "局域网服务未启动。",
                              "请重新启动考点管理系统；如仍未启动，请检查端口 {} 是否被占用。".format(model.LAN_PORT))
        try:
            listening = lan.listening()
            where = "{}:{}".format(lan.address(), lan.port())
        except Exception as e:  # noqa: BLE001 - a broken service is a failed item, not a crash
            return self._item("lan", FAIL, "局域网服务状态未知：{}".format(e), "请重新启动考点管理系统。")
        if not listening:
            return self._item("lan", FAIL, "局域网服务未在监听（{}）。".format(where),
                              "请检查端口是否被其他程序占用、防火墙是否放行，然后重新启动考点管理系统。")
        return self._item("lan", PASS, "局域网服务正在监听 {}。".format(where))

    def _lan_address(self) -> JsonObject:
        lan = self.ctx.lan
        if lan is None:
            return self._item("lan_address", FAIL, "局域网服务未启动，无法检测考点信息表上的地址。",
                              "请重新启动考点管理系统后重新检测。")
        try:
            told, port = told_address(self.ctx) or str(lan.address()), int(lan.port())
        except Exception as e:  # noqa: BLE001 - a broken service is a failed item, not a crash
            return self._item("lan_address", FAIL, "局域网服务状态未知：{}".format(e), "请重新启动考点管理系统。")
        sheet = self.ctx.stores.runtime.get(model.CHECKS, model.SITE_INFO) or {}
        address, sheet_port = sheet.get("address") or told, int(sheet.get("port") or port)
        where = "{}:{}".format(address, sheet_port)
        named = ("考点信息表上的地址 {}" if sheet else "状态栏上的地址 {}（尚未导出考点信息）").format(where)
        export = "请在“考场注册”中重新“导出考点信息”，并把新的考点信息表发给各考场。"
        drill = bool(self.ctx.site().get("drill"))  # the drill's proctors run on this PC (127.0.0.x)
        loopback = address.startswith("127.")
        if sheet and (sheet_port != port or (address != told and not (drill and loopback))):
            return self._item("lan_address", FAIL, "{} 与本机现在提供服务的地址 {}:{} 不同。".format(named, told, port),
                              export)
        others = [a for a in lan.addresses() if not a.startswith("127.")]
        if loopback and others and not drill:  # bound to loopback only (--lan-host 127.0.0.1) is deliberate
            return self._item("lan_address", FAIL, "{} 是本机回环地址，其他电脑上的监考机无法连接。".format(named),
                              "请在状态栏的“地址”中选择本机在考场局域网上的地址（{}），然后在“考场注册”中重新"
                              "“导出考点信息”，并把新的考点信息表发给各考场。".format("、".join(others)))
        why = lan.probe(address, sheet_port)
        if why is not None:
            return self._item("lan_address", FAIL, "{}：{}。".format(named, why),
                              "请在状态栏的“地址”中选择本机在考场局域网上的地址并重新导出考点信息，"
                              "并检查防火墙是否放行端口 {}。".format(sheet_port))
        return self._item("lan_address", PASS, "{} 可以连接，考场通讯服务应答正常。".format(named))

    def _disk(self, min_free_bytes: int) -> JsonObject:
        try:
            free = shutil.disk_usage(self.ctx.data_dir).free
        except OSError as e:
            return self._item("disk", FAIL, "无法读取数据目录所在磁盘的剩余空间：{}".format(e),
                              "请确认数据目录可访问后重新检测。")
        need = "{:.1f} GB".format(min_free_bytes / GB)
        have = "{:.1f} GB".format(free / GB)
        if free < min_free_bytes:
            return self._item("disk", FAIL, "数据目录所在磁盘剩余 {}，低于要求的 {}。".format(have, need),
                              "请清理该磁盘（删除无关文件）以留出至少 {} 空间，然后重新检测。".format(need))
        return self._item("disk", PASS, "剩余 {}（要求至少 {}）。".format(have, need))

    def _clock(self) -> JsonObject:
        platform = self.ctx.platform
        server = None
        if platform is not None:
            try:
                server = platform.server_time()
            except UserError:
                server = None
        if server is None:
            return self._item("clock", SKIPPED, "无法连接监控平台，未能比对系统时间（不影响封场）。")
        skew = (self.ctx.now() - server).total_seconds()
        shown = "系统时间与监控平台时间相差 {:.0f} 秒".format(abs(skew))
        if abs(skew) > self.max_clock_skew_s:
            item = self._item("clock", FAIL, "{}（系统时间{}），超过 {:.0f} 秒。".format(
                shown, "偏快" if skew > 0 else "偏慢", self.max_clock_skew_s),
                "请将本机系统时间校准为北京时间（监控平台时间：{}）后重新检测。".format(_shown(format_time(server))))
        else:
            item = self._item("clock", PASS, shown + "。")
        item["skew_s"] = round(skew, 3)  # this PC minus the platform (the timeline's site_clock item)
        return item

    # -- run ----------------------------------------------------------------------------
    def run(self, actor: str, min_free_bytes: Optional[int] = None) -> JsonObject:
        """Check every item, store the result, and report to the platform when it passes.

        ``min_free_bytes`` overrides the service's disk-space threshold for this run.

        Raises nothing for a failed item (it is in the result); only store errors
        (``StoreError``) propagate.
        """
        manifest = self.ctx.manifest()
        codes = [r["code"] for r in (manifest or {}).get("rooms") or []]
        rooms = {d["code"]: d for d in self.ctx.stores.runtime.all(model.ROOMS) if "code" in d}
        items = [
            self._package(manifest),
            self._registered(codes, rooms),
            self._room_data(codes, rooms, manifest),
            self._authorized(manifest),
            self._dongle(manifest),
            self._lan(),
            self._lan_address(),
            self._disk(self.min_free_bytes if min_free_bytes is None else int(min_free_bytes)),
            self._clock(),
        ]
        passed = all(i["status"] != FAIL for i in items)
        room_rows = [{"room": c, "registered": bool(rooms.get(c, {}).get("registered_at")),
                      "data_imported": bool(rooms.get(c, {}).get("data_imported_at"))} for c in codes]
        with self.ctx.lock:
            now = format_time(self.ctx.now())
            previous = self.ctx.stores.runtime.get(model.CHECKS, model.SEAL) or {}
            result = {"items": items, "passed": passed, "checked_at": now, "rooms": room_rows,
                      "passed_at": now if passed else previous.get("passed_at"),
                      "report_id": previous.get("report_id")}
            if passed:
                report = self.outbox.enqueue("seal_check", {
                    "passed": True, "checked_at": now,
                    "items": [{"id": i["id"], "status": i["status"], "detail": i["detail"]} for i in items]})
                result["report_id"] = report["id"]
            self.ctx.stores.runtime.put(model.CHECKS, model.SEAL, result)
            self.ctx.record(actor, names.SEAL_CHECKED, passed=passed,
                            failed=[i["id"] for i in items if i["status"] == FAIL])
        return self._view(result).as_dict()

    def last(self) -> Optional[Dict[str, Any]]:
        """The stored result of the last run, or None."""
        return self.ctx.stores.runtime.get(model.CHECKS, model.SEAL)

    def _view(self, result: Dict[str, Any]) -> SealSnapshot:
        report = self.outbox.get(result["report_id"]) if result.get("report_id") else None
        delivery, report_label = None, ""
        if report is not None:
            delivery = SealReport(state=report["state"], sent_at=report.get("sent_at"),
                                  last_error=report.get("last_error"), created_at=report.get("created_at"))
            if report["state"] == SENT:
                report_label = "上报成功 {}".format(_shown(report.get("sent_at")))
            elif report["state"] == FAILED:
                report_label = "上报失败：{}".format(report.get("last_error") or "")
            else:
                report_label = "等待上报（网络恢复后自动上报）"
        items = tuple(SealItem(id=i["id"], label=i["label"], status=CheckStatus(i["status"]),
                               status_label=i.get("status_label") or STATUS_LABELS[i["status"]],
                               detail=i.get("detail") or "", remedy=i.get("remedy") or "")
                      for i in result.get("items") or [])
        rooms = tuple(SealRoom(room=r["room"], registered=bool(r.get("registered")),
                               data_imported=bool(r.get("data_imported"))) for r in result.get("rooms") or [])
        return SealSnapshot(items=items, passed=bool(result.get("passed")), checked_at=result.get("checked_at"),
                            rooms=rooms, passed_at=result.get("passed_at"), report_id=result.get("report_id"),
                            report=delivery, report_label=report_label)

    def view(self) -> SealSnapshot:
        """The last result (items with their ``CheckStatus``, passed, times, per-room marks) with its
        report's delivery (``kd.core.snapshots.SealSnapshot``); empty before any run."""
        result = self.last()
        if result is None:
            return SealSnapshot(items=(), passed=False, checked_at=None, rooms=(), passed_at=None, report_id=None,
                                report=None, report_label="", checked=False)
        return self._view(result)

    def snapshot(self) -> JsonObject:
        """``view()`` as plain JSON."""
        return self.view().as_dict()


_shown = labels.shown
