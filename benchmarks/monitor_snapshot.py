"""monitor_snapshot: build the 考场监控 (§4.3) table for 100 rooms x 40 candidates with live counts.

The state is written straight into a temporary data folder's stores the way the core
keeps it (kd/core/model.py: package manifest with 4,000 candidates, 100 registered rooms,
two authorized and verified sessions, room/session records half started), then every
room sends a heartbeat with live counts. The figure is the median time of
``MonitorService.snapshot(session)`` (the UI refreshes it every few seconds) in the steady
state of an exam: live counts change with every heartbeat, persisted state only on a
recorded transition (the monitor caches it until the next hub event); ``cold_ms`` is the
same with that cache dropped before each call (right after a transition). Prints
``{"bench": "monitor_snapshot", "ms": .., "cold_ms": .., "rooms": 100, "candidates": 4000}``.
Target: ms ≤ 5.
"""

import datetime

from _common import emit, median_ms, scratch_context, store_package

from kd.core import model
from kd.core.monitor import MonitorService
from kd.core.outbox import Outbox
from kd.formats.timeutil import CST, format_time

ROOMS, PER_ROOM, REPEAT = 100, 40, 200
SITE = "11003"


def populate(ctx) -> None:  # type: ignore[no-untyped-def]
    now = datetime.datetime.now(CST)
    start = format_time(now + datetime.timedelta(minutes=30))
    codes = ["{}{:03d}".format(SITE, r) for r in range(1, ROOMS + 1)]
    sessions = [{"id": "S1", "name": "第一场次", "start": start, "duration_min": 120, "subjects": ["K1"]},
                {"id": "S2", "name": "第二场次", "start": format_time(now + datetime.timedelta(hours=4)),
                 "duration_min": 120, "subjects": ["K1"]}]
    candidates = [{"id": "{}{:02d}".format(code, i), "name": "考生{}".format(i), "room": code, "session": "S1",
                   "seat": i, "subject": "K1", "id_card": "110101199001011234"}
                  for code in codes for i in range(1, PER_ROOM + 1)]
    store_package(ctx, SITE, codes, sessions, candidates, start, format_time(now))
    runtime = ctx.stores.runtime
    stamp = format_time(now)
    runtime.replace_table(model.ROOMS, {c: {
        "code": c, "reg_code": "ABCDEFGH", "ip": "192.168.1.{}".format(i + 2), "token": "t" * 32,
        "registered_at": stamp, "data_sha256": "0" * 64, "data_imported_at": stamp, "note": ""}
        for i, c in enumerate(codes)})
    runtime.replace_table(model.SESSIONS, {s["id"]: {
        "id": s["id"], "authorized_at": stamp, "verified_at": stamp, "started_reported_at": None,
        "ended_reported_at": None} for s in sessions})
    runtime.replace_table(model.ROOM_SESSIONS, {model.rs_key(c, "S1"): {
        "room": c, "session": "S1", "started_at": stamp if i % 2 else None, "ended_at": None,
        "result": None, "upload": None} for i, c in enumerate(codes)})


def main() -> None:
    with scratch_context("kd-bench-monitor-") as ctx:
        populate(ctx)
        monitor = MonitorService(ctx, Outbox(ctx))
        for i in range(ROOMS):
            code = "{}{:03d}".format(SITE, i + 1)
            monitor.heartbeat(code, {"session_id": "S1", "started": bool(i % 2), "ended": False,
                                     "logged_in": 38, "in_exam": 36 if i % 2 else 0})
        snap = monitor.snapshot("S1")
        assert len(snap["rows"]) == ROOMS and snap["totals"]["candidates"] == ROOMS * PER_ROOM
        assert snap["totals"]["connected"] == ROOMS and snap["totals"]["logged_in"] == ROOMS * 38
        ms = median_ms(lambda: monitor.snapshot("S1"), REPEAT)

        def cold() -> None:
            monitor.invalidate()
            monitor.snapshot("S1")

        cold_ms = median_ms(cold, REPEAT)
    emit(bench="monitor_snapshot", ms=round(ms, 3), cold_ms=round(cold_ms, 3), rooms=ROOMS,
         candidates=ROOMS * PER_ROOM, target_ms=5.0)


if __name__ == "__main__":
    main()
