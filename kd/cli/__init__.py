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
no background threads), checks the initial password rule, asks the acting account's
password when the command needs it (``authorize``), calls the handler and closes the
site. ``UserError`` propagates to ``main.py`` (exit 2, or its own ``exit_code``);
``Session.out`` prints a result as text, or as JSON with ``--json``.

**The administrator's password.** Every command that changes state or exports data asks
the password of the acting account (``--user``, default admin) before it does anything:
``getpass`` on the terminal, or the first line of stdin with ``--password-stdin``. It is
checked by ``AccountService.login``, the login window's own check: a wrong password is a
failed login (counted and persisted, with the same back-off), a locked account is refused
with the time to wait. Which commands ask is the table below (``needs_password``);
docs/operations.md "命令行与管理员密码" lists it for the administrator. A command not in
the table asks: a new command is closed until someone decides otherwise. Commands that
read more lines from stdin read them after the password's line, in the order their
``--help`` gives. ``sync-lock`` and ``repair-db`` open no site: they check the password
against the data folder's settings store alone (``settings_accounts``), whatever the
account's password is (a fresh internet PC's admin/888 included), since the initial
password rule needs a site they may not have.
"""

import argparse
import contextlib
import getpass
import importlib
import json
import logging
import sys
from typing import Any, Callable, Iterator, Optional

from kd.errors import UserError

log = logging.getLogger(__name__)

#: commands an account still on its initial password may use (the rest need a changed password)
BEFORE_PASSWORD_CHANGE = frozenset(["login", "passwd", "status", "audit"])

#: read-only commands: they print what is stored to this terminal, change nothing, write no file
OPEN_COMMANDS = frozenset(["status", "audit", "results", "monitor", "outbox", "drill"])
#: options that make an open command change state: with one of them it asks like the rest
STATE_OPTIONS = {"outbox": ("send",)}
#: commands that check the account's own password themselves (``AccountService``, same back-off)
OWN_PASSWORD = frozenset(["login", "passwd"])


def _repairs_settings(opts: argparse.Namespace) -> bool:
    """``repair-db settings``: the settings store is the broken one, so there is no password to check."""
    return getattr(opts, "name", None) == "settings"


#: commands that ask unless their arguments leave no password to check
NO_PASSWORD_WHEN = {"repair-db": _repairs_settings}

MODULES = ("kd.cli.audit", "kd.cli.live", "kd.cli.exam", "kd.cli.results", "kd.cli.system", "kd.cli.repair")

STDIN_LINE_HELP = "从标准输入的第一行读取管理员密码（供脚本使用；不给则在终端中询问）"


def needs_password(opts: argparse.Namespace) -> bool:
    """True when the command in ``opts`` must be given the acting account's password first."""
    command = getattr(opts, "command", None)
    if command is None or command in OWN_PASSWORD:
        return False
    if command in OPEN_COMMANDS:
        return any(getattr(opts, option, False) for option in STATE_OPTIONS.get(command, ()))
    exempt = NO_PASSWORD_WHEN.get(command)
    return not (exempt is not None and exempt(opts))


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
        return actor_of(self.opts)

    def out(self, data: Any, text: Optional[str] = None) -> None:
        """Print ``data`` as JSON (``--json``) or ``text`` (default: JSON, indented)."""
        if getattr(self.opts, "json", False) or text is None:
            print(json.dumps(data, ensure_ascii=False, indent=None if getattr(self.opts, "json", False) else 1))
        else:
            print(text)
        sys.stdout.flush()


def actor_of(opts: argparse.Namespace) -> str:
    """The acting account: ``--user``, default admin."""
    return (getattr(opts, "user", None) or "admin").strip() or "admin"


def add_json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="以 JSON 输出")


def add_user(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--user", metavar="U", help="账号（默认 admin）")


def add_password(parser: argparse.ArgumentParser, then: str = "") -> None:
    """``--user`` and ``--password-stdin`` for a command that asks; ``then``: what stdin holds after line 1."""
    add_user(parser)
    parser.add_argument("--password-stdin", action="store_true",
                        help=STDIN_LINE_HELP + ("；" + then if then else ""))


def add_parsers(commands: Any) -> None:
    """Add every chapter's sub-commands to ``commands`` (an argparse sub-parsers object)."""
    for name in MODULES:
        importlib.import_module(name).register(commands)


def read_line(what: str) -> str:
    """The next line of stdin (without its line end); ``UserError`` at the end of the input."""
    line = sys.stdin.readline() if sys.stdin is not None else ""
    if not line:
        raise UserError("标准输入中缺少{}。".format(what), "请每行提供一项输入（顺序见该命令的 --help）。")
    return line.rstrip("\r\n")


def read_secret(what: str, from_stdin: bool, flag: str = "--password-stdin") -> str:
    """A secret from the next stdin line (``from_stdin``), else typed on the terminal without echo.

    Refuses (``UserError``) when stdin is not a terminal and ``from_stdin`` is false: a
    script must say where its secrets are (``flag``) instead of waiting on a prompt.
    """
    if from_stdin:
        return read_line(what)
    if sys.stdin is None or not sys.stdin.isatty():
        raise UserError("此命令需要输入{}，但标准输入不是终端，无法提示输入。".format(what),
                        "请在命令提示符窗口中运行并按提示输入，或用 {} 从标准输入提供（每行一项）。".format(flag))
    return getpass.getpass("{}：".format(what))


def check_password(accounts: Any, opts: argparse.Namespace, *, initial_rule: bool = True) -> str:
    """Ask the acting account's password and check it with ``accounts.login``; returns the user.

    ``initial_rule``: refuse an account still on its initial password first
    (``PasswordChangeRequired``, before anything is asked). Raises ``LoginFailed`` (wrong
    password: counted and persisted like a failed login; locked: the time to wait) and
    ``UserError`` (no password given).
    """
    user = actor_of(opts)
    if initial_rule:
        accounts.require_changed(user)
    password = read_secret("账号 {} 的密码".format(user), bool(getattr(opts, "password_stdin", False)))
    accounts.login(user, password)
    log.info("command %s: password of %s checked", getattr(opts, "command", None), user)
    return user


def authorize(session: Session) -> None:
    """The checks before a handler runs: the initial password rule, then the password if the command asks."""
    opts = session.opts
    accounts = session.core.accounts
    if opts.command not in BEFORE_PASSWORD_CHANGE:
        accounts.require_changed(session.actor)
    if needs_password(opts):
        check_password(accounts, opts)


@contextlib.contextmanager
def settings_accounts(data_dir: str) -> Iterator[Any]:
    """An ``AccountService`` over the data folder's settings store alone (commands that open no site).

    Interrupted work is finished first, as at every start; the other stores are not
    opened (``repair-db`` runs when one of them is broken). Raises what opening the
    settings store raises (a missing or rolled-back settings store is refused by name).
    """
    from kd.core.accounts import AccountService  # noqa: PLC0415
    from kd.core.context import Context  # noqa: PLC0415
    from kd.events import EventHub  # noqa: PLC0415
    from kd.store.database import Database, Stores  # noqa: PLC0415
    from kd.store.datafolder import DataFolder  # noqa: PLC0415

    folder = DataFolder(data_dir)
    folder.finish_interrupted()
    listed = "settings" in folder.ensure()["stores"]
    settings = Database.open(folder.store_path("settings"), must_exist=listed)
    stores = Stores(settings, Database.in_memory("exam"), Database.in_memory("runtime"))
    try:
        ctx = Context(folder.root, stores, folder.open_spool(), folder.open_audit(), EventHub(), folder=folder)
        yield AccountService(ctx)
    finally:
        stores.close()


def check_folder_password(opts: argparse.Namespace, data_dir: str) -> Optional[str]:
    """``sync-lock`` / ``repair-db``: the password check against the folder's settings, if the command asks."""
    if not needs_password(opts):
        return None
    with settings_accounts(data_dir) as accounts:
        return check_password(accounts, opts, initial_rule=False)


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
        authorize(session)
        rc = handler(session)
    except BaseException:
        try:
            site.close()
        except Exception:  # noqa: BLE001 - the command's own error is the one to report
            log.exception("closing the site after a failed command")
        raise
    site.close()
    return rc
