"""The event hub: string-named events published from any thread.

Publishers (LAN handlers, the dongle reader, outbox senders, core services) call
``hub.publish("room.registered", room="11003001")``. Two kinds of listeners:

- ``hub.subscribe(names)`` returns a ``Subscription`` with its own queue; the Tk thread
  drains it with ``after()`` (``sub.drain(max_items)``), workers may ``get(timeout)``.
  Queues are bounded: when a consumer stops draining, the oldest events are dropped and
  counted (``sub.dropped``), so a stuck window never grows memory without bound.
- ``hub.on(name, callback)`` runs ``callback(event)`` synchronously in the publisher's
  thread; an exception there is logged and never reaches the publisher.

``"*"`` as a name matches every event.
"""

import collections
import logging
import threading
import time
from typing import Any, Callable, Deque, Dict, Iterable, List, NamedTuple, Optional

log = logging.getLogger(__name__)

ANY = "*"


class Event(NamedTuple):
    name: str
    data: Dict[str, Any]
    time: float


class Subscription:
    """A bounded queue of events for one consumer."""

    def __init__(self, hub: "EventHub", names: Optional[Iterable[str]], maxlen: int) -> None:
        self._hub = hub
        self.names = frozenset(names) if names is not None else frozenset([ANY])
        self._items: Deque[Event] = collections.deque()
        self._maxlen = maxlen
        self._cond = threading.Condition()
        self.dropped = 0

    def wants(self, name: str) -> bool:
        return ANY in self.names or name in self.names

    def _put(self, event: Event) -> None:
        with self._cond:
            if len(self._items) >= self._maxlen:
                self._items.popleft()
                self.dropped += 1
            self._items.append(event)
            self._cond.notify_all()

    def get(self, timeout: Optional[float] = None) -> Optional[Event]:
        """The next event, waiting up to ``timeout`` seconds; None when none came."""
        with self._cond:
            if not self._cond.wait_for(lambda: bool(self._items), timeout):
                return None
            return self._items.popleft()

    def wait_for(self, predicate: Callable[[Event], bool], timeout: float) -> Optional[Event]:
        """Consume events until one satisfies ``predicate``; None after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            event = self.get(left)
            if event is not None and predicate(event):
                return event

    def drain(self, max_items: int = 50) -> List[Event]:
        """Up to ``max_items`` pending events, without waiting (for Tk ``after()`` ticks)."""
        out: List[Event] = []
        with self._cond:
            while self._items and len(out) < max_items:
                out.append(self._items.popleft())
        return out

    def close(self) -> None:
        self._hub.unsubscribe(self)


class EventHub:
    """Thread-safe publish/subscribe of named events."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subs: List[Subscription] = []
        self._callbacks: Dict[str, List[Callable[[Event], None]]] = {}

    def subscribe(self, names: Optional[Iterable[str]] = None, maxlen: int = 10000) -> Subscription:
        sub = Subscription(self, names, maxlen)
        with self._lock:
            self._subs.append(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            if sub in self._subs:
                self._subs.remove(sub)

    def on(self, name: str, callback: Callable[[Event], None]) -> None:
        with self._lock:
            self._callbacks.setdefault(name, []).append(callback)

    def publish(self, name: str, **data: Any) -> Event:
        """Deliver ``name`` with ``data`` to every matching listener; safe from any thread."""
        event = Event(name, data, time.time())
        with self._lock:
            subs = [s for s in self._subs if s.wants(name)]
            callbacks = list(self._callbacks.get(name, ())) + list(self._callbacks.get(ANY, ()))
        for sub in subs:
            sub._put(event)
        for callback in callbacks:
            try:
                callback(event)
            except Exception:
                log.exception("event listener %r failed on %s", callback, name)
        return event
