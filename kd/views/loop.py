"""The one Tk loop of a root: the only way work reaches the Tk thread, and the only timers.

``TkLoop(root, dialogs=..., log_path=...)`` is made once per root (the start flow makes
it; a ``Shell`` built alone makes its own) and handed to everything that needs it.

From any thread:

- ``post(fn)``: run ``fn()`` on the Tk thread soon (the tray's menu, the drill's waiter);
- ``progress(handler, owner)`` returns a sink; a worker calls ``sink(item)`` as often as
  it likes; the Tk thread gets ``handler(items)`` once with the items queued since the
  last call (the upload tool's bars), in order with the worker's result.

On the Tk thread:

- ``submit(fn, on_done=None, on_error=None)``: ``fn()`` in a worker of the loop's one
  executor, then ``on_done(result)`` or ``on_error(exc)`` on the Tk thread. Without
  ``on_error`` a failure goes to ``report``. Workers never touch Tk.
- ``listen(subscription, handler, owner=None)``: hub events (``EventHub.subscribe``) to
  ``handler(event)``; a handler that raises is logged and the loop goes on.
- ``every(ms, fn, owner)`` / ``later(ms, fn, owner)``: a repeating / one-shot timer,
  a ``Timer`` with ``cancel()``. Cancelled when ``owner`` is destroyed (``<Destroy>``),
  and at ``close()``. ``fn`` raising is reported; an ``every`` timer goes on.

One tick (``after(interval_ms)``, re-armed before it works, so a modal box opened by a
callback does not hold the rest back) delivers within ONE budget of ``budget`` items:
first worker results, posted callables and progress batches (one queue, in the order
they came), then hub events. What the budget leaves waits for the next tick, so a
burst never freezes the window.

Errors: ``report(exc_type, exc, tb)`` is the root's ``report_callback_exception``: a
``UserError`` becomes ``dialogs.error`` (cause and remedy); anything else is logged with
its traceback and the user is told where the log is (内部错误). A ``reporter`` given to
the constructor replaces that (the GUI tests' recording shell).

Closing: ``close(deadline)`` stops the tick, the timers and the listeners, then waits up
to ``deadline`` seconds for the workers in flight (they call the core: the services stop
only after this) and shuts the executor down; True when every worker ended. Results
that arrive after ``close`` are dropped, and ``submit``/``post`` then refuse (False,
logged), since the window is going away. ``pending`` counts results not delivered yet,
``idle()`` says whether nothing is in flight or queued.
"""

import concurrent.futures
import logging
import queue
import threading
import tkinter as tk
from typing import Any, Callable, Dict, List, Optional, Set, Tuple

from kd.errors import UserError
from kd.events import Event, Subscription

log = logging.getLogger(__name__)

Callback = Optional[Callable[[Any], None]]
Reporter = Callable[[Any, BaseException, Any], None]
#: the text of the dialog after an internal error ("{}": the log file)
INTERNAL = "内部错误，详见日志 {}"
INTERNAL_REMEDY = "请把日志文件交给技术服务单位。"


class Timer:
    """An ``every`` / ``later`` timer of a ``TkLoop``; ``cancel()`` is safe to call twice."""

    def __init__(self, loop: "TkLoop", ms: int, fn: Callable[[], Any], owner: Optional[tk.Misc],
                 repeat: bool) -> None:
        self._loop, self.ms, self._fn, self.owner, self.repeat = loop, max(1, int(ms)), fn, owner, repeat
        self._after: Optional[str] = None
        self.active = True
        self._arm()

    def _arm(self) -> None:
        self._after = self._loop.root.after(self.ms, self._fire)

    def _fire(self) -> None:
        self._after = None
        if not self.active:
            return
        if self.owner is not None and not _exists(self.owner):
            self.cancel()
            return
        if not self.repeat:
            self.active = False
            self._loop._forget(self)
        try:
            self._fn()
        except Exception as e:  # noqa: BLE001 - shown like any callback error
            self._loop.report(type(e), e, e.__traceback__)
        if self.active and self.repeat:
            self._arm()

    def cancel(self) -> None:
        self.active = False
        if self._after is not None:
            try:
                self._loop.root.after_cancel(self._after)
            except tk.TclError:
                pass  # the root is gone
            self._after = None
        self._loop._forget(self)


class Listener:
    """Hub events of one subscription delivered by a ``TkLoop``; ``close()`` drops the subscription."""

    def __init__(self, loop: "TkLoop", subscription: Subscription, handler: Callable[[Event], None]) -> None:
        self._loop, self.subscription, self.handler = loop, subscription, handler
        self.closed = False

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.subscription.close()
            self._loop._listeners.discard(self)


class _Progress:
    """A progress sink (see ``TkLoop.progress``): thread-safe ``__call__``, one batch per delivery."""

    def __init__(self, loop: "TkLoop", handler: Callable[[List[Any]], None], owner: Optional[tk.Misc]) -> None:
        self._loop, self._handler, self._owner = loop, handler, owner
        self._lock = threading.Lock()
        self._items: List[Any] = []
        self._queued = False

    def __call__(self, item: Any) -> None:
        with self._lock:
            self._items.append(item)
            if self._queued:
                return
            self._queued = True
        self._loop._inbox.put((self._deliver, False))

    def _deliver(self) -> None:
        with self._lock:
            items, self._items, self._queued = self._items, [], False
        if items and (self._owner is None or _exists(self._owner)):
            self._handler(items)


class TkLoop:
    """One per root (see the module docstring)."""

    def __init__(self, root: tk.Tk, *, dialogs: Any = None, log_path: str = "", reporter: Optional[Reporter] = None,
                 workers: int = 4, interval_ms: int = 20, budget: int = 50) -> None:
        self.root = root
        self.dialogs = dialogs
        self.log_path = log_path
        self._reporter = reporter
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ui-worker")
        self._inbox: queue.SimpleQueue[Tuple[Callable[[], None], bool]] = queue.SimpleQueue()
        self._interval = interval_ms
        self.budget = budget
        self._futures: Set[concurrent.futures.Future[Any]] = set()
        self._futures_lock = threading.Lock()
        self._listeners: Set[Listener] = set()
        self._timers: Set[Timer] = set()
        self._owners: Dict[str, Set[Timer]] = {}
        self.pending = 0
        self.closed = False
        root.report_callback_exception = self.report  # the one error hook
        self._after: Optional[str] = root.after(interval_ms, self._tick)

    # -- any thread --------------------------------------------------------------------------
    def post(self, fn: Callable[[], Any]) -> bool:
        """Run ``fn()`` on the Tk thread soon; False (and nothing runs) once the loop is closed."""
        if self.closed:
            log.info("loop closed: a posted call is dropped (%r)", fn)
            return False
        self._inbox.put((fn, False))
        return True

    def progress(self, handler: Callable[[List[Any]], None], owner: Optional[tk.Misc] = None) -> Callable[[Any], None]:
        """A sink for a worker's progress items; ``handler(items)`` on the Tk thread (not after ``owner`` is gone)."""
        return _Progress(self, handler, owner)

    # -- the Tk thread -----------------------------------------------------------------------
    def submit(self, fn: Callable[[], Any], on_done: Callback = None, on_error: Callback = None) -> bool:
        """Run ``fn`` in a worker; call back on the Tk thread. False once the loop is closed."""
        if self.closed:
            log.info("loop closed: work not started (%r)", fn)
            return False

        def work() -> None:
            try:
                result = fn()
            except BaseException as e:  # noqa: BLE001 - handed to the Tk thread
                failure = e

                def deliver() -> None:
                    if on_error is None:
                        raise failure
                    on_error(failure)
            else:
                def deliver() -> None:
                    if on_done is not None:
                        on_done(result)
            self._inbox.put((deliver, True))

        self.pending += 1
        future = self._pool.submit(work)
        with self._futures_lock:
            self._futures.add(future)
        future.add_done_callback(self._finished)
        return True

    def _finished(self, future: "concurrent.futures.Future[Any]") -> None:
        with self._futures_lock:
            self._futures.discard(future)

    def listen(self, subscription: Subscription, handler: Callable[[Event], None],
               owner: Optional[tk.Misc] = None) -> Listener:
        """Deliver ``subscription``'s events to ``handler`` on the Tk thread until closed (or ``owner`` is gone)."""
        listener = Listener(self, subscription, handler)
        if self.closed:
            listener.close()
            return listener
        self._listeners.add(listener)
        if owner is not None:
            self._on_destroy(owner, listener.close)
        return listener

    def every(self, ms: int, fn: Callable[[], Any], owner: Optional[tk.Misc] = None) -> Timer:
        """Call ``fn`` every ``ms`` milliseconds until cancelled, ``owner`` destroyed or the loop closed."""
        return self._timer(ms, fn, owner, True)

    def later(self, ms: int, fn: Callable[[], Any], owner: Optional[tk.Misc] = None) -> Timer:
        """Call ``fn`` once in ``ms`` milliseconds (unless cancelled, ``owner`` destroyed or the loop closed)."""
        return self._timer(ms, fn, owner, False)

    def _timer(self, ms: int, fn: Callable[[], Any], owner: Optional[tk.Misc], repeat: bool) -> Timer:
        timer = Timer(self, ms, fn, owner, repeat)
        if self.closed:
            timer.cancel()
            return timer
        self._timers.add(timer)
        if owner is not None:
            key = str(owner)
            owned = self._owners.get(key)
            if owned is None:
                owned = self._owners[key] = set()
                self._on_destroy(owner, lambda: self._cancel_owned(key))
            owned.add(timer)
        return timer

    def _on_destroy(self, owner: tk.Misc, fn: Callable[[], None]) -> None:
        path = str(owner)

        def destroyed(event: Any) -> None:
            if str(event.widget) == path:  # a toplevel's binding also sees its children go
                fn()

        owner.bind("<Destroy>", destroyed, add="+")

    def _cancel_owned(self, key: str) -> None:
        for timer in list(self._owners.pop(key, ())):
            timer.cancel()

    def _forget(self, timer: Timer) -> None:
        self._timers.discard(timer)
        if timer.owner is not None:
            owned = self._owners.get(str(timer.owner))
            if owned is not None:
                owned.discard(timer)

    def _tick(self) -> None:
        self._after = None
        if self.closed:
            return
        self._after = self.root.after(self._interval, self._tick)
        left = self.budget
        while left > 0 and not self.closed:
            try:
                fn, is_result = self._inbox.get_nowait()
            except queue.Empty:
                break
            left -= 1
            if is_result:
                self.pending -= 1
            try:
                fn()
            except Exception as e:  # noqa: BLE001 - shown by report
                self.report(type(e), e, e.__traceback__)
        for listener in list(self._listeners):
            if left <= 0 or self.closed:
                break
            for event in listener.subscription.drain(left):
                left -= 1
                if listener.closed:
                    break
                try:
                    listener.handler(event)
                except Exception:
                    log.exception("UI handler failed on event %s", event.name)

    def idle(self) -> bool:
        """Nothing in flight and nothing queued for the Tk thread."""
        return self.pending == 0 and self._inbox.empty()

    # -- errors ------------------------------------------------------------------------------
    def report(self, exc_type: Any, exc: BaseException, tb: Any) -> None:
        """The root's ``report_callback_exception`` (see the module docstring)."""
        if self._reporter is not None:
            self._reporter(exc_type, exc, tb)
            return
        if isinstance(exc, UserError):
            log.info("user error shown: %s (%s)", exc.cause, exc.detail)
            if self.dialogs is not None:
                self.dialogs.error(exc)
            return
        log.error("internal error in the UI", exc_info=(exc_type, exc, tb))
        if self.dialogs is not None:
            self.dialogs.error(UserError(INTERNAL.format(self.log_path or "（日志文件）"), INTERNAL_REMEDY),
                               title="内部错误")

    # -- closing -----------------------------------------------------------------------------
    def close(self, deadline: float = 10.0) -> bool:
        """Stop delivering, wait up to ``deadline`` s for the workers in flight; True when all ended."""
        if self.closed:
            return not self._futures
        self.closed = True
        if self._after is not None:
            try:
                self.root.after_cancel(self._after)
            except tk.TclError:
                pass
            self._after = None
        for timer in list(self._timers):
            timer.cancel()
        for listener in list(self._listeners):
            listener.close()
        with self._futures_lock:
            running = list(self._futures)
        _, left = concurrent.futures.wait(running, timeout=deadline)
        self._pool.shutdown(wait=False)
        if left:
            log.warning("%d UI worker(s) still running %.1f s after the window closed", len(left), deadline)
        return not left


def _exists(widget: tk.Misc) -> bool:
    try:
        return bool(widget.winfo_exists())
    except tk.TclError:
        return False
