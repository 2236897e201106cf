"""kd.relaunch and the instance lock's wait: the new instance's command line and
environment (source and PyInstaller one-file), a real detached child, and a relaunched
``main.py`` that waits for the data folder instead of refusing with exit 3.
(The GUI restart end to end: tests/gui/test_restart.py.)"""

import json
import logging
import os
import signal
import subprocess
import sys
import threading

import pytest

from kd import relaunch
from kd.errors import InstanceRunningError
from kd.store.instance import InstanceLock

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MAIN = os.path.join(ROOT, "main.py")


# -- the command line and the environment ---------------------------------------------------------
def test_command_from_source_runs_the_entry_script_by_its_absolute_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = relaunch.command(["--data-dir", "data", "--lan-port", "0"], script="main.py", frozen=False,
                            executable="/opt/py/bin/python3", flags=["-X", "utf8"])
    assert argv == ["/opt/py/bin/python3", "-X", "utf8", str(tmp_path / "main.py"),
                    "--data-dir", "data", "--lan-port", "0"]


def test_command_frozen_is_the_exe_and_the_arguments():
    argv = relaunch.command(["--data-dir", "D:\\kd\\data"], script="/ignored/main.py", frozen=True,
                            executable="E:\\kaodian.exe")
    assert argv == ["E:\\kaodian.exe", "--data-dir", "D:\\kd\\data"]


def test_command_carries_this_interpreters_flags():
    argv = relaunch.command([], script=MAIN, frozen=False)
    assert argv[0] == sys.executable and argv[-1] == MAIN
    assert argv[1:-1] == relaunch.interpreter_flags()


def test_child_env_from_source_only_marks_the_relaunch():
    env = relaunch.child_env({"PATH": "/usr/bin", "LD_LIBRARY_PATH": "/opt/lib"}, frozen=False)
    assert env == {"PATH": "/usr/bin", "LD_LIBRARY_PATH": "/opt/lib", relaunch.RELAUNCHED_ENV: "1"}


def test_child_env_frozen_resets_pyinstaller_and_undoes_its_paths(tmp_path):
    unpacked = str(tmp_path / "_MEI12345")
    parent = {
        "PATH": "/usr/bin",
        "LD_LIBRARY_PATH": unpacked + ":/opt/lib", "LD_LIBRARY_PATH_ORIG": "/opt/lib",
        "TCL_LIBRARY": os.path.join(unpacked, "_tcl_data"), "TK_LIBRARY": os.path.join(unpacked, "_tk_data"),
        "KD_DATA_DIR": str(tmp_path / "data"),
        "_PYI_ARCHIVE_FILE": "/media/usb/kaodian", "_PYI_PARENT_PROCESS_LEVEL": "1",
        "_PYI_APPLICATION_HOME_DIR": unpacked,
    }
    env = relaunch.child_env(parent, frozen=True, unpacked=unpacked)
    assert env["PYINSTALLER_RESET_ENVIRONMENT"] == "1" and env[relaunch.RELAUNCHED_ENV] == "1"
    assert env["LD_LIBRARY_PATH"] == "/opt/lib" and "LD_LIBRARY_PATH_ORIG" not in env
    assert "TCL_LIBRARY" not in env and "TK_LIBRARY" not in env  # the child's runtime hook sets its own
    assert env["KD_DATA_DIR"] == str(tmp_path / "data") and env["PATH"] == "/usr/bin"
    # the bootloader's private variables are left to it: the reset variable makes it drop them
    assert env["_PYI_ARCHIVE_FILE"] == "/media/usb/kaodian" and env["_PYI_APPLICATION_HOME_DIR"] == unpacked
    # without an original library path, the bootloader's one is dropped
    alone = relaunch.child_env({"LD_LIBRARY_PATH": unpacked}, frozen=True, unpacked=unpacked)
    assert "LD_LIBRARY_PATH" not in alone
    assert parent["LD_LIBRARY_PATH_ORIG"] == "/opt/lib"  # the parent's mapping is not changed


def test_lock_wait_only_in_a_relaunched_instance_and_only_once():
    env = {relaunch.RELAUNCHED_ENV: "1", "PATH": "/usr/bin"}
    assert relaunch.lock_wait_s(env) == relaunch.LOCK_WAIT_S
    assert relaunch.RELAUNCHED_ENV not in env  # consumed: nothing started later inherits it
    assert relaunch.lock_wait_s(env) == 0.0
    assert relaunch.lock_wait_s({relaunch.RELAUNCHED_ENV: "yes"}) == 0.0


# -- a real child ---------------------------------------------------------------------------------
REPORTER = """
import json, os, sys
out, fd = sys.argv[1], int(sys.argv[2])
try:
    os.fstat(fd)
    inherited = True
except OSError:
    inherited = False
same_null = os.path.samestat(os.fstat(1), os.stat(os.devnull))
report = {"pid": os.getpid(), "sid": os.getsid(0) if hasattr(os, "getsid") else None, "cwd": os.getcwd(),
          "args": sys.argv[1:], "marker": os.environ.get("KD_RELAUNCHED"), "stdin": sys.stdin.read(),
          "stdout_is_null": same_null, "inherited": inherited}
with open(out, "w", encoding="utf-8") as f:
    json.dump(report, f)
"""


def test_spawn_starts_a_detached_child_with_the_same_arguments(tmp_path, caplog):
    script = tmp_path / "entry.py"
    script.write_text(REPORTER, encoding="utf-8")
    out = tmp_path / "report.json"
    held = open(str(tmp_path / "held"), "wb")  # noqa: SIM115 - must not reach the child
    try:
        with caplog.at_level(logging.INFO, logger="kd.relaunch"):
            child = relaunch.spawn([str(out), str(held.fileno()), "relative/data"], script=str(script),
                                   cwd=str(tmp_path))
        assert child.wait(60) == 0
    finally:
        held.close()
    report = json.loads(out.read_text(encoding="utf-8"))
    assert report["pid"] == child.pid != os.getpid()
    assert report["cwd"] == os.path.realpath(str(tmp_path))
    assert report["args"][2] == "relative/data" and report["marker"] == "1"
    assert report["stdin"] == "" and report["stdout_is_null"] and not report["inherited"]
    if os.name != "nt":
        assert report["sid"] == child.pid  # its own session: leader of it
    assert any(r.getMessage().startswith("restarting: spawning [") for r in caplog.records)


# -- the instance lock's wait -----------------------------------------------------------------------
def test_lock_wait_is_bounded(tmp_path):
    with InstanceLock(str(tmp_path)):
        with pytest.raises(InstanceRunningError) as refused:
            InstanceLock(str(tmp_path), wait_s=0.3).acquire()
    assert str(os.getpid()) in refused.value.cause
    assert refused.value.exit_code == 3


class _Seen(logging.Handler):
    def __init__(self, text):
        super().__init__()
        self.text = text
        self.event = threading.Event()

    def emit(self, record):
        if self.text in record.getMessage():
            self.event.set()


def test_waiting_lock_is_taken_when_the_holder_lets_go(tmp_path):
    first = InstanceLock(str(tmp_path)).acquire()
    seen = _Seen("waiting up to")
    logger = logging.getLogger("kd.store.instance")
    logger.addHandler(seen)
    got = {}

    def second():
        try:
            got["lock"] = InstanceLock(str(tmp_path), wait_s=60).acquire()
        except Exception as e:  # noqa: BLE001 - reported below
            got["error"] = e

    thread = threading.Thread(target=second, name="second")
    try:
        thread.start()
        assert seen.event.wait(30), "the second lock never said it waits"
        assert thread.is_alive()
        first.release()
        thread.join(30)
    finally:
        logger.removeHandler(seen)
        first.release()
    assert "error" not in got and not thread.is_alive()
    got["lock"].release()


def _child_env(**extra):
    env = dict(os.environ, PYTHONIOENCODING="utf-8", **extra)
    for name in ("KD_DATA_DIR", "KD_LOCK_URL", relaunch.RELAUNCHED_ENV):
        if name not in extra:
            env.pop(name, None)
    return env


@pytest.mark.skipif(os.name == "nt", reason="SIGTERM")
def test_relaunched_main_waits_for_the_folder_instead_of_exit_3(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    first = InstanceLock(str(data)).acquire()
    child = subprocess.Popen([sys.executable, MAIN, "--data-dir", str(data), "--lan-port", "0", "--headless"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                             encoding="utf-8", env=_child_env(**{relaunch.RELAUNCHED_ENV: "1"}))
    try:
        for line in child.stderr:  # the console log: WARNING and up
            if "waiting up to" in line:
                break
        else:
            raise AssertionError("the relaunched instance did not wait: exit {}".format(child.wait(30)))
        assert child.poll() is None
        first.release()
        for line in child.stdout:
            if "运行中" in line:
                break
        else:
            raise AssertionError("never ran: exit {}".format(child.wait(30)))
        with pytest.raises(InstanceRunningError):
            InstanceLock(str(data)).acquire()
    finally:
        first.release()
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
        child.communicate(timeout=60)
    assert child.returncode == 0


def test_a_second_start_still_refuses_at_once(tmp_path):
    """Without the relaunch marker nothing waits: exit 3, as before."""
    data = tmp_path / "data"
    data.mkdir()
    with InstanceLock(str(data)):
        proc = subprocess.run([sys.executable, MAIN, "--data-dir", str(data), "--lan-port", "0", "--headless"],
                              capture_output=True, text=True, encoding="utf-8", env=_child_env(), timeout=120)
    assert proc.returncode == 3 and "已经在运行" in proc.stderr and "waiting up to" not in proc.stderr
