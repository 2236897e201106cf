"""startup: seconds from process start to the first painted login window, vs a bare window;
and the one-file binary's time to its splash screen and to its login window.

Under Xvfb (started here on a free display when there is no DISPLAY), ``main.py`` runs
in a fresh drill data folder with ``KD_STARTUP_PROBE=login``: the app prints
``KD-PAINTED starting`` / ``KD-PAINTED login`` when the screen is drawn (kd/views/probe.py,
after ``update_idletasks`` at idle time) and ends. The baseline is a bare ttkbootstrap
window with one label, timed the same way. Modules are byte-compiled first, as a normal
Python run caches them.

The frozen binary (``dist/kaodian``, or ``--exe PATH``), when there is one, is timed the
same way, plus its **splash**: an X client of this script watches the root window's
children (``SubstructureNotify``: every top-level window's ``MapNotify``, as the X
server sends it, no polling) and notes the first window mapped after the spawn whose
``_NET_WM_WINDOW_TYPE`` is ``_NET_WM_WINDOW_TYPE_SPLASH`` (PyInstaller's splash sets it
on X11: ``wm attributes . -type splash``) or that is override-redirect (its
always-on-top variant). A one-file exe unpacks itself at every start; the first run
fills the OS file cache, so the medians are over the warm runs after it.

Prints one line:
``{"bench": "startup", "s", "baseline_s", "ratio", "first_window_s", "frozen_s",
"frozen_splash_s", "frozen_login_s", "frozen_window_mapped_s", "frozen_runs",
"frozen_splash_seen", "frozen_size_mb"}``: ``frozen_login_s`` is the probe's
``KD-PAINTED login`` (drawn at idle time), ``frozen_window_mapped_s`` the X server's
``MapNotify`` of the app's window (the first non-splash top-level), ``frozen_s`` =
``frozen_login_s`` (the old key); frozen figures are null without a binary.
Targets: ratio ≤ 1.5 from source; frozen splash ≤ 0.3 s, login window ≤ 0.8 s.

``--against OLD_EXE`` compares two builds on a loaded machine: after one warm-up run
each, the binary and OLD_EXE are timed in alternating order (ABBA...), and the line
gains ``against_login_s``, ``against_splash_s``, ``against_window_mapped_s`` (OLD_EXE's
medians) and ``frozen_login_runs`` / ``against_login_runs`` (every run's login seconds).
Linux only for the frozen figures (a windowed Windows exe has no stdout for the probe).
"""

import argparse
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
from typing import Any, Dict, List, Optional

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


class MapWatcher:
    """Notes when top-level windows are mapped on the X display (a thread of its own).

    ``first_splash(after)`` is the ``time.perf_counter()`` of the first splash-type window
    mapped after ``after`` (None when none was).
    """

    def __init__(self, display_name: str) -> None:
        from Xlib import X, display  # noqa: PLC0415 - python-xlib: pystray's X backend, Linux only

        self.X = X
        self.display = display.Display(display_name)
        self.root = self.display.screen().root
        self.root.change_attributes(event_mask=X.SubstructureNotifyMask)
        self.type_atom = self.display.intern_atom("_NET_WM_WINDOW_TYPE")
        self.splash_atom = self.display.intern_atom("_NET_WM_WINDOW_TYPE_SPLASH")
        self.maps: List[Any] = []  # (time, is_splash)
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        threading.Thread(target=self._run, name="x-map-watcher", daemon=True).start()

    def _run(self) -> None:
        while True:
            try:
                event = self.display.next_event()
            except Exception:  # noqa: BLE001 - the X server went away (the benchmark ends)
                return
            if event.type != self.X.MapNotify:
                continue
            at = time.perf_counter()
            splash = bool(event.override)
            try:
                prop = event.window.get_full_property(self.type_atom, self.X.AnyPropertyType)
                splash = splash or (prop is not None and self.splash_atom in list(prop.value))
            except Exception:  # noqa: BLE001 - the window is gone already: not the splash we wait for
                pass
            with self.changed:
                self.maps.append((at, splash))
                self.changed.notify_all()

    def first_splash(self, after: float) -> Optional[float]:
        with self.lock:
            return next((at for at, splash in self.maps if splash and at >= after), None)

    def first_window(self, after: float, wait_s: float = 2.0) -> Optional[float]:
        """The first other top-level window mapped after ``after``: the app's own (its
        ``MapNotify`` may still be on its way when the process was killed: waits up to ``wait_s``)."""
        def found() -> Optional[float]:
            return next((at for at, splash in self.maps if not splash and at >= after), None)

        with self.changed:
            self.changed.wait_for(lambda: found() is not None, wait_s)
            return found()


def timed(argv: List[str], env: Dict[str, str], limit: float = 60.0,
          watcher: Optional[MapWatcher] = None) -> Dict[str, float]:
    """Seconds from spawn to each ``KD-PAINTED <screen>`` line, and to the splash with a
    ``watcher`` (the process group is killed after)."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, cwd=ROOT,
                            universal_newlines=True, start_new_session=True)
    marks: Dict[str, float] = {}
    lines: queue.Queue[Optional[str]] = queue.Queue()

    def read() -> None:
        for text in proc.stdout:  # type: ignore[union-attr]
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
        if watcher is not None and "login" in marks:
            # before the kill: Tk sends the window's map request when it next waits for events
            mapped = watcher.first_window(start)
            if mapped is not None:
                marks["mapped"] = mapped - start
    except queue.Empty:
        pass
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # a one-file exe runs as two processes
        proc.wait(30)
    if "login" not in marks:
        raise RuntimeError("no login window from {} within {} s".format(argv, limit))
    if watcher is not None:
        shown = watcher.first_splash(start)
        if shown is not None:
            marks["splash"] = shown - start
    return marks


def app_runs(argv: List[str], env: Dict[str, str], runs: int = RUNS,
             watcher: Optional[MapWatcher] = None) -> List[Dict[str, float]]:
    out = []
    for _ in range(runs):
        data = tempfile.mkdtemp(prefix="kd-startup-")
        try:
            out.append(timed(argv + ["--data-dir", data, "--lan-port", "0"], env, watcher=watcher))
        finally:
            shutil.rmtree(data, ignore_errors=True)
    return out


def default_exe() -> str:
    return os.path.join(ROOT, "dist", "kaodian.exe" if os.name == "nt" else "kaodian")


def free_display() -> int:
    x_dir = "/tmp/.X11-unix"  # noqa: S108 - where X servers put their sockets
    return next(n for n in range(97, 300) if not os.path.exists(os.path.join(x_dir, "X{}".format(n)))
                and not os.path.exists("/tmp/.X{}-lock".format(n)))  # noqa: S108


def start_xvfb(env: Dict[str, str]) -> subprocess.Popen:
    number = free_display()
    xvfb = subprocess.Popen(["Xvfb", ":{}".format(number), "-screen", "0", "1366x768x24", "-nolisten", "tcp"],
                            stderr=subprocess.DEVNULL)
    socket_path = "/tmp/.X11-unix/X{}".format(number)  # noqa: S108
    deadline = time.monotonic() + 15
    while not os.path.exists(socket_path):  # the X server's socket is its readiness
        if xvfb.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("Xvfb did not start")
        time.sleep(0.05)
    env["DISPLAY"] = ":{}".format(number)
    return xvfb


def frozen_figures(exe: str, env: Dict[str, str], runs: int) -> Dict[str, Any]:
    """The one-file binary's medians over its warm runs (the first only fills the file cache)."""
    size_mb = round(os.path.getsize(exe) / 1e6, 1)
    try:
        watcher: Optional[MapWatcher] = MapWatcher(env["DISPLAY"])
    except Exception as e:  # noqa: BLE001 - no python-xlib or no X connection: no splash figure
        print("splash not timed: {!r}".format(e), file=sys.stderr)
        watcher = None
    try:
        results = app_runs([exe], env, runs + 1, watcher)[1:]
    except RuntimeError as e:  # an old build without the probe
        print("frozen binary not timed: {}".format(e), file=sys.stderr)
        return {"frozen_size_mb": size_mb}
    login = statistics.median(r["login"] for r in results)
    splashes = [r["splash"] for r in results if "splash" in r]
    mapped = [r["mapped"] for r in results if "mapped" in r]
    return {"frozen_login_s": round(login, 3), "frozen_s": round(login, 3),
            "frozen_splash_s": round(statistics.median(splashes), 3) if splashes else None,
            "frozen_window_mapped_s": round(statistics.median(mapped), 3) if mapped else None,
            "frozen_runs": len(results), "frozen_splash_seen": len(splashes), "frozen_size_mb": size_mb}


def medians(results: List[Dict[str, float]], prefix: str) -> Dict[str, Any]:
    """``<prefix>_login_s``, ``_splash_s``, ``_window_mapped_s`` and ``_login_runs`` of ``results``."""
    def med(key: str) -> Optional[float]:
        values = [r[key] for r in results if key in r]
        return round(statistics.median(values), 3) if values else None

    return {prefix + "_login_s": med("login"), prefix + "_splash_s": med("splash"),
            prefix + "_window_mapped_s": med("mapped"),
            prefix + "_login_runs": [round(r["login"], 3) for r in results]}


def compare(exe: str, old: str, env: Dict[str, str], runs: int) -> Dict[str, Any]:
    """``exe`` and ``old`` timed alternately (ABBA...) after a warm-up run each."""
    watcher = MapWatcher(env["DISPLAY"])
    results: Dict[str, List[Dict[str, float]]] = {exe: [], old: []}
    for path in (exe, old):
        app_runs([path], env, 1, watcher)  # fills the file cache: not counted
    for i in range(runs):
        for path in ((exe, old) if i % 2 == 0 else (old, exe)):
            results[path].extend(app_runs([path], env, 1, watcher))
    figures = medians(results[exe], "frozen")
    figures.update(medians(results[old], "against"), frozen_runs=runs)
    figures["frozen_s"] = figures["frozen_login_s"]
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description="start-up time (JSON line)")
    parser.add_argument("--exe", help="the one-file binary to time (default dist/kaodian)")
    parser.add_argument("--runs", type=int, default=RUNS)
    parser.add_argument("--frozen-only", action="store_true", help="time only the binary")
    parser.add_argument("--against", metavar="OLD_EXE", help="time the binary and OLD_EXE alternately (implies "
                                                             "--frozen-only)")
    opts = parser.parse_args()
    xvfb: Optional[subprocess.Popen] = None
    env = dict(os.environ, KD_STARTUP_PROBE="login", KD_NO_TRAY="1")
    # normal Python caches compiled modules (site-packages got theirs at install time); a
    # sandbox's PYTHONDONTWRITEBYTECODE=1 would bill compiling kd/ to every start
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    if not env.get("DISPLAY"):
        if not shutil.which("Xvfb"):
            emit(bench="startup", error="no DISPLAY and no Xvfb")
            return
        xvfb = start_xvfb(env)
    try:
        figures: Dict[str, Any] = {}
        if opts.against:
            emit(bench="startup", **compare(opts.exe or default_exe(), opts.against, env, opts.runs))
            return
        if not opts.frozen_only:
            compileall.compile_dir(os.path.join(ROOT, "kd"), quiet=1)
            compileall.compile_file(os.path.join(ROOT, "main.py"), quiet=1)
            bare = [timed([sys.executable, "-c", BARE], env)["login"] for _ in range(opts.runs)]
            app = app_runs([sys.executable, os.path.join(ROOT, "main.py")], env, opts.runs)
            s = statistics.median(r["login"] for r in app)
            baseline = statistics.median(bare)
            figures.update(s=round(s, 3), baseline_s=round(baseline, 3), ratio=round(s / baseline, 2),
                           first_window_s=round(statistics.median(r.get("starting", r["login"]) for r in app), 3))
        exe = opts.exe or default_exe()
        figures.update(frozen_s=None, frozen_splash_s=None, frozen_login_s=None)
        if os.path.exists(exe):
            figures.update(frozen_figures(exe, env, opts.runs))
        emit(bench="startup", **figures)
    finally:
        if xvfb is not None:
            xvfb.terminate()
            xvfb.wait(10)


if __name__ == "__main__":
    main()
