"""Shared fixtures.

GUI tests use the ``tk_root`` fixture: it needs a display (pytest-xvfb starts Xvfb when
there is none). Without one they skip, except when ``KD_REQUIRE_GUI=1`` (CI): then a
missing display is a failure, so GUI tests can never silently stop running.

Nothing of a test's Tk roots outlives the test (tests/support/tkroot.py): ``tk_root`` and
tests/gui/conftest.py's ``gui_root`` close theirs with ``close_tk_root`` (pending idle
work first: a ttk ``<<ThemeChanged>>`` round left behind would print a Tcl background
error into the next test's event loop), and after each GUI test ``free_tk_roots()`` frees
every root it left, with its widgets and images, on the main thread (the Tk thread).
Freed later by whatever thread ran the next garbage collection, a worker's, they warn
from ``Image.__del__`` ("main thread is not in main loop") or abort the run
("Tcl_AsyncDelete: async handler deleted by the wrong thread").

No test binds a fixed port: ``KD_LAN_PORT=0`` is set for the whole run, so every
``main.py`` a test starts (in-process or as a child, which inherits the environment)
takes a free port unless it names one, even when 9190 is in use on the machine.

``external_dir``: a fresh folder on another volume than ``tmp_path`` (the USB stick of
第一步 备份到外部存储 and ``backup-external``, tests/support/external.py), removed after the
test; the test skips when no other volume is at hand.
"""

import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from tests.support.external import external_folder, remove_external  # noqa: E402 - needs ROOT on sys.path
from tests.support.tkroot import close_tk_root, free_tk_roots  # noqa: E402 - needs ROOT on sys.path

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
    close_tk_root(root)


@pytest.fixture
def external_dir(tmp_path):
    """A folder on another volume than the data folder (the USB stick of 第一步)."""
    folder = external_folder(tmp_path)
    yield folder
    remove_external(folder)


#: the fixtures that make a Tk root, and the folder of the GUI tests
TK_FIXTURES = frozenset({"tk_root", "gui_root"})
GUI_TESTS = os.path.join(ROOT, "tests", "gui") + os.sep


def may_leave_tk_roots(item) -> bool:
    """A test under tests/gui, marked ``gui`` or with a Tk fixture."""
    return (str(item.path).startswith(GUI_TESTS) or item.get_closest_marker("gui") is not None
            or bool(TK_FIXTURES.intersection(getattr(item, "fixturenames", ()))))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item, nextitem):
    try:
        return (yield)
    finally:
        # pytest let go of the test's fixtures and arguments: free its Tk roots here, on the Tk thread
        if may_leave_tk_roots(item):
            free_tk_roots()
