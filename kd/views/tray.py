"""The tray icon (pystray): 显示主窗口 and 退出系统, in its own thread.

``Tray(post, show, exit_system, root=None)``: the icon's callbacks run in pystray's thread
and only ``post`` the shell's methods to the Tk thread (``Shell.post``); nothing here
touches Tk outside a posted call. ``tray_enabled()`` is False with ``KD_NO_TRAY=1``
(tests, screenshots) or, off Windows/macOS, without ``DISPLAY``; ``start()`` returns False
when pystray cannot run (no backend), and the shell then treats the close button as 退出系统.

Backends (pystray picks one at import; ``PYSTRAY_BACKEND`` forces one):

- **win32** (Windows): the icon with its tooltip 考点管理系统 and the menu 显示主窗口 (default,
  a double-click) / 退出系统 — pystray's own, unchanged.
- **xorg** (Linux without AppIndicator/GTK bindings: python-xlib, an XEmbed tray icon).
  Xlib writes the icon window's ``WM_NAME`` as an ISO-8859-1 ``STRING``, so a Chinese
  title raises ``UnicodeEncodeError('latin-1', …)`` and there would be no icon at all. The
  icon is therefore created with the ASCII title ``XORG_TITLE`` (``WM_NAME``) and the
  Chinese title is set as ``_NET_WM_NAME`` (``UTF8_STRING``, what trays that show a name
  read). pystray's xorg window does not select ``ButtonPress`` (a click on the icon did
  nothing); it is selected here. The xorg icon has no menu of its own: a left click is 显示主窗口, a right click
  opens the same two entries as a Tk popup menu at the pointer (posted to the Tk thread;
  without ``root`` it is 退出系统, which asks first).
- **appindicator / gtk**: used by pystray when PyGObject is installed (not a dependency);
  they take the Chinese title as it is.

``docked()`` says whether the icon is in a tray now: always True on win32/darwin/gtk,
on xorg only once a tray manager (the ``_NET_SYSTEM_TRAY_S<screen>`` selection owner) took
it. The shell hides the window on its close button only while ``docked()``, so on a desktop
without a notification area the window is never hidden out of reach.
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
#: the xorg icon window's WM_NAME (ISO-8859-1 only); the Chinese title goes to _NET_WM_NAME
XORG_TITLE = "kaodian"
SHOW, EXIT = "显示主窗口", "退出系统"


def tray_enabled() -> bool:
    if os.environ.get("KD_NO_TRAY") == "1":
        return False
    if sys.platform.startswith("win") or sys.platform == "darwin":
        return True
    return bool(os.environ.get("DISPLAY"))


def backend_name(icon_class: Any) -> str:
    """``xorg``, ``win32``, ``gtk``, ``appindicator``, ``darwin`` or ``dummy`` of a pystray ``Icon`` class."""
    return str(getattr(icon_class, "__module__", "")).rsplit(".", 1)[-1].lstrip("_")


class Tray:
    def __init__(self, post: Callable[[Callable[[], None]], Any], show: Callable[[], None],
                 exit_system: Callable[[], None], root: Any = None) -> None:
        self._post, self._show, self._exit = post, show, exit_system
        self._root = root
        self.icon: Any = None
        self.backend = ""
        self._thread: Optional[threading.Thread] = None
        self._popup: Any = None

    # pystray callbacks (pystray's thread): only post to the Tk thread
    def on_show(self, icon: Any = None, item: Any = None) -> None:
        self._post(self._show)

    def on_exit(self, icon: Any = None, item: Any = None) -> None:
        self._post(self._exit)

    def on_menu(self, x: int, y: int) -> None:
        """The xorg icon's right click at screen position (x, y): the menu as a Tk popup."""
        if self._root is None:
            self._post(self._exit)
            return
        self._post(lambda: self.popup(x, y))

    def popup(self, x: int, y: int) -> Any:
        """(Tk thread) 显示主窗口 / 退出系统 as a popup menu at (x, y); returns the menu."""
        import tkinter as tk  # noqa: PLC0415 - only the Tk thread gets here

        if self._popup is None:
            self._popup = tk.Menu(self._root, tearoff=0)
            self._popup.add_command(label=SHOW, command=self._show)
            self._popup.add_command(label=EXIT, command=self._exit)
        try:
            self._popup.tk_popup(x, y)
        finally:
            self._popup.grab_release()
        return self._popup

    def start(self) -> bool:
        """Show the icon in its own thread; False when pystray is not usable here."""
        try:
            import pystray  # noqa: PLC0415 - picks a backend at import, needs a display
            from PIL import Image  # noqa: PLC0415

            self.backend = backend_name(pystray.Icon)
            image = Image.open(paths.resource_path(*ICON_PNG))
            menu = pystray.Menu(pystray.MenuItem(SHOW, self.on_show, default=True),
                                pystray.MenuItem(EXIT, self.on_exit))
            title = XORG_TITLE if self.backend == "xorg" else branding.PRODUCT
            self.icon = pystray.Icon("kaodian", image, title, menu)
            if self.backend == "xorg":
                self._adapt_xorg(self.icon)
        except Exception as e:  # noqa: BLE001 - any backend failure means: no tray
            log.warning("no tray icon: %r", e)
            self.icon = None
            return False
        log.info("tray icon: pystray %s backend", self.backend)
        self._thread = threading.Thread(target=self._run, name="tray", daemon=True)
        self._thread.start()
        return True

    def _adapt_xorg(self, icon: Any) -> None:
        """Clicks selected, the Chinese title as _NET_WM_NAME, the right click as the menu (pystray 0.19's
        xorg icon keeps its X display, window and event handlers in these attributes)."""
        import Xlib.X  # noqa: PLC0415 - python-xlib, pystray's xorg dependency

        display, window = icon._display, icon._window
        # pystray selects no ButtonPress on its window, so a click never reaches it (pystray issue 151)
        window.change_attributes(event_mask=Xlib.X.ExposureMask | Xlib.X.StructureNotifyMask | Xlib.X.ButtonPressMask)
        try:
            window.change_property(display.intern_atom("_NET_WM_NAME"), display.intern_atom("UTF8_STRING"), 8,
                                   branding.PRODUCT.encode("utf-8"))
            display.flush()
        except Exception as e:  # noqa: BLE001 - a name is a nicety; the icon works without it
            log.warning("tray icon: no UTF-8 name: %r", e)

        def pressed(event: Any) -> None:  # pystray's X thread
            if event.detail == 1:
                icon()  # the default item: 显示主窗口
            elif event.detail == 3:
                self.on_menu(int(event.root_x), int(event.root_y))

        icon._message_handlers[Xlib.X.ButtonPress] = pressed

    def docked(self) -> bool:
        """Whether the icon is in a tray now (the window may be hidden to it)."""
        if self.icon is None:
            return False
        if self.backend != "xorg":
            return True
        return bool(getattr(self.icon, "_systray_manager", None))

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
