"""An exam dongle (机考锁) emulator: the KDLOCK protocol on a TCP port or a pty.

Command line::

    python -m kd.lock.emulator --tcp 127.0.0.1:7700 --state DIR      # socket://127.0.0.1:7700
    python -m kd.lock.emulator --pty [--link PATH] --state DIR        # prints the device path

The first stdout line is what to pass to the driver (``socket://…`` URL or device path).
Further options: ``--trust KEY`` (base64 platform public key the dongle accepts sync
tickets from; repeatable, stored in the state), ``--lock-id ID`` and ``--site CODE``, or
``--identity FILE`` (a JSON file with ``lock_id``, hex ``seed`` and ``site_code``: the
platform simulator's ``dongle.json``, what the platform registered) for a new state,
``--clock-offset S``, ``--drift-ppm N``, ``--delay S``, ``--garbage``, ``--overlong``,
``--bad-signature``, ``--old-firmware`` (a revision-1 dongle: no ``SITE`` command).
While it runs, stdin takes control lines: ``unplug``, ``replug``, ``delay S``,
``drift PPM``, ``offset S``, ``garbage on|off``, ``overlong on|off``, ``badsig on|off``,
``oldfw on|off``, ``noise``, ``quit``.

State (``DIR/dongle.json``, written atomically before a change is acknowledged): lock id,
private key seed, the site code it is registered to (``null``: none), clock offset,
trusted platform keys, the stored ticket and its server time. Restarting on the same DIR
gives the same dongle with its clock and ticket. Where the emulator learns its site: the
registration, i.e. ``site_code`` of the identity file (or ``--site``) when the state is
made; a state file of an older emulator (no ``site_code``) is registered by the first
start that names a site. A state already registered to another site is refused, like
another identity: a dongle is never silently moved to another site.

Importable API for tests and the drill::

    emu = LockEmulator(state_dir, trust=[platform_public_key])
    url = emu.start_tcp()            # port 0: a free port; returns "socket://127.0.0.1:N"
    emu.unplug(); emu.replug()       # connection dropped and refused / accepted again
    emu.reply_delay = 1.0            # slow replies; .garbage / .overlong / .bad_signature
    emu.stop()

The state file and identity file are ``kd.lock.emustate``'s, the command handling
``kd.lock.emudongle``'s, the TCP and pty transports ``kd.lock.emutransport``'s; this
module is the command line and the import path for all of them.

A dongle serves one host at a time (like a serial port): a second TCP connection is
closed at once. ``unplug()`` closes the connection and the listening socket (pty: closes
the pty and removes the link), so the host sees exactly what a pulled USB device does.
"""

import argparse
import logging
import re
import signal
import sys
import threading
from typing import List, Optional, Tuple

from kd.errors import LockError
from kd.lock import protocol as P
from kd.lock.emudongle import FIRMWARE, OLD_FIRMWARE, Dongle, TicketChecker, default_ticket_checker
from kd.lock.emustate import STATE_FILE, STATE_FORMAT, DongleState, Identity, load_state, read_identity
from kd.lock.emutransport import LockEmulator

__all__ = [
    "FIRMWARE", "OLD_FIRMWARE", "STATE_FILE", "STATE_FORMAT", "Dongle", "DongleState", "Identity", "LockEmulator",
    "TicketChecker", "build_parser", "default_ticket_checker", "load_state", "main", "read_identity",
]

log = logging.getLogger(__name__)


# --- command line -------------------------------------------------------------------


def _key_arg(text: str) -> bytes:
    text = text.strip()
    if re.fullmatch(r"[0-9a-fA-F]{64}", text):
        return bytes.fromhex(text)
    try:
        return P.b64decode(text, P.PUBLIC_KEY_BYTES)
    except ValueError:
        raise argparse.ArgumentTypeError("expected a 32-byte public key in base64 or hex") from None


def _tcp_arg(text: str) -> Tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError("expected HOST:PORT, e.g. 127.0.0.1:7700")
    return host or "127.0.0.1", int(port)


def _site_arg(text: str) -> str:
    try:
        return P.check_site_code(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError("expected a site code of 4 to 10 digits, e.g. 11003") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m kd.lock.emulator", description="机考锁模拟器 (KDLOCK protocol)")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--tcp", type=_tcp_arg, metavar="HOST:PORT", help="listen on TCP (driver URL socket://HOST:PORT)")
    where.add_argument("--pty", action="store_true", help="open a pseudo-terminal and print its path")
    parser.add_argument("--link", help="with --pty: keep a symlink at this path pointing to the current pty")
    parser.add_argument("--state", required=True, help="state folder (id, key, clock, trusted keys, ticket)")
    parser.add_argument("--trust", type=_key_arg, action="append", default=[], help="trusted platform public key")
    parser.add_argument("--lock-id", help="lock id for a new state")
    parser.add_argument("--site", type=_site_arg, help="site code the dongle is registered to (4-10 digits)")
    parser.add_argument("--identity", help="JSON file with lock_id, seed (hex) and site_code for a new state, "
                        "e.g. the platform simulator's dongle.json")
    parser.add_argument("--clock-offset", type=float, help="set the clock this many seconds from the host clock")
    parser.add_argument("--drift-ppm", type=float, default=0.0, help="clock drift in parts per million")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before each reply")
    parser.add_argument("--garbage", action="store_true", help="send a line of noise before each reply")
    parser.add_argument("--overlong", action="store_true", help="send an over-long line before each reply")
    parser.add_argument("--bad-signature", action="store_true", help="sign challenges with a wrong key")
    parser.add_argument("--old-firmware", action="store_true", help="behave as a revision-1 dongle (no SITE)")
    parser.add_argument("-v", "--verbose", action="store_true")
    return parser


def _control(emu: LockEmulator, line: str) -> bool:
    """Apply one stdin control line; False for ``quit``."""
    words = line.split()
    if not words:
        return True
    cmd, arg = words[0].lower(), (words[1] if len(words) > 1 else "")
    flag = arg.lower() in ("on", "1", "true", "yes")
    if cmd == "quit":
        return False
    if cmd == "unplug":
        emu.unplug()
    elif cmd == "replug":
        emu.replug()
    elif cmd == "delay":
        emu.reply_delay = float(arg)
    elif cmd == "drift":
        emu.drift_ppm = float(arg)
    elif cmd == "offset":
        emu.dongle.set_clock_offset(float(arg))
    elif cmd == "garbage":
        emu.garbage = flag
    elif cmd == "overlong":
        emu.overlong = flag
    elif cmd == "badsig":
        emu.bad_signature = flag
    elif cmd == "oldfw":
        emu.old_firmware = flag
    elif cmd == "noise":
        emu.inject(b"\x00\xff noise \xfe\n")
    else:
        print("unknown control: {}".format(cmd), file=sys.stderr, flush=True)
    return True


def main(argv: Optional[List[str]] = None) -> int:
    opts = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if opts.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s [%(threadName)s] %(name)s: %(message)s",
        stream=sys.stderr,
    )
    lock_id, seed, site = opts.lock_id, None, opts.site
    if opts.identity:
        try:
            identity = read_identity(opts.identity)
        except (OSError, ValueError) as e:
            print("cannot read --identity: {}".format(e), file=sys.stderr)
            return 2
        if site and identity.site_code and site != identity.site_code:
            print("--site {} differs from the identity file's site {}".format(site, identity.site_code),
                  file=sys.stderr)
            return 2
        lock_id, seed, site = identity.lock_id, identity.seed, site or identity.site_code
    try:
        emu = LockEmulator(opts.state, trust=opts.trust, lock_id=lock_id, seed=seed, site_code=site)
    except LockError as e:
        print(e.message, file=sys.stderr)
        return e.exit_code
    if opts.clock_offset is not None:
        emu.dongle.set_clock_offset(opts.clock_offset)
    emu.drift_ppm = opts.drift_ppm
    emu.reply_delay = opts.delay
    emu.garbage, emu.overlong, emu.bad_signature = opts.garbage, opts.overlong, opts.bad_signature
    emu.old_firmware = opts.old_firmware
    try:
        url = emu.start_tcp(*opts.tcp) if opts.tcp else emu.start_pty(opts.link)
    except OSError as e:
        print("cannot start the emulator: {}".format(e), file=sys.stderr)
        return 2
    print(url, flush=True)
    print("lock id {} public key {} site {}".format(emu.lock_id, P.b64encode(emu.public_key), emu.site_code or "none"),
          file=sys.stderr, flush=True)
    done = threading.Event()
    signal.signal(signal.SIGINT, lambda *a: done.set())
    signal.signal(signal.SIGTERM, lambda *a: done.set())

    def read_controls() -> None:
        for line in sys.stdin:
            try:
                if not _control(emu, line):
                    break
            except (ValueError, OSError) as e:
                print("control failed: {}".format(e), file=sys.stderr, flush=True)
        else:
            return  # stdin closed: keep running until a signal
        done.set()

    if sys.stdin is not None:
        threading.Thread(target=read_controls, name="lock-emulator-stdin", daemon=True).start()
    while not done.wait(0.5):
        pass
    emu.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
