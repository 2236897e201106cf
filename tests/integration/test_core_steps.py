"""The 考前 step marks in core (kd.core.steps): the five ✓/✗ with why, computed once per change,
and the typed views they are built on (kd.core.snapshots) against the dicts the services return."""

import pytest

from kd.core import labels, names
from kd.core.states import CheckStatus, RegistrationState, SessionState, Step
from kd.core.steps import step_marks
from tests.integration.live_helpers import Listener, authorize, loaded_env, register, room_codes, sync
from tests.support.env import make_env


@pytest.fixture
def env(tmp_path):
    e = loaded_env(tmp_path, first_start_in=30)
    lan = Listener()
    e.ctx.lan = lan
    e.core.seal.min_free_bytes = 1
    yield e
    lan.close()
    e.close()


def done(marks):
    return [m.done for m in marks.marks]


def test_nothing_loaded(tmp_path):
    env = make_env(tmp_path, rooms=2, sessions=1, candidates=2)
    try:
        marks = env.core.steps.marks()
        assert [m.step for m in marks.marks] == list(Step)
        assert [m.label for m in marks.marks] == ["导入考务", "考场注册", "考试授权", "封场检测", "授权验证"]
        assert done(marks) == [False] * 5
        assert marks[Step.LOAD].why == "尚未导入考务（考场数据包未载入）"
        assert marks[Step.SEAL].why == "尚未进行封场检测"
        assert env.core.loading.view().as_dict() == env.core.loading.snapshot()
        assert "manifest_sha256" not in env.core.loading.snapshot()
        assert env.core.seal.view().as_dict() == {"items": [], "passed": False, "checked_at": None,
                                                   "passed_at": None, "rooms": [], "report": None,
                                                   "report_label": ""}
    finally:
        env.close()


def test_the_five_steps_one_by_one(env):
    core = env.core
    codes = room_codes(env)
    marks = core.steps.marks()
    assert done(marks) == [True, False, False, False, False]
    assert "未注册考场 3 个" in marks[Step.REGISTER].why and codes[0] in marks[Step.REGISTER].why
    assert core.steps.marks() is marks  # no change: not computed again

    register(env, codes[:2])
    marks = core.steps.marks()
    assert not marks.done(Step.REGISTER) and marks[Step.REGISTER].why == "未注册考场 1 个：{}".format(codes[2])
    view = core.registration.view()
    assert [r.state for r in view.rooms] == [RegistrationState.DATA_IMPORTED] * 2 + [RegistrationState.UNREGISTERED]
    assert labels.label(view.rooms[0].state) == "已导入考场数据"
    register(env, codes[2:], imported=False)
    assert core.registration.view().rooms[2].state == RegistrationState.REGISTERED
    assert core.steps.marks().done(Step.REGISTER)

    authorize(env, ["1"])
    marks = core.steps.marks()
    assert not marks.done(Step.AUTHORIZE) and marks[Step.AUTHORIZE].why == "未授权场次 1 个：2"
    authorize(env)
    rows = core.authorization.view().sessions
    assert [r.state for r in rows] == [SessionState.AUTHORIZED] * 2 and core.steps.marks().done(Step.AUTHORIZE)

    result = core.seal.run("admin")  # room 3 has not imported its data
    marks = core.steps.marks()
    assert not result["passed"] and not marks.done(Step.SEAL) and "考场数据全部导入" in marks[Step.SEAL].why
    seal = core.seal.view()
    assert seal.checked and {i.id: i.status for i in seal.items}["room_data"] == CheckStatus.FAIL
    assert seal.as_dict() == core.seal.snapshot()
    register(env, codes[2:])
    assert core.seal.run("admin")["passed"] and core.steps.marks().done(Step.SEAL)

    marks = core.steps.marks()
    assert not marks.done(Step.VERIFY) and "尚未通过授权验证" in marks[Step.VERIFY].why
    sync(env)
    core.verification.verify_online("1", "admin")
    marks = core.steps.marks()
    assert done(marks) == [True] * 5 and "已通过授权验证" in marks[Step.VERIFY].why
    view = core.verification.view()
    assert view.current == "1" and view.current_row is not None and view.current_row.state == SessionState.VERIFIED
    assert view.as_dict() == core.verification.snapshot()
    assert core.authorization.view().as_dict() == core.authorization.snapshot()
    assert core.registration.view().as_dict() == core.registration.snapshot()
    assert core.loading.view().as_dict() == core.loading.snapshot() and core.loading.view().all_verified
    # the rules are the same when computed afresh, and as plain JSON
    assert step_marks(core) == core.steps.marks()
    assert core.steps.marks().as_dict()["verify"]["done"] is True


def test_marks_are_computed_again_only_after_a_step_event(env):
    core = env.core
    first = core.steps.marks()
    env.ctx.hub.publish(names.OUTBOX_SENT, id="x")  # not a step event
    assert core.steps.marks() is first
    env.ctx.hub.publish(names.SESSION_AUTHORIZED, session="1")
    assert core.steps.marks() is not first
