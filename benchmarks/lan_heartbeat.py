"""200 proctors heartbeating every second against the LAN service: round-trip latency.

The site (platform simulator, dongle emulator, a package of 200 rooms) and the
``LanServer`` run in this process; the 200 proctors run as threads in a child process
(as on real proctor machines, they do not share the server's interpreter), each bound to
its own loopback address (127.0.1.x), registering with its room's code and then sending
one ``heartbeat`` per second (start times spread over the first second). Each heartbeat
goes through authentication and ``MonitorService.heartbeat``.

200 proctors heartbeat every second for ``SECONDS`` = 30 s (6,000 heartbeats), as the
issue asks; ``KD_BENCH_SECONDS`` shortens it for a quick look. Prints one JSON line:
``{"bench": "lan_heartbeat", "proctors": 200, "seconds": 30, "heartbeats", "p50_ms", "p99_ms", "errors"}``.
"""

import json
import os
import sys
import tempfile
import threading
import time

from _common import ROOT, emit, loaded_site, reg_code, run_child, start_lan_server

PROCTORS = 200
SECONDS = float(os.environ.get("KD_BENCH_SECONDS", "30"))


def child(host: str, port: int, rooms_file: str) -> None:
    """The proctors: register, then heartbeat every second; print latencies as JSON."""
    from kd.lan.client import LanError, ProctorClient

    with open(rooms_file, encoding="utf-8") as f:
        spec = json.load(f)
    latencies = []
    errors = []
    lock = threading.Lock()
    barrier = threading.Barrier(len(spec["rooms"]))

    def proctor(i: int, room: dict) -> None:
        ip = "127.0.1.{}".format(i + 1)
        c = ProctorClient(host, port, timeout=10, source_address=(ip, 0))
        try:
            c.register(room["code"], room["reg_code"])
        except LanError as e:
            with lock:
                errors.append("register {}: {}".format(room["code"], e.code))
            barrier.abort()
            return
        barrier.wait()
        start = time.monotonic() + (i / len(spec["rooms"]))  # spread over the first second
        state = {"session": spec["session"], "started": False, "ended": False, "logged_in": 0, "in_exam": 0}
        n = 0
        while n < int(spec["seconds"]):
            delay = start + n - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            state["logged_in"] = min(30, n)
            t0 = time.perf_counter()
            try:
                c.heartbeat(state)
                ms = (time.perf_counter() - t0) * 1000.0
                with lock:
                    latencies.append(ms)
            except LanError as e:
                with lock:
                    errors.append("heartbeat {}: {}".format(room["code"], e.code))
            n += 1
        c.bye()

    threads = [threading.Thread(target=proctor, args=(i, r), daemon=True) for i, r in enumerate(spec["rooms"])]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(json.dumps({"latencies": latencies, "errors": errors}))


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp, loaded_site(tmp, rooms=PROCTORS, candidates=2) as ctx:
        server = start_lan_server(ctx, "0.0.0.0")  # noqa: S104 - 127.0.1.x clients
        rooms = [{"code": r["code"], "reg_code": reg_code(ctx, r["code"])} for r in ctx.manifest()["rooms"]]
        spec = os.path.join(tmp, "rooms.json")
        with open(spec, "w", encoding="utf-8") as f:
            json.dump({"rooms": rooms, "session": ctx.manifest()["sessions"][0]["id"], "seconds": SECONDS}, f)
        try:
            result = run_child(__file__, ["127.0.0.1", str(server.port()), spec], timeout=SECONDS + 120)
        finally:
            server.stop()
    lat = sorted(result["latencies"])

    def pct(p: float) -> float:
        return round(lat[min(len(lat) - 1, int(p * len(lat)))], 3) if lat else -1.0

    emit(bench="lan_heartbeat", proctors=PROCTORS, seconds=SECONDS, heartbeats=len(lat), p50_ms=pct(0.50),
         p99_ms=pct(0.99), errors=len(result["errors"]))


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        sys.path.insert(0, ROOT)
        child(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    else:
        main()
