"""The event pump on a real Tk window: worker events reach handlers on the Tk thread."""

import threading

import pytest

from kd.events import EventHub

pytestmark = pytest.mark.gui


def run_until(root, predicate, timeout_ms=10000):
    """Run the Tk loop until ``predicate()`` or the timeout; True when it held."""
    done = {"ok": False}

    def check():
        if predicate():
            done["ok"] = True
            root.quit()
        else:
            root.after(10, check)

    root.after(10, check)
    cancel = root.after(timeout_ms, root.quit)
    root.mainloop()
    root.after_cancel(cancel)
    return done["ok"]


def test_worker_events_are_handled_on_the_tk_thread(tk_root):
    from kd.views.pump import EventPump

    hub = EventHub()
    seen, threads = [], set()

    def handler(event):
        seen.append(event.data["n"])
        threads.add(threading.current_thread().name)
        if event.data["n"] == 3:
            raise RuntimeError("a buggy handler must not stop the pump")

    pump = EventPump(tk_root, hub.subscribe(["tick"]), handler, max_items=7)
    worker = threading.Thread(target=lambda: [hub.publish("tick", n=n) for n in range(200)], name="worker")
    worker.start()
    worker.join()
    assert run_until(tk_root, lambda: len(seen) == 200)
    assert seen == list(range(200)) and threads == {threading.main_thread().name}
    pump.close()
    pump.close()
    hub.publish("tick", n=999)
    tk_root.update()
    assert 999 not in seen
