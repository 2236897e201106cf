"""Total deadlines for the platform client: a call's clock, and a watchdog that cuts it off.

requests' ``timeout=(connect, read)`` bounds each socket operation, not a call: a
platform that sends one byte every 10 s never trips a 30 s read timeout, and retries
add up. Here a call (``Call``: one client method, every try of it) has one monotonic
deadline, and the exchange under way (one HTTP request and its answer) has its own
deadline, never later than the call's. ``Watchdog`` is one thread per client that,
when an exchange's deadline passes, shuts down (``shutdown(SHUT_RDWR)``) the sockets
that exchange uses; the blocked ``connect``/``send``/``recv`` then fails at once and
requests raises a ``ConnectionError`` the client turns into ``PlatformUnreachable``.

How a socket is found: ``WatchedAdapter`` (mounted on the client's ``requests.Session``)
builds urllib3 pools whose connections, on ``connect()`` and on every ``request()``,
tag themselves with the call running on the current thread (``running(call)`` sets it,
a thread-local). The watchdog cuts only the connections still tagged with the expired
call, so a pooled connection later reused by another thread's call is left alone.

Limits: a DNS lookup (``getaddrinfo``) cannot be interrupted by a socket shutdown; it is
bounded by the system resolver. A SOCKS proxy (not used by kaodian) would bypass the
watch; each socket operation is still bounded by the time left (see the client).
"""

import socket
import threading
import time
from contextlib import contextmanager
from typing import Any, Iterator, Optional, Set

from requests.adapters import HTTPAdapter
from urllib3 import ProxyManager
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

_current = threading.local()


class Call:
    """The clock of one client call: ``ends`` for the whole call, ``exchange_ends`` for the exchange under way."""

    def __init__(self, op: str, budget: float, watchdog: "Watchdog") -> None:
        self.op = op
        self.budget = float(budget)
        self.started = time.monotonic()
        self.ends = self.started + self.budget
        self.exchange_ends = self.ends
        self.cut = False  # the watchdog cut the exchange under way
        self._watchdog = watchdog
        self._conns: Set[Any] = set()

    def left(self) -> float:
        """Seconds until the whole call's deadline (negative once passed)."""
        return self.ends - time.monotonic()

    def over(self) -> bool:
        return time.monotonic() >= self.ends

    def exchange(self, budget: Optional[float] = None) -> float:
        """Start an exchange of at most ``budget`` seconds (default: the rest of the call); its seconds left."""
        now = time.monotonic()
        self.exchange_ends = self.ends if budget is None else min(self.ends, now + budget)
        self.cut = False
        self._watchdog.poke()
        return self.exchange_ends - now

    def pace(self, ends: float) -> None:
        """Move the exchange's deadline to ``ends`` (monotonic; never past the call's deadline)."""
        earlier = ends < self.exchange_ends
        self.exchange_ends = min(self.ends, ends)
        if earlier:
            self._watchdog.poke()

    def extend(self, budget: float) -> None:
        """Let the whole call run ``budget`` seconds from its start, when that is later (a transfer's size is known)."""
        self.ends = max(self.ends, self.started + budget)
        self.budget = self.ends - self.started

    def exchange_over(self) -> bool:
        return self.cut or time.monotonic() >= self.exchange_ends

    # -- connections (called from the connection classes and the watchdog) ---------------
    def attach(self, conn: Any) -> None:
        conn._kd_call = self
        self._conns.add(conn)

    def cut_now(self) -> None:
        """Shut down every socket this call's exchange uses (watchdog thread, or ``close()``)."""
        self.cut = True
        for conn in list(self._conns):
            if getattr(conn, "_kd_call", None) is self:
                shutdown(getattr(conn, "sock", None))

    def detach(self) -> None:
        for conn in list(self._conns):
            if getattr(conn, "_kd_call", None) is self:
                conn._kd_call = None
        self._conns.clear()


def shutdown(sock: Any) -> None:
    """Shut a socket down both ways (a blocked recv/send in another thread fails at once); never raises."""
    if sock is None:
        return
    try:
        # the plain socket's method, also for an SSLSocket (whose own shutdown drops its SSL object)
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except (OSError, ValueError, TypeError):
        pass


class Watchdog:
    """One thread that cuts the exchanges whose deadline passed (started on first use, ended by ``close()``)."""

    def __init__(self, name: str = "kd-platform-watchdog") -> None:
        self._name = name
        self._cond = threading.Condition()
        self._calls: Set[Call] = set()
        self._thread: Optional[threading.Thread] = None
        self._closed = False

    def add(self, call: Call) -> None:
        with self._cond:
            if self._closed:
                call.cut = True
                return
            self._calls.add(call)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
            self._cond.notify()

    def remove(self, call: Call) -> None:
        with self._cond:
            self._calls.discard(call)

    def poke(self) -> None:
        with self._cond:
            self._cond.notify()

    def close(self) -> None:
        """Stop the thread and cut every call under way (the client is closing)."""
        with self._cond:
            self._closed = True
            calls = list(self._calls)
            self._calls.clear()
            self._cond.notify()
            thread = self._thread
        for call in calls:
            call.cut_now()
        if thread is not None and thread is not threading.current_thread():
            thread.join(5.0)

    def _run(self) -> None:
        with self._cond:
            while not self._closed:
                now = time.monotonic()
                wait: Optional[float] = None
                for call in list(self._calls):
                    if call.cut:
                        continue
                    left = call.exchange_ends - now
                    if left <= 0:
                        call.cut_now()
                    elif wait is None or left < wait:
                        wait = left
                self._cond.wait(wait)


@contextmanager
def running(call: Call) -> Iterator[Call]:
    """Make ``call`` the current thread's call while the block runs (connections tag themselves with it)."""
    outer = getattr(_current, "call", None)
    _current.call = call
    try:
        yield call
    finally:
        _current.call = outer


def current() -> Optional[Call]:
    """The call running on this thread, or None."""
    return getattr(_current, "call", None)


class _Watched:
    """Mixin for urllib3 connections: put the connection under the current call's watch."""

    def _kd_watch(self) -> None:
        call = current()
        if call is None:
            return
        call.attach(self)
        if call.exchange_over():
            raise OSError("the platform call's deadline passed")

    def connect(self) -> None:
        self._kd_watch()
        super().connect()  # type: ignore[misc]  # a mixin: urllib3's connection class after it has connect()
        call = getattr(self, "_kd_call", None)
        if call is not None and call.exchange_over():
            shutdown(getattr(self, "sock", None))
            raise OSError("the platform call's deadline passed while connecting")

    def request(self, *args: Any, **kw: Any) -> None:
        self._kd_watch()
        super().request(*args, **kw)  # type: ignore[misc]  # a mixin: see connect()


class _HTTPConnection(_Watched, HTTPConnection):
    pass


class _HTTPSConnection(_Watched, HTTPSConnection):
    pass


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


_POOLS = {"http": _HTTPPool, "https": _HTTPSPool}


class WatchedAdapter(HTTPAdapter):
    """A requests adapter whose connections put themselves under the current thread's ``Call``."""

    def init_poolmanager(self, *args: Any, **kw: Any) -> None:
        super().init_poolmanager(*args, **kw)
        self.poolmanager.pool_classes_by_scheme = dict(_POOLS)

    def proxy_manager_for(self, proxy: str, **kw: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **kw)
        if isinstance(manager, ProxyManager):  # SOCKS managers keep their own pools
            manager.pool_classes_by_scheme = dict(_POOLS)
        return manager
