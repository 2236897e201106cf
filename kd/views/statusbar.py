"""The status bar: 端口 | 通讯 | 文件服务 | 网络连接 (正常 green / 异常 red) | 机考锁 | clock.

``StatusBar(parent, loop)`` is a row of labels; the shell feeds it: ``set_port(n)``,
``set_lan(running)``, ``set_net(ok)`` (None: 检测中), ``set_lock(attached)``. The clock
ticks every second (a ``loop.every`` timer owned by the bar) and stops on ``close()``
or when the bar is destroyed. ``texts()`` returns what it shows.
"""

import datetime
import tkinter as tk
from typing import Any, Dict, Optional, Tuple

import ttkbootstrap as ttk

from kd.formats.timeutil import CST


class StatusBar(ttk.Frame):
    def __init__(self, parent: tk.Misc, loop: Any) -> None:
        super().__init__(parent, padding=(8, 2))
        self.labels: Dict[str, ttk.Label] = {}
        for key in ("port", "lan", "files", "net", "lock"):
            label = ttk.Label(self, text="")
            label.pack(side="left")
            ttk.Separator(self, orient="vertical").pack(side="left", fill="y", padx=8)
            self.labels[key] = label
        self.labels["clock"] = ttk.Label(self, text="")
        self.labels["clock"].pack(side="right")
        self.set_port(None)
        self.set_lan(False)
        self.labels["files"].configure(text="文件服务: 运行")
        self.set_net(None)
        self.set_lock(None)
        self._tick()
        self._clock = loop.every(1000, self._tick, owner=self)

    def set_port(self, port: Optional[int]) -> None:
        self.labels["port"].configure(text="端口: {}".format(port if port else "-"))

    def set_lan(self, running: bool) -> None:
        self.labels["lan"].configure(text="通讯: {}".format("运行" if running else "停止"),
                                     bootstyle="default" if running else "danger")

    def set_net(self, ok: Optional[bool]) -> None:
        self._state("net", "网络连接", ok, ("正常", "异常"))

    def set_lock(self, attached: Optional[bool]) -> None:
        self._state("lock", "机考锁", attached, ("已插入", "未插入"))

    def _state(self, key: str, name: str, good: Optional[bool], words: Tuple[str, str]) -> None:
        """``name: 检测中`` (grey) while unknown, then the good word in green or the bad one in red."""
        if good is None:
            self.labels[key].configure(text="{}: 检测中".format(name), bootstyle="secondary")
        else:
            self.labels[key].configure(text="{}: {}".format(name, words[0] if good else words[1]),
                                       bootstyle="success" if good else "danger")

    def texts(self) -> Dict[str, str]:
        return {key: str(label.cget("text")) for key, label in self.labels.items()}

    def _tick(self) -> None:
        now = datetime.datetime.now(CST)
        self.labels["clock"].configure(text=now.strftime("%Y-%m-%d %H:%M:%S"))

    def close(self) -> None:
        self._clock.cancel()
