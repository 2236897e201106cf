"""考后上报 step 1 (manual §5.2): the recovered result packages copied to external storage, verified.

``ExternalBackup(ctx, recovery, claim)`` (built by ``kd.core.upload.UploadService``, which
hands it its "one backup or upload at a time" claim and delegates to it):

- ``backup_external(folder, actor)``: refuses a folder inside the data folder,
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
- ``uncovered(records)`` / ``damaged(uncovered)``: the recovered results the valid backup
  does not hold, and of them those it marked missing (step 2 is refused for them).

Backup manifest (``manifest.json``, UTF-8 JSON)::

    {"format": "kd-result-backup", "format_version": 1, "site_code": "11003",
     "created_at": "<time>", "files": [{"name": "RESULT_11003_11003001_1.zip",
     "room": "11003001", "session": "1", "sha256": "<hex>", "size": 1234}],
     "missing": [{"room": "11003002", "session": "1", "sha256": "<hex>", "size": 1234,
                  "problem": "SHA-256 不符（文件内容已损坏）"}]}
"""

import hashlib
import json
import logging
import os
import secrets
from typing import Any, Callable, Dict, Iterator, List, Optional

from kd import fileio
from kd.core import model, names
from kd.core.backup import damaged_entry, recover_again_remedy
from kd.core.context import Context
from kd.core.labels import result_label
from kd.core.records import JsonObject
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


class BackupRequired(UserError):
    """Step 2 (上报) asked for before step 1 (备份到外部存储) covered every recovered file."""


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


class ExternalBackup:
    """考后上报 step 1: the verified copy of every recovered result package on external storage."""

    def __init__(self, ctx: Context, recovery: RecoveryService, claim: Callable[[], Callable[[], None]]) -> None:
        """``claim()`` takes the one-backup-or-upload-at-a-time slot (``UserError`` when it is
        taken) and returns its release."""
        self.ctx = ctx
        self.recovery = recovery
        self.claim = claim

    def backup_external(self, folder: str, actor: str) -> JsonObject:
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
        release = self.claim()
        try:
            return self._backup_external(folder, actor)
        finally:
            release()

    def _backup_external(self, folder: str, actor: str) -> JsonObject:
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
            ctx.record(actor, names.RESULTS_BACKED_UP, folder=target, files=len(files), bytes=total,
                       missing=[{"room": m["room"], "session": m["session"], "problem": m["problem"]}
                                for m in missing], same_volume=medium["same_volume"], read_back=read_back)
        return {"folder": target, "files": files, "bytes": total, "verified_at": verified_at, "missing": missing,
                "damaged": damaged, "complete": not missing, "warnings": warnings,
                "same_volume": medium["same_volume"], "volume_kind": medium["volume_kind"], "read_back": read_back}

    def backup_preview(self) -> JsonObject:
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

    def _check_medium(self, folder: str, drill: bool) -> JsonObject:
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

    def verify_external(self, actor: str) -> JsonObject:
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
                ctx.record(actor, names.RESULTS_BACKUP_INVALIDATED, folder=record["folder"], error=e.cause)
            raise
        with ctx.lock:
            checked = format_time(ctx.now())
            record = ctx.stores.runtime.update(model.CHECKS, model.EXTERNAL, {"valid": True, "checked_at": checked})
            ctx.record(actor, names.RESULTS_BACKUP_VERIFIED, folder=record["folder"], files=len(record["files"]))
        return record

    def uncovered(self, records: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
        """Recovered records the valid external backup does not hold (same room, session, hash)."""
        backup = self.ctx.stores.runtime.get(model.CHECKS, model.EXTERNAL) or {}
        if not backup.get("valid"):
            return list(records)
        held = {(f["room"], f["session"], f["sha256"]) for f in backup.get("files", [])}
        return [r for r in records if (r["room"], r["session"], r["result"]["sha256"]) not in held]

    def damaged(self, uncovered: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
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
