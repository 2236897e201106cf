"""系统恢复 (manual §6.2): verify a ``.bak``, say what restoring it would do, and swap it in.

``RestoreService(ctx, accounts)`` (``kd.core.system.SystemService`` delegates to it):

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
  in memory do not know: the result says ``restart_required`` and the app must restart.

The rule of ``kd.core.system`` (a formal exam is not left while data is unreported) must
still hold after a restore.

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
   (it describes the copy on the external drive); every 考场情况记录 and 补时 record here
   (``incidents``, ``extra_time``: here's replaces the backup's of its id) and a
   room-session's ``extra_time_min`` / ``expected_end`` when here grants more.
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

import functools
import hashlib
import logging
import os
from typing import Any, Callable, Dict, List, Optional, Tuple

from kd.core import model, names
from kd.core.accounts import AccountService
from kd.core.backup import SystemRefused
from kd.core.context import Context
from kd.core.extratime import EXTRA_TIME
from kd.core.incidents import INCIDENTS
from kd.core.ports import DongleSignature
from kd.core.records import JsonObject
from kd.core.restoreplan import BackupTables, RestorePlan, audit_kept, find_doc, holds
from kd.errors import LockError, StoreError, UserError
from kd.formats import backup as bak
from kd.store import atomic
from kd.store.datafolder import DataFolder

log = logging.getLogger(__name__)

CHUNK = 1024 * 1024


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


class RestoreService:
    """系统恢复: the preview and the restore of a ``.bak``."""

    def __init__(self, ctx: Context, accounts: Optional[AccountService] = None) -> None:
        self.ctx = ctx
        self.accounts = accounts or AccountService(ctx)

    def _check_signature(self, f: bak.BackupFile, public_key: bytes) -> None:
        dongle = self.ctx.dongle_or_raise()
        sig = DongleSignature(f.seal.lock_id, f.seal.clock_ms, f.seal.signature)
        if f.seal.lock_id != f.lock_id or not dongle.check_signature(public_key, f.digest, sig):
            raise bak.refuse("机考锁签名无效，文件可能被篡改或不是本考点的备份")

    # -- 系统恢复 ------------------------------------------------------------------------------
    def restore_preview(self, path: str, actor: str) -> JsonObject:
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
            current = holds(ctx.site(), ctx.manifest(), ctx.stores.runtime.items(model.ROOMS),
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

    def restore(self, path: str, actor: str) -> JsonObject:
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
            ctx.record(actor, names.SYSTEM_RESTORED, path=os.path.abspath(path), kept=audit_kept(kept),
                       accounts_kept=kept["accounts"], damaged=warnings, **info)
            return dict(info, restart_required=True, kept=kept, lines=plan.lines(), warnings=warnings,
                        accounts_kept=kept["accounts"])

    def _verify_backup(self, f: bak.BackupFile) -> Tuple[BackupTables, Dict[str, Any]]:
        """The backup's stores' tables and spool files, and its header, once the file is proven genuine.

        Raises ``FormatError`` / ``LockError``; the guards are ``_plan``'s.
        """
        m = f.manifest
        public_key = f.lock_public_key
        # 1. the signature, with the key the manifest names
        self._check_signature(f, public_key)
        # 2. that key is the dongle of the site package inside the backup
        exam = _tables(f.read(f.member("db/exam.json")), "exam")
        package = find_doc(exam, model.PACKAGE, model.MANIFEST) or {}
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
        site = find_doc(settings, model.SETTINGS, model.SITE) or {}
        if (site.get("site_code") or "") != m["site_code"]:
            raise bak.refuse("备份中的考点设置与清单不符，文件可能被篡改")
        runtime = _tables(f.read(f.member("db/runtime.json")), "runtime")
        info = {"site_code": m["site_code"], "mode": m["mode"], "note": m["note"], "created_at": m["created_at"],
                "exam_name": m["exam_name"], "members": len(f.members)}
        spool = {x.name[len("spool/"):].split(".")[0] for x in f.members if x.name.startswith("spool/")}
        return BackupTables({"settings": settings, "exam": exam, "runtime": runtime}, spool), info

    def _plan(self, backup: BackupTables, info: Dict[str, Any], actor: str) -> RestorePlan:
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
        plan.merge_incidents(runtime.items(INCIDENTS), runtime.items(EXTRA_TIME), rows)
        plan.merge_accounts(ctx.stores.settings.items(model.ACCOUNTS))
        plan.find_files()
        return plan

    def _stage(self, f: bak.BackupFile, tx: Any, plan: RestorePlan) -> None:
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
                                   functools.partial(_write_frame, body, gen))
            else:
                item, _, rest = member.name.partition("/")
                target = tx.stage(item) if not rest else os.path.join(tx.stage(item), *rest.split("/"))
                _write_durably(target, functools.partial(f.stream, member))

    def _stage_kept_files(self, tx: Any, plan: RestorePlan) -> List[str]:
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


def _tables(body: bytes, what: str) -> Dict[str, Dict[str, Any]]:
    """A store body's tables, or a ``FormatError`` (a backup member that is not a store)."""
    try:
        _gen, tables, _raw = atomic.decode(atomic.frame(body, 1))
    except atomic.CorruptFile as e:
        raise bak.refuse("数据库 {} 无法读取（{}）".format(what, e)) from None
    return tables


def _write_frame(body: bytes, generation: int, write: Callable[[bytes], object]) -> None:
    write(atomic.frame(body, generation))


def _quietly_remove(path: str) -> None:
    try:
        os.remove(path)
    except OSError:
        pass
