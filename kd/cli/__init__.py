"""The command line: ``main.py <command>``, thin shells over the core services.

Each chapter module in ``MODULES`` has ``register(commands)``, which adds its
sub-parsers with ``set_defaults(handler=...)``; a handler takes a ``Session`` and
returns the exit code. Handlers use the services of ``Session.core`` (built once by
``kd.site.open_site``; a handler never builds a service) and import the core lazily
only for constants, so that building the parser (which the GUI start also does) stays
cheap.

``run(opts, data_dir)`` opens the site as every start does (``kd.site.open_site``:
interrupted work finished, stores, the site config, drill platform in drill mode, the
dongle gate — exit 4 without the site's dongle —, context and core; no LAN service and
no background threads), checks the initial password rule, calls the handler and closes
the site. ``UserError`` propagates to ``main.py`` (exit 2, or its own ``exit_code``);
``Session.out`` prints a result as text, or as JSON with ``--json``.
"""

import argparse
import importlib
import json
import logging
import sys
from typing import Any, Callable, Optional

log = logging.getLogger(__name__)

#: commands an account still on its initial password may use (the rest need a changed password)
BEFORE_PASSWORD_CHANGE = frozenset(["login", "passwd", "status", "audit"])

MODULES = ("kd.cli.audit", "kd.cli.live", "kd.cli.exam", "kd.cli.results", "kd.cli.system", "kd.cli.repair")


class Session:
    """What a command handler gets: options and the open site (its core, context and gate)."""

    def __init__(self, opts: argparse.Namespace, site: Any) -> None:
        self.opts = opts
        self.site = site

    @property
    def data_dir(self) -> str:
        return str(self.site.data_dir)

    @property
    def core(self) -> Any:
        """The site's ``kd.core.services.Core``: every service, built once."""
        return self.site.core

    @property
    def ctx(self) -> Any:
        return self.site.ctx

    @property
    def gate(self) -> Any:
        return self.site.gate

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


def folder_handler_of(opts: argparse.Namespace) -> Optional[Callable[[argparse.Namespace, str], int]]:
    """A command that works on the data folder itself, before any site opens (``repair-db``)."""
    return getattr(opts, "folder_handler", None)


def handler_of(opts: argparse.Namespace) -> Optional[Callable[[Session], int]]:
    return getattr(opts, "handler", None)


def run(opts: argparse.Namespace, data_dir: str) -> int:
    """Run the command in ``opts`` over the site opened by ``kd.site.open_site``."""
    from kd.site import open_site  # noqa: PLC0415

    handler = handler_of(opts)
    assert handler is not None
    site = open_site(data_dir, lock_url=getattr(opts, "lock", None))
    try:
        session = Session(opts, site)
        if opts.command not in BEFORE_PASSWORD_CHANGE:
            session.core.accounts.require_changed(session.actor)
        rc = handler(session)
    except BaseException:
        try:
            site.close()
        except Exception:  # noqa: BLE001 - the command's own error is the one to report
            log.exception("closing the site after a failed command")
        raise
    site.close()
    return rc
