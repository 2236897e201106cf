"""System management (manual §6): backup, restore, 模考转正考, 系统初始化, the exit rule.

- ``backup(folder, note, actor)``: delegates to ``kd.core.backup`` (the signed ``.bak``).
- ``restore(path, actor)``: verify first (structure, every hash, the signature with the
  public key the manifest names, that key being the one of the site package inside the
  backup, and the attached dongle being that dongle), stage it under
  ``DATA/.tx``, then swap it in (see below). The running context is switched
  over to the restored files, but services that keep state in memory do not know: the
  result says ``restart_required`` and the app must restart (manual §6.2).
- ``to_formal(actor)`` (模考转正考, mock mode only): clears the exam data (runtime DB,
  exam DB, room files, spool), keeps site code, accounts and settings; mode → formal.
- ``initialize(confirm_site_code, actor)`` (系统初始化): clears the site code and all exam
  data, keeps accounts; refused during a formal exam while data is not reported.
- ``exit_allowed()``: the same rule guards exit (§6.5).

"Not reported" (formal mode only): a room of a session that started and whose results
were not recovered yet, or a recovered result (``room_sessions.result``) without an
upload receipt (``room_sessions.upload``). Restore is refused in formal mode when it
would drop such a result (the backup does not hold the same result).

The swap (never half-restored) is a journaled transaction of the data folder
(``kd.store.datafolder``): the items ``db/``, ``spool/``, ``rooms/`` and ``audit.log``
are staged complete and verified under ``DATA/.tx``; the journal commits; each live item
is moved aside and the staged one put in its place; the old items are kept as
``DATA/restore-previous`` (the one before is deleted). A failure during the swap puts the
old items back. After the swap the replaced stores are closed (a closed store refuses
writes), so a thread holding one cannot write old tables over the restored files. After a
kill, the next start (``DataFolder.finish_interrupted``) completes the swap.
"""

import logging
import os
import shutil
from typing import Any, Callable, Dict, List, Optional, Tuple

from kd.core import model
from kd.core.accounts import AccountService
from kd.core.backup import BackupError, BackupService, SystemRefused  # noqa: F401 (re-exported)
from kd.core.context import Context
from kd.core.ports import DongleSignature
from kd.errors import LockError, StoreError, UserError
from kd.formats import backup as bak
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
        lines = self.unreported()
        if not lines:
            return True, ""
        return False, "考试数据尚未上报，禁止退出系统（否则考场无法正常进行考试）：{}。".format(_summary(lines))

    def _refuse_if_unreported(self, what: str) -> None:
        lines = self.unreported()
        if lines:
            raise SystemRefused("考试数据尚未上报，禁止{}：{}。".format(what, _summary(lines)),
                                "请先完成数据回收和考后上报，再执行此操作。", detail="; ".join(lines))

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
    def restore(self, path: str, actor: str) -> Dict[str, Any]:
        """Verify ``path`` completely, then replace the data folder's content with it in one swap.

        Returns ``{"restart_required": True, "site_code", "note", "created_at", ...}``.
        Raises ``FormatError`` (not a valid/untampered backup), ``LockError`` (the attached
        dongle is not the backup's), ``SystemRefused`` (another site's backup, or it would
        drop unreported results), ``RestoreError`` (the swap failed; old data intact).
        """
        ctx = self.ctx
        with ctx.files_lock, ctx.lock:
            self.accounts.require_changed(actor)
            with bak.BackupFile(path) as f:
                info = self._verify_backup(f)
                tx = ctx.folder.begin("restore")
                try:
                    self._stage(f, tx)
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
            ctx.record(actor, "system.restored", path=os.path.abspath(path), **info)
            return dict(info, restart_required=True)

    def _verify_backup(self, f: bak.BackupFile) -> Dict[str, Any]:
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
        current = self.ctx.site_code()
        if current and current != m["site_code"]:
            raise SystemRefused("该备份属于考点 {}，本系统的考点代码是 {}。".format(m["site_code"] or "（未设置）",
                                                                                current),
                                "请选择本考点的备份文件；如确需恢复其他考点的备份，请先执行“系统初始化”。")
        # 5. nothing unreported is dropped
        runtime = _tables(f.read(f.member("db/runtime.json")), "runtime")
        kept = {(d.get("room"), d.get("session")): (d.get("result") or {}).get("sha256")
                for d in runtime.get(model.ROOM_SESSIONS, {}).values() if isinstance(d, dict)}
        if self.ctx.mode() == model.FORMAL:
            for d in self.ctx.stores.runtime.all(model.ROOM_SESSIONS):
                result = d.get("result")
                room, session = d.get("room"), d.get("session")
                if result and not d.get("upload") and kept.get((room, session)) != result.get("sha256"):
                    raise SystemRefused(
                        "恢复该备份会丢失尚未上报的考试数据（考场 {} 场次 {}）。".format(room, session),
                        "请先完成考后上报，或选择包含这些数据的较新备份。")
        return {"site_code": m["site_code"], "mode": m["mode"], "note": m["note"], "created_at": m["created_at"],
                "exam_name": m["exam_name"], "members": len(f.members)}

    def _stage(self, f: bak.BackupFile, tx: Any) -> None:
        """Extract every member (checked against the manifest while written) into the transaction's staging."""
        for item in ("db", "spool", "rooms"):
            os.makedirs(tx.stage(item))
        for member in f.members:
            if member.name.startswith("db/"):
                body = f.read(member)
                _tables(body, member.name)
                name = member.name[len("db/"):]
                for gen in (1, 2):  # both slots, as a created store has them (one alone means a deleted one)
                    _write_durably(os.path.join(tx.stage("db"), name + atomic.SLOTS[gen % 2]),
                                   lambda write, b=body, g=gen: write(atomic.frame(b, g)))
            else:
                item, _, rest = member.name.partition("/")
                target = tx.stage(item) if not rest else os.path.join(tx.stage(item), *rest.split("/"))
                _write_durably(target, lambda write, m=member: f.stream(m, write))

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

