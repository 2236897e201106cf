"""Shared set-up of the 封场检测 / 授权验证 / 考场监控 / outbox tests.

The site package is loaded, rooms registered and sessions authorized with the real
services (``LoadingService``, ``RegistrationService``, ``AuthorizationService``) against
the platform simulator; ``authorized_env`` does all of it and syncs the dongle (the
state 授权验证 starts from); ``authorized_cli_env`` then hands that site over to
``main.py`` processes (tests/support/cli.py: admin's own password, the stores closed,
the dongle driver stopped). ``Listener`` is
a real TCP listener on 127.0.0.1 standing in for the LAN service's port.
"""

import datetime
import socket
from typing import Any, Iterable, List, Optional

from kd.core import model
from kd.core.authorization import AuthorizationService
from kd.core.loading import LoadingService
from kd.core.registration import RegistrationService
from kd.lock.sync import sync_lock
from tests.support.env import Env, make_env


def loaded_env(tmp_path: Any, **kw: Any) -> Env:
    kw.setdefault("rooms", 3)
    kw.setdefault("candidates", 5)
    env = make_env(tmp_path, **kw)
    LoadingService(env.ctx).load_online("admin")
    return env


def room_codes(env: Env) -> List[str]:
    return [r["code"] for r in env.ctx.manifest()["rooms"]]


def session_ids(env: Env) -> List[str]:
    return [s["id"] for s in env.ctx.manifest()["sessions"]]


def register(env: Env, codes: Optional[Iterable[str]] = None, imported: bool = True) -> None:
    """Register rooms like their proctor machines do (and import their room data)."""
    ctx = env.ctx
    service = RegistrationService(ctx)
    members = {m["name"]: m["sha256"] for m in ctx.manifest()["members"]}
    every = room_codes(env)
    for code in codes if codes is not None else every:
        ip = "127.0.0.{}".format(10 + every.index(code))  # one proctor machine per room
        reg_code = ctx.stores.runtime.get(model.ROOMS, code)["reg_code"]
        token = service.register(code, reg_code, ip)["token"]
        if imported:
            service.mark_data_imported(code, token, ip, members["rooms/{}.dat".format(code)])


def authorize(env: Env, sessions: Optional[Iterable[str]] = None) -> None:
    """考试授权 online, per session (all by default)."""
    service = AuthorizationService(env.ctx)
    for sid in sessions if sessions is not None else session_ids(env):
        service.authorize_online(sid, "admin")


def sync(env: Env) -> None:
    """机考锁校时 through the simulator: the dongle now holds a fresh ticket."""
    sync_lock(env.driver, env.client)


def authorized_env(tmp_path: Any, **kw: Any) -> Env:
    """A loaded site (session 1 in 30 minutes unless ``kw`` says), every room registered with its data
    imported, every session authorized and the dongle synced: 授权验证 may run."""
    kw.setdefault("first_start_in", 30)
    env = loaded_env(tmp_path, **kw)
    register(env)
    authorize(env)
    sync(env)
    return env


def authorized_cli_env(tmp_path: Any, **kw: Any) -> Env:
    """``authorized_env`` for CLI processes on its own data folder (``kd(env, env.data_dir, ...)``)."""
    from tests.support.cli import admin_account  # noqa: PLC0415 - tests.support.cli imports main

    env = authorized_env(tmp_path, **kw)
    env.ctx.stores.settings.put(model.ACCOUNTS, "admin", admin_account())  # as after the first password change
    env.ctx.stores.close()  # the CLI processes own the data folder and the dongle from here on
    env.driver.stop()
    return env


def shifted(minutes: float):  # type: ignore[no-untyped-def]
    """A clock ``minutes`` away from the real one."""
    from kd.core.context import cst_now  # noqa: PLC0415

    return lambda: cst_now() + datetime.timedelta(minutes=minutes)


class Listener:
    """A real listening socket with the ``Lan`` port's read side."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1)

    def listening(self) -> bool:
        return self.sock.fileno() != -1

    def address(self) -> str:
        return "127.0.0.1"

    def port(self) -> int:
        return self.sock.getsockname()[1]

    def disconnect_room(self, room_code: str) -> None:
        pass

    def addresses(self) -> list:
        return ["127.0.0.1"]

    def probe(self, host: str, port: int) -> Optional[str]:
        """A real connect (this listener speaks no KDLAN: accepting is its whole answer)."""
        try:
            socket.create_connection((host, port), timeout=5).close()
            self.sock.settimeout(5)
            self.sock.accept()[0].close()  # keep the backlog (1) free for the next check
        except OSError as e:
            return repr(e)
        return None

    def close(self) -> None:
        self.sock.close()
