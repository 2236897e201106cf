"""System management (manual §6): backup, restore, 模考转正考, 系统初始化, the exit rule.

- ``backup(folder, note, actor)``: delegates to ``kd.core.backup`` (the signed ``.bak``).
- ``restore_preview(path, actor)``: what 系统恢复 of ``path`` would do, changing nothing:
  the file verified exactly as ``restore`` verifies it (every member's hash, the
  signature, the dongle), the backup's time, note and what it holds next to what is here
  now and what the folder will hold afterwards, what is kept from here (below), and
  whether the restore is allowed (``allowed``, ``refusal``).
- ``restore(path, actor)``: verify first (structure, every hash, the signature with the
  public key the manifest names, that key being the one of the site package inside the
  backup, and the attached dongle being that dongle), check the guards, stage the backup
  with what is kept from here under ``DATA/.tx``, then swap it in (see below). The
  running context is switched over to the restored files, but services that keep state
  in memory do not know: the result says ``restart_required`` and the app must restart
  (manual §6.2).
- ``to_formal(actor)`` (模考转正考, mock mode only): clears the exam data (runtime DB,
  exam DB, room files, spool), keeps site code, accounts and settings; mode → formal.
- ``initialize_allowed()`` / ``initialize(confirm_site_code, actor)`` (系统初始化): clears
  the site code and all exam data, keeps accounts; refused during a formal exam while data
  is not reported. The view asks ``initialize_allowed()`` before any confirmation.
- ``exit_allowed()``: the same rule guards exit (§6.5).

**The rule** ("not reported", formal mode only): a room of a session that started and
whose results were not recovered yet, or a recovered result (``room_sessions.result``)
without an upload receipt (``room_sessions.upload``). While such a line exists, 退出 and
初始化 are refused.

**How the rule applies to 系统恢复.** A restore must leave the restored system knowing
every exam fact the rule is built on, so that the rule still holds afterwards:

1. *Started rooms.* In a formal exam, a restore is refused while a room of the current
   exam is started and not yet recovered, unless the backup holds that room and session
   as started too (then the restored system still knows the room is in its exam, and
   退出/初始化 stay refused until it is recovered and uploaded). A backup made before that
   start lacks what happened since (授权验证, the start itself): the refusal names the
   rooms; the way out is a newer backup, or waiting until they are recovered and uploaded.
2. *Recovered results and receipts are never discarded* (any mode): every recovered
   result (``room_sessions.result``) and platform receipt (``room_sessions.upload``) here
   that the backup lacks is merged into the staged restore, with its spool file (the
   spool is content-addressed and immutable: the file is copied and re-hashed), and the
   result names them. When the backup holds *another* result for the same room and
   session, both are kept visibly: the one with the platform's receipt stays the room's
   result (when only one has a receipt; otherwise the backup's), and the other is listed in
   ``result_conflicts`` (``"origin": "restore"``, with its own receipt if it had one),
   its file kept in the spool, shown as 已回收（有冲突） in 数据回收. Conflicts recorded
   here that the backup lacks are kept too. A result here whose room and session the
   backup's package does not plan (a backup of another exam) cannot be merged: the
   restore is refused naming them.
3. *A formal exam is not turned into a mock one:* a mock-mode backup is refused in a
   formal exam that has started or recovered anything.
4. *What else is kept from here* (small records, facts that only grow): outbox reports
   the backup lacks (pending ones are still delivered; a report the backup holds as
   pending that was sent since is taken as sent), the sessions' ``started_reported_at`` /
   ``ended_reported_at`` (so a report is not enqueued twice), ``checks/recovery`` (the
   recovery report is enqueued once) and ``checks/external`` when the one here is newer
   (it describes the copy on the external drive).
5. *The administrator keeps the password they logged in with:* every account document
   here (hash, salt, iterations, must_change, failures, lockout) replaces the backup's;
   accounts only the backup has stay. The audit record ``system.restored`` names the
   accounts kept and everything merged.

A result file here that no longer checks (bit rot) is not copied: its record is kept, the
result and the audit name it, and it must be recovered again (as after a damaged file).

The swap (never half-restored) is a journaled transaction of the data folder
(``kd.store.datafolder``): the items ``db/``, ``spool/``, ``rooms/`` and ``audit.log``
are staged complete and verified under ``DATA/.tx`` (the merged runtime and settings
tables are written into the staged stores, the kept spool files into the staged spool);
the journal commits; each live item is moved aside and the staged one put in its place;
the old items are kept as ``DATA/restore-previous`` (the one before is deleted). A
failure during the swap puts the old items back. After the swap the replaced stores are
closed (a closed store refuses writes), so a thread holding one cannot write old tables
over the restored files. After a kill, the next start (``DataFolder.finish_interrupted``)
completes the swap. The whole restore holds ``ctx.files_lock`` and ``ctx.lock``, so no
result arrives between the merge and the swap.
"""

import copy
import hashlib
import json
import logging
import os
import shutil
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Set, Tuple

from kd.core import model
from kd.core.accounts import AccountService
from kd.core.backup import BackupError, BackupService, SystemRefused, result_label  # noqa: F401 (re-exported)
from kd.core.context import Context
from kd.core.outbox import PENDING
from kd.core.ports import DongleSignature
from kd.errors import LockError, StoreError, UserError
from kd.formats import backup as bak
from kd.formats.timeutil import format_time, read_time
from kd.store import atomic
from kd.store.datafolder import DataFolder

log = logging.getLogger(__name__)


class RestoreError(UserError):
    """A restore failed; the old data is unchanged."""


def _write_durably(path: str, chunks: Callable[[Callable[[bytes], object]], None]) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        chunks(f.write)
        f.flush()
        os.fsync(f.fileno())


def finish_interrupted_restore(data_dir: str) -> bool:
    """Finish a 系统恢复 (or package install) a kill interrupted; True if there was one.

    Call before any store of ``data_dir`` opens (``kd.site.open_site`` does).
    """
    return DataFolder(data_dir).finish_interrupted() is not None


class SystemService:
    """系统备份 / 系统恢复 / 模考转正考 / 系统初始化 and the exit rule."""

    def __init__(self, ctx: Context, *, accounts: Optional[AccountService] = None,
                 backup: Optional[BackupService] = None) -> None:
        self.ctx = ctx
        self.accounts = accounts or AccountService(ctx)
        self.backups = backup or BackupService(ctx, self.accounts)

    # -- the rule of §6.3 / §6.5 -------------------------------------------------------------
    def unreported(self) -> List[str]:
        """What keeps a formal exam from being left: one line per room and session (empty in mock mode)."""
        if self.ctx.mode() != model.FORMAL:
            return []
        return _unreported(self.ctx.stores.runtime.all(model.ROOM_SESSIONS))

    def exit_allowed(self) -> Tuple[bool, str]:
        """(True, "") or (False, the reason) — 退出系统 is forbidden while data is unreported."""
        return self._allowed("退出系统", "（否则考场无法正常进行考试）")

    def initialize_allowed(self) -> Tuple[bool, str]:
        """(True, "") or (False, the reason) — 系统初始化 is forbidden while data is unreported.

        The view asks this before any confirmation; ``initialize`` checks it again.
        """
        return self._allowed("初始化", "")

    def _allowed(self, what: str, why: str) -> Tuple[bool, str]:
        lines = self.unreported()
        if not lines:
            return True, ""
        return False, "考试数据尚未上报，禁止{}{}：{}。".format(what, why, _summary(lines))

    def _refuse_if_unreported(self, what: str) -> None:
        lines = self.unreported()
        if lines:
            raise SystemRefused("考试数据尚未上报，禁止{}：{}。".format(what, _summary(lines)),
                                UNREPORTED_REMEDY, detail="; ".join(lines))

    # -- 系统备份 ------------------------------------------------------------------------------
    def backup(self, folder: str, note: str, actor: str) -> str:
        """Write a signed ``.bak`` into ``folder``; return its path (``kd.core.backup``)."""
        return self.backups.backup(folder, note, actor)

    def _check_signature(self, f: bak.BackupFile, public_key: bytes) -> None:
        dongle = self.ctx.dongle_or_raise()
        sig = DongleSignature(f.seal.lock_id, f.seal.clock_ms, f.seal.signature)
        if f.seal.lock_id != f.lock_id or not dongle.check_signature(public_key, f.digest, sig):
            raise bak.refuse("机考锁签名无效，文件可能被篡改或不是本考点的备份")

    # -- 系统恢复 ------------------------------------------------------------------------------
    def restore_preview(self, path: str, actor: str) -> Dict[str, Any]:
        """What ``restore(path, actor)`` would do now; changes nothing.

        The file is verified as ``restore`` verifies it (every member re-read against the
        manifest, the signature, the dongle). Returns ``{"file", "created_at", "note",
        "exam_name", "backup", "current", "after"`` (each ``{"site_code", "mode",
        "exam_name", "rooms", "rooms_registered", "results_recovered", "results_uploaded",
        "conflicts"}``: what the backup holds, what is here now, what the folder holds after
        the restore), ``"kept"`` (see ``RestorePlan.kept``), ``"lines"`` (what is kept, in
        Chinese), ``"warnings"`` (result files here that no longer check), ``"allowed"``,
        ``"refusal"`` (``{"cause", "remedy"}`` or None)}``.
        Raises ``FormatError`` / ``LockError`` as ``restore`` does, ``PasswordChangeRequired``.
        """
        ctx = self.ctx
        self.accounts.require_changed(actor)
        with bak.BackupFile(path) as f:
            backup, info = self._verify_backup(f)
            f.verify_all()
        with ctx.lock:
            current = _holds(ctx.site(), ctx.manifest(), ctx.stores.runtime.items(model.ROOMS),
                             ctx.stores.runtime.items(model.ROOM_SESSIONS),
                             ctx.stores.runtime.count(model.RESULT_CONFLICTS))
            plan = self._plan(backup, info, actor)
        warnings = []
        for sha in plan.files:  # outside the core lock: a spool file is immutable once written
            problem = ctx.spool.damage(sha, plan.sizes.get(sha))
            if problem:
                warnings.append(plan.damaged_line(sha, problem))
        refusal = plan.refusal
        return {"file": os.path.abspath(path), "created_at": info["created_at"], "note": info["note"],
                "exam_name": info["exam_name"], "backup": plan.backup_holds, "current": current,
                "after": plan.after_holds(), "kept": plan.kept(), "lines": plan.lines(), "warnings": warnings,
                "allowed": refusal is None,
                "refusal": None if refusal is None else {"cause": refusal.cause, "remedy": refusal.remedy}}

    def restore(self, path: str, actor: str) -> Dict[str, Any]:
        """Verify ``path`` completely, then replace the data folder's content with it in one swap.

        What is here and the backup lacks is kept (the module docstring, "How the rule
        applies to 系统恢复"). Returns ``{"restart_required": True, "site_code", "note",
        "created_at", "mode", "exam_name", "members", "kept", "lines", "warnings",
        "accounts_kept"}``. Raises ``FormatError`` (not a valid/untampered backup),
        ``LockError`` (the attached dongle is not the backup's), ``SystemRefused`` (another
        site's backup, a started room the backup does not know, results of another exam, a
        mock backup over a formal exam), ``RestoreError`` (the swap failed; old data intact),
        ``PasswordChangeRequired``.
        """
        ctx = self.ctx
        with ctx.files_lock, ctx.lock:
            self.accounts.require_changed(actor)
            with bak.BackupFile(path) as f:
                backup, info = self._verify_backup(f)
                plan = self._plan(backup, info, actor)
                if plan.refusal is not None:
                    raise plan.refusal
                tx = ctx.folder.begin("restore")
                try:
                    self._stage(f, tx, plan)
                    warnings = self._stage_kept_files(tx, plan)
                except BaseException:
                    tx.abort()
                    raise
            stores = ctx.stores
            try:
                # every store's lock is held across the swap until the replaced stores are
                # closed: a write through them in between would land on the restored files
                with stores.settings.transaction(), stores.exam.transaction(), stores.runtime.transaction():
                    tx.commit(keep_old=True, swapped=self._reopen)
            except (OSError, UserError) as e:
                raise RestoreError("系统恢复未完成，原有数据保持不变。",
                                   "请关闭占用数据目录的程序（如杀毒软件）并检查磁盘空间后重试。",
                                   detail=repr(e)) from e
            kept = plan.kept()
            ctx.record(actor, "system.restored", path=os.path.abspath(path), kept=_audit_kept(kept),
                       accounts_kept=kept["accounts"], damaged=warnings, **info)
            return dict(info, restart_required=True, kept=kept, lines=plan.lines(), warnings=warnings,
                        accounts_kept=kept["accounts"])

    def _verify_backup(self, f: bak.BackupFile) -> Tuple["_Backup", Dict[str, Any]]:
        """The backup's stores' tables and spool files, and its header, once the file is proven genuine.

        Raises ``FormatError`` / ``LockError``; the guards are ``_plan``'s.
        """
        m = f.manifest
        public_key = f.lock_public_key
        # 1. the signature, with the key the manifest names
        self._check_signature(f, public_key)
        # 2. that key is the dongle of the site package inside the backup
        exam = _tables(f.read(f.member("db/exam.json")), "exam")
        package = _doc(exam, model.PACKAGE, model.MANIFEST) or {}
        if package.get("lock") != m["lock"] or package.get("site_code", m["site_code"]) != m["site_code"]:
            raise bak.refuse("备份中的考务数据包与签名所用的机考锁不符，文件可能被篡改")
        # 3. the attached dongle is that dongle
        try:
            self.ctx.dongle_or_raise().verify(f.lock_id, public_key)
        except LockError as e:
            raise LockError("当前插入的机考锁不是该备份所属考点的机考锁（备份使用机考锁 {}）。".format(f.lock_id),
                            "请插入本考点注册的机考锁后再恢复。", detail=e.detail or e.message) from e
        # 4. the settings inside name the same site
        settings = _tables(f.read(f.member("db/settings.json")), "settings")
        site = _doc(settings, model.SETTINGS, model.SITE) or {}
        if (site.get("site_code") or "") != m["site_code"]:
            raise bak.refuse("备份中的考点设置与清单不符，文件可能被篡改")
        runtime = _tables(f.read(f.member("db/runtime.json")), "runtime")
        info = {"site_code": m["site_code"], "mode": m["mode"], "note": m["note"], "created_at": m["created_at"],
                "exam_name": m["exam_name"], "members": len(f.members)}
        spool = {x.name[len("spool/"):].split(".")[0] for x in f.members if x.name.startswith("spool/")}
        return _Backup({"settings": settings, "exam": exam, "runtime": runtime}, spool), info

    def _plan(self, backup: "_Backup", info: Dict[str, Any], actor: str) -> "RestorePlan":
        """What the restore keeps from here and whether it is allowed (under ``ctx.lock``)."""
        ctx = self.ctx
        plan = RestorePlan(backup, ctx.now())
        current = ctx.site_code()
        if current and current != info["site_code"]:
            plan.refuse(SystemRefused(
                "该备份属于考点 {}，本系统的考点代码是 {}。".format(info["site_code"] or "（未设置）", current),
                "请选择本考点的备份文件；如确需恢复其他考点的备份，请先执行“系统初始化”。"))
        runtime = ctx.stores.runtime
        rows = runtime.items(model.ROOM_SESSIONS)
        if ctx.mode() == model.FORMAL and current:
            plan.guard_formal(rows)
        plan.merge_results(rows, runtime.items(model.RESULT_CONFLICTS), ctx.manifest(), actor)
        plan.merge_records(runtime.items(model.OUTBOX), runtime.items(model.SESSIONS),
                           runtime.get(model.CHECKS, model.RECOVERY), runtime.get(model.CHECKS, model.EXTERNAL))
        plan.merge_accounts(ctx.stores.settings.items(model.ACCOUNTS))
        plan.find_files()
        return plan

    def _stage(self, f: bak.BackupFile, tx: Any, plan: "RestorePlan") -> None:
        """Extract every member (checked against the manifest while written) into the transaction's staging.

        The runtime and settings stores get the plan's merged tables instead of the
        backup's (the backup's bytes are still read, so they are checked too).
        """
        merged = {"runtime.json": plan.runtime.body(), "settings.json": plan.settings.body()}
        for item in ("db", "spool", "rooms"):
            os.makedirs(tx.stage(item))
        for member in f.members:
            if member.name.startswith("db/"):
                body = f.read(member)
                _tables(body, member.name)
                name = member.name[len("db/"):]
                body = merged.get(name, body)
                for gen in (1, 2):  # both slots, as a created store has them (one alone means a deleted one)
                    _write_durably(os.path.join(tx.stage("db"), name + atomic.SLOTS[gen % 2]),
                                   lambda write, b=body, g=gen: write(atomic.frame(b, g)))
            else:
                item, _, rest = member.name.partition("/")
                target = tx.stage(item) if not rest else os.path.join(tx.stage(item), *rest.split("/"))
                _write_durably(target, lambda write, m=member: f.stream(m, write))

    def _stage_kept_files(self, tx: Any, plan: "RestorePlan") -> List[str]:
        """Copy the result files kept from here into the staged spool, re-hashed; lines for those that fail."""
        warnings = []
        spool = self.ctx.spool
        for sha in plan.files:
            target = os.path.join(tx.stage("spool"), os.path.basename(spool.path(sha)))
            digest = hashlib.sha256()

            def copy(write: Callable[[bytes], object], sha: str = sha, digest: Any = digest) -> None:
                with spool.open(sha) as src:
                    for chunk in iter(lambda: src.read(CHUNK), b""):
                        digest.update(chunk)
                        write(chunk)

            try:
                _write_durably(target, copy)
                problem = None if digest.hexdigest() == sha else "SHA-256 不符（文件内容已损坏）"
            except FileNotFoundError:
                problem = "文件不存在"
            except OSError as e:
                problem = "无法读取（{}）".format(e)
            if problem:
                _quietly_remove(target)
                log.error("result file %s kept by the restore does not check: %s", sha, problem)
                warnings.append(plan.damaged_line(sha, problem))
        return warnings

    def _reopen(self) -> None:
        """After the swap: open the restored files, then close the replaced stores (the app must still restart).

        The restored stores open first, so a failure leaves the old ones open for the
        roll-back; once closed, the replaced stores refuse every write, so no thread holding
        one can write old tables over the restored files.
        """
        ctx = self.ctx
        old = ctx.stores
        ctx.stores = ctx.folder.open_stores()
        ctx.spool = ctx.folder.open_spool()
        ctx.audit = ctx.folder.open_audit()
        try:
            old.close()
        except StoreError as e:  # nothing was pending; the files are the restored ones now
            log.error("closing the replaced stores: %r", e)

    # -- 模考转正考 / 系统初始化 -------------------------------------------------------------------
    def to_formal(self, actor: str) -> Dict[str, Any]:
        """模考转正考: clear the mock exam's data, keep site code, accounts and settings; mode → formal.

        The caller asks for confirmation first. Raises ``SystemRefused`` (not in mock
        mode), ``PasswordChangeRequired``.
        """
        with self.ctx.files_lock, self.ctx.lock:  # files first, as every file operation
            self.accounts.require_changed(actor)
            site = self.ctx.site()
            if not site.get("site_code"):
                raise SystemRefused("尚未完成系统设置。", "请先设置考点代码和考试模式。")
            if site.get("mode") != model.MOCK:
                raise SystemRefused("当前已是正式考试模式，无需模考转正考。", "")
            cleared = self._clear_exam_data()
            self.ctx.stores.settings.put(model.SETTINGS, model.SITE, dict(site, mode=model.FORMAL))
            self.ctx.record(actor, "system.to_formal", site_code=site.get("site_code"), **cleared)
            return dict(cleared, mode=model.FORMAL, restart_required=True)

    def initialize(self, confirm_site_code: str, actor: str) -> Dict[str, Any]:
        """系统初始化: clear the site code and every exam data, keep accounts and passwords.

        ``confirm_site_code`` must be the current site code (empty when none is set).
        Raises ``SystemRefused`` (wrong confirmation; formal mode with unreported data),
        ``PasswordChangeRequired``.
        """
        with self.ctx.files_lock, self.ctx.lock:  # files first, as every file operation
            self.accounts.require_changed(actor)
            site = self.ctx.site()
            code = site.get("site_code") or ""
            if (confirm_site_code or "").strip() != code:
                raise SystemRefused("确认的考点代码与本系统的考点代码不符，未执行初始化。",
                                    "请输入本系统的考点代码以确认初始化（初始化会清除全部考试数据）。")
            self._refuse_if_unreported("初始化")
            cleared = self._clear_exam_data()
            kept = {k: v for k, v in site.items() if k in ("platform_url", "trusted_keys")}
            if kept:
                self.ctx.stores.settings.put(model.SETTINGS, model.SITE, kept)
            else:
                self.ctx.stores.settings.delete(model.SETTINGS, model.SITE)
            self.ctx.record(actor, "system.initialized", site_code=code, **cleared)
            return dict(cleared, site_code_cleared=code, restart_required=True)

    def _clear_exam_data(self) -> Dict[str, int]:
        """Runtime DB, exam DB, then the files they referred to (a crash leaves only orphans)."""
        stores = self.ctx.stores
        counts = {"rooms": stores.runtime.count(model.ROOMS), "sessions": stores.runtime.count(model.SESSIONS),
                  "results": sum(1 for d in stores.runtime.all(model.ROOM_SESSIONS) if d.get("result"))}
        with self.ctx.files_lock:
            stores.runtime.clear()
            stores.exam.clear()
            files = self.ctx.folder.clear_exam_files()
        counts["files"] = files
        return counts

    # -- status --------------------------------------------------------------------------------
    def snapshot(self) -> Dict[str, Any]:
        """What the status line and ``status`` show: site, mode, exam, counts, the exit rule."""
        ctx = self.ctx
        with ctx.lock:
            site = ctx.site()
            manifest = ctx.manifest() or {}
            meta = ctx.stores.exam.get(model.PACKAGE, model.PACKAGE_META) or {}
            rooms = ctx.stores.runtime.all(model.ROOMS)
            sessions = ctx.stores.runtime.all(model.SESSIONS)
            rs = ctx.stores.runtime.all(model.ROOM_SESSIONS)
            outbox = ctx.stores.runtime.all(model.OUTBOX)
            allowed, reason = self.exit_allowed()
            mode = site.get("mode", model.FORMAL) if site.get("site_code") else None
            return {
                "site_code": site.get("site_code"),
                "mode": mode,
                "mode_label": model.MODE_LABELS.get(mode or "", "未设置"),
                "needs_setup": not site.get("site_code"),
                "platform_url": site.get("platform_url"),
                "exam_name": manifest.get("exam_name"),
                "package_loaded": bool(manifest),
                "publish_time": meta.get("publish_time") or manifest.get("publish_time"),
                "loaded_at": meta.get("loaded_at"),
                "rooms": len(rooms),
                "rooms_registered": sum(1 for r in rooms if r.get("token") or r.get("registered_at")),
                "rooms_data_imported": sum(1 for r in rooms if r.get("data_imported_at")),
                "sessions": len(sessions),
                "sessions_authorized": sum(1 for s in sessions if s.get("authorized_at")),
                "sessions_verified": sum(1 for s in sessions if s.get("verified_at")),
                "results_recovered": sum(1 for d in rs if d.get("result")),
                "results_uploaded": sum(1 for d in rs if d.get("result") and d.get("upload")),
                "outbox_pending": sum(1 for o in outbox if o.get("state") == "pending"),
                "exit_allowed": allowed,
                "exit_reason": reason,
            }


# -- helpers ------------------------------------------------------------------------------------
def _unreported(rows: List[Dict[str, Any]]) -> List[str]:
    lines = []
    for d in sorted(rows, key=lambda r: (str(r.get("session")), str(r.get("room")))):
        room, session = d.get("room"), d.get("session")
        if d.get("result"):
            if not d.get("upload"):
                lines.append("考场 {} 场次 {}：已回收，未上报".format(room, session))
        elif d.get("started_at"):
            lines.append("考场 {} 场次 {}：考试已开始，数据未回收".format(room, session))
    return lines


def _summary(lines: List[str]) -> str:
    if len(lines) <= 3:
        return "；".join(lines)
    return "{} 等 {} 项".format("；".join(lines[:3]), len(lines))


def _tables(body: bytes, what: str) -> Dict[str, Dict[str, Any]]:
    """A store body's tables, or a ``FormatError`` (a backup member that is not a store)."""
    try:
        _gen, tables, _raw = atomic.decode(atomic.frame(body, 1))
    except atomic.CorruptFile as e:
        raise bak.refuse("数据库 {} 无法读取（{}）".format(what, e)) from None
    return tables


def _doc(tables: Dict[str, Dict[str, Any]], table: str, key: str) -> Optional[Dict[str, Any]]:
    for doc in tables.get(table, {}).values():
        if isinstance(doc, dict) and doc.get("_key") == key:
            return doc
    return None


def _quietly_remove(path: str) -> None:
    try:
        os.remove(path)
    except OSError:
        pass


def _quietly_rmtree(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)



# -- 系统恢复: what a restore keeps from here ------------------------------------------------------
KEY = "_key"  # the key field of a stored document, as in a store's body (kd.store.database.KEY)
CHUNK = 1024 * 1024
UNREPORTED_REMEDY = "请先完成数据回收和考后上报，再执行此操作。"
#: ``result_conflicts.origin`` of a conflict a restore found (the backup and here disagree)
ORIGIN_RESTORE = "restore"
REPORTED_FIELDS = ("started_reported_at", "ended_reported_at")
Tables = Dict[str, Dict[str, Any]]


class _Backup(NamedTuple):
    tables: Dict[str, Tables]  # settings, exam, runtime: table → doc id → document
    spool: Set[str]  # the SHA-256 of every result file the backup holds


class _Tables:
    """A store body's tables as a backup holds them (table → doc id → document with its ``_key``), by key."""

    def __init__(self, tables: Tables) -> None:
        self.tables = tables
        self._ids: Dict[str, Dict[str, str]] = {}
        self._next: Dict[str, int] = {}

    def _index(self, table: str) -> Dict[str, str]:
        ids = self._ids.get(table)
        if ids is None:
            ids, top = {}, 0
            for doc_id, doc in self.tables.get(table, {}).items():
                if isinstance(doc, dict) and isinstance(doc.get(KEY), str):
                    ids[doc[KEY]] = doc_id
                if doc_id.isdigit():
                    top = max(top, int(doc_id))
            self._ids[table], self._next[table] = ids, top + 1
        return ids

    def items(self, table: str) -> Dict[str, Dict[str, Any]]:
        rows = self.tables.get(table, {})
        return {key: _strip(rows[doc_id]) for key, doc_id in self._index(table).items()}

    def get(self, table: str, key: Optional[str]) -> Optional[Dict[str, Any]]:
        doc_id = self._index(table).get(key or "")
        return None if doc_id is None else _strip(self.tables[table][doc_id])

    def put(self, table: str, key: str, doc: Dict[str, Any]) -> None:
        ids = self._index(table)
        rows = self.tables.setdefault(table, {})
        doc_id = ids.get(key)
        if doc_id is None:
            doc_id = str(self._next[table])
            self._next[table] += 1
            ids[key] = doc_id
        row = copy.deepcopy(doc)
        row[KEY] = key
        rows[doc_id] = row

    def count(self, table: str) -> int:
        return len(self._index(table))

    def body(self) -> bytes:
        """The store body (compact UTF-8 JSON, as the store writes it)."""
        return json.dumps(self.tables, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


class RestorePlan:
    """What a restore keeps from here, merged into the backup's tables, and whether it may run.

    Built under ``ctx.lock`` by ``SystemService._plan`` (the module docstring says what is
    kept and why). ``runtime`` / ``settings``: the backup's tables with what is kept
    merged in; ``files``: result files to copy from here into the staged spool;
    ``refusal``: the first guard that refuses, or None.
    """

    def __init__(self, backup: _Backup, now: Any) -> None:
        self.runtime = _Tables(backup.tables["runtime"])
        self.settings = _Tables(backup.tables["settings"])
        self.package = _doc(backup.tables["exam"], model.PACKAGE, model.MANIFEST) or {}
        self.backup_spool = backup.spool
        self.now = format_time(now)
        self.refusal: Optional[SystemRefused] = None
        self.results: List[Dict[str, Any]] = []
        self.receipts: List[Dict[str, Any]] = []
        self.conflicts: List[Dict[str, Any]] = []
        self.conflict_records = 0
        self.outbox = 0
        self.reported = 0
        self.checks: List[str] = []
        self.accounts: List[str] = []
        self.accounts_changed: List[str] = []
        self.files: List[str] = []
        self.sizes: Dict[str, int] = {}
        self._pairs: Dict[str, Tuple[str, str]] = {}
        self.backup_holds = self._holds()

    def _site(self) -> Dict[str, Any]:
        return self.settings.get(model.SETTINGS, model.SITE) or {}

    def _holds(self) -> Dict[str, Any]:
        return _holds(self._site(), self.package, self.runtime.items(model.ROOMS),
                      self.runtime.items(model.ROOM_SESSIONS), self.runtime.count(model.RESULT_CONFLICTS))

    def after_holds(self) -> Dict[str, Any]:
        """What the folder holds after the restore (the backup with what is kept)."""
        return self._holds()

    def refuse(self, err: SystemRefused) -> None:
        if self.refusal is None:
            self.refusal = err

    # -- the guards ----------------------------------------------------------------------------
    def guard_formal(self, rows: Dict[str, Dict[str, Any]]) -> None:
        """A formal exam here: refuse a mock backup once it ran, and a started room the backup does not know."""
        ran = any(d.get("started_at") or d.get("result") for d in rows.values())
        if ran and self._site().get("mode") == model.MOCK:
            self.refuse(SystemRefused(
                "该备份是模拟考试的备份，本系统正在进行正式考试，恢复后系统将不再把本次考试当作正式考试。",
                "请选择本次正式考试的备份文件。"))
        unknown = [d for _, d in sorted(rows.items()) if d.get("started_at") and not d.get("result")
                   and not (self.runtime.get(model.ROOM_SESSIONS, _rs_key(d)) or {}).get("started_at")]
        if unknown:
            names = [result_label(d.get("room"), d.get("session")) for d in unknown]
            self.refuse(SystemRefused(
                "正在考试的考场在该备份中尚未开考：{}。恢复后系统将不再知道这些考场已开考，"
                "考试数据可能无法回收和上报。".format(_summary(names)),
                "请选择这些考场开考之后的较新备份；或待这些考场考试结束、数据回收并上报后再恢复。",
                detail="; ".join(names)))

    # -- what is kept --------------------------------------------------------------------------
    def merge_results(self, rows: Dict[str, Dict[str, Any]], conflicts: Dict[str, Dict[str, Any]],
                      manifest: Optional[Dict[str, Any]], actor: str) -> None:
        """Recovered results, receipts and conflicts here that the backup lacks (or refuse naming them)."""
        planned = set(_planned(self.package))
        same_exam = manifest is None or (manifest.get("exam_name") == self.package.get("exam_name"))
        foreign: List[str] = []
        for key, doc in sorted(rows.items()):
            res = doc.get("result")
            if not res:
                continue
            room, session = doc.get("room"), doc.get("session")
            if not same_exam or (room, session) not in planned:
                foreign.append(result_label(room, session))
                continue
            held = self.runtime.get(model.ROOM_SESSIONS, key)
            theirs = (held or {}).get("result")
            upload = doc.get("upload")
            if not theirs:
                new = dict(held) if held else {"room": room, "session": session, "started_at": None,
                                               "ended_at": None}
                for field in ("started_at", "ended_at"):  # a result means the exam ran
                    if not new.get(field):
                        new[field] = doc.get(field)
                new["result"], new["upload"] = res, upload
                self.runtime.put(model.ROOM_SESSIONS, key, new)
                self.results.append({"room": room, "session": session, "sha256": res.get("sha256"),
                                     "uploaded": bool(upload)})
            elif theirs.get("sha256") == res.get("sha256"):
                if upload and not held.get("upload"):
                    self.runtime.put(model.ROOM_SESSIONS, key, dict(held, upload=upload))
                    self.receipts.append({"room": room, "session": session, "sha256": res.get("sha256")})
            elif upload and not held.get("upload"):  # the platform holds ours: ours stays the result
                self.runtime.put(model.ROOM_SESSIONS, key, dict(held, result=res, upload=upload))
                self._conflict(room, session, theirs, held.get("upload"), res, "backup", actor)
            else:
                self._conflict(room, session, res, upload, theirs, "here", actor)
        for ckey, c in sorted(conflicts.items()):
            if self.runtime.get(model.RESULT_CONFLICTS, ckey) is not None:
                continue
            if not same_exam or (c.get("room"), c.get("session")) not in planned:
                foreign.append("{}（冲突结果包）".format(result_label(c.get("room"), c.get("session"))))
                continue
            self.runtime.put(model.RESULT_CONFLICTS, ckey, c)
            self.conflict_records += 1
        if foreign:
            if same_exam:
                cause = "该备份的考务数据中没有安排以下已回收的考试结果：{}，恢复会丢失它们。"
            else:
                cause = "该备份是另一次考试（{}）的备份".format(self.package.get("exam_name") or "未知考试") + \
                    "，不含本系统已回收的考试结果：{}，恢复会丢失它们。"
            self.refuse(SystemRefused(
                cause.format(_summary(foreign)),
                "请选择本次考试的备份文件；如确需恢复该备份，请先把这些结果备份到外部存储并完成考后上报，"
                "再执行“系统初始化”后恢复。", detail="; ".join(foreign)))

    def _conflict(self, room: str, session: str, other: Dict[str, Any], other_upload: Optional[Dict[str, Any]],
                  kept: Dict[str, Any], origin: str, actor: str) -> None:
        """Keep ``other`` (from ``origin``: backup | here) visibly, as a refused package beside ``kept``."""
        sha = str(other.get("sha256"))
        ckey = "{}|{}".format(model.rs_key(room, session), sha)
        if self.runtime.get(model.RESULT_CONFLICTS, ckey) is None:
            self.runtime.put(model.RESULT_CONFLICTS, ckey, {
                "room": room, "session": session, "sha256": sha, "size": other.get("size"),
                "source": other.get("source"), "kept_sha256": kept.get("sha256"), "first_at": self.now,
                "last_at": self.now, "times": 1, "actor": actor, "origin": ORIGIN_RESTORE, "held_by": origin,
                "received_at": other.get("received_at"), "upload": other_upload})
        self.conflicts.append({"room": room, "session": session, "kept_sha256": kept.get("sha256"),
                               "other_sha256": sha, "other_from": origin, "other_uploaded": bool(other_upload)})

    def merge_records(self, outbox: Dict[str, Dict[str, Any]], sessions: Dict[str, Dict[str, Any]],
                      recovery: Optional[Dict[str, Any]], external: Optional[Dict[str, Any]]) -> None:
        """Outbox reports, the sessions' reported times, checks/recovery and a newer checks/external."""
        held = self.runtime.items(model.OUTBOX)
        for oid, doc in sorted(outbox.items()):
            theirs = held.get(oid)
            if theirs is None or (theirs.get("state") == PENDING and doc.get("state") != PENDING):
                self.runtime.put(model.OUTBOX, oid, doc)
                self.outbox += 1
        held_sessions = self.runtime.items(model.SESSIONS)
        for sid, doc in sorted(sessions.items()):
            theirs = held_sessions.get(sid)
            if theirs is None:
                continue
            changes = {f: doc[f] for f in REPORTED_FIELDS if doc.get(f) and not theirs.get(f)}
            if changes:
                self.runtime.put(model.SESSIONS, sid, dict(theirs, **changes))
                self.reported += len(changes)
        if recovery and self.runtime.get(model.CHECKS, model.RECOVERY) is None \
                and self.runtime.get(model.OUTBOX, recovery.get("outbox_id")) is not None:
            self.runtime.put(model.CHECKS, model.RECOVERY, recovery)
            self.checks.append(model.RECOVERY)
        theirs_ext = self.runtime.get(model.CHECKS, model.EXTERNAL)
        if external and (theirs_ext is None or _later(external.get("verified_at"), theirs_ext.get("verified_at"))):
            self.runtime.put(model.CHECKS, model.EXTERNAL, external)
            self.checks.append(model.EXTERNAL)

    def merge_accounts(self, accounts: Dict[str, Dict[str, Any]]) -> None:
        """Every account here replaces the backup's (password, salt, iterations, must_change, lockout)."""
        held = self.settings.items(model.ACCOUNTS)
        for user, doc in sorted(accounts.items()):
            self.accounts.append(user)
            if held.get(user) != doc:
                self.settings.put(model.ACCOUNTS, user, doc)
                self.accounts_changed.append(user)

    def find_files(self) -> None:
        """The result files the merged records refer to that the backup lacks (copied from here)."""
        refs: Dict[str, Tuple[str, str, Optional[int]]] = {}
        for doc in self.runtime.items(model.ROOM_SESSIONS).values():
            res = doc.get("result") or {}
            if res.get("sha256"):
                refs[res["sha256"]] = (doc.get("room"), doc.get("session"), res.get("size"))
        for doc in self.runtime.items(model.RESULT_CONFLICTS).values():
            if doc.get("sha256"):
                refs.setdefault(doc["sha256"], (doc.get("room"), doc.get("session"), doc.get("size")))
        for sha, (room, session, size) in sorted(refs.items()):
            if sha in self.backup_spool:
                continue
            self.files.append(sha)
            self._pairs[sha] = (room, session)
            if isinstance(size, int):
                self.sizes[sha] = size

    # -- telling it ------------------------------------------------------------------------------
    def damaged_line(self, sha: str, problem: str) -> str:
        room, session = self._pairs.get(sha, ("?", "?"))
        return "{} 的结果包文件在本机已损坏（{}），未能随恢复保留；恢复后请重新回收该考场的结果包。".format(
            result_label(room, session), problem)

    def kept(self) -> Dict[str, Any]:
        """``{"results": [{"room", "session", "sha256", "uploaded"}], "receipts": [...], "conflicts":
        [{"room", "session", "kept_sha256", "other_sha256", "other_from" (backup | here),
        "other_uploaded"}], "conflict_records", "files", "outbox", "reported", "checks",
        "accounts", "accounts_changed"}``: what is here and kept."""
        return {"results": list(self.results), "receipts": list(self.receipts), "conflicts": list(self.conflicts),
                "conflict_records": self.conflict_records, "files": len(self.files), "outbox": self.outbox,
                "reported": self.reported, "checks": list(self.checks), "accounts": list(self.accounts),
                "accounts_changed": list(self.accounts_changed)}

    def lines(self) -> List[str]:
        """What is kept, for the administrator (Chinese)."""
        out = []
        if self.results:
            uploaded = sum(1 for r in self.results if r["uploaded"])
            out.append("保留本机已回收而备份中没有的考试结果 {} 个（其中已上报 {} 个）：{}。".format(
                len(self.results), uploaded, _summary([result_label(r["room"], r["session"]) for r in self.results])))
        else:
            out.append("本机没有备份中缺少的考试结果。")
        if self.receipts:
            out.append("保留本机的上报回执 {} 个（备份时这些结果尚未上报）：{}。".format(
                len(self.receipts), _summary([result_label(r["room"], r["session"]) for r in self.receipts])))
        for c in self.conflicts:
            which = "备份中的结果" if c["other_from"] == "here" else "本机已上报的结果"
            out.append("{}：备份中的结果与本机的不同，两个都保留：{}（校验值 {}…）作为该考场的结果，另一个（{}…）"
                       "列为冲突，数据回收中显示“已回收（有冲突）”。".format(
                           result_label(c["room"], c["session"]), which, str(c["kept_sha256"])[:12],
                           str(c["other_sha256"])[:12]))
        if self.conflict_records:
            out.append("保留本机记录的冲突结果包 {} 个。".format(self.conflict_records))
        if self.outbox:
            out.append("保留本机的上报记录 {} 条（未发送的仍会发送）。".format(self.outbox))
        if self.accounts:
            out.append("保留本机当前的账号和密码（{}）：恢复后请用现在的密码登录。".format("、".join(self.accounts)))
        return out


def _strip(doc: Dict[str, Any]) -> Dict[str, Any]:
    return {k: v for k, v in doc.items() if k != KEY}


def _rs_key(doc: Dict[str, Any]) -> str:
    return model.rs_key(str(doc.get("room")), str(doc.get("session")))


def _planned(package: Dict[str, Any]) -> List[Tuple[str, str]]:
    """The (room, session) pairs a package plans (those with candidates)."""
    return sorted({(c.get("room"), c.get("session")) for c in package.get("candidates", []) if isinstance(c, dict)})


def _holds(site: Dict[str, Any], manifest: Optional[Dict[str, Any]], rooms: Dict[str, Dict[str, Any]],
           rows: Dict[str, Dict[str, Any]], conflicts: int) -> Dict[str, Any]:
    """What a data folder holds, for the restore's comparison."""
    recovered = [d for d in rows.values() if d.get("result")]
    code = site.get("site_code") or ""
    return {"site_code": code, "mode": site.get("mode", model.FORMAL) if code else None,
            "exam_name": (manifest or {}).get("exam_name") or "", "rooms": len(rooms),
            "rooms_registered": sum(1 for r in rooms.values() if r.get("token") or r.get("registered_at")),
            "rooms_started": sum(1 for d in rows.values() if d.get("started_at")),
            "results_recovered": len(recovered), "results_uploaded": sum(1 for d in recovered if d.get("upload")),
            "conflicts": conflicts}


def _later(a: Any, b: Any) -> bool:
    """True when time ``a`` is later than ``b`` (an unreadable ``b`` counts as older)."""
    try:
        first = read_time(a)
    except ValueError:
        return False
    try:
        return first > read_time(b)
    except ValueError:
        return True


def _audit_kept(kept: Dict[str, Any]) -> Dict[str, Any]:
    """The audit record's summary of what was kept (room|session keys, counts)."""
    return {"results": ["{}|{}".format(r["room"], r["session"]) for r in kept["results"]],
            "receipts": ["{}|{}".format(r["room"], r["session"]) for r in kept["receipts"]],
            "conflicts": [dict(c) for c in kept["conflicts"]],
            "conflict_records": kept["conflict_records"], "files": kept["files"], "outbox": kept["outbox"],
            "reported": kept["reported"], "checks": kept["checks"]}
