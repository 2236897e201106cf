"""incidents: the cost of ``IncidentService.tick()`` (考场情况记录 drafted every second) for 100 rooms.

The site of ``monitor_snapshot`` (100 rooms x 40 candidates, session S1 verified, half of
its rooms started), every room heard by the monitor, and 50 incidents already stored (the
drafts of a bad day). The figure is the median time of one tick in the steady state of an
exam (nothing new to draft: the tracker observes every started room, ``draft()`` runs
over the facts, every key is found stored). ``drafting_ms``: the tick that drafts the
outage of one room lost for 35 s (the first tick past 30 s) (one record written, audited). Prints
``{"bench": "incidents", "tick_ms": .., "drafting_ms": .., "rooms": 100, "incidents": 50}``.
Target: tick_ms ≤ 20 (it runs once a second on its own thread, never in a heartbeat).
"""

import datetime
import time

from _common import emit, median_ms, scratch_context
from monitor_snapshot import ROOMS, SITE, populate

from kd.core.incidents import Category, IncidentService
from kd.core.monitor import MonitorService
from kd.core.outbox import Outbox
from kd.formats.timeutil import CST

REPEAT, STORED = 200, 50


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def main() -> None:
    with scratch_context("kd-bench-incidents-") as ctx:
        populate(ctx)
        wall = datetime.datetime.now(CST)
        ctx.clock = lambda: wall + datetime.timedelta(seconds=clock.now - 1000.0)
        clock = Clock()
        monitor = MonitorService(ctx, Outbox(ctx), clock=clock)
        codes = ["{}{:03d}".format(SITE, i + 1) for i in range(ROOMS)]

        def beat(rooms):  # type: ignore[no-untyped-def]
            for i, code in rooms:
                monitor.heartbeat(code, {"session_id": "S1", "started": bool(i % 2), "ended": False,
                                         "logged_in": 38, "in_exam": 36 if i % 2 else 0})

        beat(list(enumerate(codes)))
        incidents = IncidentService(ctx, monitor)
        for n in range(STORED):
            incidents.add(room=codes[n % ROOMS], session="S1", category=Category.OTHER.value, start=wall,
                          end=wall, description="bench", actor="admin")
        incidents.tick()
        tick_ms = median_ms(incidents.tick, REPEAT)
        # one started room (codes[1]) falls silent while the others beat every 5 s, a tick after each round
        drafted, drafting_ms = [], 0.0
        while not drafted:
            clock.now += 5
            beat([(i, c) for i, c in enumerate(codes) if i != 1])
            start = time.perf_counter()
            drafted = incidents.tick()
            drafting_ms = (time.perf_counter() - start) * 1000.0
        assert [(d["kind"], d["room"]) for d in drafted] == [("outage", codes[1])], drafted
    emit(bench="incidents", tick_ms=round(tick_ms, 3), drafting_ms=round(drafting_ms, 3), rooms=ROOMS,
         incidents=STORED, target_ms=20.0)


if __name__ == "__main__":
    main()
