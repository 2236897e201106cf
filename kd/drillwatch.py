"""The drill's watch over the exam (issue 15): outages and skewed clocks injected, what the site saw, checked.

``main.py drill --outage K --skew K`` (``DrillOptions.outage`` / ``skew``): the first K
simulated proctors lose their connection once for a simulated 90 s during their first
session (``kd.lan.simulator`` ``SimOptions.outage``), the first K proctors' clocks run
5 minutes (300 s) ahead (``SimOptions.skew_rooms`` / ``skew_s``). ``Watch`` counts what the
site raised (every ``alarm.opened`` by kind), plays the administrator's part for each
outage the site drafted (confirms the drafted 网络中断 once it has an end and grants the
补时 proposed from it, on site, through ``core.extra_time``), and at the end of the
proctors' day checks that what the site saw is what was injected (``check``).

**Time: one scale.** The proctors run an accelerated exam: ``speed`` simulated seconds
per real second (``SimOptions.speed``; a 補时 of M minutes makes their session M × 60 /
speed real seconds longer, already built). The site runs the real clock. In the drill the
site's *watch over the exam* uses the proctors' scale (``scaled_rules``), and only there:

- the thresholds are divided by ``speed``: the timeline's ``Rules.lost_after_s`` (30 s →
  30 / speed) and the incidents' ``DraftRules.outage_s`` (30 s → 30 / speed, the
  ``OutageTracker``'s threshold with it);
- the durations the site measured are multiplied by it: an incident's lost minutes
  (``lost_min``: (end − start) × speed / 60) and the 补时 proposed from them (the union of the
  room's confirmed outage/manual incidents, each span stretched by ``speed`` from the
  session's start, rounded up to whole minutes as ``kd.core.extratime`` does). The grant
  is then in simulated minutes, which the proctors turn back into real seconds.

A simulated 90 s outage lasts 90 / speed real seconds, the site measures it at real
seconds × speed ≈ 90 s: ``lost_min`` ≈ 1.5, a 补时 of 2 minutes (a started minute counts),
tier ``on_site``. The scale only holds while the site can resolve it: a proctor
heartbeats every 5 s / speed (at least every 0.2 s) and the site ticks every 0.2 s, both
must stay well under the scaled 30 s. So a drill with ``--outage`` runs its exam at
``WATCH_SPEED`` (20: heartbeats every 0.25 s, lost after 1.5 s, the outage 4.5 s) with
sessions of at most ``WATCH_DURATION_MIN`` (8) minutes (24 real seconds each); a drill
without it keeps its fast exam (``session_s``: half a second, speed 3600 for 30 minutes),
where no scale could be resolved: its watch is the real one (scale 1), where nothing is
lost. ``time_scale(speed)`` says which.

The drill's rooms start as soon as they are permitted, minutes before the session's start
``T`` (the drill's sessions start ``first_start_in`` minutes after the day began), so the
drill's 考中连接 watch (the ``connected`` rule) opens 60 minutes before ``T`` instead of at
``T``; rules are data (``Rules.replace``), nothing of the timeline's code changes, and
nothing outside the drill sees these rules (``apply`` sets them on the drill site's own
services).

**The report's fields** (``fields``)::

    "time_scale": 20.0,
    "injected": {"outage": 2, "skew": 0},
    "alarms": {"overdue": 3, "room_lost": 2},            every alarm opened during the day, by kind
    "incidents": [{"room": "11003001", "session": "1", "kind": "outage", "lost_min": 1.58,
                   "state": "confirmed"}, ...],          every incident of the register
    "extra_time_granted": [{"room": "11003001", "session": "1", "minutes": 2}, ...],
    "clock_skew_max_s": 300.0                            the largest |offset| of a room's estimate
                                                         (null: no room sent its clock)

``overdue`` alarms depend on how fast the drill's steps follow each other (a step done
within a tick raises none): they are reported, not checked.

**The checks** (``check``; each failure a line of the report's ``failures``, prefixed
``outage:`` or ``skew:``), against the expected counts (by default what was injected;
``DrillOptions.expect_outage`` / ``expect_skew`` let a test expect otherwise):

- outage K: the proctors lost their connection as often as injected; K ``room_lost``
  alarms, of the outage rooms; K ``outage`` incidents, confirmed, of those rooms, each
  ``lost_min`` within ``LOST_MIN_RANGE`` (1.3 … 3.0: the records hold whole seconds, and at
  scale 20 one second is a third of a simulated minute, so a 4.5 s outage reads 1.33 or
  1.67; up to 3.0 allows 4.5 more real seconds of a loaded machine before the reconnect);
  K grants (2 minutes each, tier ``on_site``) of those rooms, each acknowledged by its
  proctor (``acked_at``) and run by it (``honoured``: the proctor took the room's total and
  its session lasted at least (duration + total) × 60 / speed real seconds);
- skew K: ``clock_skew`` alarms of exactly the K skewed rooms (one per room and session:
  the drill's sessions all start after its day, so a room is alarmed for each), none
  site-wide, and ``clock_skew_max_s`` within ``SKEW_TOLERANCE_S`` (10 s) of 300;
- none of either: no ``room_lost`` (resp. room ``clock_skew``) alarm, no incident, no
  grant, and ``clock_skew_max_s`` within 10 s of 0 (or null);
- never an incident of another kind (a late start, an unpermitted start, a room not ended).

Before checking, the drill waits (at most ``SETTLE_S``) until the site raised at least what
the proctors actually did (their outages; the skewed rooms' alarms), so the check never
races a tick; a site that does not is then named by the check.
"""

import dataclasses
import datetime
import logging
import threading
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple

from kd.core import names
from kd.core.extratime import Tier, tier_for, union_minutes
from kd.core.incidentdraft import DraftRules, OutageTracker
from kd.core.timelinerules import DEFAULT_RULES, Rules
from kd.formats.timeutil import read_time

log = logging.getLogger(__name__)

#: the proctors' speed (and the site's watch scale) of a drill with outages
WATCH_SPEED = 20.0
#: above this speed no scaled threshold can be resolved (heartbeats at least 0.2 s apart)
MAX_WATCH_SPEED = 25.0
#: the longest session of a drill with outages (simulated minutes)
WATCH_DURATION_MIN = 8
#: the injected outage and skew
OUTAGE_S = 90.0
OUTAGE_AFTER_S = 60.0
SKEW_S = 300.0
#: the checks' tolerances
#: (the records hold whole seconds: at scale 20 one recorded second is a third of a simulated minute)
LOST_MIN_RANGE = (1.3, 3.0)
SKEW_TOLERANCE_S = 10.0
#: how long the drill waits for the site to raise what the proctors did
SETTLE_S = 30.0
#: the 考中连接 watch of the drill opens this many minutes before T
WATCH_OPENS_MIN = -60


class Injected(NamedTuple):
    outage: int = 0
    skew: int = 0


def time_scale(speed: float) -> float:
    """The site's watch scale for proctors at ``speed``: the speed itself when it can be resolved, else 1."""
    return float(speed) if speed <= MAX_WATCH_SPEED else 1.0


def watched_schedule(duration: int, gap: int) -> Tuple[int, int]:
    """A drill with outages: sessions of at most ``WATCH_DURATION_MIN``, starting when they did."""
    short = min(duration, WATCH_DURATION_MIN)
    return short, gap + duration - short


def schedule_of(options: Any) -> Tuple[int, int]:
    """(duration, gap) of the sessions of a drill of ``options``: ``kd.drill.schedule``'s, with
    outages ``watched_schedule``'s."""
    from kd.drill import schedule  # noqa: PLC0415 - kd.drill imports this module

    duration, gap = schedule(options.sessions, options.first_start_in)
    return watched_schedule(duration, gap) if options.outage else (duration, gap)


def speed_of(options: Any) -> float:
    """The proctors' speed: a session in ``session_s`` real seconds; with outages ``WATCH_SPEED``."""
    return WATCH_SPEED if options.outage else schedule_of(options)[0] * 60.0 / max(options.session_s, 0.01)


def scaled_rules(scale: float) -> Tuple[Rules, DraftRules]:
    """The timeline's and the incidents' rules of the drill's watch at ``scale`` (module docstring)."""
    opens = WATCH_OPENS_MIN
    timeline = DEFAULT_RULES.replace(connected=(opens, opens, opens))
    timeline = dataclasses.replace(timeline, lost_after_s=DEFAULT_RULES.lost_after_s / scale)
    draft = DraftRules()
    return timeline, draft._replace(outage_s=draft.outage_s / scale)


def apply(core: Any, scale: float) -> None:
    """Give the drill site's timeline and incident services the watch's rules (before any proctor)."""
    timeline, draft = scaled_rules(scale)
    core.timeline.rules = timeline
    core.incidents.rules = draft
    core.incidents.tracker = OutageTracker(draft.outage_s)


def sim_fields(options: Any) -> Dict[str, Any]:
    """The ``SimOptions`` fields of the injected outages and skews of ``options`` (``DrillOptions``)."""
    from kd.lan.simulator import SimOptions  # noqa: PLC0415

    fields: Dict[str, Any] = {"outage": options.outage, "outage_s": OUTAGE_S, "outage_after_s": OUTAGE_AFTER_S}
    if options.skew:
        fields.update(skew_rooms=options.skew, skew_s=SKEW_S)
    return {k: v for k, v in fields.items() if k in SimOptions._fields}


def empty_fields(options: Any) -> Dict[str, Any]:
    """The report's fields of a drill that stopped before its watch began."""
    return {"time_scale": None, "injected": Injected(options.outage, options.skew)._asdict(), "alarms": {},
            "incidents": [], "extra_time_granted": [], "clock_skew_max_s": None}


def start(drill: Any, speed: float) -> "Watch":
    """The drill site is open (no package yet): its watch's rules, the ``Watch`` counting its alarms."""
    o = drill.options
    for what, k in (("outage", o.outage), ("skew", o.skew)):
        if not 0 <= k <= o.rooms:
            raise ValueError("--{} {} is not between 0 and the {} rooms".format(what, k, o.rooms))
    scale = time_scale(speed)
    apply(drill.site.core, scale)
    return Watch(drill.site, scale, Injected(o.outage, o.skew), "admin")


def finish(drill: Any) -> None:
    """The proctors' day is over: wait for the site to raise what they did, check it, add the failures."""
    o = drill.options
    watch: Watch = drill.watch
    rooms = [p.room for p in drill.sim.proctors]
    outage_rooms = [p.room for p in drill.sim.proctors if p.report.outages]
    skew_rooms = rooms[:o.skew]
    sub = drill.site.hub.subscribe([names.ALARM_OPENED, names.INCIDENT_DRAFTED, names.INCIDENT_UPDATED,
                                    names.EXTRA_TIME_ACKNOWLEDGED])
    try:
        watch.settle(len(outage_rooms), skew_rooms, sub, drill.wait)
    finally:
        sub.close()
    expect = Injected(o.outage if o.expect_outage is None else o.expect_outage,
                      o.skew if o.expect_skew is None else o.expect_skew)
    acked = [bool(g.get("acked_at")) for g in drill.site.core.extra_time.grants()]
    alarm_rooms = {kind: watch.alarm_rooms(kind) for kind in ("room_lost", "clock_skew")}
    found = watch.failures + check(watch.fields(), expect, rooms[:o.outage], skew_rooms, alarm_rooms,
                                   drill.proctors.get("outages", 0), acked)
    for failure in found + honoured(drill):
        drill.fail(failure)


def honoured(drill: Any) -> List[str]:
    """Each granted 补时 was run by its proctor: it took the room's total for the session and
    its session lasted at least the session's length plus that, at its speed (its own clock,
    less a tenth of a second for the two clocks it reads)."""
    totals: Dict[Tuple[str, str], int] = {}
    for g in drill.site.core.extra_time.grants():
        key = (g["room"], g["session"])
        totals[key] = max(totals.get(key, 0), int(g["total_min"]))
    proctors = {p.room: p for p in drill.sim.proctors}
    duration = schedule_of(drill.options)[0]
    out = []
    for (room, sid), total in sorted(totals.items()):
        report = proctors[room].report if room in proctors else None
        took = report.extra_time.get(sid, 0) if report is not None else 0
        if report is None or took != total:
            out.append("outage: the proctor of room {} took {} minutes of 补时 for session {}, {} were granted".format(
                room, took, sid, total))
            continue
        began, ended = (datetime.datetime.fromisoformat(t[sid]) if t.get(sid) else None
                        for t in (report.started_at, report.ended_at))
        if began is None or ended is None:
            continue  # it did not run the session: the proctors' own failure
        ran = (ended - began).total_seconds()
        due = (duration + total) * 60.0 / speed_of(drill.options)
        if ran < due - 0.1:
            out.append("outage: the proctor of room {} ran session {} for {:.1f} s, less than its {:.1f} s with "
                       "the 补时".format(room, sid, ran, due))
    return out


class Watch:
    """What the drill site raised, the administrator's 补时, and the checks (module docstring)."""

    def __init__(self, site: Any, scale: float, injected: Injected, actor: str) -> None:
        self.site = site
        self.core = site.core
        self.scale = scale
        self.injected = injected
        self.actor = actor
        self._lock = threading.Lock()
        #: every alarm opened: (kind, room)
        self.opened: List[Tuple[str, Optional[str]]] = []
        self.failures: List[str] = []
        self._handled: set = set()
        site.hub.on(names.ALARM_OPENED, self._alarm)

    def _alarm(self, event: Any) -> None:
        with self._lock:
            self.opened.append((str(event.data.get("kind")), event.data.get("room_code")))

    def alarms(self) -> Dict[str, int]:
        with self._lock:
            out: Dict[str, int] = {}
            for kind, _room in self.opened:
                out[kind] = out.get(kind, 0) + 1
            return out

    def alarm_rooms(self, kind: str) -> List[Optional[str]]:
        """The room of each alarm of ``kind`` opened (None: a site-wide alarm), in order."""
        with self._lock:
            return [room for k, room in self.opened if k == kind]

    # -- the administrator's part ---------------------------------------------------------
    def lost_min(self, doc: Dict[str, Any]) -> Optional[float]:
        """An incident's lost minutes at the watch's scale (None while it has no end)."""
        if not doc.get("end"):
            return None
        seconds = (read_time(doc["end"]) - read_time(doc["start"])).total_seconds()
        return round(seconds * self.scale / 60.0, 2)

    def handle(self) -> None:
        """Confirm each drafted outage that has an end and grant the 补时 proposed from it (once each)."""
        incidents = self.core.incidents
        for doc in incidents.list(states=["drafted"]):
            if doc["kind"] != "outage" or not doc.get("end") or doc["id"] in self._handled:
                continue
            self._handled.add(doc["id"])
            try:
                incidents.confirm(doc["id"], self.actor, note="演练：模拟监考机断网")
                self._grant(doc["room"], doc["session"], doc["id"])
            except Exception as e:  # noqa: BLE001 - a refused confirmation or grant is a failed check
                cause = getattr(e, "cause", None) or str(e)
                log.warning("drill: the 补时 of incident %s failed", doc["id"], exc_info=True)
                self.failures.append("outage: incident {} of room {} not granted: {}: {}".format(
                    doc["id"], doc["room"], type(e).__name__, cause))

    def proposed(self, room: str, session: str) -> Tuple[int, List[str]]:
        """The 补时 (simulated minutes) the room's confirmed outage/manual incidents call for, less
        what was granted, and their ids (``kd.core.extratime``'s rule, spans stretched by the scale)."""
        extra = self.core.extra_time
        start = read_time(extra._session(session)["start"])  # noqa: SLF001 - the session's start, the stretch's origin
        spans, ids = [], []
        for doc in self.core.incidents.list(session=session, room=room, states=["confirmed"]):
            if doc["kind"] not in extra.rules.lost_kinds or doc.get("candidates") or not doc.get("end"):
                continue
            a, b = (start + (read_time(doc[k]) - start) * self.scale for k in ("start", "end"))
            spans.append((a, b))
            ids.append(doc["id"])
        return max(0, union_minutes(spans) - extra.granted_min(room, session)), ids

    def _grant(self, room: str, session: str, incident_id: str) -> None:
        minutes, ids = self.proposed(room, session)
        if minutes <= 0:
            return
        total = self.core.extra_time.granted_min(room, session) + minutes
        tier = tier_for(total, self.core.extra_time.rules)
        if tier is not Tier.ON_SITE:
            self.failures.append("outage: room {} session {} would need {} minutes of 补时 ({}), not on site".format(
                room, session, total, tier.value))
            return
        self.core.extra_time.grant(room, session, minutes, actor=self.actor, incident_ids=ids or [incident_id],
                                   reason="演练：网络中断（模拟时间 {} 分钟）".format(minutes))

    # -- the end of the day ---------------------------------------------------------------
    def skew_estimates(self) -> Dict[str, float]:
        """Each room's estimated clock offset (seconds), from the site's ``ClockSkew`` when it has one."""
        skew = getattr(self.core, "clock_skew", None) or getattr(self.core.monitor, "clock_skew", None)
        if skew is None:
            return {}
        return {room: float(e.offset_s) for room, e in skew.estimates().items()}

    def fields(self) -> Dict[str, Any]:
        incidents = [{"room": d["room"], "session": d["session"], "kind": d["kind"], "lost_min": self.lost_min(d),
                      "state": d["state"]} for d in self.core.incidents.list()]
        grants = [{"room": g["room"], "session": g["session"], "minutes": g["minutes"]}
                  for g in self.core.extra_time.grants()]
        offsets = self.skew_estimates()
        return {"time_scale": self.scale, "injected": self.injected._asdict(), "alarms": self.alarms(),
                "incidents": incidents, "extra_time_granted": grants,
                "clock_skew_max_s": round(max(abs(v) for v in offsets.values()), 1) if offsets else None}

    def fields_quietly(self) -> Dict[str, Any]:
        """``fields()``, or the alarms alone when the stores cannot be read (logged)."""
        try:
            return self.fields()
        except Exception:  # noqa: BLE001 - the report still comes out
            log.exception("drill: reading the watch's fields failed")
            return {"time_scale": self.scale, "injected": self.injected._asdict(), "alarms": self.alarms(),
                    "incidents": [], "extra_time_granted": [], "clock_skew_max_s": None}

    def settle(self, outages: int, skewed: Sequence[str], sub: Any, wait: Any) -> None:
        """Wait (``wait(what, condition, sub, timeout)``, the drill's) until the site raised at least
        what the proctors did: ``outages`` room_lost alarms, incidents and grants acknowledged; a
        clock_skew alarm per skewed room. A timeout is left to the checks to name."""
        def raised() -> bool:
            self.handle()
            counts = self.alarms()
            outage_docs = [d for d in self.core.incidents.list() if d["kind"] == "outage"]
            acked = [g for g in self.core.extra_time.grants() if g.get("acked_at")]
            return counts.get("room_lost", 0) >= outages and len(outage_docs) >= outages \
                and len(acked) >= outages and set(skewed) <= set(self.alarm_rooms("clock_skew"))

        try:
            wait("the site to raise the injected outages and skews", raised, sub, SETTLE_S)
        except Exception as e:  # noqa: BLE001 - the checks name what is missing
            log.warning("drill: %s", e)


def check(fields: Dict[str, Any], expect: Injected, outage_rooms: Sequence[str], skew_rooms: Sequence[str],
          alarm_rooms: Dict[str, List[Optional[str]]], proctor_outages: int, acked: Sequence[bool]) -> List[str]:
    """The failures of the watch (module docstring): ``fields`` as ``Watch.fields`` gives them,
    ``expect`` the counts expected, the rooms injected, the rooms of the alarms opened by kind,
    the outages the proctors report, and per grant whether its proctor acknowledged it."""
    out: List[str] = []
    alarms = fields["alarms"]
    incidents = fields["incidents"]
    outages = [d for d in incidents if d["kind"] == "outage"]
    grants = fields["extra_time_granted"]
    k = expect.outage
    if proctor_outages != len(outage_rooms):
        out.append("outage: the proctors lost their connection {} times, {} were injected".format(
            proctor_outages, len(outage_rooms)))
    if alarms.get("room_lost", 0) != k:
        out.append("outage: {} room_lost alarms, expected {}".format(alarms.get("room_lost", 0), k))
    if len(outages) != k:
        out.append("outage: {} outage incidents drafted, expected {}".format(len(outages), k))
    if len(grants) != k:
        out.append("outage: {} grants of 补时, expected {}".format(len(grants), k))
    if k:
        want = sorted(outage_rooms)
        for what, rooms in (("room_lost alarms", sorted(str(r) for r in alarm_rooms.get("room_lost", []))),
                            ("outage incidents", sorted(d["room"] for d in outages)),
                            ("grants", sorted(g["room"] for g in grants))):
            if rooms != want:
                out.append("outage: {} of rooms {}, the outages were in {}".format(what, rooms, want))
        low, high = LOST_MIN_RANGE
        for d in outages:
            if d["lost_min"] is None or not low <= d["lost_min"] <= high:
                out.append("outage: room {} lost {} minutes, the outage lasted {} (expected {} … {})".format(
                    d["room"], d["lost_min"], OUTAGE_S / 60.0, low, high))
            if d["state"] != "confirmed":
                out.append("outage: the incident of room {} is {}, not confirmed".format(d["room"], d["state"]))
        if not all(acked):
            out.append("outage: {} of {} grants not acknowledged by the proctor".format(
                sum(1 for a in acked if not a), len(acked)))
    others = [d for d in incidents if d["kind"] != "outage"]
    if others:
        out.append("outage: unexpected incidents {}".format(["{}:{}".format(d["room"], d["kind"]) for d in others]))
    s = expect.skew
    skewed = sorted({r for r in alarm_rooms.get("clock_skew", []) if r is not None})
    if len(skewed) != s:  # a room of two sessions before their start: an alarm per session, one room
        out.append("skew: clock_skew alarms of {} rooms, expected {}".format(len(skewed), s))
    elif s and skewed != sorted(skew_rooms):
        out.append("skew: clock_skew alarms of rooms {}, the skewed clocks were in {}".format(
            skewed, sorted(skew_rooms)))
    if None in alarm_rooms.get("clock_skew", []):
        out.append("skew: the site's own clock was alarmed (clock_skew without a room)")
    target = SKEW_S if s else 0.0
    skew_max = fields["clock_skew_max_s"]
    if (skew_max is None and s) or (skew_max is not None and abs(skew_max - target) > SKEW_TOLERANCE_S):
        out.append("skew: clock_skew_max_s {}, expected {} ± {}".format(skew_max, target, SKEW_TOLERANCE_S))
    return out

