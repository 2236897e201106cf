"""The tray icon (pystray): 显示主窗口 and 退出系统, in its own thread.

``Tray(post, show, exit_system)``: the menu callbacks run in pystray's thread and only
``post`` the shell's methods to the Tk thread (``Shell.post``); nothing here touches Tk.
``tray_enabled()`` is False with ``KD_NO_TRAY=1`` (tests, screenshots) or, off
Windows/macOS, without ``DISPLAY``; ``start()`` returns False when pystray cannot run
(no backend), and the shell then treats the close button as 退出系统.
"""

import logging
import os
import sys
import threading
from typing import Any, Callable, Optional

from kd import paths
from kd.views import branding

log = logging.getLogger(__name__)

ICON_PNG = ("assets", "kaodian.png")


def tray_enabled() -> bool:
    if os.environ.get("KD_NO_TRAY") == "1":
        return False
    if sys.platform.startswith("win") or sys.platform == "darwin":
        return True
    return bool(os.environ.get("DISPLAY"))


class Tray:
    def __init__(self, post: Callable[[Callable[[], None]], Any], show: Callable[[], None],
                 exit_system: Callable[[], None]) -> None:
        self._post, self._show, self._exit = post, show, exit_system
        self.icon: Any = None
        self._thread: Optional[threading.Thread] = None

    # pystray menu callbacks (pystray's thread): only post to the Tk thread
    def on_show(self, icon: Any = None, item: Any = None) -> None:
        self._post(self._show)

    def on_exit(self, icon: Any = None, item: Any = None) -> None:
        self._post(self._exit)

    def start(self) -> bool:
        """Show the icon in its own thread; False when pystray is not usable here."""
        try:
            import pystray  # noqa: PLC0415 - picks a backend at import, needs a display
            from PIL import Image  # noqa: PLC0415

            image = Image.open(paths.resource_path(*ICON_PNG))
            menu = pystray.Menu(pystray.MenuItem("显示主窗口", self.on_show, default=True),
                                pystray.MenuItem("退出系统", self.on_exit))
            self.icon = pystray.Icon("kaodian", image, branding.PRODUCT, menu)
        except Exception as e:  # noqa: BLE001 - any backend failure means: no tray
            log.warning("no tray icon: %r", e)
            return False
        self._thread = threading.Thread(target=self._run, name="tray", daemon=True)
        self._thread.start()
        return True

    def _run(self) -> None:
        try:
            self.icon.run()
        except Exception:
            log.exception("the tray icon stopped")

    def stop(self) -> None:
        if self.icon is not None:
            try:
                self.icon.stop()
            except Exception as e:  # noqa: BLE001
                log.warning("stopping the tray icon: %r", e)
        if self._thread is not None:
            self._thread.join(5)
