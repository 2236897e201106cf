"""Peak memory (RSS high-water mark) of ``main.py --headless``: idle, and loaded.

- idle: a fresh data folder (drill mode: the platform simulator and the dongle emulator
  run inside the process), ``--lan-port 0``; measured once it runs and a few monitor
  ticks have passed.
- loaded: a data folder prepared in this process like kd/drill.py does (``App`` in drill
  mode with a 100-room, 2-session, 40-candidate site: first login, password change,
  系统设置, 导入考务 online: 8,000 candidates), then ``main.py --headless`` on it and 100
  reference proctor clients (kd/lan/client.py, each from its own loopback address
  127.0.1.x) that register with their room's code and heartbeat every second for
  ``HEARTBEAT_S`` seconds; measured after the last heartbeat round.

The figure is the child's ``VmHWM`` from ``/proc/<pid>/status`` (Linux): the peak
resident set since the process started, start-up and loading included. Elsewhere the
line carries an ``error`` field instead. Targets (issue 8): idle ≤ 60 MB, loaded ≤ 90 MB.
Prints ``{"bench": "memory", "idle_mb": .., "loaded_mb": .., "target_idle_mb": 60,
"target_loaded_mb": 90, "rooms": 100, "candidates": 8000, "proctors": 100}``.
"""

import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Dict, List, Optional, Tuple

from _common import ROOT, emit

ROOMS, SESSIONS, CANDIDATES = 100, 2, 40
HEARTBEAT_S = 5
SETTLE_S = 3.0  # idle: how long the process runs before the reading (ticks, a probe)
ACTOR = "admin"


def vm_hwm_mb(pid: int) -> float:
    """Peak RSS of ``pid`` in MB (``VmHWM``, Linux)."""
    with open("/proc/{}/status".format(pid), encoding="ascii") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024.0, 1)
    raise RuntimeError("no VmHWM for pid {}".format(pid))


class Headless:
    """``main.py --headless`` on ``data_dir``; ``port`` once it runs."""

    def __init__(self, data_dir: str) -> None:
        env = {k: v for k, v in os.environ.items() if k not in ("KD_DATA_DIR", "KD_LOCK_URL")}
        env["PYTHONIOENCODING"] = "utf-8"
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(ROOT, "main.py"), "--headless", "--data-dir", data_dir, "--lan-port", "0"],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, encoding="utf-8")
        self.port = self._wait_running()

    def _wait_running(self) -> int:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            match = re.search(r"运行中.*考场通讯端口 (\d+)", line)
            if match:
                return int(match.group(1))
        raise SystemExit("main.py --headless did not start: " + (self.proc.stderr.read() if self.proc.stderr else ""))

    def peak_mb(self) -> float:
        return vm_hwm_mb(self.proc.pid)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()


def prepare_site(data_dir: str) -> Tuple[List[Tuple[str, str]], str]:
    """A drill data folder with the loaded site; returns [(room, reg_code)] and a session id."""
    from kd.app import App
    from kd.core import model
    from kd.drill import DRILL_PASSWORD, INITIAL_PASSWORD, schedule

    duration, gap = schedule(SESSIONS, 10)
    site = {"site_code": "11003", "rooms": ROOMS, "sessions": SESSIONS, "candidates": CANDIDATES,
            "first_start_in": 10, "duration": duration, "gap": gap, "room_kb": 64}
    app = App(data_dir, lan_host="127.0.0.1", lan_port=0, drill_site=site, probe_s=3600.0)
    app.start()
    try:
        accounts = app.core.accounts
        accounts.login(ACTOR, INITIAL_PASSWORD)
        accounts.change_password(ACTOR, INITIAL_PASSWORD, DRILL_PASSWORD, DRILL_PASSWORD)
        accounts.setup(app.simulator.site_code, "mock", ACTOR)
        app.core.loading.load_online(ACTOR)
        manifest = app.ctx.manifest()
        rooms = [(r["code"], app.ctx.stores.runtime.get(model.ROOMS, r["code"])["reg_code"])
                 for r in manifest["rooms"]]
        if len(rooms) != ROOMS or len(manifest["sessions"]) != SESSIONS:
            raise SystemExit("the site has {} rooms and {} sessions".format(len(rooms), len(manifest["sessions"])))
        return rooms, manifest["sessions"][0]["id"]
    finally:
        app.stop()


def proctors(port: int, rooms: List[Tuple[str, str]], session: str) -> Tuple[Dict[str, int], List[Any]]:
    """100 proctors: register, heartbeat every second for HEARTBEAT_S s; counts of what worked."""
    from kd.lan.client import LanError, ProctorClient

    counts = {"registered": 0, "heartbeats": 0, "errors": 0}
    lock = threading.Lock()
    registered = threading.Barrier(len(rooms) + 1)
    done = threading.Event()
    clients: List[Optional[ProctorClient]] = [None] * len(rooms)

    def proctor(i: int, room: str, code: str) -> None:
        client = ProctorClient("127.0.0.1", port, timeout=30, source_address=("127.0.1.{}".format(i + 1), 0))
        clients[i] = client
        try:
            client.register(room, code)
            with lock:
                counts["registered"] += 1
        except LanError:
            with lock:
                counts["errors"] += 1
        registered.wait()
        start = time.monotonic() + i / len(rooms)  # spread over the first second
        for n in range(HEARTBEAT_S):
            delay = start + n - time.monotonic()
            if delay > 0:
                done.wait(delay)
            try:
                client.heartbeat({"session": session, "started": False, "ended": False,
                                  "logged_in": 0, "in_exam": 0})
                with lock:
                    counts["heartbeats"] += 1
            except LanError:
                with lock:
                    counts["errors"] += 1

    threads = [threading.Thread(target=proctor, args=(i, room, code), daemon=True)
               for i, (room, code) in enumerate(rooms)]
    for thread in threads:
        thread.start()
    registered.wait()
    for thread in threads:
        thread.join()
    return counts, clients


def measure_idle(tmp: str) -> float:
    headless = Headless(os.path.join(tmp, "idle"))
    try:
        time.sleep(SETTLE_S)  # a benchmark, not a test: let the ticks and a probe run
        return headless.peak_mb()
    finally:
        headless.stop()


def measure_loaded(tmp: str) -> Tuple[float, Dict[str, int]]:
    data = os.path.join(tmp, "loaded")
    rooms, session = prepare_site(data)
    headless = Headless(data)
    try:
        counts, clients = proctors(headless.port, rooms, session)
        peak = headless.peak_mb()
        for client in clients:
            if client is not None:
                client.close()
        return peak, counts
    finally:
        headless.stop()


def main() -> None:
    sys.path.insert(0, ROOT)
    if not os.path.exists("/proc/self/status"):
        emit(bench="memory", idle_mb=None, loaded_mb=None, error="needs /proc/<pid>/status (Linux)")
        return
    with tempfile.TemporaryDirectory(prefix="kd-mem-") as tmp:
        idle = measure_idle(tmp)
        loaded, counts = measure_loaded(tmp)
    if counts["registered"] != ROOMS or counts["heartbeats"] != ROOMS * HEARTBEAT_S:
        raise SystemExit("proctors failed: {}".format(counts))
    emit(bench="memory", idle_mb=idle, loaded_mb=loaded, target_idle_mb=60, target_loaded_mb=90,
         rooms=ROOMS, sessions=SESSIONS, candidates=ROOMS * SESSIONS * CANDIDATES, proctors=ROOMS)


if __name__ == "__main__":
    main()
