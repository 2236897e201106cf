"""The proctor simulator's records (``kd.lan.simulator`` re-exports each of them).

- ``SimOptions``: what the simulated proctors do (counts of rooms that misbehave, pacing,
  sizes); each field is described in ``kd.lan.simulator``'s docstring and below;
  ``_DEFAULTS`` its defaults (the command line's, ``kd.lan.simcli``).
- ``PHASES``: the phases of a proctor's day, in order; ``Progress``: where one proctor is now
  (``Simulation.progress()``).
- ``ProctorReport``: what one proctor did, plain data for the summary (``as_dict()``).
- ``RETRY``: the error codes after which a proctor tries the same step again; ``MiB``.

The proctor itself (``Proctor``) and the ``Simulation`` live in ``kd.lan.simulator``, where
the rooms and addresses come from in ``kd.lan.simrooms``, the command line in ``kd.lan.simcli``.
"""

from typing import Any, Dict, List, NamedTuple, Optional

from kd.lan.client import E_NET

__all__ = ["MiB", "PHASES", "RETRY", "ProctorReport", "Progress", "SimOptions"]

MiB = 1024 * 1024
#: errors after which a proctor tries the same step again
RETRY = frozenset({E_NET, "E_BUSY", "E_SHUTDOWN", "E_TIMEOUT", "E_SLOW", "E_STORAGE"})


class SimOptions(NamedTuple):
    result_mb: float = 0.05
    speed: float = 60.0
    wrong_code: int = 0
    silent: int = 0
    silent_s: float = 16.0
    disconnect: int = 0
    permit_every: float = 1.0
    permit_timeout: float = 3600.0
    connect_timeout: float = 60.0
    absent_rate: float = 0.05
    timeout: float = 60.0
    work_dir: Optional[str] = None
    seed: int = 1
    #: each proctor connects from its own loopback address (``loopback_address``)
    own_address: bool = False
    #: wait for each session's start time before asking for the permit (see ``kd.lan.simulator``'s docstring)
    on_schedule: bool = False
    #: how long a session runs that starts after its scheduled end (on_schedule)
    late_run_s: float = 20.0
    #: the first ``skew_rooms`` proctors' clocks are ``skew_s`` seconds off (ahead when > 0): their
    #: heartbeats' ``clock``, their on-schedule waits and their report times all read that clock
    skew_s: float = 0.0
    skew_rooms: int = 0
    #: the first K proctors end their sessions but never upload their results (a drill's missing room)
    no_upload: int = 0
    #: the first K proctors lose their connection once, mid-exam (see ``kd.lan.simulator``'s docstring)
    outage: int = 0
    #: how long an outage lasts, in simulated seconds (real: outage_s / speed)
    outage_s: float = 90.0
    #: when it starts, in simulated seconds after the start of the proctor's first session
    outage_after_s: float = 60.0


_DEFAULTS = SimOptions()  # the class attributes of a NamedTuple are field accessors, not defaults

#: the phases of a proctor's day (``Progress.phase``), in order
PHASES = ("connecting", "registered", "data_imported", "waiting", "permit", "in_exam", "uploading", "uploaded",
          "done", "failed")


class Progress(NamedTuple):
    """Where one proctor is now (``Simulation.progress()``)."""

    room: str
    address: Optional[str]
    phase: str
    session: Optional[str]
    detail: str


class ProctorReport:
    """What one proctor did (plain data for the summary)."""

    def __init__(self, room: str) -> None:
        self.room = room
        self.registered = False
        self.wrong_code_refused: Optional[bool] = None
        self.data_imported = False
        self.data_sha256: Optional[str] = None
        self.started: List[str] = []
        self.ended: List[str] = []
        self.uploads: List[Dict[str, Any]] = []
        self.permit_refusals = 0
        self.reconnects = 0
        self.storage_retries = 0
        self.upload_retries = 0
        self.silent_s = 0.0
        #: connection outages injected (``SimOptions.outage``) and the real seconds they lasted
        self.outages = 0
        self.outage_real_s = 0.0
        self.disconnected_upload = False
        #: this proctor's clock offset in seconds (SimOptions.skew_s / skew_rooms)
        self.clock_skew_s = 0.0
        self.done = False
        self.error: Optional[str] = None
        #: when (the proctor's clock, ISO) each session started
        self.started_at: Dict[str, str] = {}
        #: when (the proctor's clock, ISO) each session ended
        self.ended_at: Dict[str, str] = {}
        #: the 补时 applied per session (the latest grant's ``total_min``) and the grant ids acknowledged
        self.extra_time: Dict[str, int] = {}
        self.extra_time_acked: List[str] = []

    def as_dict(self) -> Dict[str, Any]:
        return dict(vars(self))
