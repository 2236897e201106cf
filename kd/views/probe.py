"""The start-up probe: report each drawn start screen to a benchmark or a test process.

Set in the environment of a GUI process (``main.py`` without a command), it watches the
``hooks.PAINTED`` moments while ``kd.views.start.run`` runs:

- ``KD_STARTUP_PROBE`` set: print ``KD-PAINTED <screen>`` on stdout once the screen is
  drawn; with ``KD_STARTUP_PROBE=<screen>`` the process also ends after that screen
  (benchmarks/startup.py measures the time to the login window with ``login``);
- ``KD_STARTUP_PROBE_FILE=<path>``: append one JSON line per drawn screen to that file,
  ``{"screen", "pid", "theme", "background", "danger", "primary"}`` — the Tk theme in
  use, the root's background and the ``danger.TLabel`` foreground and
  ``primary.TButton`` background as Tk resolves them (what is painted, not what
  ttkbootstrap's Python side believes; tests/gui/test_restart.py checks a relaunched
  child with it).

``install()`` starts watching when either variable is set and returns the function
that stops it (a no-op otherwise).
"""

import json
import os
import sys
from typing import Any, Callable, Dict

from kd.views import hooks

PROBE_ENV = "KD_STARTUP_PROBE"
PROBE_FILE_ENV = "KD_STARTUP_PROBE_FILE"


def install() -> Callable[[], None]:
    """Watch the drawn screens as the environment asks (see the module docstring)."""
    want = os.environ.get(PROBE_ENV)
    path = os.environ.get(PROBE_FILE_ENV)
    if not want and not path:
        return lambda: None

    def shown(root: Any, screen: str) -> None:
        root.after_idle(lambda: painted(root, screen, want, path))

    return hooks.watch(hooks.PAINTED, shown)


def painted(root: Any, screen: str, want: Any, path: Any) -> None:
    root.update_idletasks()
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(dict(painted_style(root), screen=screen, pid=os.getpid())) + "\n")
    if want:
        print("KD-PAINTED {}".format(screen), file=sys.stdout, flush=True)
        if want == screen:
            root.after(50, root.quit)


def painted_style(root: Any) -> Dict[str, str]:
    """The theme and colours Tk paints ``root`` with (the probe's fields)."""
    def lookup(style: str, option: str) -> str:
        return str(root.tk.call("ttk::style", "lookup", style, option))

    return {"theme": str(root.tk.call("ttk::style", "theme", "use")), "background": str(root.cget("background")),
            "danger": lookup("danger.TLabel", "-foreground"), "primary": lookup("primary.TButton", "-background")}
