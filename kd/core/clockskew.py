"""Clock skew per room (考场时钟偏差): each proctor machine's clock against the site's, from its heartbeats.

A heartbeat (docs/lan-protocol.md §4 ``heartbeat``) may carry ``clock`` (the proctor's
local time when it sent the request: ISO 8601 with a UTC offset, milliseconds, e.g.
``2026-06-13T08:20:05.123+08:00``) and ``rtt_ms`` (the round trip, in milliseconds, the
proctor measured for its previous heartbeat: request sent → reply read). One heartbeat
gives one *sample*, taken when the site server reads the request (``received``, the
site's clock ``ctx.now()``):

    offset_s      = clock + rtt_ms / 2000 − received      (proctor minus site, seconds)
    uncertainty_s = rtt_ms / 2000                          (± half the round trip)

(the request took between 0 and the whole round trip to arrive; half of it is the best
guess, off by at most half.) A heartbeat without ``rtt_ms`` (the first of a connection, a
proctor that does not measure it) gives ``offset_s = clock − received`` with an unknown
uncertainty (``None``). The *estimate* of a room smooths its last ``WINDOW`` (5) samples
so that one slow beat does not flap the alarm: ``offset_s`` is the median of their
offsets (the mean of the two middle ones for an even count), ``uncertainty_s`` the median
of their known uncertainties (``None`` when none is known); ``samples`` is how many were
used and ``at`` the ``received`` time of the latest.

Bad values never make an error reply and never raise: a ``clock`` that is not ISO text with
an offset (at most ``MAX_CLOCK_TEXT`` characters), an ``rtt_ms`` that is not a number in
0 .. ``MAX_RTT_MS`` (a boolean is no number) — the sample is dropped (a bad ``rtt_ms``
alone drops only the rtt: the sample is taken without it) and logged, at ``warning`` the
first time per room and reason, then at ``debug``.

Where the estimates live: ``ClockSkew``, in memory (like the monitor's live heartbeats; a
restart starts every room at 未知), at most ``WINDOW`` samples per room, fed only by
authenticated heartbeats (``kd.lan.handlers.handle_heartbeat``); ``forget(room)`` drops a
room (a revoked registration). The timeline reads it (``kd.core.timeline``: the
``skew`` item and the ``clock_skew`` alarm, docs/timeline.md); 考场详情 shows
``shown(estimate)``: ``+300 秒（±0.1）``, ``-2.5 秒``, ``未知``.

This module imports nothing of the project but ``kd.formats.timeutil``.
"""

import datetime
import logging
import threading
from typing import Any, Dict, Iterable, List, NamedTuple, Optional, Set, Tuple

from kd.formats.timeutil import format_time, read_time

log = logging.getLogger(__name__)

#: samples a room's estimate is the median of
WINDOW = 5
#: a larger ``rtt_ms`` is refused (a minute: no heartbeat round trip of a LAN takes that long)
MAX_RTT_MS = 60000.0
#: a longer ``clock`` is refused without parsing
MAX_CLOCK_TEXT = 64
UNKNOWN = "未知"


class Sample(NamedTuple):
    """One heartbeat's measurement."""

    offset_s: float  # proctor minus site, seconds
    uncertainty_s: Optional[float]  # ± seconds; None: no rtt sent
    at: datetime.datetime  # the site's clock when the request was read


class Estimate(NamedTuple):
    """A room's smoothed offset (module docstring)."""

    offset_s: float
    uncertainty_s: Optional[float]
    samples: int
    at: datetime.datetime

    def as_dict(self) -> Dict[str, Any]:
        return {"offset_s": round(self.offset_s, 3),
                "uncertainty_s": None if self.uncertainty_s is None else round(self.uncertainty_s, 3),
                "samples": self.samples, "at": format_time(self.at)}


def parse_clock(value: Any) -> datetime.datetime:
    """The heartbeat's ``clock`` as an aware datetime; ``ValueError`` (the reason) otherwise."""
    if not isinstance(value, str):
        raise ValueError("clock is not text")
    if len(value) > MAX_CLOCK_TEXT:
        raise ValueError("clock is too long")
    return read_time(value)


def parse_rtt(value: Any) -> Optional[float]:
    """The heartbeat's ``rtt_ms`` (None when absent); ``ValueError`` when not a number in 0 .. MAX_RTT_MS."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError("rtt_ms is not a number")
    rtt = float(value)
    if not 0.0 <= rtt <= MAX_RTT_MS:  # also NaN
        raise ValueError("rtt_ms out of range")
    return rtt


def sample(clock: datetime.datetime, rtt_ms: Optional[float], received: datetime.datetime) -> Sample:
    """One heartbeat's sample: ``clock + rtt/2 − received`` ± ``rtt/2`` (rtt in ms; None: 0, ± unknown)."""
    half = None if rtt_ms is None else rtt_ms / 2000.0
    offset = (clock - received).total_seconds() + (half or 0.0)
    return Sample(offset, half, received)


def median(values: Iterable[float]) -> float:
    """The median of ``values`` (at least one): the mean of the two middle ones for an even count.

    Not ``statistics.median``: ``statistics`` imports ``fractions`` and ``decimal``, which the
    one-file exe leaves out (kaodian.spec ``excludes``).
    """
    ordered = sorted(values)
    if not ordered:
        raise ValueError("no values")
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return float(ordered[middle])
    return (ordered[middle - 1] + ordered[middle]) / 2.0


def smooth(samples: List[Sample]) -> Estimate:
    """The estimate of ``samples`` (at least one): medians of offsets and of known uncertainties."""
    if not samples:
        raise ValueError("no samples")
    known = [s.uncertainty_s for s in samples if s.uncertainty_s is not None]
    return Estimate(median(s.offset_s for s in samples),
                    median(known) if known else None, len(samples), samples[-1].at)


def shown_offset(offset_s: Optional[float], uncertainty_s: Optional[float] = None) -> str:
    """``+300 秒（±0.1）`` (ahead), ``-2.5 秒`` (behind, uncertainty unknown), ``0 秒``, ``未知`` (None)."""
    if offset_s is None:
        return UNKNOWN
    value = round(offset_s, 1)
    text = "{:+.0f} 秒".format(value) if value == int(value) else "{:+.1f} 秒".format(value)
    if text.startswith("-0 ") or text.startswith("+0 "):
        text = "0 秒"
    if uncertainty_s is not None:
        text += "（±{:.1f}）".format(uncertainty_s)
    return text


def shown(estimate: Optional[Estimate]) -> str:
    """A room's estimate as 考场详情 shows it (``shown_offset``; ``未知`` without one)."""
    if estimate is None:
        return UNKNOWN
    return shown_offset(estimate.offset_s, estimate.uncertainty_s)


class ClockSkew:
    """The rooms' estimates, in memory (module docstring); thread-safe."""

    def __init__(self, window: int = WINDOW) -> None:
        if window < 1:
            raise ValueError("window must be >= 1")
        self.window = int(window)
        self._lock = threading.Lock()
        self._samples: Dict[str, List[Sample]] = {}
        self._estimates: Dict[str, Estimate] = {}  # smoothed once per heartbeat, read on every timeline build
        self._warned: Set[Tuple[str, str]] = set()

    def _bad(self, room: str, reason: str, value: Any) -> None:
        key = (room, reason)
        with self._lock:
            first = key not in self._warned and len(self._warned) < 10000
            if first:
                self._warned.add(key)
        (log.warning if first else log.debug)("room %s: heartbeat %s (%r): ignored for the clock skew",
                                              room, reason, str(value)[:80])

    def observe(self, room: str, clock: Any, rtt_ms: Any, received: datetime.datetime) -> Optional[Estimate]:
        """Take one heartbeat's ``clock``/``rtt_ms`` (as sent; ``clock`` None: an old proctor, nothing
        taken) read at ``received``; the room's estimate after it. Never raises for bad values."""
        if clock is None:
            return self.estimate(room)
        try:
            moment = parse_clock(clock)
        except ValueError as e:
            self._bad(room, str(e), clock)
            return self.estimate(room)
        try:
            rtt = parse_rtt(rtt_ms)
        except ValueError as e:
            self._bad(room, str(e), rtt_ms)
            rtt = None
        taken = sample(moment, rtt, received)
        with self._lock:
            kept = self._samples.setdefault(room, [])
            kept.append(taken)
            del kept[:-self.window]
            estimate = self._estimates[room] = smooth(kept)
            return estimate

    def estimate(self, room: str) -> Optional[Estimate]:
        """The room's estimate, None before a heartbeat with ``clock`` (未知)."""
        with self._lock:
            return self._estimates.get(room)

    def estimates(self) -> Dict[str, Estimate]:
        """Every room's estimate (rooms without one left out)."""
        with self._lock:
            return dict(self._estimates)

    def forget(self, room: str) -> None:
        """Drop the room's samples (its registration was revoked or reset)."""
        with self._lock:
            self._samples.pop(room, None)
            self._estimates.pop(room, None)
