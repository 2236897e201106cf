"""Clocks the tests move by hand, so that a timeout is a moved clock and never a wait.

- ``FakeMonotonic()``: a monotonic clock (seconds) standing at 1000.0 until the test moves
  ``now`` (the monitor's heartbeat timeouts, the LAN service's clock).
- ``ShiftedWall()``: the real wall clock (China Standard Time, ``kd.core.context.cst_now``)
  moved by ``offset`` (a ``timedelta`` the test adds to): a site's ``ctx.now()`` for the
  registration's refusal windows and lockouts.
"""

import datetime

from kd.core.context import cst_now


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class ShiftedWall:
    def __init__(self) -> None:
        self.offset = datetime.timedelta(0)

    def __call__(self) -> datetime.datetime:
        return cst_now() + self.offset
