"""startup: seconds from process start to the first painted login window, vs a bare window.

Under Xvfb (started here when there is no DISPLAY), ``main.py`` runs in a fresh drill
data folder with ``KD_STARTUP_PROBE=login``: the app prints ``KD-PAINTED starting``
when its first window is drawn and ``KD-PAINTED login`` when the login screen is (the
App, with the drill platform and dongle, starts in between). The baseline is a bare
ttkbootstrap window with one label, timed the same way. Modules are byte-compiled
first, as a normal Python run caches them. When ``dist/`` holds the
one-file binary, it is timed too (``frozen_s``; its first run unpacks, so the median
is over warm runs). Prints
``{"bench": "startup", "s": .., "baseline_s": .., "ratio": .., "first_window_s": .., "frozen_s": ..}``.
Target: ratio ≤ 1.5 from source.
"""

import compileall
import os
import queue
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import Dict, List, Optional

from _common import ROOT, emit

RUNS = 5
BARE = (
    "import ttkbootstrap as ttk\n"
    "root = ttk.Window(title='bare', themename='cosmo')\n"
    "ttk.Label(root, text='考点端登录').pack()\n"
    "def painted():\n"
    "    root.update_idletasks()\n"
    "    print('KD-PAINTED login', flush=True)\n"
    "    root.after(50, root.quit)\n"
    "root.after_idle(painted)\n"
    "root.mainloop()\n"
)


def timed(argv: List[str], env: Dict[str, str], limit: float = 60.0) -> Dict[str, float]:
    """Seconds from spawn to each ``KD-PAINTED <screen>`` line (the process group is killed after)."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, cwd=ROOT,
                            universal_newlines=True, start_new_session=True)
    marks: Dict[str, float] = {}
    lines: queue.Queue[Optional[str]] = queue.Queue()

    def read() -> None:
        for text in proc.stdout:
            lines.put(text)
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    try:
        while "login" not in marks:
            left = limit - (time.perf_counter() - start)
            line = lines.get(timeout=max(left, 0.01)) if left > 0 else None
            if line is None:
                break
            if line.startswith("KD-PAINTED "):
                marks[line.split()[1]] = time.perf_counter() - start
    except queue.Empty:
        pass
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # a one-file exe runs as two processes
        proc.wait(30)
    if "login" not in marks:
        raise RuntimeError("no login window from {} within {} s".format(argv, limit))
    return marks


def app_runs(argv: List[str], env: Dict[str, str]) -> List[Dict[str, float]]:
    out = []
    for _ in range(RUNS):
        data = tempfile.mkdtemp(prefix="kd-startup-")
        try:
            out.append(timed(argv + ["--data-dir", data, "--lan-port", "0"], env))
        finally:
            shutil.rmtree(data, ignore_errors=True)
    return out


def main() -> None:
    xvfb: Optional[subprocess.Popen] = None
    env = dict(os.environ, KD_STARTUP_PROBE="login", KD_NO_TRAY="1")
    # normal Python caches compiled modules (site-packages got theirs at install time); a
    # sandbox's PYTHONDONTWRITEBYTECODE=1 would bill compiling kd/ to every start
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    compileall.compile_dir(os.path.join(ROOT, "kd"), quiet=1)
    compileall.compile_file(os.path.join(ROOT, "main.py"), quiet=1)
    if not env.get("DISPLAY"):
        if not shutil.which("Xvfb"):
            emit(bench="startup", error="no DISPLAY and no Xvfb")
            return
        xvfb = subprocess.Popen(["Xvfb", ":97", "-screen", "0", "1366x768x24", "-nolisten", "tcp"],
                                stderr=subprocess.DEVNULL)
        env["DISPLAY"] = ":97"
        time.sleep(1.0)  # let the X server come up before the first client
    try:
        bare = [timed([sys.executable, "-c", BARE], env)["login"] for _ in range(RUNS)]
        app = app_runs([sys.executable, os.path.join(ROOT, "main.py")], env)
        frozen = None
        exe = os.path.join(ROOT, "dist", "kaodian.exe" if os.name == "nt" else "kaodian")
        if os.path.exists(exe):
            try:
                frozen = statistics.median(r["login"] for r in app_runs([exe], env)[1:])
            except RuntimeError as e:  # an old build without the probe
                print("frozen binary not timed: {}".format(e), file=sys.stderr)
        s = statistics.median(r["login"] for r in app)
        first = statistics.median(r.get("starting", r["login"]) for r in app)
        baseline = statistics.median(bare)
        emit(bench="startup", s=round(s, 3), baseline_s=round(baseline, 3), ratio=round(s / baseline, 2),
             first_window_s=round(first, 3), frozen_s=round(frozen, 3) if frozen is not None else None)
    finally:
        if xvfb is not None:
            xvfb.terminate()
            xvfb.wait(10)


if __name__ == "__main__":
    main()
