"""考前 step 5 授权验证 (screens.md §4.1, §4.2): verify the current session with the synced dongle.

Pick the current session (场次, preselected by ``core.verification.snapshot()["current"]``),
then 授权验证: ``core.verification.verify_online``; when the platform cannot be reached
or refuses, the .KDV import dialog opens (``core.verification.import_verification``),
as does 手工导入. The table shows each session's 考试授权状态 and 授权验证状态 (✓) with
the verification time and source.

Above it, the dongle's 校时 state: which dongle is attached (and the one the package
names), when it was synced (the sync ticket's server time, valid until when, for which
lock) and whether that sync lies within the hour before each session's start, with the
manual's instruction (§4.1): about one hour before the session, sync the dongle on an
internet PC; only "校时授权成功!" means the sync is done.

The ticket state comes from ``core.verification.sync_state`` (in the worker). While the
platform is reachable (one ``core.status.probe()`` before the first of the site's
``net.status`` events), a 机考锁校时 button syncs the dongle from here
(``core.status.sync_lock()``) and shows the manual's "校时授权成功!" message.
"""

from typing import Any, Callable, Dict, List, Optional, Sequence

import ttkbootstrap as ttk

from kd.core import names as n
from kd.core.labels import VERIFICATION_SOURCE_LABELS, mark, session_label, shown
from kd.core.snapshots import SessionRow
from kd.views.dialogs import KDV_TYPES
from kd.views.step_common import InfoLine, actor, auto_wrap
from kd.views.table_page import TablePage

COLUMNS = [("id", "场次", 50), ("name", "场次名称", 130), ("start", "开考时间", 150), ("duration", "考试时长", 70),
           ("authorized", "考试授权状态", 100), ("verified", "授权验证状态", 100), ("verified_at", "验证时间", 150),
           ("source", "验证方式", 80)]
KDV_TITLE = "手工导入授权验证文件（.KDV）"
SYNC_HINT = ("机考锁校时：每个场次开考前一小时左右（如9:00开考则8:00校时），将机考锁插在可上互联网的电脑上，"
             "登录监控平台的校时网站，点击“读取机考锁时间”进行校时；提示“校时授权成功!”才算校时完成。"
             "校时后将机考锁插回本机，选择当前场次，点击“授权验证”。")


class VerifyPage(TablePage):
    title = "授权验证"
    events = frozenset({n.SESSION_VERIFIED, n.SESSION_AUTHORIZED, n.PACKAGE_LOADED, n.LOCK_ATTACHED, n.LOCK_DETACHED,
                        n.SYSTEM_INITIALIZED, n.SYSTEM_RESTORED, n.SYSTEM_CONVERTED_TO_FORMAL, n.NET_STATUS})

    columns = COLUMNS
    import_title, import_types = KDV_TITLE, KDV_TYPES
    imported_note = "授权验证成功。"
    table_height = 7
    table_pady = 8

    # -- build ---------------------------------------------------------------------------
    def _build_header(self) -> None:
        lock = ttk.Labelframe(self, text="机考锁校时", padding=6)
        lock.pack(fill="x")
        self.lock_info = InfoLine(lock, [("lock", "机考锁"), ("synced", "校时时间"), ("valid", "有效至")])
        self.lock_info.pack(anchor="w")
        self.sync_status = ttk.Label(lock, text="")
        self.sync_status.pack(anchor="w", pady=(2, 0))
        self.hint = ttk.Label(lock, text=SYNC_HINT, bootstyle="info", wraplength=780, justify="left")
        self.hint.pack(anchor="w", pady=(4, 0))
        auto_wrap(self.hint, lock, margin=24)
        self.sync_button = ttk.Button(lock, text="机考锁校时", bootstyle="info-outline", command=self._on_sync)
        self.reachable: Optional[bool] = None

    def _build_footer(self) -> None:
        footer = self.bar(8)
        ttk.Label(footer, text="当前场次：").pack(side="left")
        self.session = ttk.Combobox(footer, state="readonly", width=34)
        self.session.pack(side="left")
        self.session.bind("<<ComboboxSelected>>", lambda e: self._show_sync())
        self.status = ttk.Label(footer, text="")
        self.status.pack(side="left", padx=(12, 0))
        self.verify_button, self.import_button = self.buttons(
            footer, right=[("授权验证", "primary", self._on_verify), ("手工导入", "secondary", self._on_import)])
        self._ids: List[str] = []

    # -- snapshot / render ---------------------------------------------------------------
    def snapshot(self) -> Dict[str, Any]:
        """``view``: the sessions (``VerificationSnapshot``), ``sync``: the dongle's 校时 state,
        ``reachable``: the platform (asked once, until the site's ``net.status`` events say)."""
        view = self.core.verification.view()
        snap = {"view": view, "sync": self.core.verification.sync_state([s.as_dict() for s in view.sessions])}
        if self.reachable is None:
            snap["reachable"] = self.core.status.probe()
        return snap

    def on_event(self, event: Any) -> None:
        if event.name == n.NET_STATUS:
            self.reachable = bool(event.data.get("ok"))
            self._show_sync_button()
            return
        self.refresh()

    def rows_of(self, snap: Dict[str, Any]) -> Sequence[SessionRow]:
        return snap["view"].sessions

    def row(self, s: SessionRow) -> Dict[str, Any]:
        return {"id": s.id, "name": s.name, "start": shown(s.start), "duration": s.duration_min,
                "authorized": mark(s.authorized), "verified": mark(s.verified), "verified_at": shown(s.verified_at),
                "source": VERIFICATION_SOURCE_LABELS.get(s.verification_source or "", "")}

    def render_rest(self, snap: Dict[str, Any]) -> None:
        view = snap["view"]
        before = self.selected_session()
        self._ids = [s.id for s in view.sessions]
        self.session.configure(values=["{} {}（{}）".format(s.id, s.name, shown(s.start)) for s in view.sessions])
        chosen = before if before in self._ids else view.current
        if chosen in self._ids:
            self.session.current(self._ids.index(chosen))
        else:
            self.session.set("")
        if "reachable" in snap and self.reachable is None:
            self.reachable = snap["reachable"]
        self._show_sync()
        self._show_sync_button()

    def _show_sync_button(self) -> None:
        """机考锁校时 only while the platform is reachable."""
        if self.reachable:
            if not self.sync_button.winfo_manager():
                self.sync_button.pack(anchor="w", pady=(4, 0))
        else:
            self.sync_button.pack_forget()

    def selected_session(self) -> Optional[str]:
        index = self.session.current()
        if index is None or index < 0 or index >= len(self._ids):
            return None
        return self._ids[index]

    def _show_sync(self) -> None:
        snap = self.last or {}
        sync = snap.get("sync") or {}
        lock = sync.get("lock_id") or ""
        if not sync.get("attached"):
            lock_text = "未检测到机考锁"
        elif sync.get("expected") and lock != sync["expected"]:
            lock_text = "{}（不是本考点登记的机考锁 {}）".format(lock, sync["expected"])
        else:
            lock_text = "{}（在位）".format(lock)
        ticket = sync.get("ticket") or {}
        self.lock_info.set("lock", lock_text)
        self.lock_info.set("synced", shown(ticket.get("server_time")) or "未校时")
        self.lock_info.set("valid", shown(ticket.get("valid_until")))
        sid = self.selected_session()
        view = snap.get("view")
        name = session_label(sid, {s.id: s.name for s in view.sessions} if view is not None else None)
        if not ticket:
            text, style = "校时状态：{}".format(sync.get("problem") or "未校时"), "danger"
        elif sid is None:
            text, style = "校时状态：已校时", "success"
        elif sync.get("for_session", {}).get(sid):
            text, style = "校时状态：已在{}开考前一小时内校时，可以进行授权验证。".format(name), "success"
        else:
            text = "校时状态：校时时间不在{}开考前一小时内，请在开考前一小时内重新校时。".format(name)
            style = "warning"
        self.sync_status.configure(text=text, bootstyle=style)
        row = next((s for s in view.sessions if s.id == sid), None) if view is not None else None
        self.status.configure(text="授权验证状态：{}".format(mark(row.verified)) if row else "")

    # -- actions -------------------------------------------------------------------------
    def importer(self) -> Callable[[str], Any]:
        sid, who = self.selected_session(), actor(self.shell)
        return lambda path: self.core.verification.import_verification(path, sid, who)

    def _on_sync(self) -> None:
        def synced(message: str) -> None:
            self.shell.dialogs.info("机考锁校时", message)

        self.run(self.core.status.sync_lock, synced, button=self.sync_button)

    def _session_or_warn(self) -> Optional[str]:
        sid = self.selected_session()
        if sid is None:
            self.shell.notify("请先选择当前场次。", kind="warning")
        return sid

    def _on_verify(self) -> None:
        sid = self._session_or_warn()
        if sid is None:
            return
        who = actor(self.shell)
        self.online(lambda: self.core.verification.verify_online(sid, who), self.verify_button)

    def _on_import(self) -> None:
        if self._session_or_warn() is not None:  # the file is the selected session's
            super()._on_import()
