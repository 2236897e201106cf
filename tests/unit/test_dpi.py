"""kd.views.dpi: the Windows DPI-awareness guard and the Tk scaling it picks.

The Windows DLLs do not exist here, so ``libraries`` is a small table of recording
functions answering as the Windows API does (HRESULTs, BOOLs, a missing DLL is an
OSError, a missing export an AttributeError); on Windows the same calls reach
``ctypes.windll``.
"""

import pytest

from kd.views import dpi


class Dll:
    """A DLL's exports: name → value returned (or an exception raised); calls are recorded."""

    def __init__(self, calls, name, **exports):
        self._calls, self._name, self._exports = calls, name, exports

    def __getattr__(self, attr):
        if attr not in self._exports:
            raise AttributeError("function '{}' not found".format(attr))
        answer = self._exports[attr]

        def call(*args):
            self._calls.append((self._name, attr) + args)
            if isinstance(answer, BaseException):
                raise answer
            return answer

        return call


def windows(calls, **dlls):
    def load(name):
        if name not in dlls:
            raise OSError("[WinError 126] {}.dll not found".format(name))
        return Dll(calls, name, **dlls[name])
    return load


def test_nothing_is_called_off_windows():
    calls = []
    assert dpi.enable("linux", windows(calls, shcore={"SetProcessDpiAwareness": 0})) == "not-windows"
    assert calls == []


def test_windows_8_1_and_later_use_shcore_system_aware():
    calls = []
    assert dpi.enable("win32", windows(calls, shcore={"SetProcessDpiAwareness": 0},
                                       user32={"SetProcessDPIAware": 1})) == "shcore"
    assert calls == [("shcore", "SetProcessDpiAwareness", 1)]


def test_already_aware_is_accepted_without_the_fallback():
    calls = []
    assert dpi.enable("win32", windows(calls, shcore={"SetProcessDpiAwareness": dpi.E_ACCESSDENIED},
                                       user32={"SetProcessDPIAware": 1})) == "already"
    assert [c[1] for c in calls] == ["SetProcessDpiAwareness"]


def test_windows_7_has_no_shcore_and_falls_back_to_user32():
    calls = []
    assert dpi.enable("win32", windows(calls, user32={"SetProcessDPIAware": 1})) == "user32"
    assert calls == [("user32", "SetProcessDPIAware")]


def test_a_failing_shcore_call_falls_back_too():
    calls = []
    result = dpi.enable("win32", windows(calls, shcore={"SetProcessDpiAwareness": -2147024809},  # E_INVALIDARG
                                         user32={"SetProcessDPIAware": 1}))
    assert result == "user32"


@pytest.mark.parametrize("user32", [{"SetProcessDPIAware": 0}, {}])
def test_nothing_works_is_unaware_not_an_error(user32):
    assert dpi.enable("win32", windows([], shcore={}, user32=user32)) == "unaware"


def test_scaling_on_windows_is_the_system_dpi():
    load = windows([], user32={"GetDpiForSystem": 144})
    assert dpi.tk_scaling("win32", load, environ={}) == pytest.approx(2.0)
    assert dpi.factor(dpi.tk_scaling("win32", load, environ={})) == pytest.approx(1.5)


def test_before_windows_10_1607_the_screen_dc_tells_the_dpi():
    calls = []
    load = windows(calls, user32={"GetDC": 77, "ReleaseDC": 1}, gdi32={"GetDeviceCaps": 120})
    assert dpi.tk_scaling("win32", load, environ={}) == pytest.approx(120 / 72)
    assert ("gdi32", "GetDeviceCaps", 77, dpi.LOGPIXELSX) in calls and ("user32", "ReleaseDC", 0, 77) in calls


def test_no_dpi_keeps_tks_own_scaling():
    assert dpi.tk_scaling("win32", windows([]), environ={}) is None
    assert dpi.tk_scaling("linux", windows([]), environ={}) is None
    assert dpi.factor(None) == 1.0


@pytest.mark.parametrize("value, scale", [("1.25", 1.25), ("150%", 1.5), (" 2 ", 2.0)])
def test_the_environment_sets_the_scale_on_any_platform(value, scale):
    scaling = dpi.tk_scaling("linux", windows([]), environ={dpi.SCALE_ENV: value})
    assert dpi.factor(scaling) == pytest.approx(scale)


@pytest.mark.parametrize("value", ["big", "0", "9", "-1"])
def test_a_nonsense_scale_is_ignored(value):
    assert dpi.tk_scaling("linux", windows([]), environ={dpi.SCALE_ENV: value}) is None
