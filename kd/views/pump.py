"""Bring events from worker threads to the Tk thread.

``EventPump(widget, subscription, handler)`` drains ``subscription`` (from
``kd.events.EventHub.subscribe``) every ``interval_ms`` with ``after()``, at most
``max_items`` per tick so a burst cannot freeze the window, and calls ``handler(event)``
on the Tk thread. Workers never touch Tk; they only publish. The pump keeps its
``after()`` id, checks its closing flag before re-arming, and cancels on ``close()``.
A handler that raises is logged and the pump keeps running.
"""

import logging
import tkinter as tk
from typing import Callable, Optional

from kd.events import Event, Subscription

log = logging.getLogger(__name__)


class EventPump:
    def __init__(
        self,
        widget: tk.Misc,
        subscription: Subscription,
        handler: Callable[[Event], None],
        interval_ms: int = 20,
        max_items: int = 50,
    ) -> None:
        self._widget = widget
        self._sub = subscription
        self._handler = handler
        self._interval = interval_ms
        self._max = max_items
        self._closing = False
        self._after_id: Optional[str] = self._widget.after(self._interval, self._tick)

    def _tick(self) -> None:
        self._after_id = None
        if self._closing:
            return
        for event in self._sub.drain(self._max):
            try:
                self._handler(event)
            except Exception:
                log.exception("UI handler failed on event %s", event.name)
        if not self._closing:
            self._after_id = self._widget.after(self._interval, self._tick)

    def close(self) -> None:
        """Stop pumping and drop the subscription; safe to call twice."""
        self._closing = True
        if self._after_id is not None:
            try:
                self._widget.after_cancel(self._after_id)
            except tk.TclError:
                pass  # the widget is already gone
            self._after_id = None
        self._sub.close()
