"""The one-file exe's splash screen: shown by the bootloader at once, closed when the login window is painted.

A one-file exe unpacks itself before Python starts (about a second, more on a low-spec
PC with antivirus); a user who sees nothing double-clicks again. ``kaodian.spec``
therefore has PyInstaller's ``Splash`` target: the bootloader unpacks the few Tcl/Tk
files the splash needs first and shows ``assets/splash.png`` (drawn by
``tools/make_splash.py``) before it unpacks the rest. Python reaches that window
through the ``pyi_splash`` module, which exists only in a frozen build with a splash;
importing it connects to the bootloader (a TCP socket on 127.0.0.1 whose port the
bootloader passes in ``_PYI_SPLASH_IPC``), ``pyi_splash.close()`` ends the splash.

``install()`` (``main.py``, first thing) imports it when there is one and closes the
splash at the first of:

- the first painted start screen (``kd.views.hooks.PAINTED``): once the root window is
  mapped (its ``<Map>``: the X server or Windows shows it some time after Tk asked) and
  drawn (the next idle time), so the login window replaces the splash without a blank
  moment; ``FALLBACK_MS`` after ``PAINTED`` at the latest;
- a start failure's message box (``hooks.FATAL``: the box must not sit under the splash);
- ``close()`` (``main.py`` calls it for every route that opens no window: a command,
  ``--headless``, and again after the GUI returned).

From source, or in a build without a splash, ``install()`` and ``close()`` do nothing.
Closing never raises (a splash that is gone already is not an error).
"""

import logging
import os
import sys
from typing import Any, Callable, List

from kd.views import hooks

log = logging.getLogger(__name__)

#: the bootloader's splash port (set only when it shows one); importing pyi_splash without it
#: logs a warning with a traceback on stderr, noise for every command on a PC without a display
SPLASH_ENV = "_PYI_SPLASH_IPC"
#: when the painted window never shows, the splash is closed after this long anyway (ms)
FALLBACK_MS = 10000

_splash: Any = None
_unwatch: List[Callable[[], None]] = []


def _module() -> Any:
    """``pyi_splash`` when this is a frozen build with a splash screen, else None."""
    if not getattr(sys, "frozen", False) or not os.environ.get(SPLASH_ENV):
        return None  # from source; or the bootloader showed no splash (no display, suppressed)
    try:
        import pyi_splash  # type: ignore[import-not-found]  # noqa: PLC0415 - only in a frozen build
    except ImportError:
        return None
    return pyi_splash


def install(module: Any = None) -> Callable[[], None]:
    """Close the splash when the first start screen is painted; returns ``close``.

    ``module`` stands for ``pyi_splash`` (default: the frozen build's, if any).
    """
    global _splash
    _splash = module if module is not None else _module()
    if _splash is None:
        return close

    waiting: List[bool] = []

    def painted(root: Any, screen: str) -> None:
        if waiting:  # the first painted screen decides
            return
        waiting.append(True)
        if root.winfo_viewable():
            root.after_idle(lambda: _close_after_paint(root))
            return
        # the window is mapped by the X server / the window manager after Tk asked: wait for it
        def mapped(event: Any) -> None:
            if event.widget is root:
                root.unbind("<Map>", binding)
                root.after_idle(lambda: _close_after_paint(root))

        binding = root.bind("<Map>", mapped, add="+")
        timer = root.after(FALLBACK_MS, close)  # never mapped (hidden): the splash must not stay
        _unwatch.append(lambda: _cancel(root, timer))

    _unwatch.append(hooks.watch(hooks.PAINTED, painted))
    _unwatch.append(hooks.watch(hooks.FATAL, lambda root: close()))
    return close


def _cancel(root: Any, timer: str) -> None:
    try:
        root.after_cancel(timer)
    except Exception as e:  # noqa: BLE001 - the root is destroyed already (Tk's TclError): nothing to cancel
        log.debug("splash fallback timer: %r", e)


def _close_after_paint(root: Any) -> None:
    try:
        root.update_idletasks()  # the login window is drawn before the splash goes
    finally:
        close()


def close() -> None:
    """Close the splash (once; nothing when there is none)."""
    global _splash
    splash, _splash = _splash, None
    while _unwatch:
        _unwatch.pop()()
    if splash is None:
        return
    try:
        if splash.is_alive():
            splash.close()
            log.info("splash screen closed")
    except (RuntimeError, ConnectionError, OSError) as e:  # the bootloader's side is gone already
        log.debug("closing the splash screen: %r", e)
