"""Named moments of the GUI that outside code may watch (tools, benchmarks, tests).

The product's one observer is the frozen exe's splash screen (``kd.views.splash``: closed
at the first ``PAINTED`` or ``FATAL``; from source it registers nothing); otherwise
``main.py`` runs the GUI the same way with or without an observer. ``watch(name, fn)``
adds an observer and returns the function that removes it; ``fire(name, *args)`` calls
the observers of ``name`` in the order they were added, on the caller's thread (the Tk
thread for every moment below). An observer's exception is not caught: it is the
watcher's own failure.

    FLOW     (flow)          ``kd.views.start.run``: the ``StartFlow`` is built, before the
                             window's loop starts (drive the real screens from a timer)
    PAINTED  (root, screen)  a start screen is shown: ``"login"`` (登录 disabled while the
                             services start), ``"ready"`` (登录 enabled); drawn at idle time
    FATAL    (root)          ``kd.views.fatal.show_fatal``: the hidden root, at idle time
                             before the message box waits for its answer
"""

from typing import Any, Callable, Dict, List

FLOW = "flow"
PAINTED = "painted"
FATAL = "fatal"

_observers: Dict[str, List[Callable[..., Any]]] = {}


def watch(name: str, fn: Callable[..., Any]) -> Callable[[], None]:
    """Call ``fn(*args)`` at every ``fire(name, *args)``; returns the function that stops it."""
    _observers.setdefault(name, []).append(fn)

    def unwatch() -> None:
        observers = _observers.get(name, [])
        if fn in observers:
            observers.remove(fn)

    return unwatch


def fire(name: str, *args: Any) -> None:
    """Call the observers of ``name`` (none: nothing happens)."""
    for fn in list(_observers.get(name, ())):
        fn(*args)
