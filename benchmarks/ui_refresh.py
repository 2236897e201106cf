"""ui_refresh: re-render the 考场管理 monitoring page (§4.3) for 100 rooms after a snapshot change.

A real ``MonitorPage`` in a ttkbootstrap window (under Xvfb: one is started on a free
display when ``DISPLAY`` is not set) renders snapshots built as ``core.monitor.view``
returns them (``MonitorSnapshot``) (100 rooms, two sessions). Each timed step renders the next of a few
snapshots that differ the way heartbeats change them (已登录 / 考试中 counts, one room
connecting or dropping, the totals) and lets Tk redraw (``update_idletasks``): the time
the Tk thread is busy per refresh. ``full_ms`` is the same when the room set changes
(the table is rebuilt). Prints ``{"bench": "ui_refresh", "ms": .., "full_ms": ..,
"rooms": 100}``, or ``{"bench": "ui_refresh", "error": ..}`` when no display can be had.
Target: ms ≤ 30.
"""

import os
import shutil
import subprocess
import sys
import time
from typing import Any, Dict, List, Optional

from _common import emit, median_ms

ROOMS, REPEAT, TARGET_MS = 100, 60, 30.0


def start_xvfb() -> Optional[subprocess.Popen]:
    """A private Xvfb when there is no display; None when one exists."""
    if os.environ.get("DISPLAY"):
        return None
    if shutil.which("Xvfb") is None:
        raise RuntimeError("no DISPLAY and Xvfb is not installed")
    for number in range(151, 200):
        if os.path.exists("/tmp/.X11-unix/X{}".format(number)) or os.path.exists("/tmp/.X{}-lock".format(number)):
            continue
        proc = subprocess.Popen(["Xvfb", ":{}".format(number), "-screen", "0", "1366x768x24", "-nolisten", "tcp"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if os.path.exists("/tmp/.X11-unix/X{}".format(number)):
                os.environ["DISPLAY"] = ":{}".format(number)
                return proc
            if proc.poll() is not None:
                break
            time.sleep(0.05)  # waiting for an external process's socket, no event to wait on
        proc.kill()
    raise RuntimeError("could not start Xvfb")


def snapshot(variant: int, rooms: int = ROOMS) -> Any:
    """A monitor snapshot as ``MonitorService.view`` returns it; ``variant`` moves the live counts."""
    from kd.core.livesnapshots import MonitorRow, MonitorSnapshot  # noqa: PLC0415
    from kd.core.monitor import COLUMNS, TOTAL_LABEL  # noqa: PLC0415
    from kd.core.states import RoomSessionState, StartKind  # noqa: PLC0415

    rows: List[Dict[str, Any]] = []
    for i in range(rooms):
        connected = (i + variant) % 17 != 0
        logged = (i * 7 + variant) % 41
        rows.append({"room": "11003{:03d}".format(i + 1), "ip": "192.168.{}.{}".format(1 + i // 200, 10 + i % 200),
                     "data_imported": True, "authorized": True, "verified": True, "started": True,
                     "ended": False, "reported": False, "connected": connected, "candidates": 40,
                     "logged_in": logged, "in_exam": max(0, logged - variant % 3),
                     "started_at": None, "ended_at": None, "last_seen_s": 1.0})
    totals: Dict[str, Any] = {"room": TOTAL_LABEL, "rooms": len(rows)}
    for key in ("data_imported", "authorized", "verified", "started", "ended", "reported", "connected"):
        totals[key] = sum(1 for r in rows if r[key])
    for key in ("candidates", "logged_in", "in_exam"):
        totals[key] = sum(r[key] for r in rows)
    return MonitorSnapshot(
        session={"id": "S1", "name": "第一场次", "start": "2026-11-26 09:00", "duration_min": 120},
        sessions=({"id": "S1", "name": "第一场次"}, {"id": "S2", "name": "第二场次"}), columns=COLUMNS,
        rows=tuple(MonitorRow(start=StartKind.PERMITTED, unpermitted=False, unpermitted_at=None,
                              state=RoomSessionState.STARTED, **r) for r in rows), totals=totals,
        status_report={"state": "sent", "label": "成功 2026-11-26 09:{:02d}:00".format(variant % 60), "sent_at": None})


class _Shell:
    """What the page needs of the shell for rendering (nothing is asked of the core)."""

    core = None
    runner = None
    dialogs = None
    app = None


def main() -> None:
    try:
        xvfb = start_xvfb()
    except RuntimeError as e:
        emit(bench="ui_refresh", error=str(e))
        return
    try:
        import ttkbootstrap as ttk  # noqa: PLC0415

        from kd.views.monitor import MonitorPage  # noqa: PLC0415
        from kd.views.widgets import apply_fonts  # noqa: PLC0415

        root = ttk.Window(themename="cosmo")
        root.geometry("1366x768")
        apply_fonts(root)
        page = MonitorPage(root, _Shell())
        page.stop_timer()
        page.unbind("<Map>")  # the benchmark drives render itself; no core behind it
        page.pack(fill="both", expand=True)
        root.update()
        snaps = [snapshot(v) for v in range(8)]
        state = {"n": 0}

        def live() -> None:
            state["n"] += 1
            page.render(snaps[state["n"] % len(snaps)])
            root.update_idletasks()

        ms = median_ms(live, REPEAT)
        others = [snapshot(v, rooms=ROOMS - (v % 2)) for v in range(4)]

        def full() -> None:
            state["n"] += 1
            page.render(others[state["n"] % len(others)])
            root.update_idletasks()

        full_ms = median_ms(full, REPEAT // 2)
        shown = len(page.table.cells())
        root.destroy()
        emit(bench="ui_refresh", ms=round(ms, 2), full_ms=round(full_ms, 2), rooms=ROOMS, rows_shown=shown,
             target_ms=TARGET_MS)
    finally:
        if xvfb is not None:
            xvfb.terminate()
            xvfb.wait(5)


if __name__ == "__main__":
    sys.exit(main())
