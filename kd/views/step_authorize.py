"""考前 step 3 考试授权 (screens.md §3.3): each session's authorization, online or from a .PTQ.

考试授权 downloads every session's authorization (``core.authorization.authorize_online``
with ``None``); when the platform cannot be reached or refuses, the .PTQ import dialog
opens (``core.authorization.import_ptq``), as does 手工导入. The table 场次明细 is the
manual's: 场次 | 场次名称 | 开考时间 | 考试时长 | 考试授权状态 | 授权验证状态.
考场注册 and 考试授权 may be done in either order.
"""

from typing import Any, Callable, Dict, Sequence

from kd.core import names as n
from kd.core.labels import mark, shown
from kd.core.snapshots import AuthorizationSnapshot, SessionRow
from kd.views.dialogs import PTQ_TYPES
from kd.views.step_common import actor
from kd.views.table_page import TablePage

COLUMNS = [("id", "场次", 60), ("name", "场次名称", 150), ("start", "开考时间", 160), ("duration", "考试时长", 80),
           ("authorized", "考试授权状态", 110), ("verified", "授权验证状态", 110)]
PTQ_TITLE = "手工导入考试授权文件（.PTQ）"
NOTE = ("说明：考试授权从监控平台联网下载各场次的授权；"
        "下载失败时请手工导入该场次的考试授权文件（.PTQ）。考场注册与考试授权两个操作无先后顺序限制。")


class AuthorizePage(TablePage):
    title = "考试授权"
    events = frozenset({n.SESSION_AUTHORIZED, n.SESSION_VERIFIED, n.PACKAGE_LOADED, n.SYSTEM_INITIALIZED,
                        n.SYSTEM_RESTORED, n.SYSTEM_CONVERTED_TO_FORMAL})

    service = "authorization"
    import_title, import_types = PTQ_TITLE, PTQ_TYPES
    imported_note = "考试授权成功。"
    heading = "场次明细："
    columns = COLUMNS
    table_height = 10
    note = NOTE

    # -- build ---------------------------------------------------------------------------
    def _build_footer(self) -> None:
        self.status, (self.authorize_button, self.import_button) = self.text_bar(
            8, right=[("考试授权", "primary", self._on_authorize), ("手工导入", "secondary", self._on_import)])

    # -- snapshot / render ---------------------------------------------------------------
    def rows_of(self, snap: AuthorizationSnapshot) -> Sequence[SessionRow]:
        return snap.sessions

    def row(self, s: SessionRow) -> Dict[str, Any]:
        return {"id": s.id, "name": s.name, "start": shown(s.start), "duration": s.duration_min,
                "authorized": mark(s.authorized), "verified": mark(s.verified)}

    def render_rest(self, snap: AuthorizationSnapshot) -> None:
        if not snap.sessions:
            text = "尚未导入考务：请先在“导入考务”中载入考场数据。"
        elif snap.all_authorized:
            text = "考试授权成功（全部 {} 个场次）".format(len(snap.sessions))
        else:
            text = "未授权场次 {} 个。".format(sum(1 for s in snap.sessions if not s.authorized))
        self.status.configure(text=text)

    # -- actions -------------------------------------------------------------------------
    def importer(self) -> Callable[[str], Any]:
        who = actor(self.shell)
        return lambda path: self.core.authorization.import_ptq(path, who)

    def _on_authorize(self) -> None:
        who = actor(self.shell)
        self.online(lambda: self.core.authorization.authorize_online(None, who), self.authorize_button)
