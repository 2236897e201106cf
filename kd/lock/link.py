"""One serial link to the exam dongle: finding its port, opening it by URL, a reader thread framing lines.

``candidate_ports()`` lists the ports auto-detection may probe (USB VID:PID ``1209:4B44``
or a name containing ``KDLOCK`` / ``机考锁``: see ``kd.lock.driver``); ``open_port(url)``
opens a pyserial URL (``COM3``, ``/dev/ttyACM0``, ``/dev/pts/5``,
``socket://127.0.0.1:7700``). ``Link`` owns one open port: its reader thread frames
KDLOCK lines (``kd.lock.protocol.LineFramer``) into a bounded queue, ``next_frame``
waits for one with a deadline, ``lost`` is set when the port goes away. The commands
and their serialisation are ``kd.lock.driver.LockDriver``'s.
"""

import logging
import re
import selectors
import socket
import threading
import time
from collections import deque
from typing import Any, Deque, Iterable, List, Optional, Tuple

import serial
import serial.tools.list_ports

from kd.lock import protocol as P
from kd.lock.errors import LockDisconnected, LockNotFound, LockTimeout

log = logging.getLogger(__name__)

#: USB VID:PID of the exam dongle (pid.codes vendor 0x1209, product 0x4B44 "KD")
USB_IDS = frozenset([(0x1209, 0x4B44)])
#: what the dongle's USB strings contain
DESCRIPTION_RE = re.compile(r"KDLOCK|机考锁", re.IGNORECASE)

WRITE_TIMEOUT = 2.0
#: read poll for ports without a selectable handle (Windows); cancel_read ends it early
READ_POLL = 0.2


def is_dongle_port(port: Any) -> bool:
    """True when a ``list_ports`` entry looks like the exam dongle (VID:PID or name)."""
    if (getattr(port, "vid", None), getattr(port, "pid", None)) in USB_IDS:
        return True
    text = " ".join(str(getattr(port, a, None) or "") for a in ("description", "product", "manufacturer"))
    return bool(DESCRIPTION_RE.search(text))


def candidate_ports(ports: Optional[Iterable[Any]] = None) -> List[str]:
    """Device names of the ports to probe (``ports`` defaults to ``comports()``)."""
    found = serial.tools.list_ports.comports() if ports is None else ports
    return [p.device for p in found if is_dongle_port(p)]


def open_port(url: str) -> serial.SerialBase:
    """The port at pyserial URL ``url``, non-blocking reads; ``LockNotFound`` when it cannot be opened."""
    try:
        return serial.serial_for_url(url, baudrate=115200, timeout=0, write_timeout=WRITE_TIMEOUT)
    except (serial.SerialException, OSError, ValueError) as e:
        raise LockNotFound(detail="cannot open {}: {}".format(url, e)) from e


class Link:
    """One open port: its reader thread and the lines it framed."""

    def __init__(self, port: serial.SerialBase, url: str) -> None:
        self.port = port
        self.url = url
        self.lost = threading.Event()
        self.lost_reason = ""
        self.needs_resync = False
        self.noise = 0
        self._lines: Deque[P.Frame] = deque(maxlen=256)
        self._cond = threading.Condition()
        self._closing = False
        self._waker: Optional[Tuple[socket.socket, socket.socket]] = None
        try:
            self._fileno: Optional[int] = port.fileno()
        except (AttributeError, OSError, ValueError):
            self._fileno = None
        if self._fileno is not None:
            self._waker = socket.socketpair()
        else:
            port.timeout = READ_POLL
        self._thread = threading.Thread(target=self._read_loop, name="lock-reader", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _read_loop(self) -> None:
        framer = P.LineFramer()
        reason = "closed"
        sel = None
        try:
            if self._fileno is not None and self._waker is not None:
                sel = selectors.DefaultSelector()
                sel.register(self._fileno, selectors.EVENT_READ)
                sel.register(self._waker[0], selectors.EVENT_READ)
            while not self._closing:
                if sel is not None:
                    if not sel.select() or self._closing:
                        continue
                    data = self.port.read(4096)  # timeout 0: what is there
                    if not data:
                        # readable but empty: a socket or tty whose far end went away
                        raise serial.SerialException("device disconnected")
                else:
                    data = self.port.read(self.port.in_waiting or 1)
                if data:
                    frames = framer.feed(data)
                    if frames:
                        with self._cond:
                            self._lines.extend(frames)
                            self._cond.notify_all()
        except (serial.SerialException, OSError, ValueError, TypeError) as e:
            reason = str(e) or type(e).__name__
        finally:
            if sel is not None:
                sel.close()
            if not self._closing:
                log.info("dongle link %s lost: %s", self.url, reason)
            self.lost_reason = reason
            with self._cond:
                self.lost.set()
                self._cond.notify_all()

    def write(self, data: bytes) -> None:
        try:
            self.port.write(data)
            self.port.flush()
        except serial.SerialTimeoutException as e:
            raise LockTimeout(detail="write to {} timed out: {}".format(self.url, e)) from e
        except (serial.SerialException, OSError, ValueError, TypeError) as e:
            raise LockDisconnected(detail="write to {} failed: {}".format(self.url, e)) from e

    def discard(self) -> None:
        with self._cond:
            self._lines.clear()

    def next_frame(self, deadline: float) -> P.Frame:
        with self._cond:
            while not self._lines:
                if self.lost.is_set():
                    raise LockDisconnected(detail="{}: {}".format(self.url, self.lost_reason))
                left = deadline - time.monotonic()
                if left <= 0:
                    self.needs_resync = True
                    raise LockTimeout(detail="no reply from {}".format(self.url))
                self._cond.wait(left)
            return self._lines.popleft()

    def close(self) -> None:
        self._closing = True
        if self._waker is not None:
            try:
                self._waker[1].send(b"x")
            except OSError:
                pass
        else:
            cancel = getattr(self.port, "cancel_read", None)
            if callable(cancel):
                try:
                    cancel()
                except (serial.SerialException, OSError):
                    pass
        if threading.current_thread() is not self._thread and self._thread.is_alive():
            self._thread.join(READ_POLL + 2.0)
        if self.url.startswith("socket://"):
            # pyserial's socket close() sleeps 0.3 s after closing ("for quick reconnects");
            # nobody needs to wait for that
            threading.Thread(target=self._close_port, name="lock-close", daemon=True).start()
        else:
            self._close_port()
        if self._waker is not None:
            for s in self._waker:
                s.close()
        with self._cond:
            self.lost.set()
            self._cond.notify_all()

    def _close_port(self) -> None:
        try:
            self.port.close()
        except (serial.SerialException, OSError):
            pass
