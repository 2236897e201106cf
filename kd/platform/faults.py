"""Fault injection for the platform simulator: refuse, slow, drip, drop, fail every Nth.

Faults apply to the API (``/api/...``), never to the inspection endpoints (``/_sim/...``),
so a test can always ask the simulator what happened. All counters are thread-safe.

- ``refuse``: ``None`` (off), an HTTP status (e.g. 503: answer every API request with it
  and a Chinese error message) or ``"close"`` (close the connection without answering).
- ``slow``: seconds to wait before answering each API request (the wait ends early when
  the simulator shuts down).
- ``drip``: seconds between bytes: every API request body is read, and every API answer
  (status line, headers and body) written, one byte at a time with this pause before
  each byte — a platform that answers, but too slowly for any total deadline; no single
  read ever waits long, so a per-read timeout never trips (the pauses end when the
  simulator shuts down).
- ``drop_after`` / ``drop_count``: cut the connection (TCP reset) once ``drop_after`` body
  bytes have been moved since the fault was armed (request bodies read plus response
  bodies written, counted across requests); then the counter restarts, ``drop_count``
  times in all. Bytes read before the cut are kept, like a real network that fails
  mid-transfer.
- ``fail_every``: every Nth API request (1-based count since armed) is answered with
  ``fail_status`` (default 503) instead of being served.
"""

import threading
from typing import Any, Dict, Optional, Union

RefuseMode = Union[None, int, str]


class Faults:
    """The simulator's current faults; ``set()`` arms them, ``clear()`` disarms all."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.refuse: RefuseMode = None
        self.slow = 0.0
        self.drip = 0.0
        self.drop_after = 0
        self.drop_count = 0
        self.fail_every = 0
        self.fail_status = 503
        self._moved = 0
        self._requests = 0
        self.drops_done = 0
        self.fails_done = 0

    def set(
        self,
        refuse: RefuseMode = None,
        slow: float = 0.0,
        drip: float = 0.0,
        drop_after: int = 0,
        drop_count: int = 1,
        fail_every: int = 0,
        fail_status: int = 503,
    ) -> None:
        """Replace all faults (arguments not given are off) and restart the counters."""
        if refuse is not None and refuse != "close" and not (isinstance(refuse, int) and 400 <= refuse <= 599):
            raise ValueError("refuse must be None, 'close' or an HTTP status 400-599")
        if slow < 0 or drip < 0 or drop_after < 0 or drop_count < 0 or fail_every < 0:
            raise ValueError("fault values must not be negative")
        with self._lock:
            self.refuse = refuse
            self.slow = float(slow)
            self.drip = float(drip)
            self.drop_after = int(drop_after)
            self.drop_count = int(drop_count) if drop_after else 0
            self.fail_every = int(fail_every)
            self.fail_status = int(fail_status)
            self._moved = 0
            self._requests = 0
            self.drops_done = 0
            self.fails_done = 0

    def clear(self) -> None:
        self.set()

    def as_dict(self) -> Dict[str, Any]:
        with self._lock:
            return {
                "refuse": self.refuse,
                "slow": self.slow,
                "drip": self.drip,
                "drop_after": self.drop_after,
                "drop_count": self.drop_count,
                "fail_every": self.fail_every,
                "fail_status": self.fail_status,
                "drops_done": self.drops_done,
                "fails_done": self.fails_done,
            }

    def next_request_fails(self) -> bool:
        """Count one API request; True when it is an Nth one that must fail."""
        with self._lock:
            if not self.fail_every:
                return False
            self._requests += 1
            if self._requests % self.fail_every == 0:
                self.fails_done += 1
                return True
            return False

    def budget(self) -> Optional[int]:
        """How many more body bytes may move before the next cut; None when no drop is armed."""
        with self._lock:
            if not self.drop_after or self.drop_count <= 0:
                return None
            return max(0, self.drop_after - self._moved)

    def moved(self, nbytes: int) -> bool:
        """Record ``nbytes`` moved; True when the connection must be cut now."""
        with self._lock:
            if not self.drop_after or self.drop_count <= 0:
                return False
            self._moved += nbytes
            if self._moved >= self.drop_after:
                self._moved = 0
                self.drop_count -= 1
                self.drops_done += 1
                return True
            return False
