"""kd.views.loop.TkLoop on a real, guarded Tk root: workers, posts, hub events, progress and
timers all reach the Tk thread through one tick with one budget; timers die with their
widget; one error hook; close waits for the workers in flight and then refuses work."""

import threading

import pytest
import ttkbootstrap as ttk

from kd.errors import UserError
from kd.events import EventHub
from kd.views.loop import TkLoop
from tests.support.ui import ScriptedDialogs, pump_until

pytestmark = pytest.mark.gui


@pytest.fixture
def loop(gui_root, scripted):
    loop = TkLoop(gui_root, dialogs=scripted, log_path="/var/log/kd-test.log")
    yield loop
    loop.close()


def main_thread():
    return threading.current_thread() is threading.main_thread()


def test_results_posts_and_progress_come_to_the_tk_thread_in_order(loop, gui_root):
    seen = []
    progress = loop.progress(lambda items: seen.append(("progress", list(items), main_thread())))

    def work():
        for n in range(5):
            progress(n)
        return "done"

    assert loop.submit(work, lambda result: seen.append((result, main_thread())))
    assert loop.pending == 1
    pump_until(gui_root, lambda: ("done", True) in seen, what="the result")
    batches = [entry for entry in seen if entry[0] == "progress"]
    assert [n for _, items, _ in batches for n in items] == [0, 1, 2, 3, 4]  # all of it, before the result
    assert seen[-1] == ("done", True) and all(on_tk for _, _, on_tk in batches)
    assert loop.pending == 0 and loop.idle()

    failures = []
    loop.submit(lambda: 1 / 0, None, failures.append)
    posted = []
    threads = [threading.Thread(target=lambda n=n: loop.post(lambda: posted.append((n, main_thread()))))
               for n in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    pump_until(gui_root, lambda: failures and len(posted) == 20, what="the failure and the posts")
    assert isinstance(failures[0], ZeroDivisionError)
    assert sorted(n for n, _ in posted) == list(range(20)) and all(on_tk for _, on_tk in posted)


def test_hub_events_within_one_budget_per_tick(gui_root, scripted):
    loop = TkLoop(gui_root, dialogs=scripted, interval_ms=60_000, budget=7)  # ticks driven by the test
    try:
        hub = EventHub()
        seen, posted = [], []

        def handler(event):
            seen.append(event.data["n"])
            if event.data["n"] == 3:
                raise RuntimeError("a buggy handler must not stop the loop")

        listener = loop.listen(hub.subscribe(["tick"]), handler)
        worker = threading.Thread(target=lambda: [hub.publish("tick", n=n) for n in range(30)], name="worker")
        worker.start()
        worker.join()
        for n in range(4):
            loop.post(lambda n=n: posted.append(n))
        loop._tick()  # one tick: the 4 posts first, then 3 events (one budget of 7)
        assert posted == [0, 1, 2, 3] and seen == [0, 1, 2]
        loop._tick()
        assert seen == list(range(10))
        while len(seen) < 30:
            loop._tick()
        assert seen == list(range(30))
        listener.close()
        hub.publish("tick", n=999)
        loop._tick()
        assert 999 not in seen
        assert not scripted.errors  # a handler's failure is logged, not a dialog
    finally:
        loop.close()


def test_timers_end_with_their_widget(loop, gui_root, scripted):
    frame = ttk.Frame(gui_root)
    frame.pack()
    ticks, once, failing = [], [], []
    repeating = loop.every(10, lambda: ticks.append(1), owner=frame)
    single = loop.later(10, lambda: once.append(1), owner=frame)

    def boom():
        failing.append(1)
        raise RuntimeError("timer failed")

    loop.every(10, boom, owner=frame)
    pump_until(gui_root, lambda: len(ticks) >= 3 and once and len(failing) >= 2, what="the timers")
    assert once == [1] and not single.active and repeating.active  # a failing timer goes on, reported
    assert scripted.errors and scripted.errors[0].cause == "内部错误，详见日志 /var/log/kd-test.log"
    frame.destroy()
    assert not repeating.active
    count, failed = len(ticks), len(failing)
    marker = []
    loop.later(50, lambda: marker.append(1))  # later than the dead timers' next turn
    pump_until(gui_root, lambda: marker, what="a later timer")
    assert len(ticks) == count and len(failing) == failed

    other = loop.every(10, lambda: None)
    loop.close()
    assert not other.active


def test_one_error_hook_for_callbacks_and_workers(loop, gui_root, scripted, caplog):
    assert gui_root.report_callback_exception == loop.report

    def refuse():
        raise UserError("不能这样做。", "请那样做。")

    ttk.Button(gui_root, command=refuse).invoke()
    ttk.Button(gui_root, command=lambda: 1 / 0).invoke()
    loop.submit(refuse)
    pump_until(gui_root, lambda: len(scripted.errors) == 3, what="the worker's refusal")
    internal = "内部错误，详见日志 /var/log/kd-test.log"
    assert [e.cause for e in scripted.errors] == ["不能这样做。", internal, "不能这样做。"]
    assert any(r.exc_info and isinstance(r.exc_info[1], ZeroDivisionError) for r in caplog.records)


def test_close_waits_for_the_workers_in_flight_and_then_refuses_work(gui_root):
    loop = TkLoop(gui_root, dialogs=ScriptedDialogs(gui_root))
    started, release, finished = threading.Event(), threading.Event(), threading.Event()
    delivered = []

    def work():
        started.set()
        release.wait(30)
        finished.set()
        return "late"

    loop.submit(work, delivered.append)
    started.wait(10)
    release.set()
    assert loop.close(deadline=30) is True
    assert finished.is_set()  # close returned only once the worker ended
    gui_root.update()
    assert delivered == []  # the window is going: results after close are dropped

    ran = []
    assert loop.submit(lambda: ran.append(1)) is False
    assert loop.post(lambda: ran.append(2)) is False
    gui_root.update()
    assert ran == [] and loop.close() is True


def test_close_gives_up_on_a_worker_after_the_deadline(gui_root):
    loop = TkLoop(gui_root, dialogs=ScriptedDialogs(gui_root))
    release = threading.Event()
    loop.submit(lambda: release.wait(30))
    try:
        assert loop.close(deadline=0.05) is False
    finally:
        release.set()
