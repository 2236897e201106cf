"""考试授权 (manual §3.3): each session's authorization, online or from a ``.PTQ`` file.

``AuthorizationService(ctx, loading=...)`` (built once by ``kd.core.services.Core``, which
hands it the core's ``LoadingService``):

- ``authorize_online(session_id, actor)``: download the authorization of one session
  (or of every session with ``None``) from the platform (verified by the client:
  signature, site, session, validity). When the platform is unreachable or refuses,
  the ``PlatformError`` tells the user to import the ``.PTQ`` by hand.
- ``import_ptq(path, actor)``: a ``.PTQ`` the user chose, verified with
  ``load_session_authorization`` (trusted keys, site code, ``ctx.now()``).
- ``snapshot()``: the table 场次明细 (场次 | 场次名称 | 开考时间 | 考试时长 |
  考试授权状态 | 授权验证状态).

An authorization is accepted only when its session is a session of the loaded package
with the same start, duration and name; it is stored (raw bytes, base64) in
``runtime sessions/<id>``. It does not depend on 考场注册: steps 2 and 3 go in either order.
"""

import base64
import logging
import os
from typing import List, Optional

from kd.core import labels, lifecycle, names, records
from kd.core.context import Context
from kd.core.lifecycle import SessionEvent
from kd.core.loading import LoadingService, not_loaded
from kd.core.records import JsonObject
from kd.core.snapshots import AuthorizationSnapshot, session_row
from kd.errors import FormatError, PlatformRefused, PlatformUnreachable, UserError
from kd.formats.documents import REMEDY_AUTHORIZATION, SessionAuthorization, load_session_authorization
from kd.formats.timeutil import format_time, human_time, parse_time

log = logging.getLogger(__name__)

MAX_PTQ_BYTES = 1024 * 1024
MANUAL_REMEDY = "请点击“手工导入”，选择监控平台提供的该场次考试授权文件（.PTQ）。"
COLUMNS = ["场次", "场次名称", "开考时间", "考试时长", "考试授权状态", "授权验证状态"]


class AuthorizationService:
    """考试授权 of the loaded package's sessions."""

    def __init__(self, ctx: Context, *, loading: Optional[LoadingService] = None) -> None:
        """``loading``: the core's ``LoadingService`` (standalone use falls back to one over
        the same context: it keeps no state of its own)."""
        self.ctx = ctx
        self.loading = loading if loading is not None else LoadingService(ctx)

    def _sessions(self) -> List[records.SessionDef]:
        sessions = self.loading.sessions()
        if not sessions:
            raise not_loaded()
        return sessions

    def _session(self, session_id: str) -> records.SessionDef:
        for session in self._sessions():
            if session["id"] == session_id:
                return session
        raise UserError("考场数据包中没有场次 {}。".format(session_id), "请选择考场数据包中的场次。")

    def _check_matches(self, auth: SessionAuthorization) -> records.SessionDef:
        """The package's session the authorization is for; ``FormatError`` when they differ."""
        session = next((s for s in self._sessions() if s["id"] == auth.session_id), None)
        if session is None:
            raise FormatError("考试授权文件无效：场次 {} 不在已载入的考场数据包中。".format(auth.session_id),
                              REMEDY_AUTHORIZATION)
        start = parse_time(session["start"], "start", "考场数据包")
        diffs = []
        if auth.start != start:
            diffs.append("开考时间（授权 {}，数据包 {}）".format(human_time(auth.start), human_time(session["start"])))
        if auth.duration_min != session["duration_min"]:
            diffs.append("考试时长（授权 {} 分钟，数据包 {} 分钟）".format(auth.duration_min, session["duration_min"]))
        if auth.session_name != session["name"]:
            diffs.append("场次名称（授权 {}，数据包 {}）".format(auth.session_name, session["name"]))
        if diffs:
            named = labels.session_label(session["id"], session["name"])
            raise FormatError("考试授权与考场数据包中的{}不符：{}。".format(named, "；".join(diffs)),
                              "请先重新载入最新的考场数据包，再重新获取考试授权。")
        return session

    def _store(self, auth: SessionAuthorization, source: str, actor: str) -> records.Session:
        """Check and persist one authorization. Under ``ctx.lock``."""
        self._check_matches(auth)
        doc = records.session(self.ctx.stores.runtime, auth.session_id) or {"id": auth.session_id}
        changes = {"authorized_at": format_time(self.ctx.now()), "authorization_source": source,
                   "authorization": base64.b64encode(auth.raw).decode("ascii")}
        return lifecycle.advance_session(self.ctx, doc, SessionEvent.AUTHORIZE, changes, actor=actor,
                                         action=names.SESSION_AUTHORIZED, session=auth.session_id, source=source,
                                         auth_id=auth.auth_id, valid_until=format_time(auth.valid_until))

    def authorize_online(self, session_id: Optional[str], actor: str) -> JsonObject:
        """Download and store the authorization of ``session_id`` (every session with None).

        Returns ``snapshot()``. Raises ``NotLoaded``, ``UserError`` (unknown session),
        ``PlatformUnreachable`` / ``PlatformRefused`` (remedy: import the .PTQ),
        ``FormatError`` (bad document, or one that does not match the package). With
        ``None``, the sessions that did succeed stay authorized when a later one fails.
        """
        ids = [self._session(session_id)["id"]] if session_id is not None else [s["id"] for s in self._sessions()]
        platform = self.ctx.platform_or_raise("“手工导入”导入考试授权文件（.PTQ）")
        done: List[str] = []
        for sid in ids:
            try:
                auth = platform.download_authorization(sid)
            except (PlatformUnreachable, PlatformRefused) as e:
                log.warning("authorization of session %s failed: %s (%s)", sid, e.cause, e.detail)
                names_ = {s["id"]: s["name"] for s in self._sessions()}
                got = "、".join(labels.session_label(d, names_) for d in done)
                prefix = "已获取{}的授权；".format(got) if done else ""
                this = labels.session_label(sid, names_)
                raise type(e)("{}从监控平台获取{}的考试授权失败：{}".format(prefix, this, e.cause),
                              MANUAL_REMEDY, detail=e.detail) from e
            with self.ctx.lock:
                self._store(auth, "online", actor)
            done.append(sid)
        return self.snapshot()

    def import_ptq(self, path: str, actor: str, session_id: Optional[str] = None) -> JsonObject:
        """Verify and store a ``.PTQ`` file (of ``session_id`` when given); returns ``snapshot()``.

        Raises ``FormatError`` (unreadable, bad signature, other site, expired, not a
        session of the loaded package or different from it), ``NotLoaded``.
        """
        site_code = self.ctx.site_code()
        if not site_code:
            raise UserError("尚未设置考点代码。", "请先登录并在“系统设置”中填写考点代码。")
        self._sessions()
        try:
            if os.path.getsize(path) > MAX_PTQ_BYTES:
                raise FormatError("考试授权文件过大：{}".format(path), REMEDY_AUTHORIZATION)
            with open(path, "rb") as f:
                data = f.read()
        except OSError as e:
            raise FormatError("无法读取考试授权文件：{}".format(path), REMEDY_AUTHORIZATION, detail=repr(e)) from e
        auth = load_session_authorization(data, self.ctx.trusted, site_code, self.ctx.now(), session_id=session_id)
        with self.ctx.lock:
            self._store(auth, "manual", actor)
        return self.snapshot()

    def authorized(self, session_id: str) -> bool:
        return lifecycle.authorized(records.session(self.ctx.stores.runtime, session_id))

    def view(self) -> AuthorizationSnapshot:
        """场次明细 (``kd.core.snapshots.AuthorizationSnapshot``): one row per session of the loaded
        package with its state (loaded | authorized | verified)."""
        with self.ctx.lock:
            sessions = self.loading.sessions()
            docs = {d["id"]: d for d in records.sessions(self.ctx.stores.runtime)}
        return AuthorizationSnapshot(columns=tuple(COLUMNS),
                                     sessions=tuple(session_row(s, docs.get(s["id"])) for s in sessions))

    def snapshot(self) -> JsonObject:
        """场次明细 as plain JSON: rows (``id``, ``name``, ``start``, ``duration_min``,
        ``authorized``, ``authorized_at``, ``authorization_source``, ``verified``,
        ``verified_at``) and ``all_authorized`` (``view().as_dict()``)."""
        return self.view().as_dict()
