"""考后上报 (manual §5.2): back the results up to external storage, then upload them.

``UploadService(ctx, outbox)``:

- Step 1, ``backup_external(folder, actor)``: refuses a folder inside the data folder,
  and one on the same volume as the data folder (``kd.fileio.same_volume``) unless the
  site is a drill (``settings/site.drill``: a drill machine may have no USB stick; the
  result then says ``same_volume: true`` with a warning). Copies every recovered result
  package (from the spool) into a new folder ``KDRESULT-<site>-<YYYYMMDD-HHMMSS>`` inside
  ``folder`` (the USB drive) as ``RESULT_<site>_<room>_<session>.zip`` with a
  ``manifest.json``, hashing each spool file while it is copied: a spool file that does
  not hash to its recorded SHA-256 and size (damaged on this PC's disk) is not copied,
  is logged at ERROR with its path and listed as ``missing`` (manifest and record) and
  ``damaged`` (result, with how to recover it again); the other results are still backed
  up. Every copy is fsynced, then read back past the OS cache (``kd.fileio.sha256_uncached``)
  and checked against the recorded size and SHA-256 (the manifest against what was
  written). Only a backup whose read-back passed is recorded in ``checks/external``.
  The copy runs under ``ctx.files_lock`` (taken before ``ctx.lock``), outside ``ctx.lock``.
  ``backup_preview()`` says beforehand what it would leave out: the rooms and sessions
  not recovered yet and the recovered ones whose spool file is damaged (hashed now), so
  the administrator is asked before a partial set is backed up.
  ``verify_external(actor)`` re-reads the recorded backup later; a damaged copy marks it
  invalid (step 2 is refused again until a new backup).
- Step 2, ``upload(session_id|None, actor, progress=None)``: refused until the valid
  backup covers every recovered file (a result recovered after the backup needs a new
  one). Then each room/session not yet uploaded is sent with
  ``ctx.platform.upload_result`` (resumable: the platform keeps what it got, so calling
  ``upload`` again after a cut — 续报 — continues from its offset); each signed receipt
  is checked against the recorded hash and size and kept (base64) in
  ``room_sessions/<room|session>.upload``. One ``upload_status`` report per session
  touched is enqueued. Rooms not yet recovered are named in ``warnings``. A result the
  backup marked missing (damaged spool file) keeps step 2 refused, with a message that
  names it and says how to recover it again, until a new backup holds it.
- ``snapshot()``: per session 考场数 | 已回收 | 文件大小 | 已上报 | 上报状态
  (全部未上报 / N个未上报 / 全部已上报), and the state of the external backup.

Backup manifest (``manifest.json``, UTF-8 JSON)::

    {"format": "kd-result-backup", "format_version": 1, "site_code": "11003",
     "created_at": "<time>", "files": [{"name": "RESULT_11003_11003001_1.zip",
     "room": "11003001", "session": "1", "sha256": "<hex>", "size": 1234}],
     "missing": [{"room": "11003002", "session": "1", "sha256": "<hex>", "size": 1234,
                  "problem": "SHA-256 不符（文件内容已损坏）"}]}
"""

import base64
import hashlib
import json
import logging
import os
import secrets
import threading
from typing import Any, Callable, Dict, Iterator, List, Optional

from kd import fileio
from kd.core import model
from kd.core.backup import damaged_entry, recover_again_remedy, result_label
from kd.core.context import Context
from kd.core.recovery import RecoveryService
from kd.errors import UserError
from kd.formats.result import file_name
from kd.formats.timeutil import format_time

log = logging.getLogger(__name__)

BACKUP_FORMAT = "kd-result-backup"
BACKUP_VERSION = 1
MANIFEST_NAME = "manifest.json"
FOLDER_PREFIX = "KDRESULT"
CHUNK = 1 << 20
#: results named per line of ``backup_preview`` (the rest counted)
PREVIEW_NAMED = 20

COLUMNS = [("session", "场次"), ("rooms", "考场数"), ("recovered", "已回收"), ("size_text", "文件大小"),
           ("uploaded", "已上报"), ("status", "上报状态")]
ALL_NOT_UPLOADED, ALL_UPLOADED = "全部未上报", "全部已上报"

Progress = Callable[[Dict[str, Any]], None]


class BackupRequired(UserError):
    """Step 2 (上报) asked for before step 1 (备份到外部存储) covered every recovered file."""


def size_text(size: int) -> str:
    """Bytes as the table shows them: ``512 B``, ``3.4 KB``, ``12.0 MB``, ``1.20 GB``."""
    if size < 1024:
        return "{} B".format(size)
    if size < 1024 ** 2:
        return "{:.1f} KB".format(size / 1024)
    if size < 1024 ** 3:
        return "{:.1f} MB".format(size / 1024 ** 2)
    return "{:.2f} GB".format(size / 1024 ** 3)


class _Damaged(Exception):
    """A spool file is not the result that was recovered (raised while it is copied)."""

    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem


def _checked_chunks(path: str, sha256: str, size: int) -> Iterator[bytes]:
    """The spool file's bytes; ``_Damaged`` (after the last chunk at the latest) if it is not ``sha256``/``size``."""
    digest, got = hashlib.sha256(), 0
    try:
        f = open(path, "rb")  # noqa: SIM115 - closed below
    except FileNotFoundError:
        raise _Damaged("文件不存在") from None
    except OSError as e:
        raise _Damaged("无法读取（{}）".format(e.strerror or e)) from None
    with f:
        while True:
            try:
                chunk = f.read(CHUNK)
            except OSError as e:
                raise _Damaged("无法读取（{}）".format(e.strerror or e)) from None
            if not chunk:
                break
            digest.update(chunk)
            got += len(chunk)
            if got > size:
                raise _Damaged("文件大小不符（大于应有的 {} 字节）".format(size))
            yield chunk
    if got != size:
        raise _Damaged("文件大小不符（{} 字节，应为 {} 字节）".format(got, size))
    if digest.hexdigest() != sha256:
        raise _Damaged("SHA-256 不符（文件内容已损坏）")


_WEAKEST = (fileio.READ_CACHED, fileio.READ_CACHE_DROPPED, fileio.READ_UNCACHED)


class UploadService:
    """考后上报: external backup (step 1), resumable upload with receipts (step 2)."""

    def __init__(self, ctx: Context, outbox: Any, recovery: Optional[RecoveryService] = None) -> None:
        self.ctx = ctx
        self.outbox = outbox
        self.recovery = recovery if recovery is not None else RecoveryService(ctx, outbox)  # the core hands its own
        #: one backup or upload at a time (a second click while one runs is refused)
        self._busy = threading.Lock()

    def _claim(self) -> None:
        if not self._busy.acquire(blocking=False):
            raise UserError("正在备份或上报考试数据。", "请等待当前操作完成后再试。")

    # -- step 1: external backup -----------------------------------------------------------
    def backup_external(self, folder: str, actor: str) -> Dict[str, Any]:
        """Copy every recovered result package and a manifest into ``folder``, verified by reading back.

        Returns ``{"folder", "files", "bytes", "verified_at", "missing", "damaged",
        "complete", "warnings", "same_volume", "volume_kind", "read_back"}``: ``missing``
        lists the results whose spool file is damaged (not copied; step 2 stays refused
        for them), ``damaged`` the same with the room labels, ``warnings`` Chinese lines
        for the administrator (damaged results and how to recover them, a drill's same
        volume, a fixed or network disk). Raises ``UserError`` when nothing is recovered
        yet, when ``folder`` does not exist, is inside the data folder or (outside a
        drill) on the data folder's volume, cannot be written, when a copy reads back with
        another size or SHA-256 (the backup is then not recorded; use another drive), or
        while another backup or upload runs.
        """
        self._claim()
        try:
            return self._backup_external(folder, actor)
        finally:
            self._busy.release()

    def _backup_external(self, folder: str, actor: str) -> Dict[str, Any]:
        ctx = self.ctx
        with ctx.lock:
            records = self.recovery.recovered()
            drill = bool(ctx.site().get("drill"))
        if not records:
            raise UserError("尚无已回收的考试数据，无需备份。", "请先在“数据回收”中回收各考场的结果。")
        if not os.path.isdir(folder):
            raise UserError("所选的备份位置不存在或不是文件夹：{}".format(folder),
                            "请插入U盘或移动硬盘，并选择其中的一个文件夹。")
        medium = self._check_medium(folder, drill)
        with ctx.files_lock:  # no package install, restore or clear takes the spool files away meanwhile
            with ctx.lock:
                records = self.recovery.recovered()
                site = ctx.site_code() or "site"
                now = ctx.now()
                spool = ctx.spool
                owners = {r["result"]["sha256"]: [{"room": r["room"], "session": r["session"], "kind": "result"}]
                          for r in records}
            target = os.path.join(folder, "{}-{}-{}".format(FOLDER_PREFIX, site, now.strftime("%Y%m%d-%H%M%S")))
            if os.path.exists(target):
                target += "-" + secrets.token_hex(2)
            files: List[Dict[str, Any]] = []
            missing: List[Dict[str, Any]] = []
            damaged: List[Dict[str, Any]] = []
            try:
                os.mkdir(target)
                for rec in records:
                    res = rec["result"]
                    name = file_name(site, rec["room"], rec["session"])
                    source = spool.path(res["sha256"])
                    try:
                        fileio.write_chunks_durably(os.path.join(target, name),
                                                    _checked_chunks(source, res["sha256"], res["size"]))
                    except _Damaged as e:
                        log.error("external backup: spool file %s of room %s session %s is damaged (%s); "
                                  "not copied, marked missing", source, rec["room"], rec["session"], e.problem)
                        missing.append({"room": rec["room"], "session": rec["session"], "sha256": res["sha256"],
                                        "size": res["size"], "problem": e.problem})
                        damaged.append(damaged_entry(res["sha256"], source, e.problem, owners[res["sha256"]]))
                        continue
                    files.append({"name": name, "room": rec["room"], "session": rec["session"],
                                  "sha256": res["sha256"], "size": res["size"]})
                manifest = {"format": BACKUP_FORMAT, "format_version": BACKUP_VERSION, "site_code": site,
                            "created_at": format_time(now), "files": files, "missing": missing}
                manifest_bytes = json.dumps(manifest, ensure_ascii=False, indent=1).encode("utf-8")
                fileio.write_chunks_durably(os.path.join(target, MANIFEST_NAME), [manifest_bytes])
                fileio.fsync_dir(target)
            except OSError as e:
                raise UserError("无法写入外部存储：{}".format(folder),
                                "请确认U盘或移动硬盘已插好、未写保护且有足够空间，然后重新备份。",
                                detail=repr(e)) from e
            read_back = self._check_copies(target, files, manifest_bytes)
        total = sum(f["size"] for f in files)
        warnings = list(medium["warnings"])
        if damaged:
            warnings.append("以下考试结果在本机保存的结果包已损坏，未能备份到外部存储：{}。其余结果包已备份并校验。".format(
                "；".join("{}（{}）".format(d["label"], d["problem"]) for d in damaged)))
            warnings.append(recover_again_remedy([m["room"] for m in missing], "重新执行第一步“备份到外部存储”"))
        with ctx.lock:
            verified_at = format_time(ctx.now())
            ctx.stores.runtime.put(model.CHECKS, model.EXTERNAL, {
                "folder": target, "files": files, "missing": missing, "manifest": MANIFEST_NAME,
                "verified_at": verified_at, "valid": True, "actor": actor, "bytes": total,
                "same_volume": medium["same_volume"], "volume_kind": medium["volume_kind"], "read_back": read_back})
            ctx.record(actor, "results.backed_up", folder=target, files=len(files), bytes=total,
                       missing=[{"room": m["room"], "session": m["session"], "problem": m["problem"]}
                                for m in missing], same_volume=medium["same_volume"], read_back=read_back)
        return {"folder": target, "files": files, "bytes": total, "verified_at": verified_at, "missing": missing,
                "damaged": damaged, "complete": not missing, "warnings": warnings,
                "same_volume": medium["same_volume"], "volume_kind": medium["volume_kind"], "read_back": read_back}

    def backup_preview(self) -> Dict[str, Any]:
        """What 第一步 would back up and what it would leave out, before it runs; changes nothing.

        Returns ``{"recovered": n, "expected": n (rooms × sessions to recover),
        "not_recovered": [{"room", "session", "label"}] (in the plan's order),
        "damaged": [{"room", "session", "sha256", "problem", "label"}] (recovered, but the
        spool file is missing or does not hash to its record: the backup would leave it
        out), "complete": bool, "lines": [Chinese lines naming them]}``. The spool files
        are hashed outside ``ctx.lock`` (what the backup itself will read again). Raises
        ``UserError`` when nothing is recovered yet (as ``backup_external`` does).
        """
        ctx = self.ctx
        with ctx.lock:
            plan = self.recovery.plan_or_none()
            records = self.recovery.recovered()
            frozen = [(r["room"], r["session"], r["result"]["sha256"], r["result"]["size"]) for r in records]
            spool = ctx.spool
        if not frozen:
            raise UserError("尚无已回收的考试数据，无需备份。", "请先在“数据回收”中回收各考场的结果。")
        pairs = plan.pairs if plan is not None else []
        have = {(room, sid) for room, sid, _, _ in frozen}
        not_recovered = [{"room": room, "session": sid, "label": result_label(room, sid)}
                         for room, sid in pairs if (room, sid) not in have]
        damaged = []
        for room, sid, sha, size in frozen:
            problem = spool.damage(sha, size)
            if problem is not None:
                log.warning("external backup preview: spool file of room %s session %s: %s", room, sid, problem)
                damaged.append({"room": room, "session": sid, "sha256": sha, "problem": problem,
                                "label": result_label(room, sid)})
        lines = []
        if not_recovered:
            named = "、".join(p["label"] for p in not_recovered[:PREVIEW_NAMED])
            more = "等" if len(not_recovered) > PREVIEW_NAMED else ""
            lines.append("尚未回收（{}个）：{}{}".format(len(not_recovered), named, more))
        if damaged:
            lines.append("本机保存的结果包已损坏，无法备份（{}个）：{}".format(len(damaged), "；".join(
                "{}（{}）".format(d["label"], d["problem"]) for d in damaged)))
            lines.append(recover_again_remedy([d["room"] for d in damaged], "重新执行第一步“备份到外部存储”"))
        if not_recovered or damaged:
            lines.append("将备份其余 {} 个结果包；缺少的结果回收（或重新回收）后，需要重新执行第一步。".format(
                len(frozen) - len(damaged)))
        return {"recovered": len(frozen), "expected": len(pairs), "not_recovered": not_recovered, "damaged": damaged,
                "complete": not not_recovered and not damaged, "lines": lines}

    def _check_medium(self, folder: str, drill: bool) -> Dict[str, Any]:
        """Refuse a folder that is not on external storage; what the result says about the medium."""
        data_dir = self.ctx.data_dir
        if fileio.inside(folder, data_dir):
            raise UserError("所选文件夹位于考点管理系统的数据目录中，不是外部存储：{}".format(folder),
                            "请选择 U 盘或移动硬盘上的文件夹：外部存储的备份要与本机数据分开保存、能随身带走。")
        same = fileio.same_volume(folder, data_dir)
        kind = fileio.volume_kind(folder)
        warnings = []
        if same:
            if not drill:
                raise UserError("所选文件夹与考点数据在同一个磁盘（分区）上，不是外部存储：{}".format(folder),
                                "请选择 U 盘或移动硬盘上的文件夹（插入后在“计算机”中显示为单独的盘符）。",
                                detail="same volume as the data folder {}".format(data_dir))
            warnings.append("演练模式：所选文件夹与考点数据在同一个磁盘（分区）上，不是真正的外部存储备份；"
                            "正式考试时请使用 U 盘或移动硬盘。")
        elif kind == "fixed":
            warnings.append("所选位置是一块固定磁盘：如果它不是移动硬盘，而是本机的另一块硬盘或分区，"
                            "请改用 U 盘或移动硬盘重新备份。")
        elif kind == "remote":
            warnings.append("所选位置是网络上的共享文件夹：请确认它不在本机上，且备份完成后仍可访问。")
        return {"same_volume": same, "volume_kind": kind, "warnings": warnings}

    @staticmethod
    def _check_copies(target: str, files: List[Dict[str, Any]], manifest_bytes: Optional[bytes]) -> str:
        """Read every copy back past the OS cache; ``UserError`` naming the first that differs.

        Returns how the copies were read (the weakest ``kd.fileio.READ_*`` of them).
        """
        bad = None
        how = fileio.READ_UNCACHED
        try:
            for entry in files:
                digest, size, read = fileio.sha256_uncached(os.path.join(target, entry["name"]))
                how = min(how, read, key=_WEAKEST.index)
                if digest != entry["sha256"] or size != entry["size"]:
                    bad = entry["name"]
                    break
            if bad is None and manifest_bytes is not None:
                digest, size, read = fileio.sha256_uncached(os.path.join(target, MANIFEST_NAME))
                how = min(how, read, key=_WEAKEST.index)
                if (digest, size) != (hashlib.sha256(manifest_bytes).hexdigest(), len(manifest_bytes)):
                    bad = MANIFEST_NAME
        except OSError as e:
            raise UserError("外部存储上的备份无法读回：{}".format(target),
                            "请确认U盘或移动硬盘已插好，然后重新备份。", detail=repr(e)) from e
        if bad is not None:
            raise UserError("外部存储上的备份文件校验失败：{}（读回的内容与回收的结果包不一致）".format(bad),
                            "请更换U盘或移动硬盘后重新备份；如仍失败，请联系技术支持。",
                            detail="{} in {}".format(bad, target))
        return how

    def verify_external(self, actor: str) -> Dict[str, Any]:
        """Read the recorded external backup back again; mark it invalid if a copy differs.

        Raises ``UserError`` when there is no backup, or when it no longer reads back
        as written (then ``upload`` refuses until a new backup).
        """
        ctx = self.ctx
        record = ctx.stores.runtime.get(model.CHECKS, model.EXTERNAL)
        if not record:
            raise BackupRequired("尚未备份到外部存储。", "请先完成第一步：备份到外部存储。")
        try:
            self._check_copies(record["folder"], record["files"], None)
        except UserError as e:
            with ctx.lock:
                ctx.stores.runtime.update(model.CHECKS, model.EXTERNAL, {"valid": False})
                ctx.record(actor, "results.backup_invalid", folder=record["folder"], error=e.cause)
            raise
        with ctx.lock:
            checked = format_time(ctx.now())
            record = ctx.stores.runtime.update(model.CHECKS, model.EXTERNAL, {"valid": True, "checked_at": checked})
            ctx.record(actor, "results.backup_verified", folder=record["folder"], files=len(record["files"]))
        return record

    def _uncovered(self, records: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
        """Recovered records the valid external backup does not hold (same room, session, hash)."""
        backup = self.ctx.stores.runtime.get(model.CHECKS, model.EXTERNAL) or {}
        if not backup.get("valid"):
            return list(records)
        held = {(f["room"], f["session"], f["sha256"]) for f in backup.get("files", [])}
        return [r for r in records if (r["room"], r["session"], r["result"]["sha256"]) not in held]

    def _damaged(self, uncovered: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
        """Of the uncovered records, those the valid backup marked missing (damaged spool file)."""
        backup = self.ctx.stores.runtime.get(model.CHECKS, model.EXTERNAL) or {}
        if not backup.get("valid"):
            return []
        missing = {(m["room"], m["session"], m["sha256"]): m for m in backup.get("missing", [])}
        out = []
        for r in uncovered:
            m = missing.get((r["room"], r["session"], r["result"]["sha256"]))
            if m is not None:
                out.append({"room": r["room"], "session": r["session"], "sha256": m["sha256"],
                            "problem": m["problem"], "label": result_label(r["room"], r["session"])})
        return out

    # -- step 2: upload --------------------------------------------------------------------
    def upload(self, session_id: Optional[str], actor: str, progress: Optional[Progress] = None) -> Dict[str, Any]:
        """Upload the recovered, not yet uploaded results of a session (or all); keep the receipts.

        ``progress`` is called with ``{"room", "session", "index", "count", "sent", "size"}``.
        Returns ``{"uploaded": [...], "already": n, "warnings": [...], "not_recovered": [...],
        "sessions": [...]}``. Raises ``NotLoaded`` before 导入考务, ``BackupRequired``
        before a valid external backup of every recovered file, ``UserError`` when the
        session has nothing recovered or a spooled package is damaged, and the
        platform's ``PlatformError`` when the upload is cut (what got through is kept:
        call again to 续报), ``UserError`` while another backup or upload runs.
        """
        self._claim()
        try:
            return self._upload(session_id, actor, progress)
        finally:
            self._busy.release()

    def _upload(self, session_id: Optional[str], actor: str, progress: Optional[Progress]) -> Dict[str, Any]:
        ctx = self.ctx
        with ctx.lock:
            plan = self.recovery.plan()
            if session_id is not None and session_id not in plan.session_by_id:
                raise UserError("没有场次 {}。".format(session_id), "请从场次列表中选择。")
            records = self.recovery.recovered()
            if not records:
                raise UserError("尚无已回收的考试数据，无法上报。", "请先在“数据回收”中回收各考场的结果。")
            uncovered = self._uncovered(records)
            damaged = self._damaged(uncovered)
            if damaged:
                labels = "、".join(result_label(d["room"], d["session"]) for d in damaged)
                raise BackupRequired(
                    "{} 的结果包在本机已损坏，未能备份到外部存储，不能上报。".format(labels),
                    recover_again_remedy([d["room"] for d in damaged], "重新执行第一步“备份到外部存储”，再上报"),
                    detail="; ".join("{} {}: {}".format(d["room"], d["session"], d["problem"]) for d in damaged))
            if uncovered:
                names = "、".join("{}（场次{}）".format(r["room"], r["session"]) for r in uncovered[:5])
                raise BackupRequired(
                    "有 {} 个已回收的结果包尚未备份到外部存储：{}{}".format(
                        len(uncovered), names, "等" if len(uncovered) > 5 else ""),
                    "请先完成第一步“备份到外部存储”（备份完成后再回收的数据需要重新备份），再上报。")
            scope = [r for r in records if session_id is None or r["session"] == session_id]
            if not scope:
                raise UserError("场次 {} 尚无已回收的考试数据。".format(session_id), "请先回收该场次各考场的结果。")
            pending = [r for r in scope if not self._uploaded(r)]
            already = len(scope) - len(pending)
            pairs = [p for p in plan.pairs if session_id is None or p[1] == session_id]
            have = {(r["room"], r["session"]) for r in records}
            not_recovered = [{"room": room, "session": sid} for room, sid in pairs if (room, sid) not in have]
            site = ctx.site_code() or "site"
        warnings = []
        if not_recovered:
            warnings.append("以下考场尚未回收，未能上报：{}".format("、".join(
                "{}（场次{}）".format(p["room"], p["session"]) for p in not_recovered)))
        uploaded: List[Dict[str, Any]] = []
        touched: List[str] = []
        if pending:
            platform = ctx.platform_or_raise("外部存储中的备份（交监控平台导入）")
            try:
                for index, rec in enumerate(pending):
                    uploaded.append(self._upload_one(platform, rec, site, index, len(pending), progress, actor))
                    if rec["session"] not in touched:
                        touched.append(rec["session"])
            except UserError as e:
                with ctx.lock:
                    ctx.record(actor, "results.upload_interrupted", uploaded=len(uploaded),
                               left=len(pending) - len(uploaded), error=e.cause)
                raise
            finally:
                for sid in touched:
                    self._report_status(sid)
        return {"uploaded": uploaded, "already": already, "warnings": warnings, "not_recovered": not_recovered,
                "sessions": self.snapshot()["sessions"]}

    @staticmethod
    def _uploaded(rec: Dict[str, Any]) -> bool:
        up = rec.get("upload")
        return bool(up) and up.get("sha256", rec["result"]["sha256"]) == rec["result"]["sha256"]

    def _upload_one(self, platform: Any, rec: Dict[str, Any], site: str, index: int, count: int,
                    progress: Optional[Progress], actor: str) -> Dict[str, Any]:
        ctx = self.ctx
        room, sid = rec["room"], rec["session"]
        res = rec["result"]
        path = ctx.spool.path(res["sha256"])
        if not ctx.spool.has(res["sha256"]) or not ctx.spool.verify(res["sha256"]):
            raise UserError("本机保存的考场 {} 场次 {} 的结果包已丢失或损坏。".format(room, sid),
                            "请用外部存储中的备份重新手工回收该考场，或将备份交监控平台导入。")
        fid = file_name(site, room, sid)

        def step(sent: int, size: int) -> None:
            if progress is not None:
                progress({"room": room, "session": sid, "index": index, "count": count, "sent": sent, "size": size})

        receipt = platform.upload_result(path, session_id=sid, room_code=room, file_id=fid, progress=step)
        if (receipt.sha256, receipt.size, receipt.room_code, receipt.session_id) != (res["sha256"], res["size"],
                                                                                    room, sid):
            raise UserError("监控平台的上报回执与上报的文件不符（考场 {} 场次 {}）。".format(room, sid),
                            "请点击“续报”重新上报；如仍失败，请联系监控平台。",
                            detail="receipt {} {} for {}".format(receipt.sha256, receipt.size, res["sha256"]))
        upload = {"receipt": base64.b64encode(receipt.raw).decode("ascii"), "uploaded_at": format_time(ctx.now()),
                  "file_id": receipt.file_id, "sha256": receipt.sha256, "size": receipt.size,
                  "received_at": format_time(receipt.received_at)}
        with ctx.lock:
            ctx.stores.runtime.update(model.ROOM_SESSIONS, model.rs_key(room, sid), {"upload": upload})
            ctx.record(actor, "results.uploaded", room=room, session=sid, sha256=receipt.sha256, size=receipt.size,
                       file_id=receipt.file_id)
        return {"room": room, "session": sid, "sha256": receipt.sha256, "size": receipt.size,
                "file_id": receipt.file_id, "received_at": upload["received_at"]}

    def _report_status(self, session_id: str) -> None:
        with self.ctx.lock:
            plan = self.recovery.plan_or_none()
            rooms = [p for p in (plan.pairs if plan else []) if p[1] == session_id]
            recs = [r for r in self.recovery.recovered() if r["session"] == session_id]
            done = [r for r in recs if self._uploaded(r)]
            data = {"session_id": session_id, "rooms": len(rooms), "files": len(recs), "uploaded": len(done),
                    "receipts": [{"room_code": r["room"], "file_id": r["upload"]["file_id"],
                                  "sha256": r["upload"]["sha256"], "size": r["upload"]["size"],
                                  "received_at": r["upload"]["received_at"]} for r in done]}
            self.outbox.enqueue("upload_status", data, session_id=session_id)

    # -- the §5.2 table --------------------------------------------------------------------
    def snapshot(self) -> Dict[str, Any]:
        """数据上报: one row per session and the external backup's state.

        ``{"columns", "sessions": [{"session", "session_name", "rooms" 考场数,
        "recovered" 已回收, "size" (bytes), "size_text" 文件大小, "uploaded" 已上报,
        "not_uploaded", "status" 上报状态}], "external": checks/external | None,
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
            uncovered = self._uncovered(records)
            damaged = self._damaged(uncovered)
        rows = []
        have = {(r["room"], r["session"]) for r in records}
        for session in (plan.sessions if plan else []):
            sid = session["id"]
            rooms = [p for p in pairs if p[1] == sid]
            recs = [r for r in records if r["session"] == sid]
            size = sum(r["result"]["size"] for r in recs)
            uploaded = sum(1 for r in recs if self._uploaded(r))
            left = len(rooms) - uploaded
            status = ALL_NOT_UPLOADED if uploaded == 0 else (ALL_UPLOADED if left <= 0 else "{}个未上报".format(left))
            rows.append({"session": sid, "session_name": session.get("name", sid), "rooms": len(rooms),
                         "recovered": len(recs), "size": size, "size_text": size_text(size), "uploaded": uploaded,
                         "not_uploaded": max(left, 0), "status": status})
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
