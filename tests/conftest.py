"""Shared fixtures.

GUI tests use the ``tk_root`` fixture: it needs a display (pytest-xvfb starts Xvfb when
there is none). Without one they skip, except when ``KD_REQUIRE_GUI=1`` (CI): then a
missing display is a failure, so GUI tests can never silently stop running.

No test binds a fixed port: ``KD_LAN_PORT=0`` is set for the whole run, so every
``main.py`` a test starts (in-process or as a child, which inherits the environment)
takes a free port unless it names one, even when 9190 is in use on the machine.
"""

import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

os.environ["KD_LAN_PORT"] = "0"  # main.py's --lan-port default: a free port, never 9190


def pytest_addoption(parser):
    parser.addoption("--crash-kills", type=int, default=200, help="SIGKILLs in the crash test (CI minimum 200)")
    parser.addoption("--crash-seed", type=int, default=None, help="seed of the crash test's random kills")


def _no_display(reason: str) -> None:
    if os.environ.get("KD_REQUIRE_GUI") == "1":
        pytest.fail("KD_REQUIRE_GUI=1 but no display: " + reason, pytrace=False)
    pytest.skip("no display: " + reason)


@pytest.fixture
def tk_root():
    """A real Tk root window on the (virtual) display, destroyed after the test."""
    try:
        import tkinter
    except ImportError as e:  # pragma: no cover - depends on the interpreter build
        _no_display(f"tkinter missing: {e}")
    try:
        root = tkinter.Tk()
    except tkinter.TclError as e:
        _no_display(str(e))
    root.withdraw()
    yield root
    root.destroy()
