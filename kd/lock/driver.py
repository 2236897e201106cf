"""The exam dongle (机考锁) driver: KDLOCK over pyserial, with a reader thread.

Ports open by pyserial URL (``serial.serial_for_url``), so hardware, the pty emulator and
the TCP emulator share one code path: ``COM3``, ``/dev/ttyACM0``, ``/dev/pts/5``,
``socket://127.0.0.1:7700``. With no URL the driver auto-detects: among
``serial.tools.list_ports.comports()`` it probes (``VERSION``) every port whose USB
VID:PID is ``1209:4B44`` (``USB_IDS``) or whose description, product or manufacturer
contains ``KDLOCK`` or ``机考锁`` (the dongle is a USB CDC-ACM device: ``COMn`` on
Windows, ``/dev/ttyACMn`` on Linux); other serial devices are never written to.

Shape (pyserial's ``serial.threaded`` and ``examples/at_protocol.py``):

- a reader thread per open port frames lines into a queue (``Link``);
- ``command(name, *args, timeout=…)`` sends one request and waits for its reply under a
  lock, so callers from any thread are serialised; it returns the ``OK`` fields or raises
  a ``LockDriverError`` subclass (``kd.lock.errors``); lines that are not replies (line
  noise, over-long lines) are logged and skipped;
- after a timeout the next command first resynchronises (``ECHO <random>``, skipping
  lines until its echo), so a late reply is never taken for the answer to another command;
- a supervisor thread reopens the port after an unplug (and re-detects it when no URL was
  given) and sends a keepalive ``ECHO`` when the line was idle; it publishes
  ``lock.attached`` (``lock_id``, ``url``) and ``lock.detached`` (``lock_id``, ``url``,
  ``reason``) on the ``EventHub``.

Identity: ``verify(expected)`` checks the lock id and has the dongle sign a fresh 32-byte
challenge; the answer must verify against the public key the loaded site package names.

Site: attaching also asks ``SITE`` (protocol revision 2) and keeps the answer on
``LockInfo.site`` (``protocol.SiteReading``): the site code the dongle was registered to,
``SITE_NONE`` when it says it is registered to none, ``SITE_UNREPORTED`` for a revision-1
dongle (it answers ``E_UNKNOWN``; it still attaches). The answer is not authenticated:
it is there to catch an operator's mistake early (系统设置), not to prove anything.
"""

import logging
import secrets
import threading
import time
from typing import Any, Dict, Iterable, List, NamedTuple, Optional, Tuple

from kd.events import EventHub
from kd.formats.signing import verify_raw
from kd.lock import protocol as P
from kd.lock.errors import (
    LockDisconnected,
    LockDriverError,
    LockNotFound,
    LockProtocolError,
    LockRefused,
    LockTimeout,
    WrongLockError,
)
from kd.lock.link import (
    DESCRIPTION_RE,
    READ_POLL,
    USB_IDS,
    WRITE_TIMEOUT,
    Link,
    candidate_ports,
    is_dongle_port,
    open_port,
)

__all__ = [
    "DEFAULT_TIMEOUT", "DESCRIPTION_RE", "EVENT_ATTACHED", "EVENT_DETACHED", "READ_POLL", "USB_IDS", "WRITE_TIMEOUT",
    "ExpectedLock", "LockDriver", "LockInfo", "candidate_ports", "is_dongle_port", "open_port",
]

log = logging.getLogger(__name__)

EVENT_ATTACHED = "lock.attached"
EVENT_DETACHED = "lock.detached"

DEFAULT_TIMEOUT = 2.0


class ExpectedLock(NamedTuple):
    """The dongle a site package names: its id and raw 32-byte Ed25519 public key."""

    lock_id: str
    public_key: bytes


class LockInfo(NamedTuple):
    """What the driver learnt when it attached a dongle."""

    url: str
    lock_id: str
    public_key: bytes
    protocol: int
    firmware: str
    #: its answer to SITE: the site it is registered to, none, or not reported (revision 1)
    site: P.SiteReading = P.SiteReading(P.SITE_UNREPORTED)

    @property
    def site_code(self) -> Optional[str]:
        """The site code the dongle reported (None: registered to none, or not reported)."""
        return self.site.site_code


class LockDriver:
    """A dongle on a serial URL (or auto-detected), kept attached across unplug/replug.

    ``start(wait=True)`` attaches synchronously (raising ``LockDriverError`` when no dongle
    answers) and then keeps the link alive in the background; ``start(wait=False)`` only
    starts the background attempts. ``stop()`` closes everything.
    """

    def __init__(
        self,
        url: Optional[str] = None,
        hub: Optional[EventHub] = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        retry_interval: float = 0.5,
        keepalive: Optional[float] = 5.0,
        ports: Optional[Iterable[Any]] = None,
    ) -> None:
        self.url = url
        self.hub = hub
        self.timeout = timeout
        self.retry_interval = retry_interval
        self.keepalive = keepalive
        self._ports = list(ports) if ports is not None else None
        self._cmd_lock = threading.Lock()
        self._state = threading.Condition()
        self._link: Optional[Link] = None
        self.info: Optional[LockInfo] = None
        self._stopping = threading.Event()
        self._thread: Optional[threading.Thread] = None

    # --- lifecycle ------------------------------------------------------------------
    def start(self, wait: bool = True) -> "LockDriver":
        if wait:
            self._connect()
        self._thread = threading.Thread(target=self._supervise, name="lock-supervisor", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        with self._state:
            link, self._link = self._link, None
            self.info = None
            self._state.notify_all()
        if link is not None:
            link.close()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(5)

    def __enter__(self) -> "LockDriver":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def attached(self) -> bool:
        return self._link is not None

    def wait_attached(self, timeout: float) -> Optional[LockInfo]:
        """The attached dongle's info, waiting up to ``timeout`` s; None if none came."""
        with self._state:
            self._state.wait_for(lambda: self.info is not None or self._stopping.is_set(), timeout)
            return self.info

    def _publish(self, name: str, **data: Any) -> None:
        if self.hub is not None:
            self.hub.publish(name, **data)

    # --- attach / detach --------------------------------------------------------------
    def _connect(self) -> LockInfo:
        if self.url:
            return self._attach(self.url)
        tried: List[str] = []
        for device in candidate_ports(self._ports):
            try:
                return self._attach(device)
            except LockDriverError as e:
                tried.append("{}: {}".format(device, e.detail or e.cause))
        raise LockNotFound(detail="auto-detect: " + ("; ".join(tried) or "no port with USB {} or name {}".format(
            ",".join("{:04X}:{:04X}".format(*i) for i in sorted(USB_IDS)), DESCRIPTION_RE.pattern)))

    def _attach(self, url: str) -> LockInfo:
        link = Link(open_port(url), url)
        link.start()
        try:
            with self._cmd_lock:
                deadline = time.monotonic() + self.timeout
                link.write(b"\n")  # ends any partial line in the dongle's buffer
                version = self._exchange(link, P.encode_request(P.VERSION), deadline)
                if len(version) < 2 or version[0] != P.PROTOCOL_NAME:
                    raise LockProtocolError(detail="{} is not a KDLOCK device: {!r}".format(url, version))
                if version[1] != str(P.PROTOCOL_VERSION):
                    raise LockProtocolError(
                        "机考锁的协议版本（{}）与本系统（{}）不兼容。".format(version[1], P.PROTOCOL_VERSION),
                        "请联系技术服务单位升级考点管理系统或更换机考锁。",
                        detail="{} protocol {!r}".format(url, version),
                    )
                deadline = time.monotonic() + self.timeout
                lock_id = _one(self._exchange(link, P.encode_request(P.ID), deadline), P.check_lock_id, "ID")
                deadline = time.monotonic() + self.timeout
                key = _one(self._exchange(link, P.encode_request(P.KEY), deadline),
                           lambda f: P.b64decode(f, P.PUBLIC_KEY_BYTES), "KEY")
                deadline = time.monotonic() + self.timeout
                site = self._site(link, deadline)
        except LockDriverError:
            link.close()
            raise
        info = LockInfo(url, lock_id, key, P.PROTOCOL_VERSION, version[2] if len(version) > 2 else "", site)
        with self._state:
            stopped = self._stopping.is_set()
            if not stopped:
                self._link, self.info = link, info
                self._state.notify_all()
        if stopped:  # stop() came while probing: do not leave a link behind
            link.close()
            raise LockDisconnected(detail="driver stopped while attaching {}".format(url))
        log.info("dongle %s attached on %s (firmware %s, site %s)", lock_id, url, info.firmware,
                 site.site_code or site.status)
        if site.status == P.SITE_UNREPORTED:
            log.warning("dongle %s (firmware %s) does not report the site it is registered to (protocol "
                        "revision 1): the site code cannot be checked against it", lock_id, info.firmware)
        self._publish(EVENT_ATTACHED, lock_id=lock_id, url=url)
        return info

    def _detach(self, link: Link, reason: str) -> None:
        with self._state:
            if self._link is not link:
                return
            info, self._link, self.info = self.info, None, None
            self._state.notify_all()
        lock_id = info.lock_id if info else ""
        log.warning("dongle %s detached from %s: %s", lock_id, link.url, reason)
        self._publish(EVENT_DETACHED, lock_id=lock_id, url=link.url, reason=reason)
        link.close()

    def _supervise(self) -> None:
        while not self._stopping.is_set():
            link = self._link
            if link is None:
                try:
                    self._connect()
                except LockDriverError as e:
                    log.debug("dongle not attached: %s", e.detail or e.cause)
                    self._stopping.wait(self.retry_interval)
                continue
            if link.lost.wait(self.keepalive):
                if not self._stopping.is_set():
                    self._detach(link, link.lost_reason or "link lost")
                continue
            try:
                self.command(P.ECHO, secrets.token_hex(4), timeout=self.timeout)
            except LockTimeout:
                self._detach(link, "no answer to keepalive")
            except LockDriverError as e:
                log.debug("keepalive: %s", e.detail or e.cause)

    # --- commands ---------------------------------------------------------------------
    def command(self, name: str, *args: str, timeout: Optional[float] = None) -> Tuple[str, ...]:
        """Send one request; return the fields of its ``OK`` reply.

        Raises ``LockRefused`` (``ERR``), ``LockTimeout``, ``LockDisconnected`` (not
        attached, or unplugged meanwhile) and ``LockProtocolError`` (a request that cannot
        be put on the wire).
        """
        try:
            line = P.encode_request(name, *args)
        except ValueError as e:
            raise LockProtocolError(
                "无法向机考锁发送该命令。", "这是程序错误，请联系技术服务单位。", detail=str(e)
            ) from e
        wait = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + wait
        if not self._cmd_lock.acquire(timeout=wait):
            raise LockTimeout("机考锁正忙，没有应答。", detail="command lock busy for {} s".format(wait))
        try:
            link = self._link
            if link is None:
                raise LockDisconnected("未连接机考锁。", detail="command {} while detached".format(name))
            return self._exchange(link, line, deadline)
        finally:
            self._cmd_lock.release()

    def _exchange(self, link: Link, line: bytes, deadline: float) -> Tuple[str, ...]:
        if link.needs_resync:
            self._resync(link, deadline)
        link.discard()
        link.write(line)
        reply = self._next_reply(link, deadline)
        if not reply.ok:
            detail = "{!r} -> ERR {} {}".format(line[:40], reply.code, reply.text)
            raise LockRefused(reply.code, reply.text, detail=detail)
        return reply.fields

    def _site(self, link: Link, deadline: float) -> P.SiteReading:
        """Ask ``SITE`` (attach: the command lock is held)."""
        return _site_of(lambda: self._exchange(link, P.encode_request(P.SITE), deadline))

    def _resync(self, link: Link, deadline: float) -> None:
        token = secrets.token_hex(8)
        link.discard()
        link.write(P.encode_request(P.ECHO, token))
        while True:
            reply = self._next_reply(link, deadline)
            if reply.ok and reply.fields == (token,):
                link.needs_resync = False
                return
            log.debug("resync: skipped stale reply %r", reply)

    def _next_reply(self, link: Link, deadline: float) -> P.Reply:
        while True:
            frame = link.next_frame(deadline)
            if frame is P.TOO_LONG:
                link.noise += 1
                log.warning("dongle %s: discarded an over-long line", link.url)
                continue
            assert isinstance(frame, bytes)
            reply = P.parse_reply(frame)
            if reply is None:
                link.noise += 1
                log.warning("dongle %s: discarded line noise %r", link.url, frame[:60])
                continue
            return reply

    # --- the dongle's functions ---------------------------------------------------------
    def read_id(self, timeout: Optional[float] = None) -> str:
        return _one(self.command(P.ID, timeout=timeout), P.check_lock_id, "ID")

    def read_version(self, timeout: Optional[float] = None) -> Tuple[str, int, str]:
        fields = self.command(P.VERSION, timeout=timeout)
        if len(fields) < 2 or not fields[1].isdigit():
            raise LockProtocolError(detail="bad VERSION reply {!r}".format(fields))
        return fields[0], int(fields[1]), fields[2] if len(fields) > 2 else ""

    def read_site(self, timeout: Optional[float] = None) -> P.SiteReading:
        """Ask the attached dongle now which site it is registered to (``SITE``)."""
        return _site_of(lambda: self.command(P.SITE, timeout=timeout))

    def read_public_key(self, timeout: Optional[float] = None) -> bytes:
        return _one(self.command(P.KEY, timeout=timeout), lambda f: P.b64decode(f, P.PUBLIC_KEY_BYTES), "KEY")

    def read_clock(self, timeout: Optional[float] = None) -> int:
        """The dongle's clock (Unix time, milliseconds), unauthenticated."""
        return _one(self.command(P.TIME, timeout=timeout), P.parse_ms, "TIME")

    def challenge(self, public_key: bytes, lock_id: Optional[str] = None, timeout: Optional[float] = None) -> int:
        """Have the dongle sign a fresh challenge; return its clock (ms) as signed.

        ``lock_id`` defaults to the attached dongle's id. Raises ``WrongLockError`` when
        the answer does not verify against ``public_key``.
        """
        info = self.info
        lid = lock_id or (info.lock_id if info else None)
        if lid is None:
            raise LockDisconnected("未连接机考锁。", detail="challenge while detached")
        nonce = secrets.token_bytes(P.NONCE_BYTES)
        fields = self.command(P.CHAL, nonce.hex(), timeout=timeout)
        if len(fields) != 2:
            raise LockProtocolError(detail="bad CHAL reply {!r}".format(fields))
        try:
            clock_ms = P.parse_ms(fields[0])
            sig = P.b64decode(fields[1], P.SIGNATURE_BYTES)
        except ValueError as e:
            raise LockProtocolError(detail="bad CHAL reply {!r}: {}".format(fields, e)) from e
        if not verify_raw(public_key, P.challenge_message(lid, nonce, clock_ms), sig):
            raise WrongLockError(
                "机考锁（编号 {}）身份验证失败：应答签名无效。".format(lid),
                "该机考锁可能是伪造的或已损坏。请插入本考点注册的原装机考锁；如问题持续，请联系技术服务单位。",
                detail="challenge signature from {} does not verify".format(lid),
            )
        return clock_ms

    def verify(self, expected: ExpectedLock, timeout: Optional[float] = None) -> int:
        """Check that the attached dongle is ``expected``; return its signed clock (ms)."""
        lock_id = self.read_id(timeout)
        if lock_id != expected.lock_id:
            raise WrongLockError(
                "插入的机考锁（编号 {}）不是本考点注册的机考锁（编号 {}）。".format(lock_id, expected.lock_id),
                "请插入在监控平台为本考点注册的机考锁；如机考锁已更换，请先在监控平台重新注册，再重新导入考务数据。",
                detail="lock id {} != expected {}".format(lock_id, expected.lock_id),
            )
        return self.challenge(expected.public_key, expected.lock_id, timeout)

    def put_ticket(self, ticket: bytes, timeout: Optional[float] = None) -> int:
        """Store a platform sync ticket; the dongle sets its clock from it. Its new clock (ms)."""
        if len(ticket) > P.MAX_TICKET_BYTES:
            raise LockProtocolError(
                "校时授权过大，机考锁无法保存。", "请重新从监控平台获取校时授权。",
                detail="ticket of {} bytes".format(len(ticket)),
            )
        try:
            fields = self.command(P.TICKET, "PUT", P.b64encode(ticket), timeout=timeout)
        except LockRefused as e:
            if e.code in (P.E_TICKET, P.E_STALE):
                raise LockRefused(
                    e.code, e.text,
                    "机考锁拒绝了校时授权（{}）：{}。".format(e.code, e.text),
                    "请确认插入的是本考点注册的机考锁，然后重新校时；如问题持续，请联系技术服务单位。",
                ) from e
            raise
        return _one(fields, P.parse_ms, "TICKET PUT")

    def get_ticket(self, timeout: Optional[float] = None) -> Optional[bytes]:
        """The stored sync ticket, or None when the dongle has none yet."""
        try:
            fields = self.command(P.TICKET, "GET", timeout=timeout)
        except LockRefused as e:
            if e.code == P.E_NOTICKET:
                return None
            raise
        return _one(fields, lambda f: P.b64decode(f, max_size=P.MAX_TICKET_BYTES), "TICKET GET")

    def read_state(self, timeout: Optional[float] = None) -> Dict[str, str]:
        fields = self.command(P.STATE, timeout=timeout)
        try:
            return P.parse_state(fields)
        except ValueError as e:
            raise LockProtocolError(detail="bad STATE reply: {}".format(e)) from e


def _site_of(ask: Any) -> P.SiteReading:
    """The ``SiteReading`` of one ``SITE`` exchange (``ask()`` returns the OK fields or
    raises ``LockRefused``): ``E_NOSITE`` and ``E_UNKNOWN`` are answers, not failures;
    any other refusal or a malformed answer is a ``LockProtocolError``."""
    try:
        reply = P.Reply(True, tuple(ask()))
    except LockRefused as e:
        reply = P.Reply(False, (), e.code, e.text)
    try:
        return P.site_reading(reply)
    except ValueError as e:
        raise LockProtocolError(detail="bad SITE reply {!r}: {}".format(reply, e)) from e


def _one(fields: Tuple[str, ...], parse: Any, what: str) -> Any:
    if len(fields) != 1:
        raise LockProtocolError(detail="{} reply has {} fields: {!r}".format(what, len(fields), fields))
    try:
        return parse(fields[0])
    except ValueError as e:
        raise LockProtocolError(detail="bad {} reply {!r}: {}".format(what, fields[0], e)) from e
