"""The LAN server's connections and who gets a slot (admission), under one lock.

``Registry(max_connections, max_per_ip, max_unauthenticated)`` is the table the accept
thread and the connection threads of ``kd.lan.server.LanServer`` share:

- ``admit(key, ip, listening)`` decides in the accept thread, without blocking, whether a
  new connection gets a slot: at most ``max_per_ip`` per address and ``max_connections``
  in total; unauthenticated connections from addresses no room is registered from share
  at most ``max_unauthenticated`` of the slots. When that share (or, for an address a
  room is registered from, the whole table) is full, the oldest idle unauthenticated
  connection from an unknown address gives way: it is the ``victim`` the server closes
  without a reply. Otherwise the newcomer is refused (``reason``; the server answers
  ``E_BUSY``).
- ``open`` turns an admitted connection into a ``Connection`` (not authenticated yet),
  ``bind`` marks it as serving a room (its address is known from then on), ``close``
  forgets it. ``set_known`` seeds the known addresses from the registration service.

``QuietLog`` keeps a flood of refusals or closes from flooding the log file.
"""

import logging
import socket
import threading
import time
from collections import OrderedDict
from typing import Any, Dict, List, NamedTuple, Optional, Set, Tuple

log = logging.getLogger(__name__)


class Connection:
    """A proctor connection: socket, peer IP, the room it serves (None: not authenticated yet)."""

    def __init__(self, sock: socket.socket, ip: str, known: bool = False, auth_deadline: float = 0.0) -> None:
        self.sock = sock
        self.ip = ip
        #: from an address a room is registered from (not limited by the unauthenticated share)
        self.known = known
        #: ``time.monotonic()`` by which it must have authenticated
        self.auth_deadline = auth_deadline
        self.room: Optional[str] = None
        self.idle = True
        self.closing: Optional[str] = None
        self.send_lock = threading.Lock()

    def kill(self, reason: str) -> None:
        """Close the socket from another thread; the handler thread then ends."""
        if self.closing is None:
            self.closing = reason
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class Admission(NamedTuple):
    """``admit``'s decision: ``reason`` (None: admitted) and the connection that gave way, if any."""

    reason: Optional[str]
    victim: Optional[Connection]


class Registry:
    """Connections, slots and known addresses (see the module docstring). Thread-safe."""

    def __init__(self, max_connections: int, max_per_ip: int, max_unauthenticated: int) -> None:
        self.max_connections = max_connections
        self.max_per_ip = max_per_ip
        self.max_unauthenticated = max_unauthenticated
        self._lock = threading.Lock()
        self._pending: Dict[int, Tuple[str, bool]] = {}  # key -> (ip, known): admitted, not yet serving
        self._per_ip: Dict[str, int] = {}
        self._conns: Set[Connection] = set()
        #: connections not authenticated yet, oldest first
        self._unauth: OrderedDict[Connection, None] = OrderedDict()
        #: addresses rooms are registered from (seeded at start, grown by authenticated connections)
        self._known: Set[str] = set()
        self._threads: Set[threading.Thread] = set()
        self.refused = 0
        self.evicted = 0

    # -- the accept thread --------------------------------------------------------------
    def admit(self, key: int, ip: str, listening: bool) -> Admission:
        """Give a new connection (``key``: its socket's id) a slot, or say why not (never blocks)."""
        victim: Optional[Connection] = None
        with self._lock:
            known = ip in self._known
            reason = None
            if not listening:
                reason = "stopping"
            elif self._per_ip.get(ip, 0) >= self.max_per_ip:
                reason = "too many connections from this address"
            elif self._live() >= self.max_connections:
                victim = self._oldest_idle_unauthenticated() if known else None
                if victim is None:
                    reason = "too many connections"
            elif not known and self._unknown_unauthenticated() >= self._unauth_cap():
                victim = self._oldest_idle_unauthenticated()
                if victim is None:
                    reason = "too many unauthenticated connections"
            if reason is None:
                if victim is not None:
                    victim.closing = "evicted"  # no longer counted: its thread ends at once
                    self._unauth.pop(victim, None)
                    self.evicted += 1
                self._pending[key] = (ip, known)
                self._per_ip[ip] = self._per_ip.get(ip, 0) + 1
            else:
                self.refused += 1
        return Admission(reason, victim)

    def _unauth_cap(self) -> int:
        return max(1, min(self.max_unauthenticated, self.max_connections))

    def _live(self) -> int:
        """Connections that hold a slot: admitted and not closing (lock held)."""
        return len(self._pending) + sum(1 for c in self._conns if c.closing is None)

    def _unknown_unauthenticated(self) -> int:
        """Unauthenticated connections from addresses no room is registered from (lock held)."""
        pending = sum(1 for _, known in self._pending.values() if not known)
        return pending + sum(1 for c in self._unauth if not c.known and c.closing is None)

    def _oldest_idle_unauthenticated(self) -> Optional[Connection]:
        """The connection to close for a newcomer: the oldest idle unauthenticated one from an
        address no room is registered from (lock held); None when there is none."""
        for conn in self._unauth:
            if not conn.known and conn.idle and conn.closing is None and conn.room is None:
                return conn
        return None

    def track(self, thread: threading.Thread) -> None:
        """``thread`` serves an admitted connection (``stop`` waits for it)."""
        with self._lock:
            self._threads.add(thread)

    def release(self, key: int) -> None:
        """An admitted connection will not be served (its thread did not start)."""
        with self._lock:
            pending = self._pending.pop(key, None)
            if pending is not None:
                self._drop_ip(pending[0])

    def _drop_ip(self, ip: str) -> None:
        left = self._per_ip.get(ip, 1) - 1
        if left > 0:
            self._per_ip[ip] = left
        else:
            self._per_ip.pop(ip, None)

    # -- the connection threads ---------------------------------------------------------
    def open(self, sock: socket.socket, ip: str, auth_timeout: float) -> Connection:
        """The admitted ``sock`` is served now: its ``Connection``, not authenticated yet."""
        with self._lock:
            _, known = self._pending.pop(id(sock), (ip, False))
            conn = Connection(sock, ip, known, time.monotonic() + auth_timeout)
            self._conns.add(conn)
            self._unauth[conn] = None
        return conn

    def bind(self, conn: Connection, room: str) -> None:
        """``conn`` authenticated for ``room``: it serves that room; its address gets slots kept for it."""
        with self._lock:
            conn.room = room
            self._unauth.pop(conn, None)
            self._known.add(conn.ip)

    def close(self, conn: Connection, thread: threading.Thread) -> None:
        """``conn`` ended; ``thread`` (which served it) is done."""
        with self._lock:
            self._conns.discard(conn)
            self._unauth.pop(conn, None)
            self._drop_ip(conn.ip)
            self._threads.discard(thread)

    def set_known(self, ips: Set[str]) -> None:
        with self._lock:
            self._known = set(ips)

    def connections(self, room: Optional[str] = None) -> List[Connection]:
        """Every connection (or those serving ``room``)."""
        with self._lock:
            return [c for c in self._conns if room is None or c.room == room]

    def threads(self) -> List[threading.Thread]:
        with self._lock:
            return list(self._threads)

    def counts(self) -> Dict[str, Any]:
        """``rooms`` connected, ``connections`` (admitted ones too), ``unauthenticated``."""
        with self._lock:
            return {"rooms": sorted({c.room for c in self._conns if c.room}),
                    "connections": len(self._conns) + len(self._pending),
                    "unauthenticated": len(self._unauth) + len(self._pending)}


class QuietLog:
    """A log line for the first of a kind of event, then at most one per ``every`` seconds with
    the number left out (so that a flood does not flood the log file)."""

    def __init__(self, every: float, logger: logging.Logger = log) -> None:
        self.every = every
        self.logger = logger
        self._last = -1e9
        self._left_out = 0
        self._lock = threading.Lock()

    def log(self, level: int, message: str, *args: Any) -> None:
        now = time.monotonic()
        with self._lock:
            if now - self._last < self.every:
                self._left_out += 1
                return
            self._last, left_out, self._left_out = now, self._left_out, 0
        if left_out:
            message += " (and %d more like it in the last %.0f s)"
            args += (left_out, self.every)
        self.logger.log(level, message, *args)
