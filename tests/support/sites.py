"""The GUI tests' sites, each over real parts (platform simulator, dongle emulator, a real core).

- ``main_window(tmp_path, root, dialogs, password)``: a ``kd.views.shell.Shell`` on ``root``
  over a core of ``make_env`` (2 rooms, 2 sessions), the admin password changed to
  ``password`` (``load=True``: the package loaded); yields ``(env, core, shell)``,
  ``shell.ends`` lists the ``on_exit`` calls (``True``: a restart).
- ``page_site(env, root, dialogs, page_class, listen=False)``: one page with a
  ``FakeShell`` over a started core of ``env`` (``listen``: the page's hub events through
  the shell's loop, as the main window routes them); yields ``(env, core, page, shell)``
  and closes ``env`` at the end.
- the start flow over a drill ``App`` on loopback: ``drill_flow(root, dialogs, data_dir,
  site, clock=None)``, ``screen_of(flow, cls)`` (the flow's screen when it is a ``cls``),
  ``ready_login(flow)`` (the login screen once 登录 is enabled), ``first_login(root, flow,
  login)`` (登录 with the initial password 888: the forced 修改初始密码 form it leads to).
- ``require_display()``: skip without a display, fail under ``KD_REQUIRE_GUI=1``.
"""

import os
from contextlib import contextmanager
from typing import Any, Dict, Iterator, Optional, Tuple

import pytest

from kd.core.services import Core
from tests.support.env import make_env
from tests.support.ui import FakeShell, pump_until


@contextmanager
def main_window(tmp_path: Any, root: Any, dialogs: Any, password: str,
                load: bool = False) -> Iterator[Tuple[Any, Any, Any]]:
    from kd.views.shell import Shell  # noqa: PLC0415 - only the GUI tests import tkinter

    env = make_env(tmp_path / "site", rooms=2, sessions=2, candidates=3)
    try:
        core = Core(env.ctx)
        core.accounts.change_password("admin", "888", password)
        if load:
            core.loading.load_online("admin")
        ends: list = []
        shell = Shell(root, core, dialogs=dialogs, user="admin", log_path="/var/log/kd-test.log",
                      on_exit=ends.append, browser=lambda url: None)
        shell.ends = ends  # type: ignore[attr-defined]
        try:
            yield env, core, shell
        finally:
            shell.close()
    finally:
        env.close()


@contextmanager
def page_site(env: Any, root: Any, dialogs: Any, page_class: Any,
              listen: bool = False) -> Iterator[Tuple[Any, Any, Any, Any]]:
    try:
        core = Core(env.ctx).start()
        shell = FakeShell(root, core, dialogs=dialogs)
        page = page_class(root, shell)
        listener = shell.loop.listen(env.hub.subscribe(page.events), page.on_event) if listen else None
        page.pack(fill="both", expand=True)
        try:
            yield env, core, page, shell
        finally:
            if listener is not None:
                listener.close()
            page.destroy()
            shell.close()
            core.stop()
    finally:
        env.close()


def drill_flow(root: Any, dialogs: Any, data_dir: str, site: Dict[str, Any], clock: Any = None) -> Any:
    """The start flow over a drill App (its platform simulator and dongle emulator) on loopback."""
    from kd.app import App  # noqa: PLC0415
    from kd.views.start import StartFlow  # noqa: PLC0415

    return StartFlow(root, lambda: App(data_dir, lan_host="127.0.0.1", lan_port=0, drill_site=site, probe_s=60.0,
                                       clock=clock),
                     dialogs=dialogs, log_path=os.path.join(data_dir, "logs", "kaodian.log"))


def screen_of(flow: Any, cls: Any) -> Any:
    return isinstance(flow.screen, cls) and flow.screen


def ready_login(flow: Any) -> Optional[Any]:
    """The login screen once the services started (登录 enabled)."""
    from kd.views.login import LoginScreen  # noqa: PLC0415

    login = screen_of(flow, LoginScreen)
    return login if login and login.core is not None else None


def first_login(root: Any, flow: Any, login: Any) -> Any:
    """登录 as admin with the initial password: the forced change's form, once the flow shows it."""
    from kd.views.password import PasswordForm  # noqa: PLC0415

    login.password.insert(0, "888")
    login.button.invoke()
    return pump_until(root, lambda: screen_of(flow, PasswordForm), 20, "forced change")


def require_display() -> None:
    if not os.environ.get("DISPLAY"):
        if os.environ.get("KD_REQUIRE_GUI") == "1":
            pytest.fail("KD_REQUIRE_GUI=1 but no display", pytrace=False)
        pytest.skip("no display")
