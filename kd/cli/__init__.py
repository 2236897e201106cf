"""The command line: ``main.py <command>``, thin shells over the core services.

Each chapter module in ``MODULES`` has ``register(commands)``, which adds its
sub-parsers with ``set_defaults(handler=...)``; a handler takes a ``Session`` and
returns the exit code. Handlers import the core lazily so that building the parser
(which the GUI start also does) stays cheap.

``run(opts, data_dir)`` opens the dongle gate (exit 4 without the site's dongle), the
core context over the data folder, the platform client from the settings, calls the
handler and closes everything. ``UserError`` propagates to ``main.py`` (exit 2, or its
own ``exit_code``); ``Session.out`` prints a result as text, or as JSON with ``--json``.
"""

import argparse
import importlib
import json
import sys
from typing import Any, Callable, Optional

#: commands an account still on its initial password may use (the rest need a changed password)
BEFORE_PASSWORD_CHANGE = frozenset(["login", "passwd", "status", "audit"])

MODULES = ("kd.cli.audit", "kd.cli.live", "kd.cli.exam", "kd.cli.results", "kd.cli.system")


class Session:
    """What a command handler gets: options, the core context, the gate's dongle."""

    def __init__(self, opts: argparse.Namespace, data_dir: str, ctx: Any, gate: Any) -> None:
        self.opts = opts
        self.data_dir = data_dir
        self.ctx = ctx
        self.gate = gate

    @property
    def actor(self) -> str:
        return getattr(self.opts, "user", None) or "admin"

    def out(self, data: Any, text: Optional[str] = None) -> None:
        """Print ``data`` as JSON (``--json``) or ``text`` (default: JSON, indented)."""
        if getattr(self.opts, "json", False) or text is None:
            print(json.dumps(data, ensure_ascii=False, indent=None if getattr(self.opts, "json", False) else 1))
        else:
            print(text)
        sys.stdout.flush()


def add_json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="以 JSON 输出")


def add_parsers(commands: Any) -> None:
    """Add every chapter's sub-commands to ``commands`` (an argparse sub-parsers object)."""
    for name in MODULES:
        importlib.import_module(name).register(commands)


def handler_of(opts: argparse.Namespace) -> Optional[Callable[[Session], int]]:
    return getattr(opts, "handler", None)


def run(opts: argparse.Namespace, data_dir: str) -> int:
    """Run the command in ``opts`` with the gate and the core context open."""
    from kd.app import SettingsPlatform, finish_restore, open_context, trusted_keys  # noqa: PLC0415
    from kd.lock.coreport import DonglePort  # noqa: PLC0415
    from kd.lock.gate import open_gate  # noqa: PLC0415
    from kd.store.database import open_stores  # noqa: PLC0415

    handler = handler_of(opts)
    assert handler is not None
    finish_restore(data_dir)
    gate = open_gate(data_dir, getattr(opts, "lock", None))
    ctx = None
    try:
        probe = open_stores(data_dir)
        site = probe.settings.get("settings", "site") or {}
        probe.close()
        trusted = trusted_keys(site)
        ctx = open_context(data_dir, dongle=DonglePort(gate.driver), trusted=trusted)
        ctx.platform = SettingsPlatform(ctx.site, trusted)
        session = Session(opts, data_dir, ctx, gate)
        if opts.command not in BEFORE_PASSWORD_CHANGE:
            from kd.core.accounts import AccountService  # noqa: PLC0415

            AccountService(ctx).require_changed(session.actor)
        return handler(session)
    finally:
        if ctx is not None:
            ctx.platform.close()
            ctx.stores.close()
        gate.close()
