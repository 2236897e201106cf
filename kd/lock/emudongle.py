"""The emulated dongle's behaviour: one KDLOCK request line in, the reply line out.

``Dongle`` answers every command of docs/lock-protocol.md (``VERSION``, ``ID``, ``KEY``,
``TIME``, ``SITE``, ``CHAL``, ``ECHO``, ``STATE``, ``TICKET GET|PUT``) from its state
(``kd.lock.emustate``), keeps its clock (host clock + offset + drift) and carries the test
knobs (slow replies, noise, over-long lines, a forged signature, revision-1 firmware).
No transport: ``kd.lock.emulator.LockEmulator`` puts it behind TCP or a pty.
"""

import logging
import os
import threading
import time
from typing import Callable, Iterable, List, Optional, Tuple

import nacl.signing

from kd.fileio import write_file_durably
from kd.lock import protocol as P
from kd.lock.emustate import STATE_FILE, load_state

log = logging.getLogger(__name__)

FIRMWARE = "emu-1.1"  # protocol 1, revision 2 (SITE)
#: what the ``old_firmware`` knob reports: a revision-1 dongle without SITE
OLD_FIRMWARE = "emu-1.0"

TicketChecker = Callable[[bytes, List[bytes], str], Tuple[int, int]]


def _now_ms() -> int:
    return int(time.time() * 1000)


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
