"""The outbox: every report to the monitoring platform is stored first, then delivered.

``Outbox.enqueue(kind, data, ...)`` writes ``runtime outbox/<id>`` as ``pending`` (with
an idempotency key from ``secrets`` and the creation time) before it returns; the report
survives a restart. Delivery (``deliver_once()`` or the sender thread of ``start()``)
calls ``ctx.platform.post_report(kind, data, key, session_id=, room_code=, created_at=)``
with the stored key and creation time, so a report resent after a lost answer is the
same request and the platform records it once.

Outcomes of one attempt (each one platform call, bounded by the client's total
deadline: 30 s, docs/platform-api.md §1.2):

- accepted (2xx): ``sent`` with ``sent_at`` and the platform's ``report_id``;
- no answer, or 429/5xx (``PlatformUnreachable``, ``PlatformRefused`` with such a
  status, a garbled answer): stays ``pending``; ``tries`` + 1, ``last_error``, and
  ``next_try_at`` after an exponential, jittered, bounded backoff. The round stops
  there: the platform is not answering, so the reports after it keep their place (and
  their ``tries``) and the sender holds off every report until that ``next_try_at``
  (``held_until`` in the snapshot) — an outage costs one deadline per backoff step, not
  one per pending report;
- refused (4xx other than 429): ``failed`` with the platform's message in
  ``last_error`` (shown in the snapshot), never retried automatically.

No command waits for delivery. ``enqueue`` stores the report and wakes the sender;
delivering is the sender thread's job (``start()``, run by a site that stays open: the
GUI and ``--headless``). A command-line process runs no sender: what it enqueues stays
``pending`` in ``runtime`` (durable) when it exits, and the next running instance
delivers it (``outbox --send`` delivers at once on request, stopping at the first
report the platform does not answer). The sender thread waits on an ``Event`` (woken
by ``enqueue``, ``retry`` and ``stop``), never spins.
Hub events: ``outbox.enqueued``, ``outbox.sent``, ``outbox.failed``, ``outbox.retried``
(audited) and ``outbox.deferred`` (a retryable failure; not audited).
"""

import datetime
import logging
import random
import secrets
import threading
from typing import Any, Dict, List, Optional, cast

from kd.core import labels, model, names
from kd.core.context import Context
from kd.core.records import JsonObject, OutboxItem, as_doc, outbox_item, outbox_items
from kd.errors import PlatformRefused, UserError
from kd.formats.timeutil import format_time, read_time

log = logging.getLogger(__name__)

PENDING, SENT, FAILED = "pending", "sent", "failed"
STATE_LABELS = labels.OUTBOX_STATE_LABELS  # {PENDING: 待上报, SENT: 已上报, FAILED: 上报失败}
KINDS = ("seal_check", "room_status", "session_started", "session_ended", "recovery_status", "upload_status",
         "incidents")  # incidents: kd.core.incidentreport
KIND_LABELS = labels.OUTBOX_KIND_LABELS
ACTOR = "system"


def new_key() -> str:
    """A fresh idempotency key (kept with the report for every retry)."""
    return "kd-" + secrets.token_hex(16)


def _is_refusal(error: Exception) -> bool:
    """True for a definitive refusal (4xx other than 429): retrying would not help."""
    status = getattr(error, "status", None)
    return isinstance(error, PlatformRefused) and isinstance(status, int) and 400 <= status < 500 and status != 429


class Outbox:
    """Stored reports and their delivery (see the module docstring)."""

    def __init__(self, ctx: Context, *, base_delay: float = 2.0, max_delay: float = 300.0) -> None:
        if base_delay <= 0 or max_delay < base_delay:
            raise ValueError("need 0 < base_delay <= max_delay")
        self.ctx = ctx
        self.base_delay = float(base_delay)
        self.max_delay = float(max_delay)
        self._db = ctx.stores.runtime
        self._deliver_lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._random = random.Random()
        #: after a round that stopped at a report the platform did not answer: no round before this
        self._held_until: Optional[datetime.datetime] = None

    # -- storing ----------------------------------------------------------------------------
    def enqueue(self, kind: str, data: Dict[str, Any], *, session_id: Optional[str] = None,
                room_code: Optional[str] = None) -> OutboxItem:
        """Store a report as ``pending`` (durably, before returning) and wake the sender.

        Raises ``ValueError`` for an unknown kind or data that is not a JSON object.
        """
        if kind not in KINDS:
            raise ValueError("unknown report kind: {}".format(kind))
        if not isinstance(data, dict):
            raise ValueError("report data must be a dict")
        with self.ctx.lock:
            now = format_time(self.ctx.now())
            rid = "{}-{}".format(self.ctx.now().strftime("%Y%m%d%H%M%S"), secrets.token_hex(4))
            doc: OutboxItem = {
                "id": rid, "kind": kind, "data": data, "key": new_key(), "session_id": session_id,
                "room_code": room_code, "created_at": now, "state": PENDING, "tries": 0, "last_error": None,
                "next_try_at": now, "sent_at": None, "failed_at": None, "report_id": None,
            }
            stored = cast(OutboxItem, self._db.put(model.OUTBOX, rid, as_doc(doc)))
            self.ctx.record(ACTOR, names.OUTBOX_ENQUEUED, id=rid, kind=kind, session_id=session_id, room_code=room_code)
        self._wake.set()
        return stored

    def get(self, rid: str) -> Optional[OutboxItem]:
        return outbox_item(self._db, rid)

    def items(self) -> List[OutboxItem]:
        """Every stored report, oldest first."""
        return sorted(outbox_items(self._db), key=lambda d: (d.get("created_at") or "", d.get("id") or ""))

    def latest(self, kind: str, *, session_id: Optional[str] = None,
               room_code: Optional[str] = None) -> Optional[OutboxItem]:
        """The newest report of ``kind`` (for that session/room when given), or None."""
        found = [d for d in self.items() if d["kind"] == kind
                 and (session_id is None or d.get("session_id") == session_id)
                 and (room_code is None or d.get("room_code") == room_code)]
        return found[-1] if found else None

    # -- delivering -------------------------------------------------------------------------
    def backoff(self, tries: int) -> float:
        """Seconds before the next attempt after ``tries`` failed ones: 2^n growth, capped, jittered."""
        raw = min(self.max_delay, self.base_delay * (2 ** min(max(tries - 1, 0), 30)))
        return raw * (0.5 + 0.5 * self._random.random())

    def _due(self, doc: OutboxItem, now: datetime.datetime) -> bool:
        try:
            return read_time(doc.get("next_try_at")) <= now
        except ValueError:
            return True

    def deliver_once(self, due_only: bool = False) -> int:
        """Try to deliver the pending reports (all of them, or only those due); the number sent.

        Oldest first; the round stops at the first report the platform does not answer
        (or answers 429/5xx), so it takes at most one call deadline beyond the reports
        sent. ``due_only`` also respects the hold after such a round. Never raises for a
        delivery failure: the outcome is stored on each report.
        """
        return self._deliver(due_only, stoppable=False)

    def _deliver(self, due_only: bool, stoppable: bool) -> int:
        sent = 0
        with self._deliver_lock:
            now = self.ctx.now()
            if due_only and self._held_until is not None and now < self._held_until:
                return 0
            self._held_until = None
            for doc in self.items():
                if stoppable and self._stop.is_set():
                    break
                if doc["state"] != PENDING or (due_only and not self._due(doc, now)):
                    continue
                outcome = self._attempt(doc)
                if outcome is True:
                    sent += 1
                elif outcome is None:  # no answer: the rest wait for the next round
                    self._held_until = self._next_try(doc["id"])
                    break
        return sent

    def _next_try(self, rid: str) -> Optional[datetime.datetime]:
        doc = self.get(rid)
        try:
            return read_time(doc.get("next_try_at") if doc is not None else None)
        except ValueError:
            return None

    def _attempt(self, doc: OutboxItem) -> Optional[bool]:
        """One delivery: True when sent, False when refused for good, None when it is to be tried again."""
        rid = doc["id"]
        platform = self.ctx.platform
        try:
            if platform is None:
                raise UserError("未配置监控平台地址，上报内容已保存。", "请在参数设置中配置监控平台后自动上报。")
            answer = platform.post_report(doc["kind"], doc["data"], doc["key"], session_id=doc.get("session_id"),
                                          room_code=doc.get("room_code"), created_at=doc["created_at"])
        except Exception as e:  # noqa: BLE001 - every failure is stored on the report
            return self._failed_attempt(doc, e)
        with self.ctx.lock:
            self._db.update(model.OUTBOX, rid, {
                "state": SENT, "tries": doc.get("tries", 0) + 1, "last_error": None,
                "sent_at": format_time(self.ctx.now()), "report_id": (answer or {}).get("report_id"),
                "next_try_at": None})
            self.ctx.record(ACTOR, names.OUTBOX_SENT, id=rid, kind=doc["kind"], session_id=doc.get("session_id"),
                            room_code=doc.get("room_code"), report_id=(answer or {}).get("report_id"))
        return True

    def _failed_attempt(self, doc: OutboxItem, error: Exception) -> Optional[bool]:
        rid = doc["id"]
        tries = doc.get("tries", 0) + 1
        message = error.cause if isinstance(error, UserError) else "{}: {}".format(type(error).__name__, error)
        now = self.ctx.now()
        refused = _is_refusal(error) or not isinstance(error, UserError)
        if not isinstance(error, UserError):
            log.exception("report %s could not be sent", rid, exc_info=error)
        else:
            log.info("report %s not sent (%s): %s", rid, "refused" if refused else "will retry",
                     error.detail or error.cause)
        with self.ctx.lock:
            if refused:
                self._db.update(model.OUTBOX, rid, {"state": FAILED, "tries": tries, "last_error": message,
                                                    "failed_at": format_time(now), "next_try_at": None})
                self.ctx.record(ACTOR, names.OUTBOX_FAILED, id=rid, kind=doc["kind"], error=message)
            else:
                due = now + datetime.timedelta(seconds=self.backoff(tries))
                self._db.update(model.OUTBOX, rid, {"tries": tries, "last_error": message,
                                                    "next_try_at": format_time(due)})
                # an event for the views (not audited: an outage would flood the audit log)
                self.ctx.hub.publish(names.OUTBOX_DEFERRED, id=rid, kind=doc["kind"], tries=tries, error=message,
                                     next_try_at=format_time(due))
        return False if refused else None

    def retry(self, rid: str, actor: str) -> OutboxItem:
        """Put a ``failed`` report back to ``pending`` (same key) after the cause was fixed."""
        with self.ctx.lock:
            doc = self.get(rid)
            if doc is None:
                raise UserError("没有这条上报记录：{}".format(rid), "请刷新后重试。")
            if doc["state"] == FAILED:
                doc = cast(OutboxItem, self._db.update(model.OUTBOX, rid, {
                    "state": PENDING, "failed_at": None, "next_try_at": format_time(self.ctx.now())}))
                self.ctx.record(actor, names.OUTBOX_RETRIED, id=rid, kind=doc["kind"])
        self._held_until = None  # the administrator fixed the cause: try now
        self._wake.set()
        return doc

    # -- the sender thread ------------------------------------------------------------------
    def start(self) -> "Outbox":
        """Start the sender thread (idempotent)."""
        if self._thread is not None and self._thread.is_alive():
            return self
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="kd-outbox", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the sender thread: its waits end at once; an attempt under way is finished."""
        self._stop.set()
        self._wake.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _next_wait(self) -> float:
        """Seconds until the earliest pending report is due or the hold ends (bounded), or the max when idle."""
        now = self.ctx.now()
        wait = self.max_delay
        held = self._held_until
        if held is not None and held > now:
            return min(wait, max((held - now).total_seconds(), 0.05))
        for doc in self.items():
            if doc["state"] != PENDING:
                continue
            try:
                left = (read_time(doc.get("next_try_at")) - now).total_seconds()
            except ValueError:
                left = 0.0
            wait = min(wait, left)
        return max(wait, 0.05)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            try:
                self._deliver(True, stoppable=True)
                wait = self._next_wait()
            except Exception:  # noqa: BLE001 - the sender must outlive a bad moment (disk busy...)
                log.exception("outbox sender")
                wait = self.base_delay
            self._wake.wait(wait)

    # -- view -------------------------------------------------------------------------------
    def snapshot(self) -> JsonObject:
        """Every report with its state (label, tries, error, times) and the counts per state."""
        rows = []
        counts = {PENDING: 0, SENT: 0, FAILED: 0}
        for d in self.items():
            counts[d["state"]] = counts.get(d["state"], 0) + 1
            rows.append({
                "id": d["id"], "kind": d["kind"], "kind_label": KIND_LABELS.get(d["kind"], d["kind"]),
                "session_id": d.get("session_id"), "room_code": d.get("room_code"),
                "created_at": d.get("created_at"), "state": d["state"],
                "state_label": STATE_LABELS.get(d["state"], d["state"]), "tries": d.get("tries", 0),
                "last_error": d.get("last_error"), "next_try_at": d.get("next_try_at"),
                "sent_at": d.get("sent_at"), "failed_at": d.get("failed_at"), "report_id": d.get("report_id"),
            })
        held = self._held_until
        return {"items": rows, "counts": counts, "running": self.running,
                "held_until": format_time(held) if held is not None and held > self.ctx.now() else None}
