"""Lifecycles of sessions and room-sessions: the states, derived from the records, and their tables.

The records keep timestamps (``kd.core.records``; the stored format is the one it always
was); the state is derived from them by one function each, and every change goes through
a transition table, so that nothing else reads a nullable timestamp to decide a state.

Session (``sessions/<id>``, with the records of its rooms)::

    loaded → authorized → verified → started → ended → recovered → uploaded

``session_state(doc)`` is the session's own gate: ``loaded`` (no authorization),
``authorized`` (``authorized_at``), ``verified`` (``verified_at`` as well: 授权验证 needs
the authorization). ``session_state(doc, rooms)`` continues with the states of the
session's rooms (each a ``RoomSessionState``) once it is verified: ``started`` when every
room has started, ``ended`` when every room has ended, ``recovered`` / ``uploaded`` when
every room's result is. An unverified session stays at its gate whatever its rooms do (a
room may start without a permit: that is its own state, ``started_unpermitted``).

Room-session (``room_sessions/<room|session>``)::

    planned → permitted → started | started_unpermitted → ended → recovered → uploaded

``room_session_state(doc)`` is the furthest fact recorded: ``upload`` (uploaded), then
``result`` (recovered), ``ended_at``, ``unpermitted_at`` (started_unpermitted),
``started_at`` (started), ``permitted_at`` (permitted), else planned. A record may hold a
later fact without an earlier one (a result recovered by hand from a room that never
reported its start; a permit asked for after an unpermitted start): the fact functions
``permitted``, ``started``, ``start_unpermitted``, ``ended``, ``recovered``, ``uploaded``
(and ``authorized``, ``verified`` of a session) answer for one fact, here and nowhere else.

Changes: ``SESSION_TRANSITIONS`` / ``ROOM_SESSION_TRANSITIONS`` map ``(state, event)`` to
the new state; ``apply_session`` / ``apply_room_session`` return the record with the
event's fields written and refuse (``TransitionRefused``, an internal error: the caller
checks its preconditions first) an event the table does not allow from the record's
state, or one whose result is not the state the table names. ``advance(ctx, doc, *steps,
actor=...)`` applies events (``Step``: the event and its audit action, ``kd.core.names``)
to a room-session record, persists it once and records each action;
``advance_session`` does the same for one event of a session.
"""

from typing import Any, Callable, Dict, Iterable, Mapping, NamedTuple, Optional, Tuple, cast

from kd.core.context import Context
from kd.core.records import RoomSession, Session, put_room_session, put_session
from kd.core.states import RoomSessionEvent, RoomSessionState, SessionEvent, SessionState
from kd.formats.timeutil import format_time


class TransitionRefused(RuntimeError):
    """An event the transition table does not allow from the record's state (a bug: callers check first)."""


# -- states and events (kd.core.states) -------------------------------------------------------
SESSION_ORDER = tuple(SessionState)
#: room-session states in lifecycle order (the two ways of starting share a rank)
ROOM_SESSION_RANK = {RoomSessionState.PLANNED: 0, RoomSessionState.PERMITTED: 1, RoomSessionState.STARTED: 2,
                     RoomSessionState.STARTED_UNPERMITTED: 2, RoomSessionState.ENDED: 3,
                     RoomSessionState.RECOVERED: 4, RoomSessionState.UPLOADED: 5}


def session_reached(state: SessionState, target: SessionState) -> bool:
    """True when ``state`` is ``target`` or later."""
    return SESSION_ORDER.index(state) >= SESSION_ORDER.index(target)


def room_session_reached(state: RoomSessionState, target: RoomSessionState) -> bool:
    """True when ``state`` is ``target`` or later (either start counts as started)."""
    return ROOM_SESSION_RANK[state] >= ROOM_SESSION_RANK[target]


# -- the facts: the only readers of the lifecycle timestamps ----------------------------------
class _Fact:
    """One fact of a record: its ``field`` is set (a time, or the result), and ``given`` holds too."""

    def __init__(self, field: str, given: Optional["_Fact"] = None) -> None:
        self.field, self.given = field, given

    def __call__(self, doc: Optional[Mapping[str, Any]]) -> bool:
        return bool(doc and doc.get(self.field)) and (self.given is None or self.given(doc))


authorized = _Fact("authorized_at")
#: a verification without its authorization does not count
verified = _Fact("verified_at", given=authorized)
permitted = _Fact("permitted_at")
started = _Fact("started_at")
#: the recorded start was 未经许可开考
start_unpermitted = _Fact("unpermitted_at", given=started)
ended = _Fact("ended_at")
recovered = _Fact("result")


def uploaded(doc: Optional[RoomSession]) -> bool:
    """Recovered, with the platform's receipt for that very result."""
    if not doc or not recovered(doc):
        return False
    up, res = doc.get("upload"), doc.get("result")
    return bool(up) and res is not None and up is not None and up.get("sha256", res["sha256"]) == res["sha256"]


# -- the states -------------------------------------------------------------------------------
#: a verified session's state from its least advanced room, the furthest first
_SESSION_BY_ROOMS = ((RoomSessionState.UPLOADED, SessionState.UPLOADED),
                     (RoomSessionState.RECOVERED, SessionState.RECOVERED),
                     (RoomSessionState.ENDED, SessionState.ENDED), (RoomSessionState.STARTED, SessionState.STARTED))
#: a room-session's state: the furthest fact its record holds, the furthest first
_ROOM_SESSION_BY_FACT: Tuple[Tuple[Callable[[Optional[RoomSession]], bool], RoomSessionState], ...] = (
    (uploaded, RoomSessionState.UPLOADED), (recovered, RoomSessionState.RECOVERED),
    (ended, RoomSessionState.ENDED), (start_unpermitted, RoomSessionState.STARTED_UNPERMITTED),
    (started, RoomSessionState.STARTED), (permitted, RoomSessionState.PERMITTED))


def session_state(doc: Optional[Session], rooms: Optional[Iterable[RoomSessionState]] = None) -> SessionState:
    """The session's state: its gate (loaded, authorized, verified), then its rooms' progress."""
    if not authorized(doc):
        return SessionState.LOADED
    if not verified(doc):
        return SessionState.AUTHORIZED
    states = list(rooms or ())
    if not states:
        return SessionState.VERIFIED
    lowest = min(ROOM_SESSION_RANK[s] for s in states)
    return next((state for room_state, state in _SESSION_BY_ROOMS if lowest >= ROOM_SESSION_RANK[room_state]),
                SessionState.VERIFIED)


def room_session_state(doc: Optional[RoomSession]) -> RoomSessionState:
    """The furthest fact the room's record for the session holds (see the module docstring)."""
    return next((state for fact, state in _ROOM_SESSION_BY_FACT if fact(doc)), RoomSessionState.PLANNED)


# -- the transition tables --------------------------------------------------------------------
S, SE = SessionState, SessionEvent
SESSION_TRANSITIONS: Dict[Tuple[SessionState, SessionEvent], SessionState] = {
    (S.LOADED, SE.AUTHORIZE): S.AUTHORIZED,
    (S.AUTHORIZED, SE.AUTHORIZE): S.AUTHORIZED,
    (S.VERIFIED, SE.AUTHORIZE): S.VERIFIED,  # a new authorization keeps the verification
    (S.AUTHORIZED, SE.VERIFY): S.VERIFIED,
    (S.VERIFIED, SE.VERIFY): S.VERIFIED,
}
for _gate in (S.LOADED, S.AUTHORIZED, S.VERIFIED):  # a void sends any gate back to the start
    SESSION_TRANSITIONS[(_gate, SE.VOID)] = S.LOADED

R, RE = RoomSessionState, RoomSessionEvent
#: a permit, a start or an end may still be recorded once a result is in (it came by hand first)
_AFTER_RESULT = (R.RECOVERED, R.UPLOADED)
ROOM_SESSION_TRANSITIONS: Dict[Tuple[RoomSessionState, RoomSessionEvent], RoomSessionState] = {
    (R.PLANNED, RE.PERMIT): R.PERMITTED,
    (R.STARTED, RE.PERMIT): R.STARTED,  # a record from before permits were recorded
    (R.STARTED_UNPERMITTED, RE.PERMIT): R.STARTED_UNPERMITTED,  # the start stays unpermitted
    (R.ENDED, RE.PERMIT): R.ENDED,
    (R.PERMITTED, RE.START): R.STARTED,
    (R.PLANNED, RE.START_UNPERMITTED): R.STARTED_UNPERMITTED,
    (R.PERMITTED, RE.START_UNPERMITTED): R.STARTED_UNPERMITTED,  # the session is no longer verified
    (R.STARTED, RE.END): R.ENDED,
    (R.STARTED_UNPERMITTED, RE.END): R.ENDED,
    (R.PLANNED, RE.RECOVER): R.RECOVERED,
    (R.PERMITTED, RE.RECOVER): R.RECOVERED,
    (R.STARTED, RE.RECOVER): R.RECOVERED,
    (R.STARTED_UNPERMITTED, RE.RECOVER): R.RECOVERED,
    (R.ENDED, RE.RECOVER): R.RECOVERED,
    (R.RECOVERED, RE.UPLOAD): R.UPLOADED,
    (R.UPLOADED, RE.UPLOAD): R.UPLOADED,  # a receipt for another result (after a conflict) is replaced
}
for _state in _AFTER_RESULT:
    for _event in (RE.PERMIT, RE.START, RE.START_UNPERMITTED, RE.END):
        ROOM_SESSION_TRANSITIONS[(_state, _event)] = _state
del S, SE, R, RE

#: the fields an event writes (the value given, or the time)
_ROOM_SESSION_FIELDS = {
    RoomSessionEvent.PERMIT: ("permitted_at",),
    RoomSessionEvent.START: ("started_at",),
    RoomSessionEvent.START_UNPERMITTED: ("started_at", "unpermitted_at"),
    RoomSessionEvent.END: ("ended_at",),
}
_VOIDED = ("authorized_at", "authorization_source", "authorization", "verified_at", "verification_source",
           "verification")


def apply_room_session(doc: RoomSession, event: RoomSessionEvent, at: str, value: Any = None) -> RoomSession:
    """``doc`` after ``event`` (a new record; ``doc`` is not changed); ``TransitionRefused`` when not allowed.

    ``at`` is the time the event writes; ``value`` the result (``RECOVER``) or the upload
    receipt (``UPLOAD``).
    """
    before = room_session_state(doc)
    target = ROOM_SESSION_TRANSITIONS.get((before, event))
    if target is None:
        raise TransitionRefused("room session {}|{}: {} not allowed in state {}".format(
            doc.get("room"), doc.get("session"), event.value, before.value))
    fields: Dict[str, Any] = dict(doc)
    if event == RoomSessionEvent.RECOVER:
        fields["result"] = value
    elif event == RoomSessionEvent.UPLOAD:
        fields["upload"] = value
    else:
        for field in _ROOM_SESSION_FIELDS[event]:
            if not fields.get(field):
                fields[field] = at
    new = cast(RoomSession, fields)
    after = room_session_state(new)
    if after != target:
        raise TransitionRefused("room session {}|{}: {} from {} gave {}, the table says {}".format(
            doc.get("room"), doc.get("session"), event.value, before.value, after.value, target.value))
    return new


def apply_session(doc: Session, event: SessionEvent, changes: Optional[Dict[str, Any]] = None) -> Session:
    """``doc`` after ``event`` with ``changes`` written (``VOID`` clears the authorization and
    verification); ``TransitionRefused`` when the table does not allow it."""
    before = session_state(doc)
    target = SESSION_TRANSITIONS.get((before, event))
    if target is None:
        raise TransitionRefused("session {}: {} not allowed in state {}".format(
            doc.get("id"), event.value, before.value))
    fields: Dict[str, Any] = dict(doc)
    if event == SessionEvent.VOID:
        fields.update({field: None for field in _VOIDED})
    fields.update(changes or {})
    new = cast(Session, fields)
    after = session_state(new)
    if after != target:
        raise TransitionRefused("session {}: {} from {} gave {}, the table says {}".format(
            doc.get("id"), event.value, before.value, after.value, target.value))
    return new


# -- persisted changes ------------------------------------------------------------------------
class Step(NamedTuple):
    """One event of a room-session record, and the audit action that records it."""

    event: RoomSessionEvent
    #: the audit action (``kd.core.names``); None: the caller records it (after its transaction)
    action: Optional[str] = None
    details: Optional[Dict[str, Any]] = None
    #: the result (``RECOVER``) or the upload receipt (``UPLOAD``)
    value: Any = None


def advance(ctx: Context, doc: RoomSession, *steps: Step, actor: str) -> RoomSession:
    """Apply ``steps`` to a room-session record in order, persist it once, record each action.

    Under ``ctx.lock``. ``TransitionRefused`` (nothing written) when the table refuses a step.
    """
    at = format_time(ctx.now())
    new = doc
    for step in steps:
        new = apply_room_session(new, step.event, at, step.value)
    put_room_session(ctx.stores.runtime, new)
    for step in steps:
        if step.action is not None:
            ctx.record(actor, step.action, **(step.details or {}))
    return new


def advance_session(ctx: Context, doc: Session, event: SessionEvent, changes: Dict[str, Any], *, actor: str,
                    action: str, **details: Any) -> Session:
    """Apply ``event`` with ``changes`` to a session record, persist it, record ``action`` (under ``ctx.lock``)."""
    new = apply_session(doc, event, changes)
    put_session(ctx.stores.runtime, new)
    ctx.record(actor, action, **details)
    return new
