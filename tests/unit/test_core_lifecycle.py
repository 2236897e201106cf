"""The lifecycles of kd.core.lifecycle: states derived from records, the transition tables, the names."""

import re

import pytest

from kd.core import lifecycle, names, records
from kd.core.lifecycle import (
    ROOM_SESSION_TRANSITIONS,
    SESSION_TRANSITIONS,
    RoomSessionEvent,
    RoomSessionState,
    SessionEvent,
    SessionState,
    TransitionRefused,
)

AT = "2026-06-13T09:00:00+08:00"
RESULT = {"sha256": "a" * 64, "size": 10, "received_at": AT, "source": "lan", "counts": {}, "created_at": AT,
          "actor": "11003001"}
UPLOAD = {"receipt": "", "uploaded_at": AT, "file_id": "f", "sha256": "a" * 64, "size": 10, "received_at": AT}


def room_session_in(state: RoomSessionState) -> records.RoomSession:
    """A minimal record in ``state`` (built with the constructor and the fields the state needs)."""
    doc = records.new_room_session("11003001", "1")
    fields = {
        RoomSessionState.PLANNED: {},
        RoomSessionState.PERMITTED: {"permitted_at": AT},
        RoomSessionState.STARTED: {"permitted_at": AT, "started_at": AT},
        RoomSessionState.STARTED_UNPERMITTED: {"started_at": AT, "unpermitted_at": AT},
        RoomSessionState.ENDED: {"started_at": AT, "ended_at": AT},
        RoomSessionState.RECOVERED: {"result": RESULT},
        RoomSessionState.UPLOADED: {"result": RESULT, "upload": UPLOAD},
    }[state]
    doc.update(fields)
    return doc


def session_in(state: SessionState) -> records.Session:
    doc = records.new_session("1")
    if state != SessionState.LOADED:
        doc["authorized_at"] = AT
    if state == SessionState.VERIFIED:
        doc["verified_at"] = AT
    return doc


def test_constructors_spell_the_stored_defaults():
    assert records.new_room("11003001", "ABCDEFGH") == {
        "code": "11003001", "reg_code": "ABCDEFGH", "ip": None, "token": None, "registered_at": None,
        "data_sha256": None, "data_imported_at": None, "note": ""}
    assert records.new_room_session("11003001", "1") == {
        "room": "11003001", "session": "1", "started_at": None, "ended_at": None, "result": None, "upload": None}
    assert lifecycle.session_state(records.new_session("1")) == SessionState.LOADED
    assert lifecycle.room_session_state(records.new_room_session("r", "1")) == RoomSessionState.PLANNED


@pytest.mark.parametrize("state", list(RoomSessionState))
def test_room_session_state_is_derived_from_the_record(state):
    assert lifecycle.room_session_state(room_session_in(state)) == state


def test_furthest_fact_wins_and_the_facts_stay_readable():
    # a result recovered by hand from a room that never reported its start
    doc = room_session_in(RoomSessionState.RECOVERED)
    assert lifecycle.room_session_state(doc) == RoomSessionState.RECOVERED and not lifecycle.started(doc)
    # an unpermitted start is still one after the end
    doc = dict(room_session_in(RoomSessionState.STARTED_UNPERMITTED), ended_at=AT)
    assert lifecycle.room_session_state(doc) == RoomSessionState.ENDED and lifecycle.start_unpermitted(doc)
    # an upload of another result does not count
    doc = dict(room_session_in(RoomSessionState.UPLOADED), upload=dict(UPLOAD, sha256="b" * 64))
    assert lifecycle.room_session_state(doc) == RoomSessionState.RECOVERED


@pytest.mark.parametrize("key", sorted(ROOM_SESSION_TRANSITIONS, key=lambda k: (k[0].value, k[1].value)))
def test_every_room_session_transition_gives_the_state_its_table_names(key):
    state, event = key
    value = {RoomSessionEvent.RECOVER: RESULT, RoomSessionEvent.UPLOAD: UPLOAD}.get(event)
    before = room_session_in(state)
    if event == RoomSessionEvent.PERMIT:
        before.pop("permitted_at", None)  # a permit is recorded once
    after = lifecycle.apply_room_session(before, event, AT, value)
    assert lifecycle.room_session_state(after) == ROOM_SESSION_TRANSITIONS[key]
    assert before != after or event == RoomSessionEvent.UPLOAD


@pytest.mark.parametrize("state", list(RoomSessionState))
@pytest.mark.parametrize("event", list(RoomSessionEvent))
def test_a_room_session_event_the_table_lacks_is_refused(state, event):
    if (state, event) in ROOM_SESSION_TRANSITIONS:
        return
    with pytest.raises(TransitionRefused):
        lifecycle.apply_room_session(room_session_in(state), event, AT, RESULT)


def test_the_ways_through_a_room_session():
    doc = records.new_room_session("11003001", "1")
    for event, state in [(RoomSessionEvent.PERMIT, RoomSessionState.PERMITTED),
                         (RoomSessionEvent.START, RoomSessionState.STARTED),
                         (RoomSessionEvent.END, RoomSessionState.ENDED),
                         (RoomSessionEvent.RECOVER, RoomSessionState.RECOVERED),
                         (RoomSessionEvent.UPLOAD, RoomSessionState.UPLOADED)]:
        doc = lifecycle.apply_room_session(doc, event, AT, {RoomSessionEvent.RECOVER: RESULT,
                                                            RoomSessionEvent.UPLOAD: UPLOAD}.get(event))
        assert lifecycle.room_session_state(doc) == state
    assert doc["permitted_at"] == doc["started_at"] == doc["ended_at"] == AT and "unpermitted_at" not in doc
    unpermitted = lifecycle.apply_room_session(records.new_room_session("r", "1"), RoomSessionEvent.START_UNPERMITTED,
                                               AT)
    assert unpermitted["unpermitted_at"] == unpermitted["started_at"] == AT
    with pytest.raises(TransitionRefused):  # no permitted start without a permit
        lifecycle.apply_room_session(records.new_room_session("r", "1"), RoomSessionEvent.START, AT)


@pytest.mark.parametrize("key", sorted(SESSION_TRANSITIONS, key=lambda k: (k[0].value, k[1].value)))
def test_every_session_transition_gives_the_state_its_table_names(key):
    state, event = key
    changes = {SessionEvent.AUTHORIZE: {"authorized_at": AT}, SessionEvent.VERIFY: {"verified_at": AT}}.get(event)
    after = lifecycle.apply_session(session_in(state), event, changes)
    assert lifecycle.session_state(after) == SESSION_TRANSITIONS[key]


def test_session_state_goes_on_with_its_rooms_once_verified():
    verified = session_in(SessionState.VERIFIED)
    r = RoomSessionState
    assert lifecycle.session_state(verified, [r.STARTED, r.PERMITTED]) == SessionState.VERIFIED
    assert lifecycle.session_state(verified, [r.STARTED, r.STARTED_UNPERMITTED]) == SessionState.STARTED
    assert lifecycle.session_state(verified, [r.ENDED, r.RECOVERED]) == SessionState.ENDED
    assert lifecycle.session_state(verified, [r.UPLOADED, r.RECOVERED]) == SessionState.RECOVERED
    assert lifecycle.session_state(verified, [r.UPLOADED]) == SessionState.UPLOADED
    # an unverified session stays at its gate whatever its rooms do
    assert lifecycle.session_state(session_in(SessionState.AUTHORIZED), [r.UPLOADED]) == SessionState.AUTHORIZED
    with pytest.raises(TransitionRefused):  # 授权验证 needs the authorization
        lifecycle.apply_session(session_in(SessionState.LOADED), SessionEvent.VERIFY, {"verified_at": AT})
    voided = lifecycle.apply_session(verified, SessionEvent.VOID)
    assert lifecycle.session_state(voided) == SessionState.LOADED and voided["authorization"] is None


def test_event_names_follow_one_convention():
    constants = {k: v for k, v in vars(names).items() if k.isupper() and isinstance(v, str)}
    kept = {names.ACCOUNT_LOGIN}  # the documented older form
    for key, value in constants.items():
        assert re.fullmatch(r"[a-z][a-z_]*\.[a-z][a-z_]*", value), key
        if value not in kept and not value.startswith(("lan.", "net.")):  # the LAN's and the probe's own
            words = value.split(".")[1].split("_")
            assert any(w.endswith("ed") or w in ("sent", "up") for w in words), value
    assert len(set(constants.values())) == len(constants)
    assert set(names.RENAMED.values()) <= set(constants.values())
    assert names.current("package_loaded") == names.PACKAGE_LOADED == "package.loaded"
    assert names.current("room.started") == "room.started"


def test_the_core_records_and_publishes_named_actions_only():
    import pathlib

    core = pathlib.Path(names.__file__).parent
    for path in sorted(core.glob("*.py")):
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"\.record\([^,()]+,\s*\"", text), path.name  # record(actor, names.X, ...)
        assert not re.search(r"\.(publish|on)\(\s*\"(?!\*)", text), path.name
