"""The 演练 menu (drill mode only): start N simulated proctor machines against this app.

启动模拟考场… asks how many rooms, takes the site info the user exported in 考场注册
(the last ``site_info.exported`` event; without one it exports it itself into
``DATA/drill/site-info``), and runs ``kd.lan.simulator.Simulation`` against the LAN
service's port (``core.status``) on 127.0.0.1. The proctors register, import their room data, wait for the
start permits, run their sessions (accelerated) and upload results, so a newcomer can
click through the whole exam day. The simulation runs in its own threads; the shell
only hears about it through the hub's events and the final notification.
停止模拟考场 stops it.
"""

import logging
import os
import threading
import tkinter as tk
from typing import Any, Dict, List, Optional

import ttkbootstrap as ttk

from kd.errors import UserError

log = logging.getLogger(__name__)

#: how fast simulated exams run (minutes of the schedule per second)
DRILL_SPEED = 60.0


class DrillMenu:
    def __init__(self, shell: Any, parent: tk.Misc) -> None:
        self.shell = shell
        self.button = ttk.Menubutton(parent, text="演练", bootstyle="warning")
        self.button.pack(side="right", padx=4)
        self.menu = tk.Menu(self.button, tearoff=False)
        self.menu.add_command(label="启动模拟考场…", command=self.start)
        self.menu.add_command(label="停止模拟考场", command=self.stop)
        self.button.configure(menu=self.menu)
        self.simulation: Any = None
        self.report: Optional[Dict[str, Any]] = None

    def start(self, rooms: Optional[int] = None, speed: float = DRILL_SPEED) -> None:
        """Start ``rooms`` simulated proctors (asked when None)."""
        shell = self.shell
        if self.simulation is not None:
            shell.dialogs.warning("演练", "模拟考场已在运行。", "请等待其结束，或先停止模拟考场。")
            return
        if rooms is None:
            text = shell.dialogs.ask_text("启动模拟考场", "模拟考场数量（监考机数量）：")
            if text is None:
                return
            try:
                rooms = int(text.strip())
            except ValueError:
                shell.dialogs.error(UserError("模拟考场数量必须是正整数：{!r}。".format(text[:20]),
                                              "请输入 1 以上的整数，例如 3。"))
                return
        count = rooms
        shell.call(lambda: self._prepare(count, speed), self._run, busy="正在准备模拟考场…")

    def _prepare(self, rooms: int, speed: float) -> Any:
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
        work = os.path.join(core.ctx.data_dir, "drill", "proctors")
        return Simulation("127.0.0.1", port, chosen, SimOptions(speed=speed, work_dir=work))

    def _run(self, simulation: Any) -> None:
        self.simulation = simulation.start()
        self.shell.notify("模拟考场已启动（{} 个考场）".format(len(simulation.proctors)), "info")
        # its own thread (not a UI worker: the day lasts minutes); only posts to the Tk thread
        threading.Thread(target=lambda: self._wait(simulation), name="drill-wait", daemon=True).start()

    def _wait(self, simulation: Any) -> None:
        report = simulation.wait()
        self.shell.post(lambda: self._finished(report, simulation))

    def _finished(self, report: Dict[str, Any], simulation: Any) -> None:
        self.report = report
        if self.simulation is simulation:
            self.simulation = None
        if report.get("ok"):
            self.shell.notify("模拟考场完成：{} 个考场，上传结果 {} 个".format(report["rooms"], report["uploads"]),
                              "success")
        else:
            log.warning("drill simulation ended with failures: %s", report.get("failures"))
            self.shell.notify("模拟考场结束，{} 个考场未完成（详见日志）".format(len(report.get("failures", []))),
                              "warning")

    def stop(self) -> None:
        sim, self.simulation = self.simulation, None
        if sim is not None:
            self.shell.loop.submit(sim.stop, lambda r: self.shell.notify("模拟考场已停止"), None)

    def close(self) -> None:
        """Stop the proctors without waiting on the Tk thread (the shell is closing)."""
        if self.simulation is not None:
            self.simulation.stop_event.set()
