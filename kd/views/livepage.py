"""The live pages' shared behaviour (考场管理, 时间线): a chosen session, refreshed while shown.

``LivePage`` is a ``Page`` that shows one session (``choose_session(id)``; None: the
current one) and refreshes now and every ``refresh_ms`` while it is mapped: the shell
loop's ``every`` timer, owned by the page (cancelled when it is destroyed), started on
``<Map>`` and stopped on ``<Unmap>`` (``watch_visibility()`` binds them). A tick while the
page is not viewable does nothing. ``monitor_view()`` (in a worker) is the monitor's view of
the chosen session, or of the current one once the chosen session is gone (a new package).
"""

import logging
from typing import Any, Optional

import ttkbootstrap as ttk

from kd.errors import UserError
from kd.views.base import Page
from kd.views.live_table import SessionPicker

log = logging.getLogger(__name__)

#: the navigation entry of 考场情况记录 (kd.views.incidents), which 考场管理 and 时间线 open
INCIDENTS_PAGE = "考场情况"


class LivePage(Page):
    refresh_ms = 2000
    _session_id: Optional[str] = None
    _timer: Any = None

    def watch_visibility(self) -> None:
        """Run the refresh timer while the page is shown."""
        self.bind("<Map>", self._on_map, add="+")
        self.bind("<Unmap>", self._on_unmap, add="+")

    def choose_session(self, session_id: Optional[str]) -> None:
        """Show ``session_id`` (None: the current session) and refresh."""
        self._session_id = session_id
        self.refresh()

    def session_footer(self) -> Any:
        """The footer packed at the page's bottom, opening with 场次名称 and its picker
        (``self.session_box``); the page adds its own widgets to it."""
        foot = ttk.Frame(self)
        foot.pack(side="bottom", fill="x", pady=(6, 0))
        ttk.Label(foot, text="场次名称：").pack(side="left")
        self.session_box = SessionPicker(foot, self.choose_session, width=16)
        self.session_box.pack(side="left")
        return foot

    def monitor_view(self) -> Any:
        """``core.monitor.view`` of the chosen session; the current one once it is gone (worker)."""
        chosen = self._session_id
        try:
            return self.core.monitor.view(chosen)
        except UserError:
            if chosen is None:
                raise
            log.info("session %s is gone; showing the current session", chosen)
            return self.core.monitor.view(None)

    def _on_map(self, event: Any) -> None:
        if event.widget is self:
            self.start_timer()

    def _on_unmap(self, event: Any) -> None:
        if event.widget is self:
            self.stop_timer()

    def start_timer(self) -> None:
        """Refresh now and every ``refresh_ms`` while shown (the shell may also call it)."""
        self.stop_timer()
        self._tick()
        self._timer = self.shell.loop.every(self.refresh_ms, self._tick, owner=self)

    def stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _tick(self) -> None:
        if self.winfo_viewable():
            self.refresh()

    @property
    def timer_running(self) -> bool:
        return self._timer is not None and self._timer.active
