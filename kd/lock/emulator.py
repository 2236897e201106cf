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

A dongle serves one host at a time (like a serial port): a second TCP connection is
closed at once. ``unplug()`` closes the connection and the listening socket (pty: closes
the pty and removes the link), so the host sees exactly what a pulled USB device does.
"""

import argparse
import json
import logging
import os
import re
import secrets
import selectors
import signal
import socket
import sys
import threading
import time
from typing import Callable, Iterable, List, NamedTuple, Optional, Tuple

import nacl.signing

from kd.errors import LockError
from kd.fileio import write_file_durably
from kd.lock import protocol as P

log = logging.getLogger(__name__)

STATE_FILE = "dongle.json"
STATE_FORMAT = "kd-lock-emulator/1"
FIRMWARE = "emu-1.1"  # protocol 1, revision 2 (SITE)
#: what the ``old_firmware`` knob reports: a revision-1 dongle without SITE
OLD_FIRMWARE = "emu-1.0"

TicketChecker = Callable[[bytes, List[bytes], str], Tuple[int, int]]


def _now_ms() -> int:
    return int(time.time() * 1000)


class DongleState:
    """What a dongle keeps in its flash: identity, site, clock offset, trust, last ticket."""

    def __init__(self, lock_id: str, seed: bytes, site_code: Optional[str] = None) -> None:
        self.lock_id = P.check_lock_id(lock_id)
        self.seed = seed
        #: the site the platform registered the dongle to (None: not registered)
        self.site_code = P.check_site_code(site_code) if site_code is not None else None
        self.clock_offset_ms = 0
        self.trusted_keys: List[bytes] = []
        self.ticket: Optional[bytes] = None
        self.ticket_time_ms = 0

    @classmethod
    def create(cls, lock_id: Optional[str] = None, seed: Optional[bytes] = None,
               site_code: Optional[str] = None) -> "DongleState":
        return cls(lock_id or "EMU-" + secrets.token_hex(4).upper(), seed or secrets.token_bytes(32), site_code)

    def to_json(self) -> bytes:
        doc = {
            "format": STATE_FORMAT,
            "lock_id": self.lock_id,
            "seed": self.seed.hex(),
            "site_code": self.site_code,
            "clock_offset_ms": self.clock_offset_ms,
            "trusted_keys": [P.b64encode(k) for k in self.trusted_keys],
            "ticket": P.b64encode(self.ticket) if self.ticket is not None else None,
            "ticket_time_ms": self.ticket_time_ms,
        }
        return json.dumps(doc, indent=1).encode("utf-8")

    @classmethod
    def from_json(cls, data: bytes) -> "DongleState":
        """Parse a state file; ``ValueError`` naming what is wrong."""
        doc = json.loads(data.decode("utf-8"))
        if not isinstance(doc, dict) or doc.get("format") != STATE_FORMAT:
            raise ValueError("not a {} file".format(STATE_FORMAT))
        seed = bytes.fromhex(doc["seed"])
        if len(seed) != 32:
            raise ValueError("seed must have 32 bytes")
        state = cls(doc["lock_id"], seed, doc.get("site_code"))  # absent in older state files
        state.clock_offset_ms = int(doc["clock_offset_ms"])
        state.trusted_keys = [P.b64decode(k, P.PUBLIC_KEY_BYTES) for k in doc["trusted_keys"]]
        ticket = doc.get("ticket")
        state.ticket = P.b64decode(ticket, max_size=P.MAX_TICKET_BYTES) if ticket is not None else None
        state.ticket_time_ms = int(doc.get("ticket_time_ms") or 0)
        return state


def load_state(state_dir: str, lock_id: Optional[str] = None, seed: Optional[bytes] = None,
               site_code: Optional[str] = None) -> Tuple[DongleState, bool]:
    """The dongle state in ``state_dir`` (created when missing); True when it must be saved.

    ``lock_id`` and ``seed`` give a new state its identity (random when None); for an
    existing state they must match it. ``site_code`` registers the dongle to a site: a
    new state, or an existing one registered to none (an older emulator's file), takes
    it; one registered to another site is refused. A state file that exists but cannot
    be read, names another identity or another site raises ``LockError`` and is left as
    it is: a dongle never silently gets a new identity or site.
    """
    path = os.path.join(state_dir, STATE_FILE)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return DongleState.create(lock_id, seed, site_code), True
    try:
        state = DongleState.from_json(data)
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as e:
        raise LockError(
            "机考锁模拟器的状态文件损坏：{}".format(path),
            "请把该文件移走（模拟器会生成一把新的模拟锁），或从备份恢复后重试。",
            detail=repr(e),
        ) from e
    if (lock_id is not None and lock_id != state.lock_id) or (seed is not None and seed != state.seed):
        raise LockError(
            "机考锁模拟器的状态目录属于另一把模拟锁（编号 {}）：{}".format(state.lock_id, path),
            "请换一个状态目录，或不要指定新的机考锁身份。",
            detail="state {} vs requested {}".format(state.lock_id, lock_id),
        )
    if site_code is not None and state.site_code != site_code:
        if state.site_code is not None:
            raise LockError(
                "机考锁模拟器的状态目录属于登记到另一考点（{}）的模拟锁：{}".format(state.site_code, path),
                "请换一个状态目录，或不要指定新的考点代码。",
                detail="state site {} vs requested {}".format(state.site_code, site_code),
            )
        state.site_code = P.check_site_code(site_code)
        log.info("dongle %s registered to site %s", state.lock_id, site_code)
        return state, True
    return state, False


class Identity(NamedTuple):
    """A dongle as the platform registered it: id, key seed and site (None: not said)."""

    lock_id: str
    seed: bytes
    site_code: Optional[str] = None


def read_identity(path: str) -> Identity:
    """The ``Identity`` in a JSON file with ``lock_id``, ``seed`` (hex) and, optionally,
    ``site_code`` (the site the dongle is registered to), such as the platform
    simulator's ``dongle.json``; ``ValueError`` when it is not one."""
    with open(path, "rb") as f:
        doc = json.loads(f.read().decode("utf-8"))
    if not isinstance(doc, dict) or not isinstance(doc.get("seed"), str):
        raise ValueError("{}: no lock_id/seed".format(path))
    seed = bytes.fromhex(doc["seed"])
    if len(seed) != 32:
        raise ValueError("{}: seed must have 32 bytes".format(path))
    site = doc.get("site_code")
    return Identity(P.check_lock_id(doc.get("lock_id")), seed, P.check_site_code(site) if site is not None else None)


def default_ticket_checker(ticket: bytes, trusted: List[bytes], lock_id: str) -> Tuple[int, int]:
    """Verify a sync ticket for ``lock_id``: ``(server_time_ms, valid_until_ms)``, or ``ValueError``."""
    from kd.lock.ticket import check_ticket_for_dongle  # noqa: PLC0415 - formats loaded lazily

    return check_ticket_for_dongle(ticket, trusted, lock_id)


class Dongle:
    """The dongle's behaviour: one request line in, the reply line out.

    Test knobs (plain attributes, safe to change from any thread): ``reply_delay``
    (seconds before each reply), ``garbage`` (a line of binary noise before each reply),
    ``overlong`` (an over-long line before each reply), ``bad_signature`` (challenge
    answers signed with the wrong key), ``drift_ppm`` (clock runs fast or slow),
    ``old_firmware`` (behave as a revision-1 dongle: ``SITE`` is an unknown command, no
    ``site`` in ``STATE``, firmware ``emu-1.0``).
    """

    def __init__(
        self,
        state_dir: str,
        trust: Iterable[bytes] = (),
        lock_id: Optional[str] = None,
        ticket_checker: Optional[TicketChecker] = None,
        seed: Optional[bytes] = None,
        host_clock: Callable[[], int] = _now_ms,
        site_code: Optional[str] = None,
    ) -> None:
        self._host_ms = host_clock  # the PC's clock (ms); tests may drive it
        self.state_dir = state_dir
        os.makedirs(state_dir, exist_ok=True)
        self.state, new = load_state(state_dir, lock_id, seed, site_code)
        self._lock = threading.RLock()
        changed = new
        for key in trust:
            if len(key) != P.PUBLIC_KEY_BYTES:
                raise ValueError("a platform public key has 32 bytes")
            if key not in self.state.trusted_keys:
                self.state.trusted_keys.append(bytes(key))
                changed = True
        self._key = nacl.signing.SigningKey(self.state.seed)
        self._forged = nacl.signing.SigningKey(bytes(32))
        self.public_key = bytes(self._key.verify_key)
        self.check_ticket = ticket_checker or default_ticket_checker
        self.reply_delay = 0.0
        self.garbage = False
        self.overlong = False
        self.bad_signature = False
        self.old_firmware = False
        self._drift_ppm = 0.0
        self._drift_base_ms = self._host_ms()
        self.requests = 0
        if changed:
            self.save()
        log.info("dongle %s (key %s, site %s) state %s", self.lock_id, P.b64encode(self.public_key),
                 self.state.site_code or "none", state_dir)

    @property
    def lock_id(self) -> str:
        return self.state.lock_id

    @property
    def site_code(self) -> Optional[str]:
        return self.state.site_code

    @property
    def firmware(self) -> str:
        return OLD_FIRMWARE if self.old_firmware else FIRMWARE

    # --- clock ----------------------------------------------------------------
    def clock_ms(self) -> int:
        with self._lock:
            host = self._host_ms()
            drift = (host - self._drift_base_ms) * self._drift_ppm / 1e6
            return host + self.state.clock_offset_ms + int(drift)

    def set_clock(self, lock_ms: int, persist: bool = True) -> None:
        with self._lock:
            self._drift_base_ms = self._host_ms()
            self.state.clock_offset_ms = int(lock_ms) - self._drift_base_ms
            if persist:
                self.save()

    @property
    def drift_ppm(self) -> float:
        return self._drift_ppm

    @drift_ppm.setter
    def drift_ppm(self, value: float) -> None:
        with self._lock:
            self.set_clock(self.clock_ms(), persist=False)  # keep the drift so far
            self._drift_ppm = float(value)

    def set_clock_offset(self, seconds: float) -> None:
        """Put the clock ``seconds`` ahead of (negative: behind) the host clock."""
        self.set_clock(self._host_ms() + int(seconds * 1000))

    def save(self) -> None:
        with self._lock:
            write_file_durably(os.path.join(self.state_dir, STATE_FILE), self.state.to_json())

    # --- protocol -------------------------------------------------------------
    def handle(self, frame: P.Frame) -> Optional[bytes]:
        """The reply to one received line (None for an empty line)."""
        try:
            if frame is P.TOO_LONG:
                raise P.RequestError(P.E_TOOLONG, "line longer than {} bytes".format(P.MAX_LINE))
            assert isinstance(frame, bytes)
            request = P.parse_request(frame)
            if request is None:
                return None
            self.requests += 1
            return self._dispatch(request)
        except P.RequestError as e:
            return P.encode_err(e.code, e.text)
        except Exception as e:  # a real dongle answers E_INTERNAL rather than going silent
            log.exception("dongle failed on %r", frame)
            return P.encode_err(P.E_INTERNAL, type(e).__name__)

    def _dispatch(self, req: P.Request) -> bytes:
        cmd, args = req.command, req.args
        if cmd not in (P.COMMANDS_R1 if self.old_firmware else P.COMMANDS):
            raise P.RequestError(P.E_UNKNOWN, "unknown command")
        if cmd == P.TICKET:
            return self._ticket(args)
        if cmd == P.CHAL:
            _arity(args, 1)
            try:
                nonce = P.parse_nonce(args[0])
            except ValueError as e:
                raise P.RequestError(P.E_ARG, str(e)) from None
            now = self.clock_ms()
            key = self._forged if self.bad_signature else self._key
            sig = key.sign(P.challenge_message(self.lock_id, nonce, now)).signature
            return P.encode_ok(str(now), P.b64encode(sig))
        if cmd == P.ECHO:
            _arity(args, 1)
            return P.encode_ok(args[0])
        _arity(args, 0)
        if cmd == P.VERSION:
            return P.encode_ok(P.PROTOCOL_NAME, str(P.PROTOCOL_VERSION), self.firmware)
        if cmd == P.ID:
            return P.encode_ok(self.lock_id)
        if cmd == P.KEY:
            return P.encode_ok(P.b64encode(self.public_key))
        if cmd == P.TIME:
            return P.encode_ok(str(self.clock_ms()))
        if cmd == P.SITE:
            site = self.state.site_code
            if site is None:
                raise P.RequestError(P.E_NOSITE, "not registered to a site")
            return P.encode_ok(site)
        # STATE
        with self._lock:
            items = [
                ("id", self.lock_id),
                ("proto", str(P.PROTOCOL_VERSION)),
                ("fw", self.firmware),
                ("time", str(self.clock_ms())),
                ("ticket", "1" if self.state.ticket is not None else "0"),
                ("synced", str(self.state.ticket_time_ms)),
                ("keys", str(len(self.state.trusted_keys))),
            ]
            if self.state.site_code is not None and not self.old_firmware:
                items.append(("site", self.state.site_code))
        return P.encode_ok(*P.encode_state(items))

    def _ticket(self, args: Tuple[str, ...]) -> bytes:
        if args == ("GET",):
            with self._lock:
                ticket = self.state.ticket
            if ticket is None:
                raise P.RequestError(P.E_NOTICKET, "no ticket stored")
            return P.encode_ok(P.b64encode(ticket))
        if len(args) != 2 or args[0] != "PUT":
            raise P.RequestError(P.E_ARG, "usage: TICKET GET | TICKET PUT <base64>")
        try:
            ticket = P.b64decode(args[1], max_size=P.MAX_TICKET_BYTES)
        except ValueError as e:
            raise P.RequestError(P.E_ARG, "ticket: {}".format(e)) from None
        with self._lock:
            try:
                server_ms, valid_until_ms = self.check_ticket(ticket, list(self.state.trusted_keys), self.lock_id)
            except ValueError as e:
                raise P.RequestError(P.E_TICKET, str(e) or "invalid ticket") from None
            if server_ms <= self.state.ticket_time_ms:
                raise P.RequestError(P.E_STALE, "ticket not newer than the stored one")
            if valid_until_ms <= server_ms:
                raise P.RequestError(P.E_TICKET, "ticket expired when issued")
            previous = (self.state.ticket, self.state.ticket_time_ms, self.state.clock_offset_ms, self._drift_base_ms)
            self.state.ticket, self.state.ticket_time_ms = ticket, server_ms
            try:
                self.set_clock(server_ms)  # persists ticket and clock together
            except OSError as e:
                self.state.ticket, self.state.ticket_time_ms, self.state.clock_offset_ms, self._drift_base_ms = previous
                raise P.RequestError(P.E_INTERNAL, "cannot store ticket: {}".format(e.strerror)) from None
            log.info("dongle %s clock set from ticket to %d", self.lock_id, server_ms)
            return P.encode_ok(str(self.clock_ms()))


def _arity(args: Tuple[str, ...], n: int) -> None:
    if len(args) != n:
        raise P.RequestError(P.E_ARG, "expected {} argument(s)".format(n))


class _Waker:
    """A socket pair that wakes a selector from another thread."""

    def __init__(self) -> None:
        self.r, self.w = socket.socketpair()
        self.r.setblocking(False)

    def wake(self) -> None:
        try:
            self.w.send(b"x")
        except OSError:
            pass

    def drain(self) -> None:
        try:
            while self.r.recv(64):
                pass
        except OSError:
            pass

    def close(self) -> None:
        self.r.close()
        self.w.close()


def _delegate(name: str, doc: str) -> property:
    def get(self: "LockEmulator") -> object:
        return getattr(self.dongle, name)

    def put(self: "LockEmulator", value: object) -> None:
        setattr(self.dongle, name, value)

    return property(get, put, doc=doc)


class LockEmulator:
    """A ``Dongle`` behind a transport (TCP or pty), with unplug/replug and clean stop."""

    def __init__(
        self,
        state_dir: str,
        trust: Iterable[bytes] = (),
        lock_id: Optional[str] = None,
        ticket_checker: Optional[TicketChecker] = None,
        seed: Optional[bytes] = None,
        site_code: Optional[str] = None,
    ) -> None:
        self.dongle = Dongle(state_dir, trust, lock_id, ticket_checker, seed, site_code=site_code)
        self._mutex = threading.Lock()
        self._stopping = threading.Event()
        self._plugged = False
        self._kind = ""
        self._host = "127.0.0.1"
        self._port = 0
        self._link_path: Optional[str] = None
        self._listener: Optional[socket.socket] = None
        self._conn: Optional[socket.socket] = None
        self._master: Optional[int] = None
        self._slave: Optional[int] = None
        self.device: Optional[str] = None
        self._generation = 0
        self._waker = _Waker()
        self._thread: Optional[threading.Thread] = None
        self._conn_threads: List[threading.Thread] = []
        self.connections = 0

    # knobs delegated to the dongle -------------------------------------------------
    @property
    def lock_id(self) -> str:
        return self.dongle.lock_id

    @property
    def public_key(self) -> bytes:
        return self.dongle.public_key

    @property
    def site_code(self) -> Optional[str]:
        return self.dongle.site_code

    reply_delay = _delegate("reply_delay", "seconds before each reply")
    garbage = _delegate("garbage", "send a line of binary noise before each reply")
    overlong = _delegate("overlong", "send an over-long line before each reply")
    bad_signature = _delegate("bad_signature", "sign challenge answers with a wrong key")
    drift_ppm = _delegate("drift_ppm", "clock drift in parts per million")
    old_firmware = _delegate("old_firmware", "behave as a revision-1 dongle (no SITE command)")

    @property
    def url(self) -> str:
        """What to give the driver: ``socket://host:port`` or the pty device path."""
        if self._kind == "tcp":
            return "socket://{}:{}".format(self._host, self._port)
        return self._link_path or self.device or ""

    @property
    def plugged(self) -> bool:
        return self._plugged

    # transports --------------------------------------------------------------------
    def start_tcp(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Listen on ``host:port`` (0: any free port); returns the ``socket://`` URL."""
        self._kind, self._host, self._port = "tcp", host, port
        self._plug_tcp()
        self._start_thread(self._serve_tcp)
        log.info("dongle emulator listening on %s", self.url)
        return self.url

    def start_pty(self, link: Optional[str] = None) -> str:
        """Open a pty (POSIX); returns its device path, or ``link`` (a symlink to it)."""
        if os.name != "posix":
            raise OSError("pty mode needs a POSIX system; use --tcp")
        self._kind, self._link_path = "pty", link
        self._plug_pty()
        self._start_thread(self._serve_pty)
        log.info("dongle emulator on pty %s", self.url)
        return self.url

    def _start_thread(self, target: Callable[[], None]) -> None:
        self._thread = threading.Thread(target=target, name="lock-emulator", daemon=True)
        self._thread.start()

    def _plug_tcp(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if os.name == "posix":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self._host, self._port))
        sock.listen(4)
        sock.setblocking(False)
        self._port = sock.getsockname()[1]
        with self._mutex:
            self._listener = sock
            self._plugged = True
        self._waker.wake()

    def _plug_pty(self) -> None:
        import tty  # noqa: PLC0415 - POSIX only

        master, slave = os.openpty()
        tty.setraw(slave)
        self.device = os.ttyname(slave)
        if self._link_path:
            tmp = self._link_path + ".new"
            if os.path.lexists(tmp):
                os.remove(tmp)
            os.symlink(self.device, tmp)
            os.replace(tmp, self._link_path)
        with self._mutex:
            self._master, self._slave = master, slave
            self._generation += 1
            self._plugged = True
        self._waker.wake()

    def unplug(self) -> None:
        """Pull the dongle: the host's connection breaks and reopening fails."""
        with self._mutex:
            if not self._plugged:
                return
            self._plugged = False
            listener, conn = self._listener, self._conn
            master, slave = self._master, self._slave
            self._listener = self._conn = None
            self._master = self._slave = None
        self._waker.wake()
        if conn is not None:
            _shutdown(conn)
        if listener is not None:
            listener.close()
        if self._link_path and os.path.lexists(self._link_path):
            os.remove(self._link_path)
        for fd in (master, slave):
            if fd is not None:
                os.close(fd)
        log.info("dongle %s unplugged", self.lock_id)

    def replug(self) -> None:
        """Plug the dongle back in (same TCP port; a new pty behind the same link)."""
        with self._mutex:
            if self._plugged or self._stopping.is_set():
                return
        if self._kind == "tcp":
            self._plug_tcp()
        else:
            self._plug_pty()
        log.info("dongle %s plugged in at %s", self.lock_id, self.url)

    def inject(self, data: bytes) -> None:
        """Send raw bytes to the host now (line noise, unsolicited lines)."""
        with self._mutex:
            conn, master = self._conn, self._master
        if conn is not None:
            conn.sendall(data)
        elif master is not None:
            os.write(master, data)

    def stop(self) -> None:
        """Unplug and end every thread; the state stays on disk."""
        self._stopping.set()
        self.unplug()
        self._waker.wake()
        threads = ([self._thread] if self._thread else []) + list(self._conn_threads)
        for thread in threads:
            thread.join(5)
        self._waker.close()

    def __enter__(self) -> "LockEmulator":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # serving ----------------------------------------------------------------------
    def _reply(self, frame: P.Frame, send: Callable[[bytes], None]) -> None:
        reply = self.dongle.handle(frame)
        if reply is None:
            return
        delay = self.dongle.reply_delay
        if delay > 0 and self._stopping.wait(delay):
            return
        noise = b""
        if self.dongle.garbage:
            noise += b"\xff\xfe\x00#@!garbage\x07\x1b[0m\r\n"
        if self.dongle.overlong:
            noise += b"O" * (P.MAX_LINE + 100) + b"\n"
        send(noise + reply)

    def _serve_tcp(self) -> None:
        sel = selectors.DefaultSelector()
        sel.register(self._waker.r, selectors.EVENT_READ)
        registered: Optional[socket.socket] = None
        try:
            while not self._stopping.is_set():
                with self._mutex:
                    listener = self._listener
                if listener is not registered:
                    if registered is not None:
                        sel.unregister(registered)
                    if listener is not None:
                        sel.register(listener, selectors.EVENT_READ)
                    registered = listener
                for key, _ in sel.select():
                    if key.fileobj is self._waker.r:
                        self._waker.drain()
                    elif key.fileobj is listener:
                        self._accept(listener)
        finally:
            sel.close()

    def _accept(self, listener: socket.socket) -> None:
        try:
            conn, peer = listener.accept()
        except OSError:
            return  # closed by unplug() meanwhile
        conn.setblocking(True)
        with self._mutex:
            busy = self._conn is not None or not self._plugged
            if not busy:
                self._conn = conn
                self.connections += 1
        if busy:
            log.info("dongle emulator: refusing second connection from %s", peer)
            _shutdown(conn)
            return
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        thread = threading.Thread(target=self._serve_conn, args=(conn,), name="lock-emulator-conn", daemon=True)
        self._conn_threads = [t for t in self._conn_threads if t.is_alive()] + [thread]
        thread.start()

    def _serve_conn(self, conn: socket.socket) -> None:
        framer = P.LineFramer()
        try:
            while not self._stopping.is_set():
                data = conn.recv(4096)
                if not data:
                    break
                for frame in framer.feed(data):
                    self._reply(frame, conn.sendall)
        except OSError as e:
            log.debug("dongle emulator connection ended: %s", e)
        finally:
            with self._mutex:
                if self._conn is conn:
                    self._conn = None
            _shutdown(conn)

    def _serve_pty(self) -> None:
        framer = P.LineFramer()
        current: Optional[int] = None
        generation = -1
        sel = selectors.DefaultSelector()
        sel.register(self._waker.r, selectors.EVENT_READ)
        try:
            while not self._stopping.is_set():
                with self._mutex:
                    master, now = self._master, self._generation
                if now != generation or (master is None) != (current is None):
                    if current is not None:
                        sel.unregister(current)
                    framer = P.LineFramer()
                    if master is not None:
                        sel.register(master, selectors.EVENT_READ)
                    current, generation = master, now
                for key, _ in sel.select():
                    if key.fileobj is self._waker.r:
                        self._waker.drain()
                        continue
                    try:
                        data = os.read(current, 4096)
                    except OSError:
                        data = b""
                    if not data:
                        continue
                    for frame in framer.feed(data):
                        self._reply(frame, lambda b, fd=current: _write_all(fd, b))
        except OSError as e:
            log.debug("dongle emulator pty ended: %s", e)
        finally:
            sel.close()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _shutdown(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()


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
