"""The main window around the pages (screens.md §Main window layout).

``Shell(root, core, app=..., dialogs=..., user=..., log_path=...)`` fills a
``ttkbootstrap.Window``: the title ``<exam name> 考点管理系统 【<site>】`` (plus
``(当前是模考)`` in mock mode), a top bar with 更多 (≡), ``告警 N`` (kd.views.alarmcount) and, in
drill mode, 演练; the left
navigation of ``kd.views.pages.NAVIGATION`` (pages imported and built lazily, on first
show); for 考务管理 the 5-step header of ``pages.STEPS`` with ✓/✗ marks (the core's
``core.steps.marks()``, in a worker); the status bar and the footer.

It is the ``shell`` every page uses, typed by ``kd.views.shellapi.ShellAPI``: ``core``,
``loop`` (the root's ``kd.views.loop.TkLoop``: workers, timers, posts), ``dialogs``,
``app``, ``notify(text, kind)``, ``open_url(path)``, ``show(label)``, ``refresh_steps()``.
``Shell(root, core, loop=...)`` uses the start flow's loop; without one it makes its own
(with ``dialogs`` and ``log_path``) and closes it in ``close()``.

Live events: one hub subscription ("*") listened to through the loop on the Tk thread;
each event goes to the status bar, to a short notification when it is one the user
should see (registered, data imported, results received, report sent/failing), to the
visible page when its ``events`` name it, and refreshes the step marks and the title.

Errors: the loop's ``report`` is the root's ``report_callback_exception``: a
``UserError`` becomes a dialog with its cause and remedy; anything else is logged and the
user is told where the log is.

Closing: the window's close button hides it (withdraw) when the tray icon runs (
``tray_available``); without a tray it asks to exit. 退出系统 (``exit_system``) follows
``core.system.exit_allowed()`` and says why when it refuses. ``on_exit(restart)`` is
called when the app must end (restart=True after 系统恢复, 系统初始化, 模考转正考: the
process ends and main.py starts a new one, see ``kd.relaunch``).
"""

import logging
import tkinter as tk
import tkinter.font as tkfont
import webbrowser
from typing import Any, Callable, Dict, List, Optional, Tuple

import ttkbootstrap as ttk

import kd
from kd.core import names as n
from kd.core.labels import mark
from kd.views import branding, pages
from kd.views.dialogs import Dialogs
from kd.views.loop import Timer, TkLoop
from kd.views.shelltexts import notice_for, title_text
from kd.views.statusbar import StatusBar
from kd.views.widgets import NotOpened, apply_fonts, open_folder, open_in_browser

log = logging.getLogger(__name__)

#: events after which the step marks are checked again
STEP_EVENTS = n.STEP_EVENTS
#: events after which the title (exam name, site, mode) is read again
TITLE_EVENTS = n.DATA_REPLACED | {n.SYSTEM_SET_UP}


class Shell:
    def __init__(self, root: Any, core: Any, *, loop: Optional[TkLoop] = None, app: Any = None,
                 dialogs: Any = None, user: str = "admin", log_path: str = "", tray_available: Any = False,
                 on_exit: Optional[Callable[[bool], None]] = None,
                 browser: Callable[[str], Any] = webbrowser.open) -> None:
        self.root = root
        self.core = core
        self.app = app
        self.user = user
        self.log_path = log_path
        self.tray_available = tray_available
        self.on_exit = on_exit or (lambda restart: root.quit())
        self._own_loop = loop is None
        if loop is None:
            loop = TkLoop(root, dialogs=dialogs if dialogs is not None else Dialogs(root), log_path=log_path)
        self.loop = loop
        #: how ``open_url`` opens a path (in a worker)
        self.browser = browser
        self.family = apply_fonts(root)
        #: the last notifications shown, (kind, text), oldest first
        self.notes: List[Tuple[str, str]] = []
        self.marks: Dict[str, Optional[bool]] = {label: None for _, label, _ in pages.STEPS}
        self.pages: Dict[str, Any] = {}
        self.current: Any = None
        self.current_label = ""
        self.last_site_info: Optional[str] = None
        #: the window saying a printed page did not open in a browser (``not_opened``)
        self.opened_failed: Any = None
        self.closed = False
        self._steps_timer: Optional[Timer] = None
        self._note_timer: Optional[Timer] = None
        self._busy = 0

        self._build()
        from kd.views.more import MoreMenu  # noqa: PLC0415 - the menus need the shell built

        self.more = MoreMenu(self, self.more_button)
        self.drill: Any = None
        if app is not None and getattr(app, "drill", False):
            from kd.views.drill import DrillMenu  # noqa: PLC0415

            self.drill = DrillMenu(self, self.top)
        from kd.views.alarmcount import AlarmCount  # noqa: PLC0415

        self.alarms = AlarmCount(self)  # 告警 N, left of the 演练 line
        for widget in self.top.pack_slaves():  # a longer title or 演练 line narrows the notice's room
            if widget is not self.note_label:
                widget.bind("<Configure>", self._refit_note, add="+")
        root.protocol("WM_DELETE_WINDOW", self.close_window)
        self.listener = loop.listen(core.ctx.hub.subscribe(None), self.on_event)
        self._initial_status()
        self.refresh_title()
        self.show("考务管理")

    # -- layout ------------------------------------------------------------------------------
    def _build(self) -> None:
        root = self.root
        self.frame = ttk.Frame(root)
        self.frame.pack(fill="both", expand=True)
        self.top = ttk.Frame(self.frame, bootstyle="primary", padding=(10, 4))
        self.top.pack(side="top", fill="x")
        self.heading = ttk.Label(self.top, text=branding.PRODUCT, bootstyle="inverse-primary",
                                 font=(self.family, 13, "bold"))
        self.heading.pack(side="left")
        self.more_button = ttk.Menubutton(self.top, text="≡ 更多", bootstyle="primary")
        self.more_button.pack(side="right")
        self.key_button = ttk.Button(self.top, text="修改密码", bootstyle="primary",
                                     command=lambda: self.more.change_password())
        self.key_button.pack(side="right", padx=4)
        #: the short notification, in the top bar so it never covers a page
        self.note_label = ttk.Label(self.top, text="", padding=(10, 3))
        #: a notification too long for the top bar: wrapped, above the status bar
        self.long_note = ttk.Label(self.frame, text="", padding=(10, 4), justify="left")
        self._note_style = "inverse-light"
        self.top.bind("<Configure>", self._refit_note, add="+")

        footer = ttk.Frame(self.frame, padding=(8, 2))
        footer.pack(side="bottom", fill="x")
        self.footer = ttk.Label(footer, text=branding.footer_text(kd.__version__), bootstyle="secondary")
        self.footer.pack(side="left")
        self.status = StatusBar(self.frame, self.loop)
        self.status.attach(self.core, self.user, self.notify)
        self.status.pack(side="bottom", fill="x")
        ttk.Separator(self.frame).pack(side="bottom", fill="x")

        self.busy_bar = ttk.Frame(self.frame, padding=(8, 2))
        self.busy_label = ttk.Label(self.busy_bar, text="", bootstyle="warning")
        self.busy_label.pack(side="left")
        self.busy_progress = ttk.Progressbar(self.busy_bar, mode="indeterminate", length=240, bootstyle="warning")
        self.busy_progress.pack(side="left", padx=8)

        body = ttk.Frame(self.frame)
        body.pack(side="top", fill="both", expand=True)
        nav = ttk.Frame(body, padding=(4, 8), bootstyle="light")
        nav.pack(side="left", fill="y")
        self.nav_buttons: Dict[str, ttk.Button] = {}
        group = None
        for name, label, _spec in pages.NAVIGATION:
            if name != group:
                group = name
                ttk.Label(nav, text=name, bootstyle="inverse-light", font=(self.family, 11, "bold")).pack(
                    anchor="w", pady=(10, 2))
            button = ttk.Button(nav, text=label, width=8, bootstyle="secondary-outline",
                                command=lambda lb=label: self.show(lb))
            button.pack(fill="x", pady=2)
            self.nav_buttons[label] = button

        content = ttk.Frame(body)
        content.pack(side="left", fill="both", expand=True)
        self.steps_bar = ttk.Frame(content, padding=(8, 6))
        self.step_buttons: Dict[str, ttk.Button] = {}
        for index, (_, label, _spec) in enumerate(pages.STEPS):
            if index:
                ttk.Label(self.steps_bar, text="→", bootstyle="secondary").pack(side="left", padx=2)
            button = ttk.Button(self.steps_bar, text="", bootstyle="info-outline",
                                command=lambda lb=label: self.show(lb))
            button.pack(side="left", padx=2)
            self.step_buttons[label] = button
        self._paint_steps()
        self.page_area = ttk.Frame(content)
        self.page_area.pack(side="bottom", fill="both", expand=True)

    # -- the Shell interface -----------------------------------------------------------------
    @property
    def dialogs(self) -> Any:
        """The loop's dialogs (``kd.views.dialogs.Dialogs``; scripted in tests)."""
        return self.loop.dialogs

    def notify(self, text: str, kind: str = "info") -> None:
        """Show ``text`` for a few seconds (never blocks): in the top bar when it fits there
        whole, otherwise wrapped in the notice line above the status bar (never clipped)."""
        self.notes.append((kind, text))
        del self.notes[:-100]
        style = {"success": "inverse-success", "warning": "inverse-warning", "danger": "inverse-danger",
                 "error": "inverse-danger"}.get(kind, "inverse-light")
        self._hide_note()
        self._note_style = style
        if self._fits_top_bar(text):
            self.note_label.configure(text=text, bootstyle=style)
            self.note_label.pack(side="right", padx=(8, 16))
        else:
            self.long_note.configure(text=text, bootstyle=style,
                                     wraplength=max(300, self.frame.winfo_width() - 40))
            self.long_note.pack(side="bottom", fill="x", after=self.status)
        self._note_timer = self.loop.later(branding.NOTIFY_MS, self._hide_note, owner=self.note_label)

    def _refit_note(self, _event: Any = None) -> None:
        """The top bar got narrower (a smaller window) or fuller (a longer title or 演练 line):
        a notice shown there that no longer fits whole moves to the notice line."""
        if self.note_label.winfo_manager() and not self._fits_top_bar(str(self.note_label.cget("text"))):
            self.note_label.pack_forget()
            self.long_note.configure(text=str(self.note_label.cget("text")), bootstyle=self._note_style,
                                     wraplength=max(300, self.frame.winfo_width() - 40))
            self.long_note.pack(side="bottom", fill="x", after=self.status)

    def _fits_top_bar(self, text: str) -> bool:
        """Whether ``text`` fits whole between the title and the top bar's buttons."""
        self.top.update_idletasks()
        used = sum(w.winfo_reqwidth() + 12 for w in self.top.pack_slaves() if w is not self.note_label)
        room = self.top.winfo_width() - used - 40
        return tkfont.nametofont("TkDefaultFont").measure(text) + 24 <= room

    @property
    def note_text(self) -> str:
        """The notification shown now ("" when none), wherever it is shown."""
        for label in (self.note_label, self.long_note):
            if label.winfo_ismapped() or label.winfo_manager():
                return str(label.cget("text"))
        return ""

    def _hide_note(self) -> None:
        if self._note_timer is not None:
            self._note_timer.cancel()
        self._note_timer = None
        self.note_label.pack_forget()
        self.long_note.pack_forget()

    def open_url(self, path: str) -> None:
        """Open ``path`` (a file or URL) in the browser, from a worker. When no browser starts
        (the browser call returns False or raises), ``NotOpened`` says so and shows the path."""
        browser = self.browser
        self.loop.submit(lambda: open_in_browser(browser, path),
                         lambda opened: None if opened else self.not_opened(path))

    def not_opened(self, path: str) -> None:
        """Tell the user no browser opened ``path``: its path, 打开所在文件夹, 复制路径."""
        if self.opened_failed is not None and self.opened_failed.winfo_exists():
            self.opened_failed.destroy()
        self.opened_failed = NotOpened(self.root, path, lambda folder: self.loop.submit(lambda: open_folder(folder)))

    def show(self, label: str) -> None:
        """Show the page of a navigation entry or of a step (by its label)."""
        step_specs = {lb: spec for _, lb, spec in pages.STEPS}
        nav_specs = {lb: spec for _, lb, spec in pages.NAVIGATION}
        if label in step_specs:
            spec, nav_label, steps = step_specs[label], "考务管理", True
        elif label in nav_specs:
            spec, nav_label = nav_specs[label], label
            steps = any(s == spec for _, _, s in pages.STEPS)
            if steps:
                label = next(lb for _, lb, s in pages.STEPS if s == spec)
        else:
            raise KeyError(label)
        page = self.page(spec)
        if self.current is not None and self.current is not page:
            self.current.pack_forget()
        if steps:
            self.steps_bar.pack(side="top", fill="x", before=self.page_area)
        else:
            self.steps_bar.pack_forget()
        page.pack(in_=self.page_area, fill="both", expand=True)
        self.current, self.current_label = page, label
        for lb, button in self.nav_buttons.items():
            button.configure(bootstyle="primary" if lb == nav_label else "secondary-outline")
        self._paint_steps()
        page.refresh()
        if steps:
            self.refresh_steps()

    def page(self, spec: str) -> Any:
        """The page of ``spec`` (``"module:Class"``), built on first use."""
        page = self.pages.get(spec)
        if page is None:
            try:
                cls = pages.load(spec)
            except (ImportError, AttributeError) as e:
                log.error("page %s is not available: %r", spec, e)
                page = _Missing(self.page_area, self, spec)
            else:
                page = cls(self.page_area, self)
            self.pages[spec] = page
        return page

    def refresh_steps(self) -> None:
        """Check the step marks again (coalesced; ``core.steps.marks()`` in a worker)."""
        if self._steps_timer is None and not self.closed:
            self._steps_timer = self.loop.later(100, self._check_steps, owner=self.frame)

    @property
    def steps_pending(self) -> bool:
        """A check of the step marks is due (``refresh_steps`` coalesces them)."""
        return self._steps_timer is not None

    def _check_steps(self) -> None:
        self._steps_timer = None
        steps = self.core.steps

        def marks() -> Any:  # worker: the five rules are the core's (kd.core.steps)
            steps.invalidate()  # asked for: the current session of 授权验证 moves with the clock
            return steps.marks()

        self.loop.submit(marks, self._set_marks, self._mark_failed)

    def _set_marks(self, marks: Any) -> None:
        for mark_ in marks.marks:
            self.marks[mark_.label] = mark_.done
        self._paint_steps()

    def _mark_failed(self, exc: BaseException) -> None:
        log.warning("a step mark could not be checked: %r", exc)

    def _paint_steps(self) -> None:
        for index, (_, label, _spec) in enumerate(pages.STEPS):
            done = self.marks.get(label)
            text = "{} {} {}".format(index + 1, label, "" if done is None else mark(done))
            selected = label == self.current_label
            style = ("success" if done else "primary") if selected else ("success-outline" if done else
                                                                        "primary-outline")
            self.step_buttons[label].configure(text=text.strip(), bootstyle=style)

    # -- title and status --------------------------------------------------------------------
    def refresh_title(self) -> None:
        self.loop.submit(self.core.system.snapshot, self._set_title, self._mark_failed)
        self.loop.submit(self.core.status.contact, lambda c: self.footer.configure(
            text=branding.footer_text(kd.__version__, c.unit, c.phone)), self._mark_failed)

    def _set_title(self, snap: Dict[str, Any]) -> None:
        self.title_snapshot = snap
        self.root.title(title_text(snap))
        self.heading.configure(text=title_text(snap))

    def _initial_status(self) -> None:
        """The status bar's first state (``core.status`` in workers); events keep it up to date."""
        self.loop.submit(self.core.status.snapshot, self._show_status, self._mark_failed)
        self.loop.submit(self.core.status.probe, lambda ok: self.status.set_net(bool(ok)), self._mark_failed)

    def _show_status(self, snap: Any) -> None:
        self.status.set_port(snap.lan_port or branding.DEFAULT_PORT)
        self.status.set_address(snap)
        self.status.set_lan(snap.lan_running)
        self.status.set_lock(bool(snap.lock_attached))

    # -- events ------------------------------------------------------------------------------
    def on_event(self, event: Any) -> None:
        name, data = event.name, event.data
        if name == n.NET_STATUS:
            self.status.set_net(bool(data.get("ok")))
        elif name == n.LOCK_ATTACHED:
            self.status.set_lock(True)
        elif name == n.LOCK_DETACHED:
            self.status.set_lock(False)
        elif name == n.LAN_STARTED:
            self.status.set_lan(True)
        elif name == n.LAN_STOPPED:
            self.status.set_lan(False)
        elif name == n.SITE_INFO_EXPORTED:
            self.last_site_info = data.get("kdinfo")
        self.alarms.on_event(event)
        notice = notice_for(name, data)
        if notice is not None:
            self.notify(*notice)
        page = self.current
        if page is not None and (name in page.events or "*" in page.events):
            page.on_event(event)
        if name in STEP_EVENTS:
            self.refresh_steps()
        if name in TITLE_EVENTS:
            self.refresh_title()

    def post(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on the Tk thread soon (any thread may call this: the tray does)."""
        self.loop.post(fn)

    # -- work with a visible busy state ------------------------------------------------------
    def call(self, fn: Callable[[], Any], on_done: Optional[Callable[[Any], None]] = None,
             busy: str = "") -> None:
        """Run one core call in a worker; ``busy`` shows a progress bar until it ends."""
        if busy:
            self.set_busy(busy)

        def done(result: Any) -> None:
            if busy:
                self.set_busy(None)
            if on_done is not None:
                on_done(result)

        def failed(exc: BaseException) -> None:
            if busy:
                self.set_busy(None)
            raise exc

        self.loop.submit(fn, done, failed)

    def set_busy(self, text: Optional[str]) -> None:
        """Show (``text``) or hide (None) the busy bar; the 更多 menu is disabled while busy."""
        if text:
            self._busy += 1
            self.busy_label.configure(text=text)
            self.busy_bar.pack(side="bottom", fill="x", before=self.status)
            self.busy_progress.start(15)
            self.more_button.configure(state="disabled")
            self.root.configure(cursor="watch")
        else:
            self._busy = max(0, self._busy - 1)
            if not self._busy:
                self.busy_progress.stop()
                self.busy_bar.pack_forget()
                self.more_button.configure(state="normal")
                self.root.configure(cursor="")

    @property
    def busy(self) -> bool:
        return self._busy > 0

    # -- closing -----------------------------------------------------------------------------
    def close_window(self) -> None:
        """The window's close button: hide to the tray (or, without a tray, 退出系统)."""
        tray = self.tray_available  # a bool, or the tray's docked(): hide only while an icon can bring it back
        if tray() if callable(tray) else tray:
            self.root.withdraw()
            return
        self.exit_system()

    def show_window(self) -> None:
        self.root.deiconify()
        self.root.lift()

    def exit_system(self) -> None:
        """退出系统: refused (with the reason) while exam data is not reported (§6.5)."""
        def decided(answer: Tuple[bool, str]) -> None:
            allowed, reason = answer
            if not allowed:
                self.show_window()
                self.dialogs.warning("不能退出系统", reason, "请先完成数据回收和考后上报。")
                return
            if self.dialogs.confirm("退出系统", "确定要退出考点管理系统吗？",
                                    "退出后考场将无法连接考点服务器。"):
                self.end(False)

        self.call(self.core.system.exit_allowed, decided)

    def restart(self, text: str) -> None:
        """After 系统恢复 / 系统初始化 / 模考转正考: tell the user, then end with a restart.

        The restart is a new process (main.py, ``kd.relaunch``): this window closes, the App
        stops, and the new instance opens its own window.
        """
        self.dialogs.info("需要重新启动", text, "点击确定后考点管理系统将重新启动。")
        self.end(True)

    def end(self, restart: bool) -> None:
        """Stop the shell's listener and timers and hand over to ``on_exit(restart)``."""
        self.close()
        self.on_exit(restart)

    def close(self) -> None:
        """Stop the shell's listener and timers (the window and the flow's loop belong to the caller)."""
        if self.closed:
            return
        self.closed = True
        self.listener.close()
        self.status.close()
        if self.drill is not None:
            self.drill.close()
        for timer in (self._steps_timer, self._note_timer):
            if timer is not None:
                timer.cancel()
        if self._own_loop:
            self.loop.close()


class _Missing(ttk.Frame):
    """Stands in for a page whose module is not there (yet): says so instead of crashing."""

    events: frozenset = frozenset()

    def __init__(self, parent: tk.Misc, shell: Any, spec: str) -> None:
        super().__init__(parent, padding=20)
        self.shell = shell
        ttk.Label(self, text="此页面暂不可用：{}".format(spec), bootstyle="danger").pack()

    def refresh(self) -> None:
        return None

    def on_event(self, event: Any) -> None:
        return None
