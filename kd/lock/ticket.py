"""How a dongle judges a platform sync ticket before it sets its clock from it.

The ticket itself is ``kd.formats.documents``' ``sync_ticket`` (docs/formats.md): a
kd-signed/1 envelope with ``lock_id``, ``site_code``, ``server_time``, ``valid_until``.
A dongle accepts it only when it is signed by a platform key the dongle trusts, names
this dongle's id, and ``server_time < valid_until``. The dongle does not judge the window
by its own clock (that clock is what the ticket is there to correct, and may be far off);
instead it refuses a ticket whose ``server_time`` is not newer than the stored one
(``E_STALE``), so an old ticket cannot be replayed to set the clock back.

``check_ticket_for_dongle`` raises ``ValueError`` with a short ASCII reason (it becomes
the text of ``ERR E_TICKET``); the Chinese detail is logged.
"""

import datetime
import json
import logging
from typing import List, Tuple

from kd.errors import FormatError
from kd.formats.documents import KIND_SYNC_TICKET, load_sync_ticket
from kd.formats.signing import TrustedKeys

log = logging.getLogger(__name__)

#: a window check wide enough to accept any ticket time: the dongle's clock is not judged
_ANY_TIME = datetime.timedelta(days=365 * 100)


def to_ms(moment: datetime.datetime) -> int:
    """Unix time in milliseconds of an aware datetime."""
    return int(round(moment.timestamp() * 1000))


def check_ticket_for_dongle(ticket: bytes, trusted_keys: List[bytes], lock_id: str) -> Tuple[int, int]:
    """``(server_time_ms, valid_until_ms)`` of a ticket this dongle may use; ``ValueError`` if not."""
    trusted = TrustedKeys(trusted_keys)
    try:
        envelope = json.loads(ticket.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise ValueError("not a signed document") from None
    if not isinstance(envelope, dict) or envelope.get("kind") != KIND_SYNC_TICKET:
        raise ValueError("not a sync ticket")
    if envelope.get("key_id") not in trusted:
        raise ValueError("signed by an untrusted platform key")
    now = datetime.datetime.now(datetime.timezone.utc)
    try:
        doc = load_sync_ticket(ticket, trusted, now, skew=_ANY_TIME)
    except FormatError as e:
        log.info("sync ticket refused: %s (%s)", e.cause, e.detail)
        raise ValueError("invalid ticket (signature or fields)") from None
    except OverflowError:  # a signed time near year 1 or 9999
        raise ValueError("ticket times out of range") from None
    if doc.lock_id != lock_id:
        raise ValueError("ticket is for another lock")
    if doc.valid_until <= doc.server_time:
        raise ValueError("ticket expired when issued")
    return to_ms(doc.server_time), to_ms(doc.valid_until)
