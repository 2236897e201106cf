"""考前 step 3 考试授权 (§3.3) on a real Tk window: online, and the .PTQ fallback when the platform refuses."""

import pytest

from kd.core.labels import shown
from kd.core.loading import LoadingService
from kd.core.states import Step
from kd.core.steps import step_marks
from kd.views.dialogs import PTQ_TYPES
from kd.views.step_authorize import AuthorizePage
from tests.gui.steps_support import clipped, headings, main_thread_gc, offline_file, step_site
from tests.support.env import make_env

pytestmark = pytest.mark.gui
__all__ = ["main_thread_gc"]  # the autouse fixture of steps_support


@pytest.fixture
def site(tmp_path, gui_root, scripted):
    env = make_env(tmp_path, rooms=2, sessions=2, candidates=2)
    with step_site(env, gui_root, AuthorizePage, scripted,
                   prepare=lambda e: LoadingService(e.ctx).load_online("admin")) as s:
        yield s


def expected_rows(env, authorized):
    return [[s["id"], s["name"], shown(s["start"]), str(s["duration_min"]), "✓" if s["id"] in authorized else "✗", "✗"]
            for s in env.ctx.manifest()["sessions"]]


def test_authorize_online(site):
    page, env = site.page, site.env
    assert headings(page.table) == ["场次", "场次名称", "开考时间", "考试时长", "考试授权状态", "授权验证状态"]
    assert page.table.cells() == expected_rows(env, set())
    assert page.status.cget("text") == "未授权场次 2 个。"
    page.authorize_button.invoke()
    site.until(lambda: page.table.cells() == expected_rows(env, {"1", "2"}), "both sessions authorized")
    site.idle()
    assert page.status.cget("text") == "考试授权成功（全部 2 个场次）"
    assert step_marks(site.core).done(Step.AUTHORIZE)
    assert clipped(page.table) == []
    site.dialogs.check()


def test_platform_refusal_opens_the_ptq_dialog(site):
    page, env = site.page, site.env
    path = offline_file(env, "authorization", ".PTQ", session="2")
    env.sim.faults.set(refuse=503)
    site.dialogs.plan("open_file", path)
    page.authorize_button.invoke()
    site.until(lambda: page.table.cells() == expected_rows(env, {"2"}), "session 2 imported by hand")
    site.idle()
    assert ("open_file", ("手工导入考试授权文件（.PTQ）", PTQ_TYPES)) in site.dialogs.calls
    assert site.shell.notes[0][0] == "warning" and "考试授权失败" in site.shell.notes[0][1]
    assert not step_marks(site.core).done(Step.AUTHORIZE)
    # 手工导入 of session 1 as well; a file of the wrong kind is refused with a dialog
    site.dialogs.plan("open_file", offline_file(env, "verification", ".KDV", session="1"))
    page.import_button.invoke()
    site.until(lambda: site.dialogs.errors, "the refusal")
    assert site.dialogs.errors[0].remedy
    site.dialogs.plan("open_file", offline_file(env, "authorization", ".PTQ", session="1"))
    page.import_button.invoke()
    site.until(lambda: page.table.cells() == expected_rows(env, {"1", "2"}), "both sessions")
    site.idle()
    assert step_marks(site.core).done(Step.AUTHORIZE)
    site.dialogs.check()
