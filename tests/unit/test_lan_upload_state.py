"""The lifecycle table of a LAN upload: what it allows, what it refuses, what ends it."""

import itertools

import pytest

from kd.lan.upload_state import LIVE, TRANSITIONS, Upload, UploadEvent, UploadState

S, E = UploadState, UploadEvent


def upload(state=S.OPEN, offset=0, size=10):
    u = Upload("R01", "S1", "0" * 64, size, "/nonexistent/R01.S1.part", state=state)
    u.offset = offset
    return u


def test_the_paths_of_the_table():
    u = upload()
    assert u.advance(E.PARTIAL) is S.OPEN
    assert u.advance(E.FULL) is S.COMPLETE
    assert u.advance(E.FULL) is S.COMPLETE  # a commit failed for storage, every byte kept
    assert u.advance(E.RECORDED) is S.COMMITTED
    assert upload(S.COMPLETE).advance(E.REFUSED) is S.REFUSED
    assert upload(S.COMPLETE).advance(E.PARTIAL) is S.OPEN
    assert upload(S.OPEN).advance(E.RELEASE) is S.RELEASED
    assert upload(S.COMPLETE).advance(E.RELEASE) is S.RELEASED


@pytest.mark.parametrize("state, event", [
    (s, e) for s, e in itertools.product(UploadState, UploadEvent) if (s, e) not in TRANSITIONS])
def test_every_other_event_is_a_bug(state, event):
    u = upload(state)
    with pytest.raises(RuntimeError):
        u.advance(event)
    assert u.state is state


def test_terminal_states_have_no_way_out_and_only_live_ones_take_bytes():
    terminal = {S.COMMITTED, S.REFUSED, S.RELEASED}
    assert {s for s, _ in TRANSITIONS} == set(UploadState) - terminal == LIVE
    assert set(TRANSITIONS.values()) == set(UploadState)  # every state is reachable


def test_held_follows_the_bytes():
    u = upload(offset=4)
    u.held()
    assert u.state is S.OPEN
    u.offset = 10
    u.held()
    assert u.state is S.COMPLETE


def test_let_go_releases_a_live_upload_and_leaves_an_ended_one():
    u = upload(S.COMPLETE)
    u.let_go()
    assert u.state is S.RELEASED and u.file is None
    done = upload(S.COMMITTED)
    done.let_go()
    assert done.state is S.COMMITTED
