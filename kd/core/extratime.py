"""补时: the proposal from the lost minutes, the rules that gate a grant, the room's expected end.

**Rules** (``ExtraTimeRules``, data with documented defaults; docs/incidents.md §3):

- the room's total 补时 for a session up to ``on_site_max_min`` (30) minutes: granted on
  site by the administrator (tier ``on_site``);
- over 30 and up to ``dongle_max_min`` (45): a second confirmation (``confirmed=True``:
  the 确认 of a second dialog, ``--confirm`` on the command line) with the site's dongle
  present: the dongle the package names answers a challenge (``Dongle.verify``), its lock
  id and signed clock kept as evidence (tier ``dongle``);
- over 45: no 补时; the proposal says ``reschedule`` (改期重考) and a grant is refused.

The rules apply to the room's total for the session (what was granted before plus this grant).

**Lost minutes** (``proposal``): the union of the room-session's *confirmed* incidents of
the kinds in ``rules.lost_kinds`` (by default ``outage`` and ``manual``) that concern the
whole room (no affected candidates listed) and have an end, each clipped to the room's
exam (from its recorded start, or the session's start, to its expected end), overlaps
counted once, rounded up to whole minutes. The proposal is those minutes less what was
granted already. ``counting(incident, lost_kinds)`` says for one record whether it counts
(``Counting.COUNTS``) or why not yet / not at all (``COUNTING_LABELS``: the 考场情况 page's
words); ``proposal`` counts exactly the records it calls ``COUNTS``.

**A grant** (``grant``) is one record of ``runtime extra_time/<id>`` (docs/incidents.md
§3); the room-session record ``room_sessions/<room|session>`` gets ``extra_time_min`` (the
total) and ``expected_end`` (the session's start + duration + the total). It is audited
and published on the hub as ``extra_time.granted``. ``expected_end(room, session)``: that
time (the scheduled end when nothing was granted).

**Delivery to the proctor** (docs/incidents.md §4, docs/lan-protocol.md ``heartbeat``): the
heartbeat handler (``kd.lan.handlers``) calls ``acknowledge(room, grant_id)`` when the
proctor's heartbeat state carries ``extra_time_ack`` (``extra_time.acknowledged``, once),
then asks ``pending(room)`` for the latest grant the room has not acknowledged and carries
it in its reply as ``extra_time``.
"""

import base64
import datetime
import enum
import math
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple, cast

from kd.core import names, records
from kd.core.context import Context
from kd.core.incidents import IncidentService, IncidentState
from kd.errors import StateRefused, UserError
from kd.formats.timeutil import format_time, read_time

#: the runtime DB table of the grants
EXTRA_TIME = "extra_time"


class Tier(str, enum.Enum):
    NONE = "none"  # nothing to grant
    ON_SITE = "on_site"  # 考点管理员当场批准
    DONGLE = "dongle"  # 二次确认并验证机考锁
    RESCHEDULE = "reschedule"  # 建议改期重考


TIER_LABELS: Dict[Tier, str] = {
    Tier.NONE: "无需补时", Tier.ON_SITE: "考点管理员当场批准", Tier.DONGLE: "需二次确认并插入机考锁",
    Tier.RESCHEDULE: "超过 45 分钟，建议改期重考",
}


class Counting(str, enum.Enum):
    """Whether an incident counts toward the room's 补时 (``counting``), or why not."""

    DISMISSED = "dismissed"  # 已驳回
    KIND = "kind"  # its kind is not in lost_kinds
    CANDIDATES = "candidates"  # only some candidates (the proposal is for the whole room)
    DRAFTED = "drafted"  # counts once confirmed
    OPEN = "open"  # counts once it has an end
    COUNTS = "counts"


COUNTING_LABELS: Dict[Counting, str] = {
    Counting.DISMISSED: "已驳回，不计入补时", Counting.KIND: "此类记录不计入补时",
    Counting.CANDIDATES: "只涉及部分考生，不计入全考场补时", Counting.DRAFTED: "确认后计入补时",
    Counting.OPEN: "结束后计入补时", Counting.COUNTS: "计入补时",
}


class ExtraTimeRules(NamedTuple):
    on_site_max_min: int = 30
    dongle_max_min: int = 45
    lost_kinds: Tuple[str, ...] = ("outage", "manual")


DEFAULT_RULES = ExtraTimeRules()


def tier_for(total_min: int, rules: ExtraTimeRules = DEFAULT_RULES) -> Tier:
    """Which approval a room's total 补时 of ``total_min`` minutes needs."""
    if total_min <= 0:
        return Tier.NONE
    if total_min <= rules.on_site_max_min:
        return Tier.ON_SITE
    if total_min <= rules.dongle_max_min:
        return Tier.DONGLE
    return Tier.RESCHEDULE


def counting(incident: Dict[str, Any], lost_kinds: Sequence[str] = DEFAULT_RULES.lost_kinds) -> Counting:
    """Whether ``incident`` (an incident record) counts toward its room's 补时 proposal, or why not.

    In this order: dismissed; a kind not in ``lost_kinds``; affected candidates listed; not
    confirmed yet (drafted); no end yet; else it counts (``proposal`` clips it to the exam).
    """
    if incident.get("state") == IncidentState.DISMISSED.value:
        return Counting.DISMISSED
    if incident.get("kind") not in lost_kinds:
        return Counting.KIND
    if incident.get("candidates"):
        return Counting.CANDIDATES
    if incident.get("state") != IncidentState.CONFIRMED.value:
        return Counting.DRAFTED
    if not incident.get("end"):
        return Counting.OPEN
    return Counting.COUNTS


def union_minutes(spans: Sequence[Tuple[datetime.datetime, datetime.datetime]]) -> int:
    """Whole minutes (rounded up) covered by ``spans``, overlaps counted once."""
    total = 0.0
    cur: Optional[List[datetime.datetime]] = None
    for start, end in sorted(s for s in spans if s[1] > s[0]):
        if cur is not None and start <= cur[1]:
            cur[1] = max(cur[1], end)
            continue
        if cur is not None:
            total += (cur[1] - cur[0]).total_seconds()
        cur = [start, end]
    if cur is not None:
        total += (cur[1] - cur[0]).total_seconds()
    return int(math.ceil(total / 60.0 - 1e-9)) if total > 0 else 0


class Proposal(NamedTuple):
    room: str
    session: str
    lost_min: int
    granted_min: int  # granted before
    proposed_min: int  # lost less granted (never below 0)
    tier: Tier  # of granted + proposed
    incidents: List[str]  # the incidents counted

    def as_dict(self) -> Dict[str, Any]:
        return dict(self._asdict(), tier=self.tier.value, tier_label=TIER_LABELS[self.tier])


class ExtraTimeService:
    """Proposals, grants, the expected end and the proctor's pending grant (module docstring)."""

    def __init__(self, ctx: Context, incidents: IncidentService, *, rules: ExtraTimeRules = DEFAULT_RULES) -> None:
        self.ctx = ctx
        self.incidents = incidents
        self.rules = rules

    def _session(self, session: str) -> Dict[str, Any]:
        found = self.ctx.manifest_view(lambda m: next(
            (dict(s) for s in m.get("sessions") or [] if s.get("id") == session), None))
        if found is None:
            raise UserError("没有场次 {}。".format(session), "请输入考场数据包中的场次编号。")
        return cast(Dict[str, Any], found)

    def scheduled_end(self, session: str) -> datetime.datetime:
        s = self._session(session)
        return read_time(s["start"]) + datetime.timedelta(minutes=int(s.get("duration_min") or 0))

    def granted_min(self, room: str, session: str) -> int:
        doc = records.as_doc(records.room_session(self.ctx.stores.runtime, room, session) or {})
        return int(doc.get("extra_time_min") or 0)

    def expected_end(self, room: str, session: str) -> datetime.datetime:
        """When the room's session should end: the scheduled end plus the 补时 granted."""
        return self.scheduled_end(session) + datetime.timedelta(minutes=self.granted_min(room, session))

    def proposal(self, room: str, session: str) -> Proposal:
        """The 补时 the room's confirmed incidents call for (see the module docstring)."""
        s = self._session(session)
        doc = records.as_doc(records.room_session(self.ctx.stores.runtime, room, session) or {})
        begin = read_time(doc["started_at"]) if doc.get("started_at") else read_time(s["start"])
        end = self.expected_end(room, session)
        spans, ids = [], []
        for inc in self.incidents.list(session=session, room=room, states=[IncidentState.CONFIRMED]):
            if counting(inc, self.rules.lost_kinds) is not Counting.COUNTS:
                continue
            a, b = max(read_time(inc["start"]), begin), min(read_time(inc["end"]), end)
            if b > a:
                spans.append((a, b))
                ids.append(inc["id"])
        lost = union_minutes(spans)
        granted = self.granted_min(room, session)
        proposed = max(0, lost - granted)
        return Proposal(room, session, lost, granted, proposed, tier_for(granted + proposed, self.rules), ids)

    def counting(self, incident: Dict[str, Any]) -> Counting:
        """``counting(incident)`` under this service's rules."""
        return counting(incident, self.rules.lost_kinds)

    def grants(self, room: Optional[str] = None, session: Optional[str] = None) -> List[Dict[str, Any]]:
        docs = [d for d in self.ctx.stores.runtime.all(EXTRA_TIME)
                if (room is None or d["room"] == room) and (session is None or d["session"] == session)]
        return sorted(docs, key=lambda d: int(d["id"]))

    def grant(self, room: str, session: str, minutes: int, *, actor: str, reason: str,
              confirmed: bool = False, incident_ids: Sequence[str] = ()) -> Dict[str, Any]:
        """Approve ``minutes`` of 补时 for the room's session; returns the grant record.

        Raises ``UserError`` (minutes not positive, no reason, no such room/session/incident),
        ``StateRefused`` (the room already ended; the total over 45 minutes: reschedule; over
        30 without ``confirmed``), ``LockError`` (over 30: no dongle, or not the site's).
        """
        if isinstance(minutes, bool) or not isinstance(minutes, int) or minutes <= 0:
            raise UserError("补时分钟数应为正整数。", "请输入要补的分钟数。")
        if not reason.strip():
            raise UserError("请填写补时原因。", "例如：网络中断 12 分钟。")
        self.incidents.check_room_session(room, session)
        for i in incident_ids:
            self.incidents.get(i)
        with self.ctx.lock:
            runtime = self.ctx.stores.runtime
            doc = records.room_session(runtime, room, session) or records.new_room_session(room, session)
            fields = records.as_doc(doc)
            if fields.get("ended_at"):
                raise StateRefused("考场 {} 本场次已经结束考试，不能再补时。".format(room),
                                   "补时须在考场结束考试前批准。")
            before = int(fields.get("extra_time_min") or 0)
            total = before + minutes
            tier = tier_for(total, self.rules)
            if tier == Tier.RESCHEDULE:
                raise StateRefused(
                    "考场 {} 本场次补时合计 {} 分钟，超过 {} 分钟，不能补时。".format(
                        room, total, self.rules.dongle_max_min),
                    "按规定应改期重考：请记录考场情况并报告上级考试机构。")
            evidence = None
            if tier == Tier.DONGLE:
                if not confirmed:
                    raise StateRefused(
                        "考场 {} 本场次补时合计 {} 分钟，超过 {} 分钟，须二次确认。".format(
                            room, total, self.rules.on_site_max_min),
                        "请插入本考点的机考锁，再次确认补时（命令行：加 --confirm）。")
                evidence = self._dongle_evidence()
            now = self.ctx.now()
            expected = self.scheduled_end(session) + datetime.timedelta(minutes=total)
            number = max((int(k) for k in runtime.items(EXTRA_TIME)), default=0) + 1
            record: Dict[str, Any] = {
                "id": str(number), "room": room, "session": session, "minutes": minutes, "total_min": total,
                "tier": tier.value, "reason": reason.strip(), "incidents": list(incident_ids),
                "granted_by": actor, "granted_at": format_time(now), "dongle": evidence,
                "expected_end": format_time(expected), "acked_at": None}
            fields.update(extra_time_min=total, expected_end=format_time(expected))
            with runtime.transaction():
                runtime.put(EXTRA_TIME, record["id"], record)
                records.put_room_session(runtime, cast(records.RoomSession, fields))
            self.ctx.record(actor, names.EXTRA_TIME_GRANTED, grant_id=record["id"], room_code=room,
                            session_id=session, minutes=minutes, total_min=total, tier=tier.value,
                            expected_end=record["expected_end"], reason=record["reason"],
                            lock_id=evidence["lock_id"] if evidence else None)
        return record

    def _dongle_evidence(self) -> Dict[str, Any]:
        """The site's dongle answers a challenge now: its lock id and signed clock."""
        lock = self.ctx.manifest_view(lambda m: dict(m["lock"]) if m.get("lock") else None)
        if lock is None:
            raise UserError("尚未导入考务数据。", "请先导入考务。")
        dongle = self.ctx.dongle_or_raise()
        clock_ms = dongle.verify(lock["id"], base64.b64decode(lock["public_key"]))
        return {"lock_id": lock["id"], "clock_ms": clock_ms}

    # -- delivery to the proctor (the heartbeat handler's side) ---------------------------
    def pending(self, room: str) -> Optional[Dict[str, Any]]:
        """The room's latest grant not yet acknowledged, as the heartbeat reply will carry it, or None."""
        for g in reversed(self.grants(room=room)):
            if g.get("acked_at") is None:
                return {"id": g["id"], "session_id": g["session"], "minutes": g["minutes"],
                        "total_min": g["total_min"], "expected_end": g["expected_end"], "reason": g["reason"]}
        return None

    def acknowledge(self, room: str, grant_id: str) -> bool:
        """The room's proctor took grant ``grant_id`` (and every earlier one): True when newly recorded.

        A grant of another room, or an unknown id, changes nothing (False).
        """
        with self.ctx.lock:
            runtime = self.ctx.stores.runtime
            target = runtime.get(EXTRA_TIME, str(grant_id))
            if target is None or target["room"] != room:
                return False
            todo = [g for g in self.grants(room=room)
                    if int(g["id"]) <= int(target["id"]) and g.get("acked_at") is None]
            if not todo:
                return False
            now = format_time(self.ctx.now())
            with runtime.transaction():
                for g in todo:
                    g["acked_at"] = now
                    runtime.put(EXTRA_TIME, g["id"], g)
            self.ctx.record(room, names.EXTRA_TIME_ACKNOWLEDGED, grant_id=target["id"], room_code=room,
                            session_id=target["session"])
        return True
