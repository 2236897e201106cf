"""The emulated dongle's flash: its state file and the identity file it can be made from.

``DIR/dongle.json`` (``STATE_FILE``), written atomically (``kd.fileio.write_file_durably``)
before a change is acknowledged, is one JSON object (``indent=1``)::

    {"format": "kd-lock-emulator/1", "lock_id": "EMU-1A2B3C4D", "seed": "<64 hex digits>",
     "site_code": "11003" | null, "clock_offset_ms": <int>, "trusted_keys": ["<base64 32 bytes>", ...],
     "ticket": "<base64>" | null, "ticket_time_ms": <int>}

``site_code`` is absent in an older emulator's file (registered by the first start that
names a site). An identity file (``read_identity``: the platform simulator's
``dongle.json``) has ``lock_id``, hex ``seed`` and, optionally, ``site_code``. The rules
of when a state is made, registered or refused are ``load_state``'s; the command line is
``kd.lock.emulator``'s.
"""

import json
import logging
import os
import secrets
from typing import List, NamedTuple, Optional, Tuple

from kd.errors import LockError
from kd.lock import protocol as P

log = logging.getLogger(__name__)

STATE_FILE = "dongle.json"
STATE_FORMAT = "kd-lock-emulator/1"


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
