"""Registration rate limits and refusal audit windows (考场注册, kept in memory).

- ``Limiter``: wrong registration codes per (room, source address) and per address within
  ``WINDOW`` (5 min): ``blocked_until(room, ip, now)`` is the time until which that room
  is refused from that address (``ROOM_MAX_FAILURES``, 10) or the address is refused for
  every room (``IP_MAX_FAILURES``, 30); ``fail(room, ip, now)`` counts one. Bounded: at
  most ``MAX_TRACKED_IPS`` addresses and ``MAX_TRACKED_PAIRS`` pairs, the ones with the
  oldest last failure forgotten first.
- ``Refusals``: refused registrations audited once per (action, room, address) and
  ``AUDIT_WINDOW`` (60 s); ``note()`` returns the lines to write now (closed windows, and
  this refusal's own line when it opens a window), ``due()`` / ``everything()`` the
  closed (or all) windows' summary lines. At most ``AUDIT_MAX_KEYS`` windows are open; the
  rest of a flood is counted in one line per action and window (``overflow``).

Both follow the time they are given (``ctx.now()`` of the caller) and never call out.
``kd.core.registration`` uses them under ``ctx.lock`` (``Limiter``) and under the
``Refusals``' own lock.
"""

import datetime
import threading
from collections import OrderedDict, deque
from typing import Any, Deque, Dict, List, Optional, Tuple

from kd.formats.timeutil import format_time

WINDOW = datetime.timedelta(minutes=5)
#: wrong codes per room and source address within ``WINDOW``; then that address is refused for that room
ROOM_MAX_FAILURES = 10
#: wrong codes per source address (every room together) within ``WINDOW``; then it is refused for every room
IP_MAX_FAILURES = 30
#: addresses, and (room, address) pairs, whose wrong codes are remembered at most
MAX_TRACKED_IPS = 4096
MAX_TRACKED_PAIRS = 4 * MAX_TRACKED_IPS
#: repeated refused registrations are audited as one line per (room, address) and window
AUDIT_WINDOW = datetime.timedelta(seconds=60)
#: audit windows open at once at most; beyond, a flood is counted in one line per action and window
AUDIT_MAX_KEYS = 256

Times = Deque[datetime.datetime]
#: an audit line to write: (action, details)
Line = Tuple[str, Dict[str, Any]]


class Limiter:
    """Wrong-code times per (room, address) and per address within ``WINDOW`` (in memory, bounded).

    Each table is ordered by last failure: keys whose window has passed are dropped from
    its front, and beyond its cap the key with the oldest last failure is forgotten.
    """

    def __init__(self) -> None:
        self.pairs: OrderedDict[Tuple[str, str], Times] = OrderedDict()
        self.ips: OrderedDict[str, Times] = OrderedDict()

    @staticmethod
    def _recent(table: "OrderedDict[Any, Times]", key: Any, now: datetime.datetime) -> Times:
        times = table.get(key)
        if times is None:
            return deque()
        while times and (now - times[0] >= WINDOW or times[0] > now):
            times.popleft()
        if not times:
            del table[key]
        return times

    def blocked_until(self, room: str, ip: str, now: datetime.datetime) -> Optional[datetime.datetime]:
        pair_times = self._recent(self.pairs, (room, ip), now)
        ip_times = self._recent(self.ips, ip, now)
        until = None
        if len(pair_times) >= ROOM_MAX_FAILURES:
            until = pair_times[-ROOM_MAX_FAILURES] + WINDOW
        if len(ip_times) >= IP_MAX_FAILURES:
            ip_until = ip_times[-IP_MAX_FAILURES] + WINDOW
            until = ip_until if until is None else max(until, ip_until)
        return until

    def fail(self, room: str, ip: str, now: datetime.datetime) -> None:
        self._add(self.pairs, (room, ip), ROOM_MAX_FAILURES, MAX_TRACKED_PAIRS, now)
        self._add(self.ips, ip, IP_MAX_FAILURES, MAX_TRACKED_IPS, now)

    @staticmethod
    def _add(table: "OrderedDict[Any, Times]", key: Any, keep: int, cap: int, now: datetime.datetime) -> None:
        times = table.pop(key, None)
        if times is None:
            times = deque(maxlen=keep)  # blocked_until needs only the last ``keep``
        times.append(now)
        table[key] = times  # at the end: the newest last failure
        while table:
            oldest = next(iter(table.values()))
            if len(table) <= cap and oldest and now - oldest[-1] < WINDOW:
                break
            table.popitem(last=False)


class _Window:
    """One audit window of refusals: what, where from, since when, how many not yet written."""

    def __init__(self, action: str, room: Optional[str], ip: Optional[str], now: datetime.datetime,
                 extra: Dict[str, Any]) -> None:
        self.action, self.room, self.ip, self.opened, self.extra = action, room, ip, now, extra
        self.count = 0
        self.first: Optional[datetime.datetime] = None
        self.last: Optional[datetime.datetime] = None

    def add(self, now: datetime.datetime) -> None:
        self.count += 1
        self.first = self.first or now
        self.last = now

    def due(self, now: datetime.datetime) -> bool:
        return now - self.opened >= AUDIT_WINDOW or now < self.opened  # (a clock set back closes it too)

    def summary(self) -> Line:
        details = dict(self.extra, room=self.room, ip=self.ip, count=self.count,
                       window_s=int(AUDIT_WINDOW.total_seconds()), aggregated=True,
                       **{"from": format_time(self.first) if self.first else None,
                          "to": format_time(self.last) if self.last else None})
        return self.action, details


class Refusals:
    """Refused registrations, audited once per (action, room, address) and ``AUDIT_WINDOW``.

    ``note()`` returns the lines to write now: windows that have closed (their counted
    refusals), and this refusal's own line when it opens a window. ``due()`` /
    ``everything()`` return the closed (or all) windows' lines. Own lock; never calls out.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: OrderedDict[Tuple[str, Optional[str], str], _Window] = OrderedDict()
        self._overflow: Dict[str, _Window] = {}

    def note(self, action: str, room: str, known: bool, ip: str, now: datetime.datetime,
             **extra: Any) -> Tuple[List[Line], Optional[Line]]:
        """Count one refusal: (the closed windows' lines, this refusal's own line if it opens a window)."""
        key = (action, room if known else None, ip)
        with self._lock:
            closed = self._due(now)
            window = self._open.get(key)
            if window is not None:
                window.add(now)
                return closed, None
            if len(self._open) >= AUDIT_MAX_KEYS:
                over = self._overflow.get(action)
                if over is None:
                    over = self._overflow[action] = _Window(action, None, None, now, {"overflow": True})
                over.add(now)
                return closed, None
            details = dict(extra) if known else dict(extra, unknown_room=True)
            self._open[key] = _Window(action, room, ip, now, details)
            return closed, (action, dict(details, room=room, ip=ip, count=1,
                                         window_s=int(AUDIT_WINDOW.total_seconds())))

    def _due(self, now: datetime.datetime) -> List[Line]:
        closed = [key for key, window in self._open.items() if window.due(now)]
        windows = [self._open.pop(key) for key in closed]
        windows += [self._overflow.pop(action) for action, w in list(self._overflow.items()) if w.due(now)]
        return [w.summary() for w in windows if w.count]

    def due(self, now: datetime.datetime) -> List[Line]:
        with self._lock:
            if not self._open and not self._overflow:
                return []
            first = next(iter(self._open.values()), None)
            if (first is None or not first.due(now)) and not any(w.due(now) for w in self._overflow.values()):
                return []
            return self._due(now)

    def everything(self) -> List[Line]:
        with self._lock:
            windows = list(self._open.values()) + list(self._overflow.values())
            self._open.clear()
            self._overflow.clear()
        return [w.summary() for w in windows if w.count]
