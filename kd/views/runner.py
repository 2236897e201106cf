"""Run core work off the Tk thread and bring the result back to it.

``UiRunner(widget)`` owns a small thread pool. ``submit(fn, on_done, on_error)`` runs
``fn()`` in a worker; its result (or exception) is queued, and a pump on the Tk thread
(``after()`` every 20 ms, at most a few items per tick) calls ``on_done(result)`` or
``on_error(exc)`` there. Workers never touch Tk. Without ``on_error``, errors go to
the widget's ``report_callback_exception`` (a ``UserError`` becomes a dialog with its
cause and remedy; anything else is logged). ``close()`` cancels the pump and lets
running work finish in the background.
"""

import concurrent.futures
import logging
import queue
import tkinter as tk
from typing import Any, Callable, Optional

log = logging.getLogger(__name__)

Callback = Optional[Callable[[Any], None]]


class UiRunner:
    def __init__(self, widget: tk.Misc, workers: int = 4, interval_ms: int = 20, per_tick: int = 20) -> None:
        self._widget = widget
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ui-worker")
        self._done: queue.Queue[Any] = queue.Queue()
        self._interval = interval_ms
        self._per_tick = per_tick
        self._closing = False
        self.pending = 0
        self._after_id: Optional[str] = widget.after(interval_ms, self._pump)

    def submit(self, fn: Callable[[], Any], on_done: Callback = None, on_error: Callback = None) -> None:
        """Run ``fn`` in a worker; call back on the Tk thread (see the module docstring)."""
        self.pending += 1

        def work() -> None:
            try:
                result = fn()
            except BaseException as e:  # noqa: BLE001 - handed to the Tk thread
                self._done.put((on_error, e, True))
            else:
                self._done.put((on_done, result, False))

        self._pool.submit(work)

    def _pump(self) -> None:
        self._after_id = None
        if self._closing:
            return
        for _ in range(self._per_tick):
            try:
                callback, value, failed = self._done.get_nowait()
            except queue.Empty:
                break
            self.pending -= 1
            try:
                if failed and callback is None:
                    raise value
                if callback is not None:
                    callback(value)
            except Exception as e:  # noqa: BLE001 - shown by report_callback_exception
                self._widget.report_callback_exception(type(e), e, e.__traceback__)
        if not self._closing:
            self._after_id = self._widget.after(self._interval, self._pump)

    def close(self) -> None:
        self._closing = True
        if self._after_id is not None:
            try:
                self._widget.after_cancel(self._after_id)
            except tk.TclError:
                pass
            self._after_id = None
        self._pool.shutdown(wait=False)
