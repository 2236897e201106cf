"""timeline: the cost of rebuilding 考点时间线, and the alarm latency after a room's outage on the LAN.

Part 1 (cost): the state of a 100-room x 2-session exam day is written straight into a
temporary data folder's stores the way the core keeps it (as benchmarks/monitor_snapshot.py:
4,000 candidates per session, every room registered with its data, both sessions
authorized and verified, session 1 under way with half its rooms started), every room
sends a heartbeat, and the site's clock stands 10 minutes after session 1's start. Timed
(medians): ``facts_ms`` (``TimelineService.facts()``: the stores and the monitor's rows),
``build_ms`` (the pure ``build_timeline`` over those facts), ``timeline_ms`` (both: what a
rebuild per heartbeat would cost), ``tick_ms`` (a steady ``tick()``: the rebuild and the
comparison with the open alarms, nothing to open or close). ``per_s_share`` is the CPU
share if the timeline were rebuilt on every heartbeat of 100 rooms beating every 5 s
(20 rebuilds a second); the site rebuilds it once per ``tick_s`` (1 s) instead.

Part 2 (latency, ``--latency``, the default): a real site on loopback (platform
simulator, dongle emulator, the package loaded online), its ``LanServer`` over the core's
services, two real ``ProctorClient`` s registered from their own loopback addresses and
started; the site's clock 10 minutes into the exam; the timeline ticked every ``tick_s``
as ``kd.site`` does. One client keeps beating every 5 s, the other stops: the figure is
the time from its last acknowledged heartbeat to the ``alarm.opened`` event of its
``room_lost`` alarm, median and max over ``--rounds`` (3) outages, each sent at a random
phase of the tick (the room comes back between them: its alarm closes);
``latency_s - lost_after_s`` is ``detection_s`` (what the tick adds to the rule's 30 s).
``--lost-after S`` and ``--tick S`` change them.

Prints one JSON line: ``{"bench": "timeline", "rooms": 100, "sessions": 2, "facts_ms", "build_ms",
"timeline_ms", "tick_ms", "per_s_share", "latency_s", "latency_max_s", "rounds", "lost_after_s", "tick_s",
"detection_s", "detection_max_s"}``.
Target: timeline_ms <= 20, detection_max_s <= tick_s + 0.5.
"""

import argparse
import datetime
import random
import statistics
import tempfile
import threading
import time

from _common import emit, median_ms, scratch_context, store_package, two_session_site

from kd.core import model, names
from kd.core.monitor import MonitorService
from kd.core.outbox import Outbox
from kd.core.timeline import TimelineService, build_timeline
from kd.core.timelinerules import Rules
from kd.formats.timeutil import CST, format_time

ROOMS, PER_ROOM, REPEAT = 100, 40, 100
SITE = "11003"


def populate(ctx, now):  # type: ignore[no-untyped-def]
    start = now - datetime.timedelta(minutes=10)
    codes, sessions, candidates = two_session_site(SITE, ROOMS, PER_ROOM, format_time(start),
                                                   format_time(start + datetime.timedelta(hours=4)))
    stamp = format_time(now - datetime.timedelta(minutes=40))
    store_package(ctx, SITE, codes, sessions, candidates, stamp, stamp)
    runtime = ctx.stores.runtime
    runtime.replace_table(model.ROOMS, {c: {
        "code": c, "reg_code": "ABCDEFGH", "ip": "192.168.1.{}".format(i + 2), "token": "t" * 32,
        "registered_at": stamp, "data_sha256": "0" * 64, "data_imported_at": stamp, "note": ""}
        for i, c in enumerate(codes)})
    runtime.replace_table(model.SESSIONS, {s["id"]: {
        "id": s["id"], "authorized_at": stamp, "verified_at": stamp, "lock_synced_at": stamp,
        "started_reported_at": None, "ended_reported_at": None} for s in sessions})
    runtime.replace_table(model.ROOM_SESSIONS, {model.rs_key(c, s["id"]): {
        "room": c, "session": s["id"], "started_at": stamp if i % 2 and s["id"] == "S1" else None, "ended_at": None,
        "result": None, "upload": None} for s in sessions for i, c in enumerate(codes)})
    return codes


def cost() -> dict:
    now = datetime.datetime.now(CST).replace(microsecond=0)
    with scratch_context("kd-bench-timeline-") as ctx:
        ctx.clock = lambda: now
        codes = populate(ctx, now)
        monitor = MonitorService(ctx, Outbox(ctx))
        for i, code in enumerate(codes):
            monitor.heartbeat(code, {"session_id": "S1", "started": bool(i % 2), "ended": False,
                                     "logged_in": 38, "in_exam": 36 if i % 2 else 0})
        service = TimelineService(ctx, monitor)
        facts = service.facts()
        assert len(facts.sessions) == 2 and all(len(s.rooms) == ROOMS for s in facts.sessions)
        service.tick()  # the alarms of the rooms not started open once
        assert service.tick() == []
        return {"facts_ms": median_ms(service.facts, REPEAT),
                "build_ms": median_ms(lambda: build_timeline(facts, now), REPEAT),
                "timeline_ms": median_ms(service.timeline, REPEAT),
                "tick_ms": median_ms(service.tick, REPEAT), "open_alarms": service.open_count()}


def latency(lost_after: float, tick_s: float, rounds: int) -> dict:
    from kd.core.context import cst_now  # noqa: PLC0415
    from kd.core.loading import LoadingService  # noqa: PLC0415
    from kd.formats.timeutil import parse_time  # noqa: PLC0415
    from kd.lan.client import ProctorClient  # noqa: PLC0415
    from kd.lan.server import LanOptions, LanServer  # noqa: PLC0415
    from tests.support.env import make_env  # noqa: PLC0415

    with tempfile.TemporaryDirectory(prefix="kd-bench-timeline-lan-") as tmp:
        env = make_env(tmp, rooms=2, sessions=1, candidates=3, room_kb=1)
        stop = threading.Event()
        threads = []
        clients = []
        try:
            ctx, core = env.ctx, env.core
            LoadingService(ctx).load_online("bench")
            start = parse_time(ctx.manifest()["sessions"][0]["start"])
            shift = start + datetime.timedelta(minutes=10) - cst_now()
            ctx.clock = lambda: cst_now() + shift
            server = LanServer(ctx, registration=core.registration, verification=core.verification,
                               monitor=core.monitor, recovery=core.recovery, loading=core.loading,
                               options=LanOptions(host="127.0.0.1", port=0)).start()
            core.timeline.rules = Rules(lost_after_s=lost_after)
            rooms = [r["code"] for r in ctx.manifest()["rooms"]]
            state = {"session": "1", "started": True, "ended": False, "logged_in": 3, "in_exam": 3}
            for i, room in enumerate(rooms):
                client = ProctorClient("127.0.0.1", server.port(), source_address=("127.0.0.{}".format(20 + i), 0),
                                       timeout=10.0)
                clients.append(client)
                client.register(room, str(ctx.stores.runtime.get(model.ROOMS, room)["reg_code"]))
                client.heartbeat(state)
            lost, kept = rooms
            events = ctx.hub.subscribe([names.ALARM_OPENED])

            def ticker() -> None:  # as kd.site's _every
                while not stop.is_set():
                    core.timeline.tick()
                    stop.wait(tick_s)

            def beating() -> None:
                while not stop.wait(min(5.0, lost_after / 3)):  # a proctor's 5 s, or faster for a short rule
                    clients[1].heartbeat(state)

            for fn in (ticker, beating):
                thread = threading.Thread(target=fn, daemon=True)
                thread.start()
                threads.append(thread)
            latencies = []
            for _ in range(rounds):
                stop.wait(random.uniform(0.0, tick_s))  # any phase of the tick: not a sync, a spread
                clients[0].heartbeat(state)
                last = time.monotonic()  # the lost room's last acknowledged heartbeat
                event = events.wait_for(lambda e: e.data.get("kind") == "room_lost" and e.data.get("room_code") == lost,
                                        timeout=lost_after + 30)
                seen = time.monotonic()
                assert event is not None and event.data["room_code"] == lost and kept != lost, event
                latencies.append(seen - last)
                closed = ctx.hub.subscribe([names.ALARM_CLOSED])
                clients[0].heartbeat(state)  # it is back: the alarm closes at the next tick
                assert closed.wait_for(lambda e: e.data.get("room_code") == lost, timeout=30) is not None
            server.stop()
        finally:
            stop.set()
            for thread in threads:
                thread.join(10)
            for client in clients:
                client.close()
            env.close()
    return {"latency_s": round(statistics.median(latencies), 3), "latency_max_s": round(max(latencies), 3),
            "rounds": rounds, "lost_after_s": lost_after, "tick_s": tick_s,
            "detection_s": round(statistics.median(latencies) - lost_after, 3),
            "detection_max_s": round(max(latencies) - lost_after, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lost-after", type=float, default=30.0, help="the room-lost rule (s), default 30")
    parser.add_argument("--tick", type=float, default=1.0, help="the site's tick (s), default 1")
    parser.add_argument("--rounds", type=int, default=3, help="outages timed (median and max), default 3")
    parser.add_argument("--no-latency", action="store_true", help="only the cost (part 1)")
    args = parser.parse_args()
    figures = cost()
    figures["per_s_share"] = round(figures["timeline_ms"] * (ROOMS / 5.0) / 1000.0, 4)
    if not args.no_latency:
        figures.update(latency(args.lost_after, args.tick, args.rounds))
    emit(bench="timeline", rooms=ROOMS, sessions=2, **{k: round(v, 3) if isinstance(v, float) else v
                                                       for k, v in figures.items()}, target_timeline_ms=20.0)


if __name__ == "__main__":
    main()
