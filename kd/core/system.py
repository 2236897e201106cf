"""System management (manual §6): backup, restore, 模考转正考, 系统初始化, the exit rule.

- ``backup(folder, note, actor)``: delegates to ``kd.core.backup`` (the signed ``.bak``).
- ``restore_preview(path, actor)`` / ``restore(path, actor)`` (系统恢复): delegate to
  ``kd.core.restore.RestoreService`` (the preview changes nothing; the restore verifies
  the file completely, keeps what must survive from here and swaps it in; the app must
  restart afterwards). How the rule below applies to a restore is stated there.
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
"""

import logging
from typing import Dict, List, Optional, Tuple

from kd.core import lifecycle, model, names, records
from kd.core.accounts import AccountService
from kd.core.backup import BackupError, BackupService, SystemRefused  # noqa: F401 (re-exported)
from kd.core.context import Context
from kd.core.labels import result_label, session_names, summary  # noqa: F401 (result_label re-exported)
from kd.core.outbox import PENDING
from kd.core.records import JsonObject
from kd.core.restore import RestoreError, RestoreService, finish_interrupted_restore  # noqa: F401 (re-exported)

log = logging.getLogger(__name__)

UNREPORTED_REMEDY = "请先完成数据回收和考后上报，再执行此操作。"


class SystemService:
    """系统备份 / 系统恢复 / 模考转正考 / 系统初始化 and the exit rule."""

    def __init__(self, ctx: Context, *, accounts: Optional[AccountService] = None,
                 backup: Optional[BackupService] = None, restorer: Optional[RestoreService] = None) -> None:
        """The core hands in its ``AccountService``, ``BackupService`` and ``RestoreService``;
        standalone use (tests) falls back to ones over the same context."""
        self.ctx = ctx
        self.accounts = accounts or AccountService(ctx)
        self.backups = backup or BackupService(ctx, self.accounts)
        self.restorer = restorer or RestoreService(ctx, self.accounts)

    # -- the rule of §6.3 / §6.5 -------------------------------------------------------------
    def unreported(self) -> List[str]:
        """What keeps a formal exam from being left: one line per room and session (empty in mock mode)."""
        if self.ctx.mode() != model.FORMAL:
            return []
        return _unreported(records.room_sessions(self.ctx.stores.runtime), self.ctx.manifest_view(session_names))

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
        return False, "考试数据尚未上报，禁止{}{}：{}。".format(what, why, summary(lines))

    def _refuse_if_unreported(self, what: str) -> None:
        lines = self.unreported()
        if lines:
            raise SystemRefused("考试数据尚未上报，禁止{}：{}。".format(what, summary(lines)),
                                UNREPORTED_REMEDY, detail="; ".join(lines))

    # -- 系统备份 ------------------------------------------------------------------------------
    def backup(self, folder: str, note: str, actor: str) -> str:
        """Write a signed ``.bak`` into ``folder``; return its path (``kd.core.backup``)."""
        return self.backups.backup(folder, note, actor)

    # -- 系统恢复 (kd.core.restore) -----------------------------------------------------------------
    def restore_preview(self, path: str, actor: str) -> JsonObject:
        """What ``restore(path, actor)`` would do now; changes nothing (``RestoreService.restore_preview``)."""
        return self.restorer.restore_preview(path, actor)

    def restore(self, path: str, actor: str) -> JsonObject:
        """Verify ``path`` completely, then swap it in (``RestoreService.restore``)."""
        return self.restorer.restore(path, actor)

    # -- 模考转正考 / 系统初始化 -------------------------------------------------------------------
    def to_formal(self, actor: str) -> JsonObject:
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
            self.ctx.record(actor, names.SYSTEM_CONVERTED_TO_FORMAL, site_code=site.get("site_code"), **cleared)
            return dict(cleared, mode=model.FORMAL, restart_required=True)

    def initialize(self, confirm_site_code: str, actor: str) -> JsonObject:
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
            self.ctx.record(actor, names.SYSTEM_INITIALIZED, site_code=code, **cleared)
            return dict(cleared, site_code_cleared=code, restart_required=True)

    def _clear_exam_data(self) -> Dict[str, int]:
        """Runtime DB, exam DB, then the files they referred to (a crash leaves only orphans)."""
        stores = self.ctx.stores
        counts = {"rooms": stores.runtime.count(model.ROOMS), "sessions": stores.runtime.count(model.SESSIONS),
                  "results": sum(1 for d in records.room_sessions(stores.runtime) if lifecycle.recovered(d))}
        with self.ctx.files_lock:
            stores.runtime.clear()
            stores.exam.clear()
            files = self.ctx.folder.clear_exam_files()
        counts["files"] = files
        return counts

    # -- status --------------------------------------------------------------------------------
    def snapshot(self) -> JsonObject:
        """What the status line and ``status`` show: site, mode, exam, counts, the exit rule."""
        ctx = self.ctx
        with ctx.lock:
            site = ctx.site()
            manifest = ctx.manifest() or {}
            meta = ctx.stores.exam.get(model.PACKAGE, model.PACKAGE_META) or {}
            rooms = records.rooms(ctx.stores.runtime)
            sessions = records.sessions(ctx.stores.runtime)
            rs = records.room_sessions(ctx.stores.runtime)
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
                "sessions_authorized": sum(1 for s in sessions if lifecycle.authorized(s)),
                "sessions_verified": sum(1 for s in sessions if lifecycle.verified(s)),
                "results_recovered": sum(1 for d in rs if lifecycle.recovered(d)),
                "results_uploaded": sum(1 for d in rs if lifecycle.uploaded(d)),
                "outbox_pending": sum(1 for o in outbox if o.get("state") == PENDING),
                "exit_allowed": allowed,
                "exit_reason": reason,
            }


def _unreported(rows: List[records.RoomSession], names: Optional[Dict[str, str]] = None) -> List[str]:
    """The rule's lines: a room started and not recovered, or recovered and not uploaded."""
    lines = []
    for d in sorted(rows, key=lambda r: (str(r.get("session")), str(r.get("room")))):
        room, session = d.get("room"), d.get("session")
        if lifecycle.recovered(d):
            if not lifecycle.uploaded(d):
                lines.append("{}：已回收，未上报".format(result_label(room, session, names)))
        elif lifecycle.started(d):
            lines.append("{}：考试已开始，数据未回收".format(result_label(room, session, names)))
    return lines
