"""The command line: ``main.py <command>``, thin shells over the core services.

Each chapter module in ``MODULES`` has ``register(commands)``, which adds its
sub-parsers with ``set_defaults(handler=...)``; a handler takes a ``Session`` and
returns the exit code. Handlers use the services of ``Session.core`` (built once by
``kd.site.open_site``; a handler never builds a service) and import the core lazily
only for constants, so that building the parser (which the GUI start also does) stays
cheap.

``run(opts, data_dir)`` runs the command where the data folder is:

- **No instance holds the folder**: it takes the instance lock (``kd.store.instance``)
  and runs the command here (``run_here``): ``sync-lock`` and the folder commands
  (``repair-db``) on the folder itself; the rest over the site opened by
  ``kd.site.open_site`` as every start does (interrupted work finished, stores, the site
  config, drill platform in drill mode, the dongle gate — exit 4 without the site's
  dongle —, context and core; no LAN service and no background threads): the initial
  password rule, the acting account's password when the command needs it
  (``authorize``), the handler, the site closed.
- **A file command** (``proof verify``: ``file_handler``) reads only its file and the
  folder's settings files: it runs here whoever holds the folder, without the instance
  lock, a site or a password.
- **The window or ``--headless`` holds it**: the command runs in that instance, over its
  control channel (``kd.control``; docs/control-protocol.md): ``run_in_site`` there
  parses the same argv with the same parser (``build_parser``) and runs the same checks
  and handler against the instance's own site, its output and prompts carried to this
  terminal, its exit code returned. Paths in the arguments (``PATH_OPTIONS``) are taken
  relative to this command line's working directory. ``sync-lock``, the folder commands
  and the commands after which the instance must restart (``RESTART_COMMANDS``: 系统恢复,
  模考转正考, 系统初始化) are refused there with exit 3, as before the channel existed;
  so is every command when the instance offers no channel (a window still starting, a
  start refused at the dongle gate).

``UserError`` propagates to ``main.py`` (exit 2, or its own ``exit_code``; raised in
the instance, it is raised again on the command line with the same message and code);
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
import os
import sys
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import kd
from kd.errors import InstanceRunningError, UserError

log = logging.getLogger(__name__)

#: commands an account still on its initial password may use (the rest need a changed password)
BEFORE_PASSWORD_CHANGE = frozenset(["login", "passwd", "status", "audit"])

#: read-only commands: they print what is stored to this terminal, change nothing, write no file
OPEN_COMMANDS = frozenset(["status", "audit", "results", "monitor", "outbox", "drill", "timeline", "incident",
                           "extra-time", "proof"])
#: options that make an open command change state: with one of them it asks like the rest
STATE_OPTIONS = {"outbox": ("send",), "incident": ("writes",), "extra-time": ("writes",),  # kd.cli.incidents
                 "proof": ("writes",)}  # kd.cli.proof: export asks, verify does not
#: commands that check the account's own password themselves (``AccountService``, same back-off)
OWN_PASSWORD = frozenset(["login", "passwd"])


def _repairs_settings(opts: argparse.Namespace) -> bool:
    """``repair-db settings``: the settings store is the broken one, so there is no password to check."""
    return getattr(opts, "name", None) == "settings"


#: commands that ask unless their arguments leave no password to check
NO_PASSWORD_WHEN = {"repair-db": _repairs_settings}

MODULES = ("kd.cli.audit", "kd.cli.live", "kd.cli.exam", "kd.cli.results", "kd.cli.system", "kd.cli.repair",
           "kd.cli.timeline", "kd.cli.incidents", "kd.cli.proof")

STDIN_LINE_HELP = "从标准输入的第一行读取管理员密码（供脚本使用；不给则在终端中询问）"

#: commands after which the instance must restart: never run inside a running instance
RESTART_COMMANDS = frozenset(["restore", "to-formal", "init"])
#: options (argparse ``dest``) that name a file or folder: relative to the command line's working directory
PATH_OPTIONS = ("zip", "ptq", "file", "dir", "folder")
RESTART_REMEDY = ("系统恢复、模考转正考和系统初始化之后须重新启动考点管理系统：请在运行中的考点管理系统窗口中操作，"
                  "或先退出它（--headless：按 Ctrl+C）再运行此命令。")
NO_CHANNEL_REMEDY = ("运行中的考点管理系统没有开放本机控制通道（它仍在启动或正在关闭）：请稍后重试，"
                     "或在运行中的系统中操作。")


def build_parser() -> argparse.ArgumentParser:
    """``main.py``'s parser: the global options and every command (the instance parses with it too)."""
    from kd import drill  # noqa: PLC0415 - argparse only
    from kd.lock import sync as lock_sync  # noqa: PLC0415

    parser = argparse.ArgumentParser(
        prog="kaodian", description="考点管理系统 (kaodian)",
        epilog="除 status、audit、results、monitor、outbox（不带 --send）、timeline、incident list、"
               "extra-time list/propose、proof verify、login、passwd、drill 外，"
               "每个命令先询问管理员密码（终端中输入，或 --password-stdin 从标准输入的第一行读取）；"
               "连续输错与登录窗口一样限时重试。考点管理系统（窗口或 --headless）正在运行时，"
               "命令在运行中的系统里执行（本机控制通道）。")
    add_global_options(parser)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    add_password(lock_sync.add_parser(commands), "这是本机数据目录的管理员密码，不是监控平台密码 --password")
    drill.add_parser(commands)
    add_parsers(commands)
    return parser


def add_global_options(parser: argparse.ArgumentParser) -> None:
    """The options before the command (``main.py`` parses with these alone when no command is given)."""
    parser.add_argument("--version", action="version", version="kaodian " + kd.__version__)
    parser.add_argument("--data-dir", help="数据目录（默认：程序旁的 data 文件夹；或环境变量 KD_DATA_DIR）")
    parser.add_argument("--headless", action="store_true", help="只运行后台服务，不打开窗口")
    parser.add_argument("-v", "--verbose", action="store_true", help="调试日志")
    parser.add_argument("--lock", metavar="URL",
                        help="机考锁端口，如 COM3、socket://127.0.0.1:7700（默认：环境变量 KD_LOCK_URL 或自动检测）")
    parser.add_argument("--lan-port", type=int, default=int(os.environ.get("KD_LAN_PORT", "9190")),
                        help="考场通讯端口（默认 9190；0 表示任选空闲端口，用于测试）")
    parser.add_argument("--lan-host", metavar="ADDRESS",
                        default=os.environ.get("KD_LAN_HOST", "0.0.0.0"),  # noqa: S104 - the LAN by default
                        help="考场通讯服务只在本机的这个地址上监听，如考试局域网上的 192.168.10.2"
                             "（默认：所有网络接口；或环境变量 KD_LAN_HOST）")


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
    """What a command handler gets: its options, the open site and, from the site, ``core``
    (``kd.core.services.Core``: every service, built once) and ``ctx``; ``actor`` is the
    acting account."""

    def __init__(self, opts: argparse.Namespace, site: Any) -> None:
        self.opts = opts
        self.site = site
        self.core: Any = site.core
        self.ctx: Any = site.ctx
        self.actor = actor_of(opts)

    def session_names(self) -> Dict[str, str]:
        """``{session id: name}`` of the loaded package (empty before 导入考务): how the texts name sessions."""
        from kd.core import labels  # noqa: PLC0415

        return dict(self.ctx.manifest_view(labels.session_names) or {})

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
    flags, options = USER
    parser.add_argument(*flags, **options)


def add_password(parser: argparse.ArgumentParser, then: str = "") -> None:
    """``--user`` and ``--password-stdin`` for a command that asks; ``then``: what stdin holds after line 1."""
    add_user(parser)
    parser.add_argument("--password-stdin", action="store_true",
                        help=STDIN_LINE_HELP + ("；" + then if then else ""))


Arg = Tuple[Tuple[str, ...], Dict[str, Any]]


def arg(*flags: str, **options: Any) -> Arg:
    """One ``add_argument`` call, as a row of ``command``'s arguments."""
    return flags, options


#: the acting account (``add_user``), for a command that checks a password itself
USER = arg("--user", metavar="U", help="账号（默认 admin）")


def command(commands: Any, name: str, help_text: str, handler: Callable[..., int], *arguments: Arg,
            json_option: bool = True, asks: bool = True, stdin_then: str = "",
            handler_key: str = "handler") -> argparse.ArgumentParser:
    """Add the sub-command ``name`` to ``commands`` (an argparse sub-parsers object).

    Its options, in this order (as ``--help`` lists them): ``arguments``, ``--json`` (unless
    ``json_option`` is false), then, when the command ``asks`` the administrator's password,
    ``--user`` and ``--password-stdin`` (``add_password``; ``stdin_then``: what stdin holds
    after the password's line). ``handler`` is set as ``handler_key`` (``folder_handler``:
    a command on the data folder itself).
    """
    parser = commands.add_parser(name, help=help_text)
    for flags, options in arguments:
        parser.add_argument(*flags, **options)
    if json_option:
        add_json(parser)
    if asks:
        add_password(parser, stdin_then)
    parser.set_defaults(**{handler_key: handler})
    return parser


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
    remote = getattr(sys.stdin, "ask_secret", None)  # run for a command line: its terminal asks (kd.control)
    if remote is not None:
        return str(remote("{}：".format(what)))
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


def file_handler_of(opts: argparse.Namespace) -> Optional[Callable[[argparse.Namespace, str], int]]:
    """A command that reads only a file (``proof verify``): no instance lock, no site, no password."""
    return getattr(opts, "file_handler", None)


def handler_of(opts: argparse.Namespace) -> Optional[Callable[[Session], int]]:
    return getattr(opts, "handler", None)


def local_only(opts: argparse.Namespace) -> bool:
    """True for a command that never runs inside a running instance (``sync-lock``, folder commands, restarts)."""
    return (opts.command == "sync-lock" or folder_handler_of(opts) is not None or handler_of(opts) is None
            or file_handler_of(opts) is not None or opts.command in RESTART_COMMANDS)


def _refusal(opts: argparse.Namespace, held: InstanceRunningError) -> InstanceRunningError:
    """What a command that cannot run in the running instance is told (exit 3)."""
    if opts.command in RESTART_COMMANDS:
        return InstanceRunningError(held.cause, RESTART_REMEDY)
    return held


def run(opts: argparse.Namespace, data_dir: str) -> int:
    """Run the command in ``opts`` here, or in the instance that holds ``data_dir`` (module docstring).

    ``opts.argv`` (set by ``main.py``) is what the instance is sent. Raises ``UserError``
    (``InstanceRunningError``, exit 3: a command that cannot run in the running instance,
    or no channel to it).
    """
    from kd.store.instance import InstanceLock  # noqa: PLC0415

    file_handler = file_handler_of(opts)
    if file_handler is not None:  # reads only a file and the folder's settings files: runs beside an instance
        return int(file_handler(opts, data_dir))
    lock = InstanceLock(data_dir)
    try:
        lock.acquire()
    except InstanceRunningError as held:
        argv = getattr(opts, "argv", None)
        if local_only(opts) or argv is None:
            raise _refusal(opts, held) from None
        from kd.control.client import ChannelUnavailable, run_remote  # noqa: PLC0415

        try:
            return run_remote(data_dir, list(argv))
        except ChannelUnavailable as e:
            log.warning("no control channel to the instance holding %s: %s", data_dir, e)
        try:  # it may have ended meanwhile: then the folder is free
            lock.acquire()
        except InstanceRunningError as again:
            raise InstanceRunningError(again.cause, NO_CHANNEL_REMEDY) from None
    try:
        return run_here(opts, data_dir)
    finally:
        lock.release()


def run_here(opts: argparse.Namespace, data_dir: str) -> int:
    """The command in ``opts`` on the data folder itself; the caller holds the instance lock."""
    if opts.command == "sync-lock":
        from kd.lock import sync as lock_sync  # noqa: PLC0415

        check_folder_password(opts, data_dir)  # before the dongle or the platform is touched
        return int(lock_sync.run_cli(opts, opts.lock))
    folder_handler = folder_handler_of(opts)
    if folder_handler is not None:  # works on the folder itself (repair-db)
        return int(folder_handler(opts, data_dir))
    from kd.site import open_site  # noqa: PLC0415

    handler = handler_of(opts)
    assert handler is not None
    site = open_site(data_dir, lock_url=getattr(opts, "lock", None))
    try:
        session = Session(opts, site)
        authorize(session)
        rc = handler(session)
    except BaseException:
        site.close_quietly("closing the site after a failed command")
        raise
    site.close()
    return rc


def run_in_site(site: Any, argv: List[str], cwd: str) -> int:
    """A command line's command, run in this running instance over its ``site``; the exit code.

    Called by the control server (``kd.control.server``) in its connection thread, whose
    stdin/stdout/stderr are the command line's. Parses ``argv`` with ``build_parser``
    (an argparse error prints its usage and returns 2), refuses what must not run here
    (exit 3), makes ``PATH_OPTIONS`` absolute against ``cwd``, then does what
    ``run_here`` does for a handler with the site already open: ``authorize`` and the
    handler. Raises what they raise (``UserError``: the control server hands it to the
    command line, which reports it as ``main.py`` does).
    """
    try:
        opts = build_parser().parse_args(argv)
    except SystemExit as e:  # argparse printed the usage or the error (to this thread's stderr)
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
    opts.argv = list(argv)
    log.info("control: command %s for a command line", opts.command)
    if opts.command is None or local_only(opts):
        raise _refusal(opts, InstanceRunningError(
            "考点管理系统已经在运行（数据目录 {}，进程 {}）。".format(site.data_dir, os.getpid()),
            "请在任务栏右下角的托盘图标中找到已打开的系统；不要同时运行两个考点管理系统。"))
    for dest in PATH_OPTIONS:
        value = getattr(opts, dest, None)
        if isinstance(value, str) and value and not os.path.isabs(value):
            setattr(opts, dest, os.path.join(cwd, value))
    handler = handler_of(opts)
    assert handler is not None
    session = Session(opts, site)
    authorize(session)
    return int(handler(session))
