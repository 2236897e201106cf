"""The 演练 menu (drill mode only): start N simulated proctor machines against this app.

启动模拟考场… asks how many rooms (the field holds the loaded site's room count), takes
the site info the user exported in 考场注册 (the last ``site_info.exported`` event;
without one it exports it itself into ``DATA/drill/site-info``), and runs
``kd.lan.simulator.Simulation`` against the LAN service's port (``core.status``) on
127.0.0.1, each proctor from its own loopback address (127.0.0.2, 127.0.0.3, ...: the LAN
server's per-address cap of 8 connections is for one PC, and every room is one PC). The
proctors register, import their room data, wait for each session's 开考时间 of the
drill day's schedule (``on_schedule``: the drill platform's sessions are minutes apart,
``kd.platform.demo.DRILL_DAY``), ask for the start permit, run the session until its
scheduled end and upload the result, so a newcomer can click through the whole exam
day, both sessions, in one sitting. ``start(rooms, speed=X)`` (tests, screenshots)
runs the sessions accelerated instead: each starts as soon as it is permitted and lasts
``duration_min / X`` minutes.

While it runs, the top bar shows a one-line summary next to 演练 (``summary_text``:
a/N registered · 考试中 b · 已上传 c) and 模拟考场进度… opens a window with one row per simulated
room (考场编号 | 监考机地址 | 状态 | 场次; ``ProgressWindow``). Both are fed by the
simulator's progress callback: it runs on the proctors' threads and only posts one
refresh at a time to the shell's loop; the Tk thread reads ``Simulation.progress()``.
The final notification tells how it ended. 停止模拟考场 stops it.
"""

import logging
import os
import threading
import tkinter as tk
from typing import Any, Dict, List, Optional, Sequence

import ttkbootstrap as ttk

from kd.errors import UserError
from kd.views.dialogs import center_on
from kd.views.live_table import LiveTable

log = logging.getLogger(__name__)

#: how fast accelerated simulated exams run (minutes of the schedule per minute); the menu
#: follows the schedule instead (speed 1)
DRILL_SPEED = 60.0
#: the count asked for when no package is loaded yet
FALLBACK_ROOMS = 3

#: what a proctor's phase (``kd.lan.simulator.PHASES``) reads as
PHASE_LABELS = {
    "connecting": "正在连接", "registered": "已注册", "data_imported": "已导入考场数据", "waiting": "等待开考",
    "permit": "等待开考许可", "in_exam": "考试中", "uploading": "正在上传结果", "uploaded": "已上传结果",
    "done": "已完成", "failed": "失败",
}
COLUMNS = [("room", "考场编号", 90), ("address", "监考机地址", 110), ("phase", "状态", 210), ("session", "场次", 90)]


def phase_text(phase: str, detail: str, shown_time: Any = None) -> str:
    """A proctor's 状态 cell: the phase's label, with the start time (waiting) or the error (failed)."""
    text = PHASE_LABELS.get(phase, phase)
    if phase == "waiting" and detail:
        return "{}（{}）".format(text, shown_time(detail) if shown_time else detail)
    if phase == "failed" and detail and detail != "stopped":
        return "{}：{}".format(text, detail[:60])
    return text


def summary_text(progress: Sequence[Any], registered: int, uploads: int) -> str:
    """The top bar's line: ``模拟 a/N · 考试中 b · 已上传 c`` (a of N registered; ``· 失败 d``),
    short enough for the top bar at 1024 px."""
    in_exam = sum(1 for p in progress if p.phase == "in_exam")
    failed = sum(1 for p in progress if p.phase == "failed")
    text = "模拟 {}/{} · 考试中 {} · 已上传 {}".format(registered, len(progress), in_exam, uploads)
    return text + (" · 失败 {}".format(failed) if failed else "")


def _shown(value: Any) -> str:
    from kd.core.labels import shown  # noqa: PLC0415 - the core's one time formatter

    return shown(value)


class DrillMenu:
    def __init__(self, shell: Any, parent: tk.Misc) -> None:
        self.shell = shell
        self.button = ttk.Menubutton(parent, text="演练", bootstyle="warning")
        self.button.pack(side="right", padx=4)
        self.status = ttk.Label(parent, text="", bootstyle="inverse-primary")
        self.status.pack(side="right", padx=(8, 4))
        self.menu = tk.Menu(self.button, tearoff=False)
        self.menu.add_command(label="启动模拟考场…", command=self.start)
        self.menu.add_command(label="模拟考场进度…", command=self.show_progress)
        self.menu.add_command(label="停止模拟考场", command=self.stop)
        self.button.configure(menu=self.menu)
        self.simulation: Any = None
        self.report: Optional[Dict[str, Any]] = None
        self.window: Optional[ProgressWindow] = None
        self.session_names: Dict[str, str] = {}
        self._pending = False
        self._pending_lock = threading.Lock()

    # -- starting ----------------------------------------------------------------------------
    def start(self, rooms: Optional[int] = None, speed: Optional[float] = None) -> None:
        """Start ``rooms`` simulated proctors (asked when None, the site's room count filled in).

        ``speed`` None: the proctors follow the drill day's schedule; a number: the
        sessions run accelerated by it, each as soon as it is permitted.
        """
        shell = self.shell
        if self.simulation is not None:
            shell.dialogs.warning("演练", "模拟考场已在运行。", "请等待其结束，或先停止模拟考场。")
            return
        if rooms is None:
            shell.call(self._room_count, lambda count: self._ask(count, speed))
            return
        self._begin(rooms, speed)

    def _room_count(self) -> int:
        """Worker: how many rooms the loaded package has (``FALLBACK_ROOMS`` before loading)."""
        manifest = self.shell.core.ctx.manifest()
        return len(manifest["rooms"]) if manifest else FALLBACK_ROOMS

    def _ask(self, count: int, speed: Optional[float]) -> None:
        shell = self.shell
        text = shell.dialogs.ask_text("启动模拟考场", "模拟考场数量（监考机数量，本考点共 {} 个考场）：".format(count),
                                      initial=str(count))
        if text is None:
            return
        try:
            rooms = int(text.strip())
        except ValueError:
            shell.dialogs.error(UserError("模拟考场数量必须是正整数：{!r}。".format(text[:20]),
                                          "请输入 1 以上的整数，例如 {}。".format(count)))
            return
        self._begin(rooms, speed)

    def _begin(self, rooms: int, speed: Optional[float]) -> None:
        self.shell.call(lambda: self._prepare(rooms, speed), self._run, busy="正在准备模拟考场…")

    def _prepare(self, rooms: int, speed: Optional[float]) -> Any:
        """Worker: the site info file and the simulated rooms (raises UserError)."""
        from kd.lan.simulator import SimOptions, Simulation, rooms_from_site_info  # noqa: PLC0415

        if rooms < 1:
            raise UserError("模拟考场数量必须是正整数。", "请输入 1 以上的整数，例如 3。")
        core = self.shell.core
        port = core.status.snapshot().lan_port
        if port is None:
            raise UserError("局域网服务未启动，无法启动模拟考场。", "请重新启动考点管理系统后再试。")
        path = self.shell.last_site_info
        if not path or not os.path.isfile(path):
            folder = os.path.join(core.ctx.data_dir, "drill", "site-info")
            os.makedirs(folder, exist_ok=True)
            path = core.registration.export_site_info(folder, self.shell.user, "127.0.0.1", port)["kdinfo"]
        chosen: List[Dict[str, Any]] = rooms_from_site_info(path, rooms)
        manifest = core.ctx.manifest() or {}
        self.session_names = {s["id"]: s.get("name") or s["id"] for s in manifest.get("sessions") or []}
        work = os.path.join(core.ctx.data_dir, "drill", "proctors")
        options = SimOptions(speed=speed or 1.0, on_schedule=speed is None, own_address=True, work_dir=work,
                             permit_timeout=4 * 3600.0, connect_timeout=120.0)
        return Simulation("127.0.0.1", port, chosen, options, on_progress=self._progressed)

    def _run(self, simulation: Any) -> None:
        self.simulation = simulation.start()
        self.shell.notify("模拟考场已启动（{} 个考场）".format(len(simulation.proctors)), "info")
        self.refresh()
        # its own thread (not a UI worker: the day lasts minutes); only posts to the Tk thread
        threading.Thread(target=lambda: self._wait(simulation), name="drill-wait", daemon=True).start()

    def _wait(self, simulation: Any) -> None:
        report = simulation.wait()
        self.shell.post(lambda: self._finished(report, simulation))

    def _finished(self, report: Dict[str, Any], simulation: Any) -> None:
        self.report = report
        self.refresh(simulation)
        if self.simulation is simulation:
            self.simulation = None
        if report.get("ok"):
            self.shell.notify("模拟考场完成：{} 个考场，上传结果 {} 个".format(report["rooms"], report["uploads"]),
                              "success")
        else:
            log.warning("drill simulation ended with failures: %s", report.get("failures"))
            self.shell.notify("模拟考场结束，{} 个考场未完成（详见日志）".format(len(report.get("failures", []))),
                              "warning")

    # -- progress ----------------------------------------------------------------------------
    def _progressed(self) -> None:
        """A proctor's phase changed (its thread): one refresh at a time goes to the Tk thread."""
        with self._pending_lock:
            if self._pending:
                return
            self._pending = True
        self.shell.post(self._refresh_posted)

    def _refresh_posted(self) -> None:
        with self._pending_lock:
            self._pending = False
        self.refresh()

    def refresh(self, simulation: Any = None) -> None:
        """Render the simulation's progress: the top bar's line and the window's rows (Tk thread)."""
        sim = simulation or self.simulation
        if sim is None or not self.status.winfo_exists():
            return
        progress = sim.progress()
        reports = [p.report for p in sim.proctors]
        text = summary_text(progress, sum(1 for r in reports if r.registered), sum(len(r.uploads) for r in reports))
        if self.status.cget("text") != text:
            self.status.configure(text=text)
        if self.window is not None and self.window.winfo_exists():
            self.window.render(progress, self.session_names, text)

    def show_progress(self) -> None:
        """模拟考场进度…: the window with one row per simulated room (raised when open)."""
        if self.window is not None and self.window.winfo_exists():
            self.window.lift()
        else:
            self.window = ProgressWindow(self.shell.root)
        sim = self.simulation
        if sim is None and self.report is None:
            self.window.render([], {}, "模拟考场未启动：请在“演练”菜单中选择“启动模拟考场…”。")
        self.refresh()

    # -- stopping ----------------------------------------------------------------------------
    def stop(self) -> None:
        sim, self.simulation = self.simulation, None
        if sim is not None:
            self.shell.loop.submit(sim.stop, lambda r: self.shell.notify("模拟考场已停止"), None)

    def close(self) -> None:
        """Stop the proctors without waiting on the Tk thread (the shell is closing)."""
        if self.window is not None and self.window.winfo_exists():
            self.window.destroy()
        if self.simulation is not None:
            self.simulation.stop_event.set()


class ProgressWindow(tk.Toplevel):
    """模拟考场进度: the summary line and one row per simulated room (not modal)."""

    def __init__(self, root: tk.Misc) -> None:
        super().__init__(root)
        self.withdraw()
        self.title("模拟考场进度")
        self.transient(root.winfo_toplevel())
        frame = ttk.Frame(self, padding=10)
        frame.pack(fill="both", expand=True)
        self.summary = ttk.Label(frame, text="", anchor="w")
        self.summary.pack(side="top", fill="x", pady=(0, 6))
        self.table = LiveTable(frame, COLUMNS, key=("room",), height=14)
        self.table.pack(side="top", fill="both", expand=True)
        ttk.Button(frame, text="关闭", bootstyle="secondary", command=self.destroy).pack(side="bottom", anchor="e",
                                                                                        pady=(8, 0))
        self.bind("<Escape>", lambda _e: self.destroy())
        center_on(self, root)
        self.deiconify()

    def render(self, progress: Sequence[Any], session_names: Dict[str, str], summary: str) -> None:
        rows = [{"room": p.room, "address": p.address or "127.0.0.1",
                 "phase": phase_text(p.phase, p.detail, _shown),
                 "session": session_names.get(p.session or "", p.session or "")} for p in progress]
        self.table.set_rows(rows)
        if self.summary.cget("text") != summary:
            self.summary.configure(text=summary)
