"""kaodian (考点管理系统) entry point.

    kaodian                      the desktop app (drill mode when no site is configured;
                                 kd.views.start: start screens, main window, tray)
    kaodian --headless           services only (LAN service, senders), until Ctrl+C/SIGTERM
    kaodian SUBCOMMAND ...       command-line tools (see --help); those that change state or
                                 export data ask the administrator's password first (kd.cli).
                                 While the window or --headless holds the data folder, the
                                 command runs in that instance over its local control channel
                                 (kd.control, docs/control-protocol.md): same output, same exit codes
    kaodian --data-dir DIR       use DIR instead of data/ beside the program

Exit codes: 0 ok, 1 internal error (see the log), 2 user error (message printed),
3 another instance is running on this data folder (a second window or --headless; a
command that cannot run in the running instance: sync-lock, repair-db, restore,
to-formal, init; or no control channel to it), 4 exam dongle missing or wrong.
On the GUI route a refusal before the first window (data folder not writable, already
running, internal error) is also shown in a message box (kd.views.fatal): the windowed
exe has no console. Logging is configured here and only here.
A restart of the GUI (after 系统初始化, 模考转正考, 系统恢复) ends this process cleanly and
starts a new one with the same arguments once the instance lock is released (kd.relaunch).
"""

import argparse
import logging
import logging.handlers
import os
import signal
import sys
import tempfile
import threading
from typing import Any, List, Optional

import kd
from kd import cli, drill, paths, relaunch
from kd.errors import UserError
from kd.store.instance import InstanceLock
from kd.views import dpi, splash  # neither imports tkinter

log = logging.getLogger("kaodian")

#: this script, absolute (``__file__`` may be relative on Python 3.8): a restart runs it again
ENTRY = os.path.abspath(__file__)

LOG_FORMAT = "%(asctime)s %(levelname)-7s [%(threadName)s] %(name)s: %(message)s"


def setup_logging(data_dir: str, verbose: bool = False) -> str:
    """Rotating file log under ``data_dir/logs``, plus stderr; returns the log path."""
    log_dir = paths.sub_dir(data_dir, "logs")
    log_path = os.path.join(log_dir, "kaodian.log")
    root = logging.getLogger()
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    for handler in list(root.handlers):
        root.removeHandler(handler)
    file_handler = logging.handlers.RotatingFileHandler(
        log_path, maxBytes=5 * 1024 * 1024, backupCount=5, encoding="utf-8"
    )
    file_handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root.addHandler(file_handler)
    if sys.stderr is not None:  # a windowed exe has no stderr
        console = logging.StreamHandler()
        console.setFormatter(logging.Formatter(LOG_FORMAT))
        console.setLevel(logging.DEBUG if verbose else logging.WARNING)
        root.addHandler(console)
    log.info("kaodian %s starting; argv=%r; python %s", kd.__version__, sys.argv, sys.version.split()[0])
    return log_path


def build_parser() -> argparse.ArgumentParser:
    """The command line's parser (``kd.cli.build_parser``: the running instance parses with it too)."""
    return cli.build_parser()


class _NotGlobalOnly(Exception):
    """``args`` are not the global options alone: the whole parser parses them (and reports errors)."""


class _GlobalParser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse's error() prints and exits: here the whole parser does
        raise _NotGlobalOnly(message)


def parse_args(args: List[str]) -> argparse.Namespace:
    """``args`` parsed as ``build_parser()`` parses them. Without a command (the window,
    --headless) the global options alone parse them: building every command's parser
    imports the command modules (~60 ms before the login window). A command, --help, an
    unknown option or an error goes to the whole parser, so its output is unchanged."""
    if not any(a in ("-h", "--help", "--version") for a in args):
        parser = _GlobalParser(add_help=False)
        cli.add_global_options(parser)
        try:
            opts, rest = parser.parse_known_args(args)
        except _NotGlobalOnly:
            rest = ["(error)"]
        if not rest:
            opts.command = None
            return opts
    return build_parser().parse_args(args)


def wait_for_shutdown(announce: str = "") -> None:
    """Block until Ctrl+C or SIGTERM; print ``announce`` once the handlers are in place."""
    stop = threading.Event()

    def handler(signum: int, frame: object) -> None:
        log.info("signal %s: shutting down", signum)
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    if announce:
        print(announce, flush=True)
    while not stop.wait(0.5):
        pass


def run(opts: argparse.Namespace) -> int:
    data_dir = paths.prepare_data_dir(paths.data_dir(opts.data_dir))
    log_path = setup_logging(data_dir, opts.verbose)
    try:
        if opts.command is not None:
            # a command: on the folder (taking the instance lock), or in the instance holding it (kd.cli.run)
            log.info("data dir %s", data_dir)
            return cli.run(opts, data_dir)
        with InstanceLock(data_dir, wait_s=relaunch.lock_wait_s()) as instance:
            log.info("data dir %s", data_dir)
            if is_gui(opts):
                from kd.views import start  # noqa: PLC0415 - only the GUI imports tkinter

                rc = start.run(data_dir, lock_url=opts.lock, lan_host=opts.lan_host, lan_port=opts.lan_port,
                               log_path=log_path)
                log.info("stopped cleanly")
                if rc != start.RESTART:
                    return int(rc)
                instance.release()  # the new instance must find the data folder free
                return restart(opts)
            if opts.headless:
                site = open_headless(opts, data_dir)  # LockGateError (exit 4) without the site's dongle
                try:
                    wait_for_shutdown("kaodian {} 运行中（数据目录 {}，考场通讯端口 {}），按 Ctrl+C 退出".format(
                        kd.__version__, data_dir, site.lan.port()))
                finally:
                    site.close()
            log.info("stopped cleanly")
            return 0
    except UserError as e:
        log.warning("user error: %s (%s)", e.message, e.detail)
        raise
    except Exception:
        log.exception("internal error")
        tell_user(opts, f"内部错误，详见日志：{log_path}")
        return 1


def restart(opts: argparse.Namespace) -> int:
    """After 系统初始化 / 模考转正考 / 系统恢复: start a new instance (kd.relaunch) and end this one.

    Called once the window closed, the App stopped and the instance lock was released.
    Returns 0 (this process exits), or 1 when no new instance could be started (the user
    is told to start kaodian again).
    """
    try:
        relaunch.spawn(getattr(opts, "relaunch_args", sys.argv[1:]), script=ENTRY)
    except OSError as e:
        log.error("restarting: could not start the new instance: %r", e)
        tell_user(opts, "考点管理系统未能自动重新启动（{}）。\n请重新打开考点管理系统。".format(e))
        return 1
    left = sorted(t.name for t in threading.enumerate() if t is not threading.current_thread())
    log.info("restarting: this process exits now (other threads: %s)", ", ".join(left) or "none")
    return 0


def open_headless(opts: argparse.Namespace, data_dir: str) -> Any:
    """``--headless``: the site with the LAN service and its background work (``kd.site.open_site``);
    every alarm of 考点时间线 opened or closed is logged (WARNING: on stderr and in the log file).

    Raises what ``open_site`` raises (``LockGateError``: exit 4); nothing stays open then.
    """
    from kd.core.timeline import log_alarms  # noqa: PLC0415
    from kd.events import EventHub  # noqa: PLC0415
    from kd.site import LanOptions, open_site  # noqa: PLC0415 - the GUI route never needs it

    hub = EventHub()
    log_alarms(hub, logging.getLogger("kaodian.alarms"))  # before the first tick: every alarm is logged
    return open_site(data_dir, hub=hub, lock_url=opts.lock, lan=LanOptions(host=opts.lan_host, port=opts.lan_port),
                     ticks=True)


def is_gui(opts: argparse.Namespace) -> bool:
    """True when ``opts`` open the window (no command, not --headless)."""
    return opts.command is None and not opts.headless


def tell_user(opts: argparse.Namespace, text: str) -> None:
    """``text`` on stderr, and in a message box on the GUI route (no console there)."""
    if sys.stderr is not None:
        print(text, file=sys.stderr, flush=True)
    if is_gui(opts):
        try:
            from kd.views.fatal import show_fatal  # noqa: PLC0415 - only the GUI imports tkinter

            show_fatal(text)
        except Exception:  # noqa: BLE001 - the message is on stderr and in the log already
            log.exception("could not show the message box")


def run_drill(opts: argparse.Namespace) -> int:
    """``drill``: its own temp work folder and App (no --data-dir, no gate); see kd/drill.py."""
    work = tempfile.mkdtemp(prefix="kd-drill-")
    setup_logging(work, opts.verbose)
    return drill.run_cli(opts, work)


def console_streams() -> None:
    """Give a windowed exe (no stdout/stderr) somewhere to print.

    Started from a console (cmd: ``kaodian.exe --version``, ``sync-lock``, ``drill``), the
    exe attaches to that console and prints there; otherwise the output goes nowhere
    (os.devnull), so argparse and print() never write to None.
    """
    if sys.stdout is not None and sys.stderr is not None:
        return
    stream = None
    if os.name == "nt":
        try:
            import ctypes  # noqa: PLC0415 - Windows, windowed exe only

            if ctypes.windll.kernel32.AttachConsole(-1):  # ATTACH_PARENT_PROCESS
                stream = open("CONOUT$", "w", encoding="utf-8")  # noqa: SIM115 - for the process' life
        except (OSError, AttributeError):
            stream = None
    if stream is None:
        stream = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115 - for the process' life
    if sys.stdout is None:
        sys.stdout = stream
    if sys.stderr is None:
        sys.stderr = stream


def main(argv: Optional[List[str]] = None) -> int:
    close_splash = splash.install()  # the one-file exe's splash: closed when the login window is painted
    console_streams()
    args = sys.argv[1:] if argv is None else list(argv)
    opts = parse_args(args)
    opts.relaunch_args = args  # a restart (GUI route) starts the new instance with these
    opts.argv = args  # a command sent to the instance holding the data folder (kd.cli.run)
    if is_gui(opts):
        dpi.enable()  # before the first Tk window: sharp at 125-150 % display scaling (Windows)
    else:
        close_splash()  # a command or --headless opens no window
    try:
        if opts.command == "drill":
            return run_drill(opts)
        try:
            return run(opts)
        except UserError as e:
            tell_user(opts, e.message)
            return e.exit_code
    finally:
        close_splash()


if __name__ == "__main__":
    sys.exit(main())
