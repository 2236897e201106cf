"""The drill with 30 rooms: ``main.py drill --rooms 30 --json`` as a child process, timed.

``seconds`` is the wall-clock time of the whole command (interpreter start, drill
platform, dongle emulator, LAN service, 30 proctors, the exam day, clean-up);
``drill_seconds`` the drill's own figure from its report; ``steps_s`` the slowest steps.
Prints one JSON line: ``{"bench": "drill", "rooms": 30, "seconds": .., "ok": true, ...}``;
exits 1 when the drill failed.
"""

import json
import os
import subprocess
import sys
import time

from _common import ROOT, emit

ROOMS = 30


def main() -> int:
    start = time.perf_counter()
    out = subprocess.run([sys.executable, os.path.join(ROOT, "main.py"), "drill", "--rooms", str(ROOMS), "--json"],
                         cwd=ROOT, capture_output=True, text=True,
                         timeout=900)
    seconds = time.perf_counter() - start
    try:
        report = json.loads(out.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        report = {"ok": False, "failures": ["no report: " + out.stderr[-500:]]}
    ok = out.returncode == 0 and bool(report.get("ok"))
    steps = sorted(report.get("steps") or [], key=lambda s: -s["seconds"])[:4]
    emit(bench="drill", rooms=ROOMS, seconds=round(seconds, 2), ok=ok, drill_seconds=report.get("seconds"),
         results=report.get("results_at_platform"), receipts=report.get("receipts_verified"),
         steps_s={s["step"]: s["seconds"] for s in steps}, failures=report.get("failures"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
