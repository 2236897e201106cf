"""What a page, and the windows a page opens, may use of the main window: ``ShellAPI``.

``kd.views.shell.Shell`` is the one the app runs; tests/support/ui.py ``FakeShell``
stands in for it in page tests. Both are checked against these Protocols
(tests/gui/test_shellapi.py: every member there, every method with the same
parameters; mypy too, through ``tests.support.ui.as_shell``), so the fake cannot drift
from the shell. The 更多 and 演练 menus are the shell's own parts and use the ``Shell``
itself (``call``, ``set_busy``, ``restart``).
"""

from typing import Any, Callable, Optional, Sequence, Tuple

from kd.views.loop import TkLoop

try:  # Python 3.8 has typing.Protocol
    from typing import Protocol
except ImportError:  # pragma: no cover - Python < 3.8 is not supported
    Protocol = object  # type: ignore


class DialogsAPI(Protocol):
    """``kd.views.dialogs.Dialogs`` (real message boxes) or a test's scripted answers."""

    def error(self, err: Any, title: str = "提示") -> None: ...

    def info(self, title: str, text: str, detail: str = "") -> None: ...

    def warning(self, title: str, text: str, detail: str = "") -> None: ...

    def confirm(self, title: str, text: str, detail: str = "") -> bool: ...

    def open_file(self, title: str, filetypes: Sequence[Tuple[str, str]]) -> Optional[str]: ...

    def choose_dir(self, title: str) -> Optional[str]: ...

    def ask_text(self, title: str, prompt: str, secret: bool = False, initial: str = "") -> Optional[str]: ...


class ShellAPI(Protocol):
    """The shell as the pages see it."""

    #: the root window
    root: Any
    #: ``kd.core.services.Core``: every service the pages call
    core: Any
    #: the root's one loop: workers (``submit``), timers (``every``/``later``), ``post``
    loop: TkLoop
    #: the running ``kd.app.App`` or None; pages only ask whether they run in the app
    app: Any
    #: the logged-in user (the actor of audit entries)
    user: str
    #: the KDINFO file of the last 导出考点信息, if any
    last_site_info: Optional[str]

    @property
    def dialogs(self) -> DialogsAPI: ...

    def notify(self, text: str, kind: str = "info") -> None:
        """A short notification (kind: info, success, warning, danger); never blocks."""

    def open_url(self, path: str) -> None:
        """Open a file or URL in the browser (in a worker)."""

    def show(self, label: str) -> None:
        """Show the page of a navigation entry or step, by its label."""

    def refresh_steps(self) -> None:
        """Check the ✓/✗ marks of the 5 steps again (coalesced)."""

    def post(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on the Tk thread soon; any thread may call it."""
