"""The ``incidents`` report: a session's 考场情况记录 and 补时 carried to the platform through the outbox.

When a session's every room has ended (its ``session_ended`` report was enqueued:
``sessions/<id>.ended_reported_at``, kd.core.monitor), ``IncidentReporter.report(session)``
enqueues one report of kind ``incidents`` (docs/platform-api.md §6.2)::

    {"session_id": "1", "mode": "formal", "version": 1, "content_sha256": "<64 hex>",
     "incidents": [<incident>, ...], "extra_time": [<grant>, ...]}

``mode``: the site's exam mode (``formal`` 正式考试 / ``mock`` 模拟考试, ``settings/site``):
模考转正考 clears the runtime DB, so the formal exam's versions start at 1 again, and the
platform keeps a session's versions per mode.

``incidents``: every incident of the session (all states: a dismissed draft is reported as
dismissed), by number; ``extra_time``: every grant, by number (fields: ``incident_doc`` /
``grant_doc``, docs/platform-api.md §6.2). ``content_sha256`` is the SHA-256 (hex) of
``canonical_json({"session_id", "incidents", "extra_time"})`` (``kd.formats.signing``:
keys sorted, no spaces, UTF-8). Nothing in the content depends on the time it is built (an
open incident's ``lost_min`` is null), so the same register gives the same hash.

**Versions, once each.** The session's reports are the outbox's own records (``runtime
outbox``, kind ``incidents``, ``session_id``): the next report is enqueued only when the
content's hash differs from the hash of the session's highest stored version, and it is
that version + 1. So a retry (the outbox keeps one idempotency key per report) and a
restart (the stored reports are read back) send a version once; a change after the end (an
incident confirmed, dismissed, added, ended; a grant, its acknowledgement) sends the next
version, which replaces the earlier ones at the platform. The check and the enqueue run
under ``ctx.lock``.

**When.** ``Core`` registers ``on_event`` on the hub for ``session.ended`` and every
``incident.*`` / ``extra_time.*`` change (each is recorded under ``ctx.lock``, in the thread
that made it, so the report is stored before the change's call returns), and ``tick()`` at
``Core.start()`` catches up a session whose report a crash left out (its ``session_ended``
stored, the process gone before the hub reached this). A command-line process enqueues
like the window (no sender there: the next running instance delivers it).
"""

import hashlib
import logging
from typing import Any, Dict, List, Optional, cast

from kd.core import model, names, records
from kd.core.context import Context
from kd.core.extratime import ExtraTimeService
from kd.core.incidents import INCIDENTS, IncidentService
from kd.core.outbox import Outbox
from kd.events import Event
from kd.formats.signing import canonical_json

log = logging.getLogger(__name__)

#: the outbox / platform report kind
KIND = "incidents"
#: the hub events after which a session's report may be due
EVENTS = (names.SESSION_ENDED, names.INCIDENT_RECORDED, names.INCIDENT_DRAFTED, names.INCIDENT_UPDATED,
          names.INCIDENT_CONFIRMED, names.INCIDENT_DISMISSED, names.EXTRA_TIME_GRANTED,
          names.EXTRA_TIME_ACKNOWLEDGED)


def incident_doc(doc: Dict[str, Any], lost_min: Optional[int]) -> Dict[str, Any]:
    """One incident as the report carries it."""
    return {
        "id": doc["id"], "room_code": doc["room"], "kind": doc["kind"], "category": doc["category"],
        "start": doc["start"], "end": doc.get("end"), "lost_min": lost_min,
        "candidates": list(doc.get("candidates") or []), "description": doc.get("description") or "",
        "recorded_by": doc.get("recorded_by"), "recorded_at": doc.get("recorded_at"), "state": doc["state"],
        "decided_by": doc.get("decided_by"), "decided_at": doc.get("decided_at"), "note": doc.get("note") or "",
    }


def grant_doc(doc: Dict[str, Any]) -> Dict[str, Any]:
    """One 补时 grant as the report carries it."""
    dongle = doc.get("dongle")
    return {
        "id": doc["id"], "room_code": doc["room"], "minutes": int(doc["minutes"]), "total_min": int(doc["total_min"]),
        "tier": doc["tier"], "reason": doc.get("reason") or "",
        "incidents": [str(i) for i in doc.get("incidents") or []],
        "granted_by": doc.get("granted_by"), "granted_at": doc.get("granted_at"),
        "dongle": {"lock_id": dongle.get("lock_id"), "clock_ms": dongle.get("clock_ms")} if dongle else None,
        "expected_end": doc.get("expected_end"), "acked_at": doc.get("acked_at"),
    }


def content_sha256(content: Dict[str, Any]) -> str:
    """SHA-256 (hex) of the canonical JSON of ``{"session_id", "incidents", "extra_time"}``."""
    part = {k: content[k] for k in ("session_id", "incidents", "extra_time")}
    return hashlib.sha256(canonical_json(part).encode("utf-8")).hexdigest()


class IncidentReporter:
    """Enqueues each session's ``incidents`` report once per version (see the module docstring)."""

    def __init__(self, ctx: Context, outbox: Outbox, incidents: IncidentService, extra_time: ExtraTimeService) -> None:
        self.ctx = ctx
        self.outbox = outbox
        self.incidents = incidents
        self.extra_time = extra_time

    def content(self, session_id: str) -> Dict[str, Any]:
        """``{"session_id", "incidents", "extra_time"}`` of the session now."""
        docs = sorted(self.incidents.list(session=session_id), key=lambda d: int(d["id"]))
        return {
            "session_id": session_id,
            "incidents": [incident_doc(d, self.incidents.lost_minutes(d) if d.get("end") else None) for d in docs],
            "extra_time": [grant_doc(g) for g in self.extra_time.grants(session=session_id)],
        }

    def ended(self, session_id: str) -> bool:
        """The session's ``session_ended`` report has been enqueued (every room ended)."""
        doc = records.as_doc(self.ctx.stores.runtime.get(model.SESSIONS, str(session_id)) or {})
        return bool(doc.get("ended_reported_at"))

    def reports(self, session_id: str) -> List[records.OutboxItem]:
        """The session's stored ``incidents`` reports, by version."""
        found = cast(List[records.OutboxItem],
                     self.ctx.stores.runtime.find(model.OUTBOX, kind=KIND, session_id=session_id))
        return sorted(found, key=lambda d: int((d.get("data") or {}).get("version") or 0))

    def report(self, session_id: str) -> Optional[records.OutboxItem]:
        """Enqueue the session's next version when it has ended and its content changed; the report, or None."""
        session_id = str(session_id)
        with self.ctx.lock:
            if not self.ended(session_id):
                return None
            content = self.content(session_id)
            digest = content_sha256(content)
            stored = self.reports(session_id)
            last = dict(stored[-1].get("data") or {}) if stored else {}
            if last.get("content_sha256") == digest:
                return None
            version = int(last.get("version") or 0) + 1
            data = dict(content, mode=self.ctx.mode(), version=version, content_sha256=digest)
            item = self.outbox.enqueue(KIND, data, session_id=session_id)
            log.info("incidents report of session %s: version %d (%d incidents, %d grants)", session_id, version,
                     len(content["incidents"]), len(content["extra_time"]))
        return item

    def tick(self) -> List[records.OutboxItem]:
        """``report`` for every session that has ended (the catch-up after a restart); the enqueued."""
        out = []
        for doc in records.sessions(self.ctx.stores.runtime):
            if records.as_doc(doc).get("ended_reported_at"):
                item = self.report(doc["id"])
                if item is not None:
                    out.append(item)
        return out

    def on_event(self, event: Event) -> None:
        """A hub callback: the session the event concerns may owe a new version.

        A reporter whose stores are closed (a site closed while its hub lives on) does nothing.
        """
        if self.ctx.stores.runtime.closed:
            log.debug("%s ignored: this site's stores are closed", event.name)
            return
        session_id = event.data.get("session_id")
        if session_id is None and event.data.get("incident_id") is not None:  # incident.updated names only the id
            doc = self.ctx.stores.runtime.get(INCIDENTS, str(event.data["incident_id"]))
            session_id = doc.get("session") if doc else None
        if session_id is not None:
            self.report(str(session_id))
