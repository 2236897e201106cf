"""The GUI test harness: scripted dialogs, a Tk-thread guard, pumping Tk, a stand-in shell.

- ``ScriptedDialogs``: the methods of ``kd.views.dialogs.Dialogs``; every call is
  recorded in ``calls`` as ``(method, args)``; ``confirm``, ``open_file``,
  ``choose_dir`` and ``ask_text`` answer from per-method queues filled with
  ``plan(method, *answers)``. An unplanned question is recorded in ``unplanned`` and
  answered with the safe default (``False`` / ``None``). ``error()`` calls land in
  ``errors`` (the ``UserError`` objects), ``info``/``warning`` in ``messages``.
  ``check()`` fails when a question was unplanned or a planned answer was left over.
- ``install_tk_guard(root)``: replaces ``root.tk`` by a proxy that records and raises
  when any thread but the one that installed it calls Tk. Install it right after the
  root exists and before any widget is created (widgets copy ``master.tk``).
  ``guard.violations`` lists ``(thread name, tk method, stack)``.
- ``pump_until(root, predicate, timeout)``: process Tk events until ``predicate()`` is
  truthy (returns its value) or raise ``AssertionError`` at the deadline. It blocks in
  Tcl's event loop (woken at least every 20 ms by a timer), never in ``sleep()``.
- ``FakeShell(root, core)``: ``kd.views.shellapi.ShellAPI`` (the shell every page uses)
  over a real ``Core`` for page tests, checked against the Protocol by
  tests/gui/test_shellapi.py so it cannot drift from ``kd.views.shell.Shell``: ``core``,
  ``loop`` (a real ``TkLoop`` of the root), ``dialogs`` (scripted), ``notify`` (recorded
  in ``notes``), ``app`` (None), ``open_url`` (recorded in ``urls``), ``show`` (recorded
  in ``shown``), ``refresh_steps`` (counted), ``post``. Its loop reports as the shell's
  does, but records: a ``UserError`` goes to ``dialogs.error``, anything else to
  ``crashes`` (``check()`` fails on those).

Fixtures live in tests/gui/conftest.py: ``gui_root`` (a guarded Tk root that fails the
test on a Tk call from another thread) and ``scripted`` (a ``ScriptedDialogs``).
"""

import collections
import threading
import time
import traceback
from typing import TYPE_CHECKING, Any, Callable, Deque, Dict, List, Optional, Tuple

if TYPE_CHECKING:  # mypy checks that the fake is a ShellAPI (see as_shell)
    from kd.views.shellapi import ShellAPI

#: the question methods and the answer an unplanned call gets
QUESTIONS: Dict[str, Any] = {"confirm": False, "open_file": None, "choose_dir": None, "ask_text": None}


class ScriptedDialogs:
    """Stands in for ``kd.views.dialogs.Dialogs``: records calls, answers from a plan."""

    def __init__(self, parent: Any = None) -> None:
        self.parent = parent
        self.calls: List[Tuple[str, tuple]] = []
        self.errors: List[Any] = []
        self.messages: List[Tuple[str, str, str, str]] = []
        self.unplanned: List[Tuple[str, tuple]] = []
        self._plans: Dict[str, Deque[Any]] = collections.defaultdict(collections.deque)
        self._lock = threading.Lock()

    # -- planning ----------------------------------------------------------------------------
    def plan(self, method: str, *answers: Any) -> "ScriptedDialogs":
        """Queue ``answers`` for the next calls of ``method`` (confirm, open_file, choose_dir, ask_text)."""
        if method not in QUESTIONS:
            raise ValueError("not a question method: {}".format(method))
        self._plans[method].extend(answers)
        return self

    def left(self, method: str) -> int:
        """Planned answers of ``method`` not used yet."""
        return len(self._plans[method])

    def check(self) -> None:
        """Fail when a question came unplanned or a planned answer was not asked for."""
        assert not self.unplanned, "unplanned dialogs: {}".format(self.unplanned)
        leftover = {m: list(q) for m, q in self._plans.items() if q}
        assert not leftover, "planned answers not used: {}".format(leftover)

    def count(self, method: str) -> int:
        return sum(1 for m, _ in self.calls if m == method)

    def texts(self) -> List[str]:
        """Every text shown (titles, messages, causes, remedies, prompts), for assertions."""
        out: List[str] = []
        for _, args in self.calls:
            out.extend(str(a) for a in args if isinstance(a, str))
        for err in self.errors:
            out.extend([str(getattr(err, "cause", err)), str(getattr(err, "remedy", ""))])
        return out

    # -- the Dialogs interface ---------------------------------------------------------------
    def _record(self, method: str, args: tuple) -> None:
        with self._lock:
            self.calls.append((method, args))

    def _answer(self, method: str, args: tuple) -> Any:
        self._record(method, args)
        with self._lock:
            queue = self._plans[method]
            if queue:
                return queue.popleft()
            self.unplanned.append((method, args))
            return QUESTIONS[method]

    def error(self, err: Any, title: str = "提示") -> None:
        self._record("error", (title, getattr(err, "cause", str(err)), getattr(err, "remedy", "")))
        with self._lock:
            self.errors.append(err)

    def info(self, title: str, text: str, detail: str = "") -> None:
        self._record("info", (title, text, detail))
        self.messages.append(("info", title, text, detail))

    def warning(self, title: str, text: str, detail: str = "") -> None:
        self._record("warning", (title, text, detail))
        self.messages.append(("warning", title, text, detail))

    def confirm(self, title: str, text: str, detail: str = "") -> bool:
        return bool(self._answer("confirm", (title, text, detail)))

    def open_file(self, title: str, filetypes: Any) -> Optional[str]:
        return self._answer("open_file", (title, list(filetypes)))

    def choose_dir(self, title: str) -> Optional[str]:
        return self._answer("choose_dir", (title,))

    def ask_text(self, title: str, prompt: str, secret: bool = False, initial: str = "") -> Optional[str]:
        return self._answer("ask_text", (title, prompt, secret) + ((initial,) if initial else ()))


class TkThreadGuard:
    """A proxy for a ``_tkinter`` app object that only the owning thread may call."""

    def __init__(self, tkapp: Any) -> None:
        object.__setattr__(self, "_tk", tkapp)
        object.__setattr__(self, "_owner", threading.get_ident())
        object.__setattr__(self, "violations", [])
        object.__setattr__(self, "_wrapped", {})

    @property
    def raw(self) -> Any:
        return self._tk

    def __getattr__(self, name: str) -> Any:
        wrapped = self._wrapped.get(name)
        if wrapped is not None:
            return wrapped
        attr = getattr(self._tk, name)
        if not callable(attr):
            return attr
        owner, violations = self._owner, self.violations

        def guarded(*args: Any, **kw: Any) -> Any:
            if threading.get_ident() != owner:
                stack = "".join(traceback.format_stack(limit=12))
                violations.append((threading.current_thread().name, name, stack))
                raise RuntimeError("Tk called from thread {!r} ({}); only the Tk thread may touch Tk".format(
                    threading.current_thread().name, name))
            return attr(*args, **kw)

        self._wrapped[name] = guarded
        return guarded

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._tk, name, value)


def install_tk_guard(root: Any) -> TkThreadGuard:
    """Guard ``root.tk`` (before widgets are made); returns the guard with its ``violations``."""
    guard = root.tk if isinstance(root.tk, TkThreadGuard) else TkThreadGuard(root.tk)
    root.tk = guard
    return guard


def pump_until(root: Any, predicate: Callable[[], Any], timeout: float = 10.0, what: str = "") -> Any:
    """Run Tk events until ``predicate()`` is truthy; its value, or ``AssertionError`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out after {} s waiting for {}".format(timeout, what or predicate))
        wake = root.after(20, _nothing)
        root.tk.dooneevent(0)  # blocks until an event; the timer above wakes it within 20 ms
        root.update()
        try:
            root.after_cancel(wake)
        except Exception:  # noqa: BLE001, S110 - the timer already fired
            pass


def pump_idle(root: Any, rounds: int = 3) -> None:
    """Let pending idle work and queued callbacks run (a few short rounds)."""
    for _ in range(rounds):
        root.update()


def _nothing() -> None:
    return None


class FakeShell:
    """``kd.views.shellapi.ShellAPI`` over a real ``Core``, for page tests without the main window."""

    def __init__(self, root: Any, core: Any, dialogs: Optional[ScriptedDialogs] = None, app: Any = None) -> None:
        from kd.views.loop import TkLoop  # noqa: PLC0415

        self.root = root
        self.core = core
        self.app = app
        self.dialogs = dialogs if dialogs is not None else ScriptedDialogs(root)
        self.loop = TkLoop(root, dialogs=self.dialogs, reporter=self._report)
        self.notes: List[Tuple[str, str]] = []
        self.urls: List[str] = []
        self.shown: List[str] = []
        self.steps_refreshed = 0
        self.user = "admin"
        self.last_site_info: Optional[str] = None
        #: exceptions other than UserError that reached the loop's report
        self.crashes: List[BaseException] = []

    def _report(self, exc_type: Any, exc: BaseException, tb: Any) -> None:
        from kd.errors import UserError  # noqa: PLC0415

        if isinstance(exc, UserError):
            self.dialogs.error(exc)
        else:
            traceback.print_exception(exc_type, exc, tb)
            self.crashes.append(exc)

    def check(self) -> None:
        """Fail when a callback crashed (anything but a UserError)."""
        assert not self.crashes, "callbacks crashed: {!r}".format(self.crashes)

    # -- ShellAPI ----------------------------------------------------------------------------
    def notify(self, text: str, kind: str = "info") -> None:
        self.notes.append((kind, text))

    def open_url(self, path: str) -> None:
        self.urls.append(path)

    def show(self, label: str) -> None:
        self.shown.append(label)

    def refresh_steps(self) -> None:
        self.steps_refreshed += 1

    def post(self, fn: Callable[[], None]) -> None:
        self.loop.post(fn)

    def close(self) -> None:
        self.loop.close()


def as_shell(fake: FakeShell) -> "ShellAPI":
    """The fake as the Protocol (for mypy: a member missing or of another type is an error here)."""
    return fake
