"""kd.views.fatal: the message box of the GUI route when it cannot start (second instance,
data folder not writable), in-process and through real ``main.py`` processes."""

import os
import subprocess
import sys
import textwrap

import pytest

from kd.store.instance import InstanceLock
from tests.support.sites import require_display

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

pytestmark = pytest.mark.skipif(os.name == "nt", reason="the X11 Tk message box's widget names")

#: finds the Tk message box (X11: ``.__tk__messagebox``), reports its text, presses OK. Timers
#: (after) run only once the box waits for its answer (vwait); idle callbacks may run earlier.
CLOSER = textwrap.dedent("""
    def close_box(root, seen):
        root.after(10, _check_box, root, seen)

    def _check_box(root, seen):
        if not int(root.tk.call("winfo", "exists", ".__tk__messagebox")):
            root.after(20, _check_box, root, seen)
            return
        seen.append(root.tk.call(".__tk__messagebox.msg", "cget", "-text"))
        root.tk.call(".__tk__messagebox.ok", "invoke")
""")


def test_show_fatal_shows_the_text_and_returns_when_closed():
    require_display()
    from kd.views.fatal import show_fatal

    space = {}
    exec(CLOSER, space)  # noqa: S102 - the closer is shared with the subprocess script below
    seen = []
    assert show_fatal("数据目录无法写入：X\n请用 --data-dir", on_shown=lambda root: space["close_box"](root, seen))
    assert seen == ["数据目录无法写入：X\n请用 --data-dir"]


def test_show_fatal_without_a_display_returns_false(monkeypatch):
    from kd.views.fatal import show_fatal

    monkeypatch.setenv("DISPLAY", ":9999")  # nothing listens there
    assert show_fatal("x") is False


def run_main_gui(args, env=None):
    """``main.main(args)`` in a child whose message boxes are read and closed by CLOSER."""
    script = CLOSER + textwrap.dedent("""
        import sys
        sys.path.insert(0, {root!r})
        from kd.views import hooks
        import main
        seen = []
        hooks.watch(hooks.FATAL, lambda root: close_box(root, seen))
        rc = main.main({args!r})
        for text in seen:
            print("BOX:" + text.replace("\\n", " "))
        sys.exit(rc)
    """).format(root=ROOT, args=list(args))
    full_env = {k: v for k, v in os.environ.items() if k not in ("KD_DATA_DIR", "KD_LOCK_URL")}
    full_env.update(env or {}, PYTHONIOENCODING="utf-8")
    return subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=full_env, capture_output=True,
                          text=True, encoding="utf-8", timeout=120)


def test_second_launch_says_already_running_in_a_box(tmp_path):
    require_display()
    data = tmp_path / "data"
    data.mkdir()
    with InstanceLock(str(data)):
        proc = run_main_gui(["--data-dir", str(data), "--lan-port", "0"])
    assert proc.returncode == 3, proc.stderr
    boxes = [ln for ln in proc.stdout.splitlines() if ln.startswith("BOX:")]
    assert len(boxes) == 1 and "已经在运行" in boxes[0] and "托盘" in boxes[0]
    assert "已经在运行" in proc.stderr


def test_read_only_data_folder_is_a_box_naming_data_dir(tmp_path):
    require_display()
    blocker = tmp_path / "file"
    blocker.write_bytes(b"")
    proc = run_main_gui(["--data-dir", str(blocker / "data")])
    assert proc.returncode == 2, proc.stderr
    boxes = [ln for ln in proc.stdout.splitlines() if ln.startswith("BOX:")]
    assert len(boxes) == 1 and "数据目录无法写入" in boxes[0] and "--data-dir" in boxes[0]


def test_headless_and_commands_never_open_a_box(tmp_path):
    require_display()
    data = tmp_path / "data"
    data.mkdir()
    with InstanceLock(str(data)):
        proc = run_main_gui(["--data-dir", str(data), "--headless", "--lan-port", "0"])
    assert proc.returncode == 3 and "已经在运行" in proc.stderr
    assert "BOX:" not in proc.stdout
