"""Shared set-up of the 封场检测 / 授权验证 / 考场监控 / outbox tests.

The site package is loaded with the real ``LoadingService`` from the platform simulator.
Registration and authorization are written per ``kd/core/model.py`` (the fields those
services set), so these tests do not depend on how a proctor registers. ``Listener`` is
a real TCP listener on 127.0.0.1 standing in for the LAN service's port.
"""

import datetime
import socket
from typing import Any, Iterable, List, Optional

from kd.core import model
from kd.core.loading import LoadingService
from kd.formats.timeutil import format_time
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
    """Mark rooms registered (and their data imported, with the package's hash)."""
    ctx = env.ctx
    members = {m["name"]: m["sha256"] for m in ctx.manifest()["members"]}
    now = format_time(ctx.now())
    for i, code in enumerate(codes if codes is not None else room_codes(env)):
        changes = {"ip": "127.0.0.{}".format(10 + i), "token": "t{:031d}".format(i), "registered_at": now}
        if imported:
            changes.update({"data_sha256": members["rooms/{}.dat".format(code)], "data_imported_at": now})
        ctx.stores.runtime.update(model.ROOMS, code, changes)


def authorize(env: Env, sessions: Optional[Iterable[str]] = None) -> None:
    now = format_time(env.ctx.now())
    for sid in sessions if sessions is not None else session_ids(env):
        env.ctx.stores.runtime.update(model.SESSIONS, sid, {"authorized_at": now, "authorization_source": "online"})


def sync(env: Env) -> None:
    """机考锁校时 through the simulator: the dongle now holds a fresh ticket."""
    sync_lock(env.driver, env.client)


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

    def close(self) -> None:
        self.sock.close()
