"""The status bar: 地址 | 端口 | 通讯 | 文件服务 | 网络连接 (正常 green / 异常 red) | 机考锁 | clock.

``StatusBar(parent, loop)`` is a row of labels; the shell feeds it: ``set_address(snapshot)``
(a ``core.status`` ``SiteStatus``), ``set_port(n)``, ``set_lan(running)``, ``set_net(ok)``
(None: 检测中), ``set_lock(attached)``. The clock ticks every second (a ``loop.every``
timer owned by the bar) and stops on ``close()`` or when the bar is destroyed. ``texts()``
returns what it shows.

**地址** is the address proctors are told (``core.status``: the 考点信息表 names it). When
this PC has several IPv4 addresses it is a menu button (``地址: 192.168.10.2`` and its arrow): one
radio entry per address (best first, as ``kd.lan.addresses`` orders them) and the check
entry 仅在此地址上提供考场通讯（重新启动后生效） (``lan_bind``). A pick calls
``core.status.choose_address(address, bind, user)`` in a worker (``attach(core, user,
notify)`` first; without it the menu is shown but changes nothing) and shows the result.
"""

import datetime
import tkinter as tk
from typing import Any, Callable, Dict, Optional, Tuple

import ttkbootstrap as ttk

from kd.formats.timeutil import CST

BIND_LABEL = "仅在此地址上提供考场通讯（重新启动后生效）"


class StatusBar(ttk.Frame):
    def __init__(self, parent: tk.Misc, loop: Any) -> None:
        super().__init__(parent, padding=(8, 2))
        self.labels: Dict[str, Any] = {}
        self._loop = loop
        self._core: Any = None
        self._user = ""
        self._notify: Callable[..., Any] = lambda text, kind="info": None
        #: the address picker (a menu button; packed instead of the 地址 label when there is a choice)
        self.address_button = ttk.Menubutton(self, text="", bootstyle="light", padding=(6, 0))
        self.address_menu = tk.Menu(self.address_button, tearoff=0)
        self.address_button.configure(menu=self.address_menu)
        self._address_var = tk.StringVar(self, value="")
        self._bind_var = tk.BooleanVar(self, value=False)
        self._addresses: Tuple[str, ...] = ()
        for key in ("address", "port", "lan", "files", "net", "lock"):
            label = ttk.Label(self, text="")
            label.pack(side="left")
            ttk.Separator(self, orient="vertical").pack(side="left", fill="y", padx=8)
            self.labels[key] = label
        self.labels["clock"] = ttk.Label(self, text="")
        self.labels["clock"].pack(side="right")
        self.set_port(None)
        self.labels["address"].configure(text="地址: -")
        self.set_lan(False)
        self.labels["files"].configure(text="文件服务: 运行")
        self.set_net(None)
        self.set_lock(None)
        self._tick()
        self._clock = loop.every(1000, self._tick, owner=self)

    def attach(self, core: Any, user: str, notify: Callable[..., Any]) -> None:
        """The core the address picker saves to, the acting user and the shell's ``notify``."""
        self._core, self._user, self._notify = core, user, notify

    def set_address(self, snap: Any) -> None:
        """地址 from a ``SiteStatus``: a plain label, or the picker when there are several addresses."""
        told = snap.lan_address or "-"
        self._addresses = tuple(snap.lan_addresses or ())
        self._address_var.set(told)
        self._bind_var.set(bool(snap.lan_bind))
        label = self.labels["address"]
        if len(self._addresses) > 1:  # the label stays packed, empty, right after the button
            self.address_button.configure(text="地址: {}".format(told))
            label.configure(text="")
            if not self.address_button.winfo_manager():
                self.address_button.pack(side="left", before=label)
            self._fill_menu()
        else:
            label.configure(text="地址: {}".format(told))
            if self.address_button.winfo_manager():
                self.address_button.pack_forget()

    def _fill_menu(self) -> None:
        menu = self.address_menu
        menu.delete(0, "end")
        for address in self._addresses:
            menu.add_radiobutton(label=address, value=address, variable=self._address_var,
                                 command=lambda a=address: self.choose(a, self._bind_var.get()))
        menu.add_separator()
        menu.add_checkbutton(label=BIND_LABEL, variable=self._bind_var, onvalue=True, offvalue=False,
                             command=lambda: self.choose(self._address_var.get(), self._bind_var.get()))

    def menu_labels(self) -> Tuple[str, ...]:
        """The picker's entries as shown (tests, screenshots)."""
        end = self.address_menu.index("end")
        if end is None:
            return ()
        return tuple(str(self.address_menu.entrycget(i, "label")) for i in range(end + 1)
                     if self.address_menu.type(i) != "separator")

    def choose(self, address: str, bind: bool) -> None:
        """(the picker) remember ``address`` (and ``bind``) through ``core.status.choose_address``, in a worker."""
        core = self._core
        if core is None or not address or address == "-":
            return
        user = self._user

        def done(snap: Any) -> None:
            self.set_address(snap)
            text = "考点机地址已设为 {}：请在“考场注册”中重新导出考点信息并发给各考场。".format(snap.lan_address)
            if snap.lan_bind:
                text += "重新启动后仅在此地址上提供考场通讯。"
            self._notify(text, "success")

        self._loop.submit(lambda: core.status.choose_address(address, bind, user), done)

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
        shown = {key: str(label.cget("text")) for key, label in self.labels.items()}
        if self.address_button.winfo_manager():
            shown["address"] = str(self.address_button.cget("text"))
        return shown

    def _tick(self) -> None:
        now = datetime.datetime.now(CST)
        self.labels["clock"].configure(text=now.strftime("%Y-%m-%d %H:%M:%S"))

    def close(self) -> None:
        self._clock.cancel()
