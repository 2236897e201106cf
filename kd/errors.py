"""The two error families of kaodian.

``UserError`` and its subclasses carry a message fit for a dialog, in Chinese: what
happened (``cause``) and what to do (``remedy``). Views show ``str(error)`` as it is.
Anything that is not a ``UserError`` is an internal error: it is logged with its
traceback and the user is told where the log is.

Subclasses exist so that callers can tell cases apart (``except StoreBusyError``);
``exit_code`` is what ``main.py`` returns when such an error ends the process.
"""

import datetime
from typing import Optional


class UserError(Exception):
    """An error the user can act on: cause and remedy, in Chinese."""

    exit_code = 2

    def __init__(self, cause: str, remedy: str = "", *, detail: Optional[str] = None) -> None:
        self.cause = cause
        self.remedy = remedy
        #: technical detail for the log (paths, errno, exception text); not for dialogs
        self.detail = detail
        super().__init__(self.message)

    @property
    def message(self) -> str:
        """The dialog text: cause, then remedy on its own line."""
        if self.remedy:
            return f"{self.cause}\n{self.remedy}"
        return self.cause

    def __str__(self) -> str:
        return self.message


class DataDirError(UserError):
    """The data folder cannot be created or written."""


class InstanceRunningError(UserError):
    """Another kaodian already uses this data folder."""

    exit_code = 3


class StoreError(UserError):
    """A data file cannot be read or written."""


class StoreCorruptError(StoreError):
    """A data file and its previous generation are both unreadable."""


class StoreMissingError(StoreError):
    """A data file, or one generation of it, is missing: refused by name, never opened as empty."""


class StoreClosedError(StoreError):
    """A store was used after ``close()`` (the app is restarting or exiting)."""


class StoreBusyError(StoreError):
    """Another program (often antivirus) holds a data file and would not let go."""


class SpoolError(UserError):
    """A result file could not be stored in the spool."""


class IntegrityError(SpoolError):
    """Received bytes do not match the announced SHA-256 or size."""


class FormatError(UserError):
    """A file or document is not a valid, trusted artefact (bad signature, wrong site...)."""


class PlatformError(UserError):
    """The monitoring platform could not be used."""


class PlatformUnreachable(PlatformError):
    """The platform did not answer (network down, DNS, timeout)."""


class PlatformRefused(PlatformError):
    """The platform answered and refused the request."""

    #: the HTTP status of the refusal (set by ``kd.platform.transport.refused``)
    status: Optional[int] = None


class LockError(UserError):
    """The exam dongle (机考锁) is missing, wrong or not answering."""

    exit_code = 4


class ResultConflict(UserError):
    """A result package for a room and session already recovered with a different hash."""


class PermitRefused(UserError):
    """A proctor may not start the session: it is not verified, or the room is not registered."""


class StateRefused(UserError):
    """A proctor's report does not fit what the site recorded (a session ended that never started)."""


class RegistrationRefused(UserError):
    """A proctor machine's room registration or token was refused (考场注册)."""

    #: the end of a lockout for too many wrong codes (an aware datetime); None for other refusals
    retry_at: Optional[datetime.datetime] = None
