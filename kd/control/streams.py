"""Per-thread ``sys.stdin`` / ``sys.stdout`` / ``sys.stderr`` for commands run in the instance.

A command handler of ``kd.cli`` prints with ``print()`` (to ``sys.stdout`` or
``sys.stderr``) and reads with ``sys.stdin.readline()``, ``input()`` and
``sys.stdin.isatty()``. Run in the running instance for a command line, those must
reach that command line, while every other thread of the process (the LAN server, the
Tk loop, the senders, another command) keeps its own streams. ``routed(stdin, stdout,
stderr)`` makes that so for the calling thread: it puts (once, and again if someone
replaced them since) a router in ``sys.stdin``/``sys.stdout``/``sys.stderr`` that
forwards every call to the streams the current thread was given, and to the streams
that were there before on every other thread.

A stream given to ``routed`` must not have a ``fileno()`` (it raises), so that
``input()`` writes its prompt to ``sys.stdout`` and reads ``sys.stdin.readline()``
instead of using the process's own terminal. ``uninstall()`` puts the original streams
back (when the routers are still in place).
"""

import contextlib
import io
import sys
import threading
from typing import Any, Dict, Iterator, Optional

_local = threading.local()
_lock = threading.Lock()


class _Null:
    """Where a thread writes when the process has no stream (a windowed exe)."""

    closed = False

    def write(self, s: str) -> int:
        return len(s)

    def flush(self) -> None:
        pass

    def readline(self, *args: Any) -> str:  # noqa: ARG002 - io's signature
        return ""

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        raise io.UnsupportedOperation("no stream")


class Router:
    """One of ``sys.stdin``/``sys.stdout``/``sys.stderr``: this thread's stream, or the original."""

    def __init__(self, name: str, original: Any) -> None:
        self._name = name
        self.original = original

    def _target(self) -> Any:
        given: Optional[Dict[str, Any]] = getattr(_local, "streams", None)
        if given is not None:
            return given[self._name]
        return self.original if self.original is not None else _Null()

    def write(self, s: str) -> Any:
        return self._target().write(s)

    def flush(self) -> Any:
        return self._target().flush()

    def readline(self, *args: Any) -> Any:
        return self._target().readline(*args)

    def isatty(self) -> bool:
        return bool(self._target().isatty())

    def fileno(self) -> int:
        return int(self._target().fileno())

    def __getattr__(self, name: str) -> Any:
        return getattr(self._target(), name)


def install() -> None:
    """Put routers in ``sys.stdin``/``sys.stdout``/``sys.stderr`` unless they are there already."""
    with _lock:
        for name in ("stdin", "stdout", "stderr"):
            current = getattr(sys, name)
            if not isinstance(current, Router):
                setattr(sys, name, Router(name, current))


def uninstall() -> None:
    """Put back the streams the routers replaced (only where a router is still in place)."""
    with _lock:
        for name in ("stdin", "stdout", "stderr"):
            current = getattr(sys, name)
            if isinstance(current, Router):
                setattr(sys, name, current.original)


@contextlib.contextmanager
def routed(stdin: Any, stdout: Any, stderr: Any) -> Iterator[None]:
    """While the block runs, this thread's ``sys.stdin``/``stdout``/``stderr`` are the given streams."""
    install()
    _local.streams = {"stdin": stdin, "stdout": stdout, "stderr": stderr}
    try:
        yield
    finally:
        _local.streams = None
