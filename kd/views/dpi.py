"""Display scaling: a DPI-aware process on Windows, and the Tk scaling that matches it.

Windows 10 laptops run at 125–150 % display scaling. A process that has not declared
itself DPI-aware gets a 96-DPI desktop and Windows stretches its bitmap: every window is
blurry. So ``main.py`` calls ``enable()`` on the GUI route before any Tk window exists:

1. ``shcore.SetProcessDpiAwareness(1)`` (PROCESS_SYSTEM_DPI_AWARE; Windows 8.1 and later):
   ``S_OK`` → ``"shcore"``; ``E_ACCESSDENIED`` (the awareness was set already, by the
   exe's manifest or an earlier call) → ``"already"``;
2. otherwise (Windows 7 and 8.0 have no ``shcore.dll``, or the call failed)
   ``user32.SetProcessDPIAware()``: nonzero → ``"user32"``, zero → ``"unaware"``;
3. not Windows → ``"not-windows"``, nothing is called. Nothing here raises: a failure is
   logged and the window is merely blurry.

System-aware, not per-monitor: Tk 8.6 does not re-layout when a window moves to a
monitor of another DPI, so the system DPI is the one the window is drawn for.

Tk's scaling (pixels per point) then has to match, so that point-sized fonts and the
pixel sizes ttkbootstrap derives from ``tk scaling`` (its ``utility.scale_size``) grow
together. ``tk_scaling()`` is what ``kd.views.start.make_window`` hands to
``ttk.Window(scaling=...)`` (set before the theme builds its images):

- ``KD_UI_SCALE=<factor>`` in the environment (e.g. ``1.25``, any platform: Linux HiDPI,
  or checking the layout at 125 % under Xvfb) → ``96/72 × factor``;
- Windows → the system DPI / 72 (``user32.GetDpiForSystem``, Windows 10 1607+; else
  ``GetDeviceCaps(LOGPIXELSX)`` of the screen);
- elsewhere → None (Tk keeps its own).

``factor(scaling)`` is the scaling relative to 96 DPI (1.0 for None): the window's pixel
geometry (1366x768, minimum 1000x660) is multiplied by it, so that every screen fits at
1024x700 *logical* size whatever the scaling (docs/ui-shell.md "Display scaling").
"""

import logging
import os
import sys
from typing import Any, Callable, Optional

log = logging.getLogger(__name__)

SCALE_ENV = "KD_UI_SCALE"
#: Tk's scaling at 96 DPI (100 %): 96 pixels per inch / 72 points per inch
BASE_SCALING = 96.0 / 72.0
PROCESS_SYSTEM_DPI_AWARE = 1
E_ACCESSDENIED = -2147024891  # 0x80070005 as the signed HRESULT ctypes returns
LOGPIXELSX = 88
#: a scale factor outside this range is a typo, not a display
MIN_SCALE, MAX_SCALE = 0.5, 4.0

Libraries = Callable[[str], Any]


def _windll(name: str) -> Any:
    import ctypes  # noqa: PLC0415 - Windows only

    return getattr(ctypes.windll, name)  # type: ignore[attr-defined]  # OSError when the DLL is missing


def enable(system: Optional[str] = None, libraries: Optional[Libraries] = None) -> str:
    """Make this process DPI-aware on Windows (see the module docstring); returns how.

    ``system`` (default ``sys.platform``) and ``libraries`` (``name → DLL``, default
    ``ctypes.windll``) are for tests. Call it before the first Tk window.
    """
    if (system or sys.platform) != "win32":
        return "not-windows"
    load = libraries or _windll
    try:
        result = load("shcore").SetProcessDpiAwareness(PROCESS_SYSTEM_DPI_AWARE)
    except (OSError, AttributeError) as e:  # Windows 7 / 8.0: no shcore.dll
        log.debug("SetProcessDpiAwareness unavailable: %r", e)
    else:
        if result == 0:
            log.info("display scaling: process DPI-aware (SetProcessDpiAwareness)")
            return "shcore"
        if result == E_ACCESSDENIED:
            log.info("display scaling: the process was DPI-aware already")
            return "already"
        log.warning("SetProcessDpiAwareness failed (HRESULT %#x)", result & 0xFFFFFFFF)
    try:
        ok = load("user32").SetProcessDPIAware()
    except (OSError, AttributeError) as e:
        log.warning("display scaling: cannot make the process DPI-aware: %r", e)
        return "unaware"
    if ok:
        log.info("display scaling: process DPI-aware (SetProcessDPIAware)")
        return "user32"
    log.warning("display scaling: SetProcessDPIAware failed; the window may be blurry")
    return "unaware"


def system_dpi(libraries: Optional[Libraries] = None) -> Optional[int]:
    """The Windows system DPI (96 at 100 %), or None when it cannot be read."""
    load = libraries or _windll
    try:
        dpi = int(load("user32").GetDpiForSystem())
        if dpi > 0:
            return dpi
    except (OSError, AttributeError) as e:  # before Windows 10 1607
        log.debug("GetDpiForSystem unavailable: %r", e)
    try:
        user32, gdi32 = load("user32"), load("gdi32")
        dc = user32.GetDC(0)
        try:
            dpi = int(gdi32.GetDeviceCaps(dc, LOGPIXELSX))
        finally:
            user32.ReleaseDC(0, dc)
    except (OSError, AttributeError) as e:
        log.warning("display scaling: cannot read the screen's DPI: %r", e)
        return None
    return dpi if dpi > 0 else None


def tk_scaling(system: Optional[str] = None, libraries: Optional[Libraries] = None,
               environ: Optional[Any] = None) -> Optional[float]:
    """Tk's scaling for the first window (pixels per point), or None to keep Tk's own."""
    env = os.environ if environ is None else environ
    wanted = env.get(SCALE_ENV, "").strip()
    if wanted:
        try:
            scale = float(wanted.rstrip("%")) / (100.0 if wanted.endswith("%") else 1.0)
        except ValueError:
            scale = 0.0
        if MIN_SCALE <= scale <= MAX_SCALE:
            return BASE_SCALING * scale
        log.warning("%s=%r is not a scale factor between %s and %s; ignored", SCALE_ENV, wanted,
                    MIN_SCALE, MAX_SCALE)
    if (system or sys.platform) != "win32":
        return None
    dpi = system_dpi(libraries)
    return dpi / 72.0 if dpi else None


def factor(scaling: Optional[float]) -> float:
    """The scaling relative to 96 DPI: what the window's pixel sizes are multiplied by."""
    return scaling / BASE_SCALING if scaling else 1.0
