"""The emulated dongle behind a transport: a TCP port or a pty, with unplug/replug and a clean stop.

``LockEmulator`` serves one ``kd.lock.emudongle.Dongle`` on ``socket://host:port`` (one
connection at a time: a second one is closed at once, like a serial port) or on a pty
(POSIX; optionally behind a symlink that follows replugs). ``unplug()`` closes the
connection and the listening socket (pty: the pty, and removes the link), so the host
sees what a pulled USB device does; ``replug()`` opens them again. The command line is
``kd.lock.emulator``'s.
"""

import functools
import logging
import os
import selectors
import socket
import threading
from typing import Callable, ContextManager, Iterable, List, Optional

from kd.forward import Forward, ForwardSettable
from kd.lock import protocol as P
from kd.lock.emudongle import Dongle, TicketChecker

log = logging.getLogger(__name__)


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


class LockEmulator(ContextManager["LockEmulator"]):
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

    # the dongle's identity, and its knobs -----------------------------------------------
    lock_id = Forward[str]("dongle")
    public_key = Forward[bytes]("dongle")
    site_code = Forward[Optional[str]]("dongle")
    reply_delay = ForwardSettable[float]("dongle", doc="seconds before each reply")
    garbage = ForwardSettable[bool]("dongle", doc="send a line of binary noise before each reply")
    overlong = ForwardSettable[bool]("dongle", doc="send an over-long line before each reply")
    bad_signature = ForwardSettable[bool]("dongle", doc="sign challenge answers with a wrong key")
    drift_ppm = ForwardSettable[float]("dongle", doc="clock drift in parts per million")
    old_firmware = ForwardSettable[bool]("dongle", doc="behave as a revision-1 dongle (no SITE command)")

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
            if self._conn is not None and _peer_closed(self._conn):
                # like a serial port, a link its holder closed is free at once (its thread sees the
                # end later): without this a process that opens the dongle right after another closed
                # it was refused for as long as the emulator had not read the end
                self._conn = None
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
                    fd = key.fd  # the master: the only other registered file
                    try:
                        data = os.read(fd, 4096)
                    except OSError:
                        data = b""
                    if not data:
                        continue
                    for frame in framer.feed(data):
                        self._reply(frame, functools.partial(_write_all, fd))
        except OSError as e:
            log.debug("dongle emulator pty ended: %s", e)
        finally:
            sel.close()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _peer_closed(sock: socket.socket) -> bool:
    """True when the peer of ``sock`` closed its end (an end of stream is waiting to be read).

    Peeks without blocking (the connection's own thread may read the same socket meanwhile);
    where the system has no ``MSG_DONTWAIT`` (Windows) it cannot tell and says False.
    """
    dontwait = getattr(socket, "MSG_DONTWAIT", 0)
    if not dontwait:
        return False
    try:
        return sock.recv(1, socket.MSG_PEEK | dontwait) == b""
    except (BlockingIOError, InterruptedError):
        return False  # nothing to read: the holder is alive
    except (OSError, ValueError):
        return True  # reset or closed


def _shutdown(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()
