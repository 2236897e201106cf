"""考后上报 (manual §5.2): back the results up to external storage, then upload them.

``UploadService(ctx, outbox, recovery=...)``:

- Step 1, ``backup_external(folder, actor)``, ``backup_preview()``, ``verify_external(actor)``:
  the verified copy to external storage (``kd.core.external.ExternalBackup``, which also
  documents its ``manifest.json``); a backup and an upload never run at once.
- Step 2, ``upload(session_id|None, actor, progress=None)``: refused until the valid
  backup covers every recovered file (a result recovered after the backup needs a new
  one). Then each room/session not yet uploaded is sent with
  ``ctx.platform.upload_result`` (resumable: the platform keeps what it got, so calling
  ``upload`` again after a cut — 续报 — continues from its offset); each signed receipt
  is checked against the recorded hash and size and kept (base64) in
  ``room_sessions/<room|session>.upload``. Once a call's uploads are all in, each session
  it uploaded to (and each session of its scope already uploaded whose kept proof is
  missing or does not verify) gets its 考点数据完整性证明 built, verified and copied next to
  the external backup (``kd.core.proofflow.ProofFlow.after_upload``; the result's
  ``proofs``); one ``upload_status`` report per such session is enqueued carrying the proof
  (docs/platform-api.md §6.1); after a cut, the sessions touched are reported without
  one. Rooms not yet recovered are named in ``warnings``. A result the
  backup marked missing (damaged spool file) keeps step 2 refused, with a message that
  names it and says how to recover it again, until a new backup holds it.
- ``snapshot()``: per session 考场数 | 已回收 | 文件大小 | 已上报 | 上报状态
  (全部未上报 / N个未上报 / 全部已上报) and its kept proof's summary (``proof``), and the
  state of the external backup.
"""

import base64
import logging
import threading
from typing import Any, Callable, Dict, List, Optional, cast

from kd.core import labels, lifecycle, model, names, records
from kd.core.backup import recover_again_remedy
from kd.core.context import Context
from kd.core.external import BackupRequired, ExternalBackup
from kd.core.labels import result_label, session_label, session_names
from kd.core.lifecycle import RoomSessionEvent
from kd.core.proofflow import ProofFlow
from kd.core.records import JsonObject
from kd.core.recovery import RecoveryService
from kd.core.states import UploadStatus
from kd.errors import UserError
from kd.formats.result import file_name
from kd.formats.timeutil import format_time

log = logging.getLogger(__name__)

COLUMNS = [("session", "场次"), ("rooms", "考场数"), ("recovered", "已回收"), ("size_text", "文件大小"),
           ("uploaded", "已上报"), ("status", "上报状态")]
ALL_NOT_UPLOADED, ALL_UPLOADED = labels.label(UploadStatus.NONE), labels.label(UploadStatus.ALL)

Progress = Callable[[Dict[str, Any]], None]

def size_text(size: int) -> str:
    """Bytes as the table shows them: ``512 B``, ``3.4 KB``, ``12.0 MB``, ``1.20 GB``."""
    if size < 1024:
        return "{} B".format(size)
    if size < 1024 ** 2:
        return "{:.1f} KB".format(size / 1024)
    if size < 1024 ** 3:
        return "{:.1f} MB".format(size / 1024 ** 2)
    return "{:.2f} GB".format(size / 1024 ** 3)


class UploadService:
    """考后上报: external backup (step 1), resumable upload with receipts (step 2)."""

    def __init__(self, ctx: Context, outbox: Any, recovery: Optional[RecoveryService] = None,
                 proofs: Optional[ProofFlow] = None) -> None:
        self.ctx = ctx
        self.outbox = outbox
        #: the completeness proofs after the receipts (None: no proof, as before issue 16)
        self.proofs = proofs
        self.recovery = recovery if recovery is not None else RecoveryService(ctx, outbox)  # the core hands its own
        #: one backup or upload at a time (a second click while one runs is refused)
        self._busy = threading.Lock()
        self.external = ExternalBackup(ctx, self.recovery, self._claim)

    def _claim(self) -> Callable[[], None]:
        """Take the one-backup-or-upload slot; its release. ``UserError`` while another runs."""
        if not self._busy.acquire(blocking=False):
            raise UserError("正在备份或上报考试数据。", "请等待当前操作完成后再试。")
        return self._busy.release

    # -- step 1 (kd.core.external) ---------------------------------------------------------------
    def backup_external(self, folder: str, actor: str) -> JsonObject:
        """Copy every recovered result package and a manifest into ``folder``, verified by reading
        back (``ExternalBackup.backup_external``: its result and refusals)."""
        return self.external.backup_external(folder, actor)

    def backup_preview(self) -> JsonObject:
        """What 第一步 would back up and leave out; changes nothing (``ExternalBackup.backup_preview``)."""
        return self.external.backup_preview()

    def verify_external(self, actor: str) -> JsonObject:
        """Read the recorded external backup back again (``ExternalBackup.verify_external``)."""
        return self.external.verify_external(actor)

    # -- step 2: upload --------------------------------------------------------------------
    def upload(self, session_id: Optional[str], actor: str, progress: Optional[Progress] = None) -> JsonObject:
        """Upload the recovered, not yet uploaded results of a session (or all); keep the receipts.

        ``progress`` is called with ``{"room", "session", "index", "count", "sent", "size"}``.
        Returns ``{"uploaded": [...], "already": n, "warnings": [...], "not_recovered": [...],
        "proofs": [proof summaries, ``kd.core.proofflow``], "sessions": [...]}``. Raises
        ``NotLoaded`` before 导入考务, ``BackupRequired`` before a valid external backup of
        every recovered file, ``UserError`` when the session has nothing recovered or a
        spooled package is damaged, and the platform's ``PlatformError`` when the upload is
        cut (what got through is kept: call again to 续报), ``UserError`` while another
        backup or upload runs. A proof that cannot be built raises nothing: its summary
        says why.
        """
        release = self._claim()
        try:
            return self._upload(session_id, actor, progress)
        finally:
            release()

    def _upload(self, session_id: Optional[str], actor: str, progress: Optional[Progress]) -> JsonObject:
        ctx = self.ctx
        with ctx.lock:
            plan = self.recovery.plan()
            titles = plan.session_by_id  # the sessions' names, for the messages
            if session_id is not None and session_id not in plan.session_by_id:
                raise UserError("没有{}。".format(session_label(session_id)), "请从场次列表中选择。")
            records = self.recovery.recovered()
            if not records:
                raise UserError("尚无已回收的考试数据，无法上报。", "请先在“数据回收”中回收各考场的结果。")
            uncovered = self.external.uncovered(records)
            damaged = self.external.damaged(uncovered)
            if damaged:
                labels = "、".join(result_label(d["room"], d["session"], titles) for d in damaged)
                raise BackupRequired(
                    "{} 的结果包在本机已损坏，未能备份到外部存储，不能上报。".format(labels),
                    recover_again_remedy([d["room"] for d in damaged], "重新执行第一步“备份到外部存储”，再上报"),
                    detail="; ".join("{} {}: {}".format(d["room"], d["session"], d["problem"]) for d in damaged))
            if uncovered:
                listed = "、".join(result_label(r["room"], r["session"], titles) for r in uncovered[:5])
                raise BackupRequired(
                    "有 {} 个已回收的结果包尚未备份到外部存储：{}{}".format(
                        len(uncovered), listed, "等" if len(uncovered) > 5 else ""),
                    "请先完成第一步“备份到外部存储”（备份完成后再回收的数据需要重新备份），再上报。")
            scope = [r for r in records if session_id is None or r["session"] == session_id]
            if not scope:
                raise UserError("{} 尚无已回收的考试数据。".format(session_label(session_id, titles)),
                                "请先回收该场次各考场的结果。")
            pending = [r for r in scope if not self._uploaded(r)]
            already = len(scope) - len(pending)
            pairs = [p for p in plan.pairs if session_id is None or p[1] == session_id]
            have = {(r["room"], r["session"]) for r in records}
            not_recovered = [{"room": room, "session": sid} for room, sid in pairs if (room, sid) not in have]
            site = ctx.site_code() or "site"
        warnings = []
        if not_recovered:
            warnings.append("以下考场尚未回收，未能上报：{}".format("、".join(
                result_label(p["room"], p["session"], titles) for p in not_recovered)))
        uploaded: List[Dict[str, Any]] = []
        touched: List[str] = []
        if pending:
            platform = ctx.platform_or_raise("外部存储中的备份（交监控平台导入）")
            done = False
            try:
                for index, rec in enumerate(pending):
                    uploaded.append(self._upload_one(platform, rec, site, index, len(pending), progress, actor))
                    if rec["session"] not in touched:
                        touched.append(rec["session"])
                done = True
            except UserError as e:
                with ctx.lock:
                    ctx.record(actor, names.RESULTS_UPLOAD_INTERRUPTED, uploaded=len(uploaded),
                               left=len(pending) - len(uploaded), error=e.cause)
                raise
            finally:
                if not done:  # cut: what got through is reported, the proof waits for 续报
                    for sid in touched:
                        self._report_status(sid)
        proofs = []
        for sid in touched + self._proof_again(scope, touched):  # the receipts are in
            summary, doc = self.proofs.after_upload(sid, actor) if self.proofs is not None else (None, None)
            self._report_status(sid, summary, doc)
            if summary is not None:
                proofs.append(summary)
                external = summary.get("external") or {}
                if external.get("problem"):
                    warnings.append(external["problem"])
        return {"uploaded": uploaded, "already": already, "warnings": warnings, "not_recovered": not_recovered,
                "proofs": proofs, "sessions": self.snapshot()["sessions"]}

    def _proof_again(self, scope: List[Dict[str, Any]], touched: List[str]) -> List[str]:
        """Sessions of ``scope`` not uploaded to now, with uploads, whose kept proof is missing or fails."""
        if self.proofs is None:
            return []
        out: List[str] = []
        for rec in scope:
            sid = rec["session"]
            if sid in touched or sid in out or not self._uploaded(rec):
                continue
            status = self.proofs.status(sid)
            if status is None or not status["ok"]:
                out.append(sid)
        return out

    @staticmethod
    def _uploaded(rec: Dict[str, Any]) -> bool:
        return lifecycle.uploaded(cast(records.RoomSession, rec))

    def _upload_one(self, platform: Any, rec: Dict[str, Any], site: str, index: int, count: int,
                    progress: Optional[Progress], actor: str) -> JsonObject:
        ctx = self.ctx
        room, sid = rec["room"], rec["session"]
        res = rec["result"]
        path = ctx.spool.path(res["sha256"])
        if not ctx.spool.has(res["sha256"]) or not ctx.spool.verify(res["sha256"]):
            raise UserError("本机保存的{}的结果包已丢失或损坏。".format(
                result_label(room, sid, ctx.manifest_view(session_names))),
                            "请用外部存储中的备份重新手工回收该考场，或将备份交监控平台导入。")
        fid = file_name(site, room, sid)

        def step(sent: int, size: int) -> None:
            if progress is not None:
                progress({"room": room, "session": sid, "index": index, "count": count, "sent": sent, "size": size})

        receipt = platform.upload_result(path, session_id=sid, room_code=room, file_id=fid, progress=step)
        if (receipt.sha256, receipt.size, receipt.room_code, receipt.session_id) != (res["sha256"], res["size"],
                                                                                    room, sid):
            raise UserError("监控平台的上报回执与上报的文件不符（{}）。".format(
                result_label(room, sid, ctx.manifest_view(session_names))),
                            "请点击“续报”重新上报；如仍失败，请联系监控平台。",
                            detail="receipt {} {} for {}".format(receipt.sha256, receipt.size, res["sha256"]))
        upload: records.Upload = {
            "receipt": base64.b64encode(receipt.raw).decode("ascii"), "uploaded_at": format_time(ctx.now()),
            "file_id": receipt.file_id, "sha256": receipt.sha256, "size": receipt.size,
            "received_at": format_time(receipt.received_at)}
        with ctx.lock:
            doc = records.room_session(ctx.stores.runtime, room, sid) or cast(records.RoomSession, rec)
            details = {"room": room, "session": sid, "sha256": receipt.sha256, "size": receipt.size,
                       "file_id": receipt.file_id}
            lifecycle.advance(ctx, doc, lifecycle.Step(RoomSessionEvent.UPLOAD, names.RESULTS_UPLOADED, details,
                                                       value=upload), actor=actor)
        return {"room": room, "session": sid, "sha256": receipt.sha256, "size": receipt.size,
                "file_id": receipt.file_id, "received_at": upload["received_at"]}

    def _report_status(self, session_id: str, proof: Optional[JsonObject] = None,
                       document: Optional[Dict[str, Any]] = None) -> None:
        with self.ctx.lock:
            plan = self.recovery.plan_or_none()
            rooms = [p for p in (plan.pairs if plan else []) if p[1] == session_id]
            recs = [r for r in self.recovery.recovered() if r["session"] == session_id]
            done = [r for r in recs if self._uploaded(r)]
            data = {"session_id": session_id, "rooms": len(rooms), "files": len(recs), "uploaded": len(done),
                    "receipts": [{"room_code": r["room"], "file_id": r["upload"]["file_id"],
                                  "sha256": r["upload"]["sha256"], "size": r["upload"]["size"],
                                  "received_at": r["upload"]["received_at"]} for r in done]}
            if document is not None and proof is not None:  # docs/platform-api.md §6.1
                data.update(proof=document, proof_sha256=proof["sha256"])
            elif proof is not None and proof.get("error"):
                data["proof_error"] = proof["error"]
            self.outbox.enqueue("upload_status", data, session_id=session_id)

    # -- the §5.2 table --------------------------------------------------------------------
    def snapshot(self) -> JsonObject:
        """数据上报: one row per session and the external backup's state.

        ``{"columns", "sessions": [{"session", "session_name", "rooms" 考场数,
        "recovered" 已回收, "size" (bytes), "size_text" 文件大小, "uploaded" 已上报,
        "not_uploaded", "status" 上报状态, "proof" (the kept proof's summary,
        ``kd.core.proofflow``; None before it was built)}], "external": checks/external | None,
        "backup_current": bool, "not_backed_up", "damaged" (of those, the ones the backup
        marked missing: ``{"room", "session", "sha256", "problem", "label"}``),
        "damaged_remedy" (how to recover them again, "" when none), "can_upload",
        "not_recovered": [...]}``.
        Before 导入考务 the session list is empty.
        """
        ctx = self.ctx
        with ctx.lock:
            plan = self.recovery.plan_or_none()
            records = self.recovery.recovered()
            external = ctx.stores.runtime.get(model.CHECKS, model.EXTERNAL)
            pairs = plan.pairs if plan else []
            uncovered = self.external.uncovered(records)
            damaged = self.external.damaged(uncovered)
        rows = []
        have = {(r["room"], r["session"]) for r in records}
        for session in (plan.sessions if plan else []):
            sid = session["id"]
            rooms = [p for p in pairs if p[1] == sid]
            recs = [r for r in records if r["session"] == sid]
            size = sum(r["result"]["size"] for r in recs)
            uploaded = sum(1 for r in recs if self._uploaded(r))
            left = len(rooms) - uploaded
            status = labels.upload_status_label(_upload_status(uploaded, left), left)
            rows.append({"session": sid, "session_name": session.get("name", sid), "rooms": len(rooms),
                         "recovered": len(recs), "size": size, "size_text": size_text(size), "uploaded": uploaded,
                         "not_uploaded": max(left, 0), "status": status,
                         "proof": self.proofs.status(sid) if self.proofs is not None and uploaded else None})
        return {
            "columns": [list(c) for c in COLUMNS],
            "sessions": rows,
            "external": external,
            "backup_current": bool(records) and not uncovered,
            "not_backed_up": [{"room": r["room"], "session": r["session"]} for r in uncovered],
            "damaged": damaged,
            "damaged_remedy": recover_again_remedy([d["room"] for d in damaged], "重新执行第一步“备份到外部存储”")
            if damaged else "",
            "can_upload": bool(records) and not uncovered,
            "not_recovered": [{"room": room, "session": sid} for room, sid in pairs if (room, sid) not in have],
        }


def _upload_status(uploaded: int, left: int) -> UploadStatus:
    """上报状态 of a session with ``uploaded`` rooms uploaded and ``left`` to upload."""
    if uploaded == 0:
        return UploadStatus.NONE
    return UploadStatus.ALL if left <= 0 else UploadStatus.PARTLY
