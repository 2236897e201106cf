"""The restart after 系统初始化, 模考转正考 and 系统恢复 is a new process (kd.relaunch).

(系统初始化 both from the 更多 menu and from the 初始化 link of 系统设置.)

``main.main()`` runs the GUI route here, in the test process, on a fresh drill data
folder: a watcher of ``kd.views.hooks.FLOW`` installs scripted dialogs and the Tk-thread guard and drives
the real screens (login, the forced password change, 系统设置, the main window) up to the
action in the 更多 menu. The shell tells the user, the flow ends with ``RESTART``, main
releases the instance lock, spawns the new instance (``kd.relaunch.spawn``, watched by a
spy that keeps its ``Popen``) and returns 0 — with the old App's threads ended and its
platform client closed. The CHILD (a real ``main.py`` process, the same arguments) must
paint its login window with the ttkbootstrap theme (``KD_STARTUP_PROBE_FILE``: the theme
and colours Tk resolves), run as another pid, hold the instance lock, and leave no Tcl
``bgerror`` on stderr. The child is terminated at the end.
"""

import json
import logging
import os
import subprocess
import threading
import time

import pytest

from kd import relaunch
from kd.errors import InstanceRunningError
from kd.store.instance import LOCK_NAME, InstanceLock
from kd.views import hooks, start
from kd.views import probe as startup_probe
from kd.views.login import LoginScreen, SetupScreen
from kd.views.password import PasswordForm
from tests.support.sites import require_display
from tests.support.ui import ScriptedDialogs, install_tk_guard

pytestmark = pytest.mark.gui

PASSWORD = "restart-2026"
#: a small drill site (the simulator keeps the site it made first in DATA/drill/platform)
DRILL_SITE = {"rooms": 2, "sessions": 1, "candidates": 3, "room_kb": 4}


def cosmo():
    from ttkbootstrap.themes.standard import STANDARD_THEMES

    return STANDARD_THEMES[start.THEME]["colors"]


class Driver:
    """Steps a generator on the Tk thread: each ``yield (predicate, what, timeout)`` waits
    (a 20 ms timer) until ``predicate()`` is truthy and sends its value back. A failure
    or a deadline ends the window (``failure`` says why)."""

    def __init__(self, flow, script):
        self.flow = flow
        self.script = script
        self.failure = None
        self.done = False
        self._wait = None
        flow.root.after(20, self._tick)

    def _tick(self):
        try:
            value = None
            if self._wait is not None:
                predicate, what, deadline = self._wait
                value = predicate()
                if not value:
                    if time.monotonic() > deadline:
                        raise AssertionError("timed out waiting for {}".format(what))
                    self.flow.root.after(20, self._tick)
                    return
            predicate, what, timeout = self.script.send(value) if self._wait else next(self.script)
            self._wait = (predicate, what, time.monotonic() + timeout)
        except StopIteration:
            self.done = True
            return
        except BaseException as e:  # noqa: BLE001 - reported by the test
            self.failure = e
            self.flow.root.quit()
            return
        self.flow.root.after(20, self._tick)


def screen_of(flow, cls):
    return isinstance(flow.screen, cls) and flow.screen


def to_setup(flow, seen):
    """Log in with the default password and change it: the 系统设置 screen (its value)."""
    login = yield (lambda: screen_of(flow, LoginScreen) and flow.screen.core is not None and flow.screen,
                   "login", 90)
    seen["client"] = flow.app.ctx.platform.current()  # the platform client of this App
    login.password.insert(0, "888")
    login.button.invoke()
    form = yield (lambda: screen_of(flow, PasswordForm), "forced change", 30)
    form.old.insert(0, "888")
    for entry in (form.new, form.again):
        entry.insert(0, PASSWORD)
    form.ok.invoke()
    setup = yield (lambda: screen_of(flow, SetupScreen), "系统设置", 30)
    return setup


def to_main_window(flow, mode, seen):
    """系统设置 (``mode``), then the main window."""
    setup = yield from to_setup(flow, seen)
    if mode == "mock":
        setup.mock.invoke()
    setup.button.invoke()
    yield (lambda: flow.shell is not None, "main window", 30)


def initialize(flow, tmp_path, seen):
    yield from to_main_window(flow, "formal", seen)
    flow.dialogs.plan("confirm", True, True).plan("ask_text", flow.app.simulator.site_code)
    flow.shell.more.invoke("系统初始化")


def setup_initialize(flow, tmp_path, seen):
    """The 初始化 link of 系统设置 (before the main window; no site code yet)."""
    setup = yield from to_setup(flow, seen)
    flow.dialogs.plan("confirm", True, True)
    setup.init_link.invoke()


def to_formal(flow, tmp_path, seen):
    yield from to_main_window(flow, "mock", seen)
    yield (lambda: "(当前是模考)" in flow.root.title(), "mock title", 30)
    flow.dialogs.plan("confirm", True)
    flow.shell.more.invoke("模考转正考")


def restore(flow, tmp_path, seen):
    yield from to_main_window(flow, "formal", seen)
    shell, loaded = flow.shell, []
    shell.call(lambda: shell.core.loading.load_online(shell.user), loaded.append)
    yield (lambda: loaded, "导入考务", 60)
    folder = tmp_path / "backup"
    folder.mkdir()
    flow.dialogs.plan("choose_dir", str(folder)).plan("ask_text", "考前")
    shell.more.invoke("系统备份")
    yield (lambda: any(m[1] == "系统备份" for m in flow.dialogs.messages), "系统备份", 60)
    bak = next(str(p) for p in folder.iterdir() if p.suffix == ".bak")
    flow.dialogs.plan("open_file", bak)
    shell.more.invoke("系统恢复")
    dialog = shell.more.restore_dialog
    yield (lambda: dialog.phase == "ready", "the restore preview", 60)
    dialog.ok.invoke()


#: the 更多 entries that end with a restart (ASCII test ids)
ACTIONS = {"initialize": initialize, "to_formal": to_formal, "restore": restore,
           "setup_initialize": setup_initialize}


@pytest.fixture
def isolated_logging():
    """main.setup_logging reconfigures the root logger: put it back afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    for handler in root.handlers[:]:
        if handler not in handlers:
            root.removeHandler(handler)
            handler.close()
    for handler in handlers:
        if handler not in root.handlers:
            root.addHandler(handler)
    root.setLevel(level)


@pytest.fixture
def fresh_style(capfd):
    """A fresh ttkbootstrap Style, and nothing left over from earlier roots of this process.

    Tcl keeps idle handlers per thread: a root destroyed by an earlier test with ttk's
    ``<<ThemeChanged>>`` round still pending would fire it (a ``bgerror`` naming a destroyed
    application) on this test's first event loop. Run them now and drop what they print.
    """
    import gc
    import tkinter

    from ttkbootstrap.style import Style

    tkinter.Tcl().call("update")
    capfd.readouterr()
    Style.instance = None  # the per-process Style: bound to whichever root made it
    yield
    Style.instance = None
    gc.collect()  # widgets in cycles are freed here, on the Tk thread


def probes(path):
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def wait_child_probe(child, path, screen, timeout=120.0):
    """The child's probe line for ``screen``; waits on the child process meanwhile."""
    deadline = time.monotonic() + timeout
    while True:
        lines = [p for p in probes(path) if p["pid"] == child.pid and p["screen"] == screen]
        if lines:
            return lines[0]
        if time.monotonic() > deadline:
            raise AssertionError("the new instance drew no {!r} screen within {} s".format(screen, timeout))
        try:
            rc = child.wait(0.1)  # returns early (and fails) when the child died
        except subprocess.TimeoutExpired:
            continue
        raise AssertionError("the new instance exited with {} before drawing {!r}".format(rc, screen))


@pytest.mark.parametrize("action", list(ACTIONS))
def test_restart_is_a_new_process_with_the_theme(action, tmp_path, monkeypatch, capfd, isolated_logging,
                                                 fresh_style):
    require_display()
    import main
    from kd.platform.simulator import start_simulator

    data = tmp_path / "data"
    start_simulator(str(data.joinpath("drill", "platform")), 0, **DRILL_SITE).shutdown()
    probe_file = str(tmp_path / "probe.jsonl")
    for name in ("KD_DATA_DIR", "KD_LOCK_URL", startup_probe.PROBE_ENV, relaunch.RELAUNCHED_ENV):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KD_NO_TRAY", "1")
    monkeypatch.setenv(startup_probe.PROBE_FILE_ENV, probe_file)

    seen = {}

    def on_flow(flow):
        seen["guard"] = install_tk_guard(flow.root)
        flow.dialogs = ScriptedDialogs(flow.root)
        seen["flow"] = flow
        seen["driver"] = Driver(flow, ACTIONS[action](flow, tmp_path, seen))

    spawned = []
    real_spawn = relaunch.spawn

    def spawn(*args, **kw):
        child = real_spawn(*args, **kw)
        spawned.append(child)
        return child

    monkeypatch.setattr(relaunch, "spawn", spawn)
    before = set(threading.enumerate())

    unwatch = hooks.watch(hooks.FLOW, on_flow)
    try:
        rc = main.main(["--data-dir", str(data), "--lan-port", "0"])
    finally:
        unwatch()
    try:
        flow, driver = seen["flow"], seen["driver"]
        assert driver.failure is None, repr(driver.failure)
        assert rc == 0 and driver.done and flow.outcome == start.RESTART
        assert flow.dialogs.messages[-1][1] == "需要重新启动"
        flow.dialogs.check()
        assert not flow.dialogs.errors and not seen["guard"].violations
        assert len(spawned) == 1
        child = spawned[0]

        # the old process: the App's threads ended, its platform client is closed
        left = [t for t in threading.enumerate() if t not in before]
        for thread in left:  # a socket's delayed close may still be finishing
            thread.join(10)
        assert not [t.name for t in left if t.is_alive()]
        assert seen["client"] is not None and seen["client"]._closed.is_set()

        # the new process: the themed login window, another pid, holding the lock
        ready = wait_child_probe(child, probe_file, "ready")
        login = [p for p in probes(probe_file) if p["pid"] == child.pid and p["screen"] == "login"]
        assert login and ready["pid"] != os.getpid()
        colours = cosmo()
        for probe in login + [ready]:
            assert probe["theme"] == start.THEME, probe
            assert probe["background"].lower() == colours["bg"].lower(), probe
            assert probe["danger"].lower() == colours["danger"].lower(), probe
            assert probe["primary"].lower() == colours["primary"].lower(), probe
        with pytest.raises(InstanceRunningError) as refused:
            InstanceLock(str(data)).acquire()
        assert str(child.pid) in refused.value.cause
        assert (data / LOCK_NAME).read_text(encoding="ascii").strip() == str(child.pid)
        log = (data / "logs" / "kaodian.log").read_text(encoding="utf-8")
        assert "restarting: spawning" in log and os.path.abspath(main.__file__) in log
        assert child.poll() is None
    finally:
        for child in spawned:
            if child.poll() is None:
                child.terminate()
            child.wait(60)
    err = capfd.readouterr().err
    assert "bgerror" not in err and "application has been destroyed" not in err, err
    assert "Traceback" not in err, err
