"""The harness itself: the Tk-thread guard catches a worker's Tk call, pump_until waits and times out."""

import threading

import pytest

from tests.support.ui import ScriptedDialogs, install_tk_guard, pump_until

pytestmark = pytest.mark.gui


def test_guard_records_a_tk_call_from_a_worker(tk_root):
    import tkinter as tk

    guard = install_tk_guard(tk_root)
    label = tk.Label(tk_root, text="x")
    errors = []

    def worker():
        try:
            label.configure(text="from a worker")
        except RuntimeError as e:
            errors.append(e)

    thread = threading.Thread(target=worker, name="rogue")
    thread.start()
    thread.join()
    assert errors and guard.violations[0][0] == "rogue"
    assert label.cget("text") == "x"
    label.configure(text="main")  # the Tk thread itself is fine
    assert label.cget("text") == "main"


def test_pump_until_returns_the_value_and_times_out(tk_root):
    box = {}
    done = threading.Event()
    threading.Thread(target=lambda: (done.wait(5), box.setdefault("v", 42))).start()
    done.set()
    assert pump_until(tk_root, lambda: box.get("v"), timeout=5) == 42
    with pytest.raises(AssertionError):
        pump_until(tk_root, lambda: False, timeout=0.1, what="never")


def test_scripted_dialogs_answer_in_order_and_record_the_rest():
    d = ScriptedDialogs()
    d.plan("confirm", True, False).plan("open_file", "/x.zip")
    assert d.confirm("t", "a") is True and d.confirm("t", "b") is False
    assert d.open_file("t", [("z", "*.zip")]) == "/x.zip"
    assert d.ask_text("t", "p") is None and d.unplanned == [("ask_text", ("t", "p", False))]
    with pytest.raises(AssertionError):
        d.check()
    d.unplanned.clear()
    d.check()
    assert d.count("confirm") == 2
