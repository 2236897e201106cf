"""The ✓/✗ of the five 考前 steps (导入考务 → 考场注册 → 考试授权 → 封场检测 → 授权验证), and why.

The rules, each on its step service's ``view()`` (``kd.core.snapshots``):

==========  =====================================================================
导入考务    a package is loaded, it has rooms, and every room's data file is verified
考场注册    there are rooms and none is unregistered
考试授权    there are sessions and every one is authorized
封场检测    the last 封场检测 passed
授权验证    the current session (the first not yet over) is verified
==========  =====================================================================

``step_marks(core)`` computes the five from the services; ``StepMarksService(ctx, core)``
(``core.steps``) keeps the last result and computes it again only after an event that may
change a mark (``kd.core.names.STEP_EVENTS``), so the step header asks once per change,
not five snapshots per event. ``marks()`` may be called from any thread.
"""

import threading
from typing import Any, Optional

from kd.core import names
from kd.core.context import Context
from kd.core.labels import STEP_LABELS, shown
from kd.core.snapshots import StepMark, StepMarks
from kd.core.states import CheckStatus, Step

#: rooms or sessions named in a ✗'s why (the rest counted)
NAMED = 5


def _named(codes: Any) -> str:
    codes = list(codes)
    return "、".join(codes[:NAMED]) + ("等 {} 个".format(len(codes)) if len(codes) > NAMED else "")


def _mark(step: Step, done: bool, why: str) -> StepMark:
    return StepMark(step=step, label=STEP_LABELS[step], done=done, why=why)


def load_mark(core: Any) -> StepMark:
    snap = core.loading.view()
    if not snap.loaded:
        return _mark(Step.LOAD, False, "尚未导入考务（考场数据包未载入）")
    if not snap.rooms:
        return _mark(Step.LOAD, False, "考场数据包中没有考场")
    bad = [r.code for r in snap.rooms if not r.verified]
    if bad:
        return _mark(Step.LOAD, False, "考场数据未通过校验：{}".format(_named(bad)))
    return _mark(Step.LOAD, True, "考场数据已载入并通过校验（{}）".format(shown(snap.verified_at)))


def register_mark(core: Any) -> StepMark:
    snap = core.registration.view()
    if not snap.rooms:
        return _mark(Step.REGISTER, False, "没有考场（尚未导入考务）")
    if snap.unregistered:
        missing = [r.code for r in snap.rooms if not r.registered]
        return _mark(Step.REGISTER, False, "未注册考场 {} 个：{}".format(snap.unregistered, _named(missing)))
    return _mark(Step.REGISTER, True, "全部 {} 个考场已注册".format(snap.registered))


def authorize_mark(core: Any) -> StepMark:
    snap = core.authorization.view()
    if not snap.sessions:
        return _mark(Step.AUTHORIZE, False, "没有场次（尚未导入考务）")
    missing = [s.id for s in snap.sessions if not s.authorized]
    if missing:
        return _mark(Step.AUTHORIZE, False, "未授权场次 {} 个：{}".format(len(missing), _named(missing)))
    return _mark(Step.AUTHORIZE, True, "全部 {} 个场次已授权".format(len(snap.sessions)))


def seal_mark(core: Any) -> StepMark:
    snap = core.seal.view()
    if not snap.checked:
        return _mark(Step.SEAL, False, "尚未进行封场检测")
    if not snap.passed:
        failed = [i.label for i in snap.items if i.status == CheckStatus.FAIL]
        return _mark(Step.SEAL, False, "封场检测未通过：{}".format("、".join(failed)))
    return _mark(Step.SEAL, True, "封场检测通过（{}）".format(shown(snap.checked_at)))


def verify_mark(core: Any) -> StepMark:
    snap = core.verification.view()
    row = snap.current_row
    if row is None:
        return _mark(Step.VERIFY, False, "没有场次（尚未导入考务）")
    name = row.name or row.id
    if not row.verified:
        return _mark(Step.VERIFY, False, "当前场次 {} 尚未通过授权验证".format(name))
    return _mark(Step.VERIFY, True, "当前场次 {} 已通过授权验证（{}）".format(name, shown(row.verified_at)))


def step_marks(core: Any) -> StepMarks:
    """The five steps' ✓/✗ and why, in order (``core``: the services, ``kd.core.services.Core``)."""
    return StepMarks(marks=(load_mark(core), register_mark(core), authorize_mark(core), seal_mark(core),
                            verify_mark(core)))


class StepMarksService:
    """``marks()``: the last ``step_marks``, computed again after a change that may move a mark."""

    def __init__(self, ctx: Context, core: Any) -> None:
        self.ctx = ctx
        self.core = core
        self._lock = threading.Lock()
        self._generation = 0
        self._cached: Optional[StepMarks] = None
        self._cached_generation = -1
        ctx.hub.on("*", self._changed)

    def _changed(self, event: Any) -> None:
        if event is None or event.name in names.STEP_EVENTS:
            with self._lock:
                self._generation += 1

    def invalidate(self) -> None:
        """Forget the last marks (the next ``marks()`` computes them)."""
        self._changed(None)

    def marks(self) -> StepMarks:
        """The five marks; computed only when a step event came since the last call.

        The current session of 授权验证 moves with the clock: ``invalidate()`` (or any step
        event) makes it count again.
        """
        with self._lock:
            generation = self._generation
            if self._cached is not None and self._cached_generation == generation:
                return self._cached
        marks = step_marks(self.core)
        with self._lock:
            if generation == self._generation:  # no change raced with the computation
                self._cached, self._cached_generation = marks, generation
        return marks
