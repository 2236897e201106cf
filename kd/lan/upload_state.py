"""The lifecycle of one partial result upload on the LAN server (``kd.lan.uploads``).

An ``Upload`` is one owner's (one connection's) hold on one part file. Its ``state``
changes only by ``advance(event)`` along ``TRANSITIONS``::

    OPEN     --PARTIAL-->  OPEN        a chunk written, bytes still to come
    OPEN     --FULL----->  COMPLETE    the last byte written
    COMPLETE --RECORDED->  COMMITTED   recovery.receive returned; the part file is removed
    COMPLETE --REFUSED-->  REFUSED     the content was refused; the part file is removed
    COMPLETE --FULL----->  COMPLETE    a commit failed for storage: every byte kept for the retry
    COMPLETE --PARTIAL-->  OPEN        ... and the part was found cut short: resume from its size
    OPEN | COMPLETE --RELEASE--> RELEASED   the owner let go; the part file stays

``PARTIAL``/``FULL`` follow every write (and the reopening after a failed commit): FULL
when the part holds ``size`` bytes. ``upload_begin`` creates the upload in the state the
disk and the records give: OPEN (bytes still to come), COMPLETE (the part already holds
every byte: the proctor only commits) or COMMITTED (the room and session already record
this file: a commit whose reply was lost). RELEASED: the connection ended or began
another upload, another connection took the part over, a new package for the same room
and session discarded it, or the part could not be reopened after a failed commit.

Nothing of this is written anywhere but in the part file itself (its name and size) and
in the recovery service's record: a restarted server rebuilds each upload from them at
the next ``upload_begin``.
"""

import enum
import logging
from typing import Any, Dict, Optional, Tuple

log = logging.getLogger(__name__)


class UploadState(enum.Enum):
    """Where one upload is (see the module docstring)."""

    OPEN = "open"  # the part file is open, bytes still to come
    COMPLETE = "complete"  # the part holds every byte; upload_commit may run
    COMMITTED = "committed"  # recorded by the recovery service; the part file is gone
    REFUSED = "refused"  # the content was refused for good; the part file is gone
    RELEASED = "released"  # the owner let go (closed, taken over, superseded); the part file stays


class UploadEvent(enum.Enum):
    """What happened to it."""

    PARTIAL = "partial"  # after a write: some bytes still to come
    FULL = "full"  # after a write, or a commit that kept the part: every byte held
    RECORDED = "recorded"  # recovery.receive returned
    REFUSED = "refused"  # recovery.receive refused the content
    RELEASE = "release"  # the owner lets go of the part


S, E = UploadState, UploadEvent
TRANSITIONS: Dict[Tuple[UploadState, UploadEvent], UploadState] = {
    (S.OPEN, E.PARTIAL): S.OPEN,
    (S.OPEN, E.FULL): S.COMPLETE,
    (S.COMPLETE, E.FULL): S.COMPLETE,
    (S.COMPLETE, E.PARTIAL): S.OPEN,  # a failed commit found the part cut short (outside the server)
    (S.COMPLETE, E.RECORDED): S.COMMITTED,
    (S.COMPLETE, E.REFUSED): S.REFUSED,
    (S.OPEN, E.RELEASE): S.RELEASED,
    (S.COMPLETE, E.RELEASE): S.RELEASED,
}
#: states in which the owner may send chunks or commit (the part file is open)
LIVE = frozenset([S.OPEN, S.COMPLETE])


class Upload:
    """One owner's upload of one part file: where it is in its lifecycle, how far, the open handle."""

    def __init__(self, room: str, session: str, sha256: str, size: int, path: str,
                 state: UploadState = UploadState.OPEN) -> None:
        self.room, self.session, self.sha256, self.size, self.path = room, session, sha256, size, path
        self.state = state
        self.file: Optional[Any] = None
        self.offset = 0
        self.last_event = -1e9

    def advance(self, event: UploadEvent) -> UploadState:
        """The one way to change ``state``; an event the table does not allow is a bug (``RuntimeError``)."""
        new = TRANSITIONS.get((self.state, event))
        if new is None:
            raise RuntimeError("upload {}: {} in state {}".format(self.path, event.name, self.state.name))
        self.state = new
        return new

    def held(self) -> None:
        """Advance by the bytes now held: FULL at ``size``, else PARTIAL."""
        self.advance(UploadEvent.FULL if self.offset == self.size else UploadEvent.PARTIAL)

    def close(self) -> None:
        if self.file is not None:
            try:
                self.file.close()
            except OSError:
                log.exception("closing %s", self.path)
            self.file = None

    def let_go(self) -> None:
        """Close the file; a live upload is RELEASED (its owner lost it or left)."""
        self.close()
        if self.state in LIVE:
            self.advance(UploadEvent.RELEASE)
