"""数据回收 (manual §5.1): receive each room's result package, online or by hand, and show it.

``RecoveryService(ctx, outbox)``:

- ``receive(room_code, session_id, stream, sha256, size, source, actor)``: the bytes go
  into the spool first (``ctx.spool.put``: durable, hash and size checked), then the
  package is checked from the spool file (``kd.formats.result.load_result``: it must name
  this site, room and session, and list exactly the room's candidates of that session in
  the loaded package), and only then is ``room_sessions/<room|session>.result`` written
  and audited. The caller (the LAN handler) acknowledges after it returns.
- The same hash again is a no-op (``duplicate: True``). A different hash for a room and
  session already recovered raises ``ResultConflict`` and keeps the old result; the
  refused package stays in the spool and is listed in ``result_conflicts`` (audited,
  shown by ``snapshot``/``conflicts``).
- A package refused for its content (not a result package, wrong room or session...)
  leaves nothing behind: its spool file is removed unless something else refers to it.
- ``import_package(path, actor)``: 回收 by hand, the room and session come from the
  package's ``result.json``.
- When every room of every session (each room/session pair with candidates) is
  recovered, one ``recovery_status`` report is enqueued, in the same durable write as
  ``checks/recovery`` (so it is enqueued exactly once, also across restarts).
- ``snapshot(session_id|None)``: the table of §5.1 with per-subject columns (科目1/科目2)
  when the chosen session has two subjects, and the 人数统计 totals row.
"""

import logging
import os
from typing import Any, BinaryIO, Dict, List, Optional, Tuple, cast

from kd import fileio
from kd.core import labels, lifecycle, model, names, records
from kd.core.context import Context
from kd.core.lifecycle import RoomSessionEvent
from kd.core.livesnapshots import COUNT_KEYS, RecoverySnapshot, recovery_row
from kd.core.loading import not_loaded
from kd.core.records import JsonObject
from kd.core.states import ReportState, Situation
from kd.errors import FormatError, ResultConflict, SpoolError, UserError
from kd.formats.result import CAPS, PREFIX, REMEDY, RoomResult, load_result
from kd.formats.timeutil import format_time

log = logging.getLogger(__name__)

LAN, MANUAL = "lan", "manual"
SOURCES = (LAN, MANUAL)
SOURCE_LABELS = labels.RECOVERY_SOURCE_LABELS  # {LAN: 联网回收, MANUAL: 手工回收}

COLUMNS = [("room", "考场编号"), ("session", "场次"), ("candidates", "考生人数"), ("present", "参考人数"),
           ("absent", "缺考人数"), ("collected", "回收人数"), ("not_collected", "未回收人数"),
           ("situation", "考场情况"), ("report", "状态上报")]
TOTALS_LABEL = labels.TOTALS_LABEL
#: the labels of ``Situation`` and ``ReportState`` (the rows carry them; decide on ``view()``'s enums)
RECOVERED, NOT_RECOVERED, CONFLICT = (labels.label(Situation.RECOVERED), labels.label(Situation.NOT_RECOVERED),
                                      labels.label(Situation.CONFLICT))
NO_DATA, REPORTED, NOT_REPORTED = (labels.label(ReportState.NO_DATA), labels.label(ReportState.REPORTED),
                                   labels.label(ReportState.NOT_REPORTED))


def _short(digest: Optional[str]) -> str:
    return (digest or "")[:12]




class Plan:
    """The loaded package seen from 数据回收: pairs to recover, their candidates, names, order.

    Built once per loaded package (copying the manifest out of the store costs tens of
    milliseconds for a large site).
    """

    def __init__(self, manifest: records.Manifest, key: Tuple[Any, Any]) -> None:
        self.key = key
        self.sessions: List[records.SessionDef] = list(manifest.get("sessions", []))
        self.session_by_id = {s["id"]: s for s in self.sessions}
        self.room_names = {r["code"]: r.get("name", r["code"]) for r in manifest.get("rooms", [])}
        self.subject_names = {s["code"]: s.get("name", s["code"]) for s in manifest.get("subjects", [])}
        self.by_pair: Dict[Tuple[str, str], List[records.Candidate]] = {}
        self.subject_counts: Dict[Tuple[str, str], Dict[str, int]] = {}
        for cand in manifest.get("candidates", []):
            pair = (cand["room"], cand["session"])
            self.by_pair.setdefault(pair, []).append(cand)
            counter = self.subject_counts.setdefault(pair, {})
            subject = cand.get("subject") or ""
            counter[subject] = counter.get(subject, 0) + 1
        self._session_order = {s["id"]: i for i, s in enumerate(self.sessions)}
        self._room_order = {code: i for i, code in enumerate(self.room_names)}
        self.pairs: List[Tuple[str, str]] = sorted(self.by_pair, key=lambda p: self.order(p[0], p[1]))

    def order(self, room: str, session: str) -> Tuple[int, str, int, str]:
        """Sort key: session order, then room order, as in the package."""
        return (self._session_order.get(session, len(self._session_order)), session,
                self._room_order.get(room, len(self._room_order)), room)


class RecoveryService:
    """数据回收: result packages into the spool and ``room_sessions``, and the §5.1 table."""

    def __init__(self, ctx: Context, outbox: Any) -> None:
        self.ctx = ctx
        self.outbox = outbox
        self._plan: Optional[Plan] = None

    # -- the loaded package --------------------------------------------------------------
    def plan(self) -> "Plan":
        """What the loaded package says about results (cached per loaded package); ``NotLoaded`` before."""
        plan = self.plan_or_none()
        if plan is None:
            raise not_loaded()
        return plan

    def plan_or_none(self) -> Optional["Plan"]:
        meta = self.ctx.stores.exam.get(model.PACKAGE, model.PACKAGE_META) or {}
        key = (meta.get("manifest_sha256"), meta.get("loaded_at"))
        cached = self._plan
        if cached is not None and key[0] is not None and cached.key == key:
            return cached
        manifest = self.ctx.manifest()
        if manifest is None:
            return None
        plan = Plan(manifest, key)
        self._plan = plan
        return plan

    @staticmethod
    def expected_pairs(manifest: records.Manifest) -> List[Tuple[str, str]]:
        """The (room, session) pairs that must be recovered: those with candidates, in order."""
        return Plan(manifest, (None, None)).pairs

    # -- receiving -----------------------------------------------------------------------
    def receive(self, room_code: str, session_id: str, stream: BinaryIO, sha256: str, size: int,
                source: str, actor: str) -> JsonObject:
        """Store and record a room's result package for a session; the stored result.

        Returns ``{"room", "session", "sha256", "size", "counts", "source",
        "received_at", "duplicate"}``. Raises ``NotLoaded`` before 导入考务, ``UserError``
        for an unknown room or session or a bad size, ``IntegrityError`` when the bytes do
        not match ``sha256``/``size``, ``SpoolError`` when the disk refuses them,
        ``FormatError`` for a package that is not a valid result of this site, room and
        session (nothing is kept), ``ResultConflict`` when the room and session already
        hold a result with another hash (the old one is kept, the conflict recorded).
        """
        if source not in SOURCES:
            raise ValueError("source must be one of {}".format(SOURCES))
        expected = self.plan().by_pair.get((room_code, session_id), [])
        if not expected:
            raise UserError("考场 {} 在{}没有考生安排，不能回收其结果。".format(
                room_code, labels.session_label(session_id, self.plan().session_by_id)),
                            "请核对考场编号和场次；如考务数据已更新，请先重新导入考务。")
        if isinstance(size, bool) or not isinstance(size, int) or not 0 < size <= CAPS.max_source_bytes:
            raise UserError("结果包大小无效（{!r}）。".format(size), "请在监考机上重新导出并上报结果包。")
        spool = self.ctx.spool
        existed = spool.has(sha256)
        path = spool.put(stream, sha256, size)
        digest = str(sha256).lower()
        try:
            result = load_result(path, site_code=self.ctx.site_code(), room_code=room_code, session_id=session_id)
            self._check_candidates(result, expected)
        except FormatError:
            if not existed:
                self._discard(digest)
            raise
        return self._record(result, digest, size, source, actor)

    def import_package(self, path: str, actor: str) -> JsonObject:
        """回收 by hand: a result package file the administrator chose (see ``receive``)."""
        try:
            digest, size = fileio.sha256_file(path)
        except OSError as e:
            raise UserError("无法读取结果包文件：{}".format(path), "请确认文件存在且未被其他程序占用后重试。",
                            detail=repr(e)) from e
        if size == 0:
            raise FormatError(PREFIX + "文件为空", REMEDY)
        head = load_result(path, site_code=self.ctx.site_code())
        with open(path, "rb") as f:
            return self.receive(head.room_code, head.session_id, f, digest, size, MANUAL, actor)

    @staticmethod
    def _check_candidates(result: RoomResult, expected: List[records.Candidate]) -> None:
        want = {c["ticket"]: c.get("subject") for c in expected}
        got = {c["ticket"]: c["subject"] for c in result.candidates}
        if set(want) != set(got):
            missing = sorted(set(want) - set(got))
            extra = sorted(set(got) - set(want))
            raise FormatError(PREFIX + "考生与本考场本场次的考生名单不符（缺少 {}，多出 {}）".format(
                "、".join(missing[:5]) or "无", "、".join(extra[:5]) or "无"), REMEDY)
        for ticket, subject in got.items():
            if want[ticket] is not None and want[ticket] != subject:
                raise FormatError(PREFIX + "考生 {} 的科目不符（结果包为 {}，应为 {}）".format(
                    ticket, subject, want[ticket]), REMEDY)

    def _referenced(self, digest: str) -> bool:
        runtime = self.ctx.stores.runtime
        for doc in runtime.all(model.ROOM_SESSIONS):
            if (doc.get("result") or {}).get("sha256") == digest:
                return True
        return any(doc.get("sha256") == digest for doc in runtime.all(model.RESULT_CONFLICTS))

    def _discard(self, digest: str) -> None:
        """Remove a refused package from the spool unless a record refers to it."""
        with self.ctx.lock:
            if self._referenced(digest):
                return
            try:
                os.remove(self.ctx.spool.path(digest))
            except OSError as e:
                log.warning("could not remove refused result %s from the spool: %s", digest, e)

    def _record(self, result: RoomResult, digest: str, size: int, source: str, actor: str) -> JsonObject:
        ctx = self.ctx
        runtime = ctx.stores.runtime
        room, session = result.room_code, result.session_id
        with ctx.lock:
            if not ctx.spool.has(digest):
                raise SpoolError("接收的结果包在保存后丢失（{}）。".format(_short(digest)),
                                 "请重新上报该考场的结果包。")
            doc = records.room_session(runtime, room, session) or records.new_room_session(room, session)
            old = doc.get("result")
            now = format_time(ctx.now())
            if old and old.get("sha256") == digest:
                log.info("result %s of %s|%s received again (%s): nothing to do", _short(digest), room, session,
                         source)
                return dict(old, room=room, session=session, duplicate=True)
            if old:
                self._conflict(result, digest, size, source, actor, dict(old), now)
            received: records.Result = {"sha256": digest, "size": size, "received_at": now, "source": source,
                                        "counts": result.counts(), "created_at": result.created_at, "actor": actor}
            with runtime.transaction():  # recorded once the transaction is durable
                lifecycle.advance(ctx, doc, lifecycle.Step(RoomSessionEvent.RECOVER, value=received), actor=actor)
                complete = self._report_if_complete(actor)
            ctx.record(actor, names.RESULTS_RECEIVED, room=room, session=session, sha256=digest, size=size,
                       source=source, counts={k: v for k, v in result.counts().items() if k != "subjects"})
            if complete is not None:
                ctx.record(actor, names.RESULTS_ALL_RECOVERED, outbox_id=complete)
            return dict(received, room=room, session=session, duplicate=False)

    def _conflict(self, result: RoomResult, digest: str, size: int, source: str, actor: str,
                  old: Dict[str, Any], now: str) -> None:
        runtime = self.ctx.stores.runtime
        room, session = result.room_code, result.session_id
        ckey = "{}|{}".format(model.rs_key(room, session), digest)
        seen = runtime.get(model.RESULT_CONFLICTS, ckey)
        conflict = {"room": room, "session": session, "sha256": digest, "size": size, "source": source,
                    "kept_sha256": old["sha256"], "first_at": seen["first_at"] if seen else now, "last_at": now,
                    "times": (seen["times"] + 1) if seen else 1, "actor": actor}
        runtime.put(model.RESULT_CONFLICTS, ckey, conflict)
        self.ctx.record(actor, names.RESULTS_CONFLICTED, room=room, session=session, sha256=digest, size=size,
                        source=source, kept_sha256=old["sha256"])
        raise ResultConflict(
            "{}的结果已回收（校验值 {}…），收到的结果包校验值不同（{}…），"
            "已拒绝，原结果保留不变。".format(labels.result_label(room, session, self.ctx.manifest_view(
                labels.session_names)), _short(old["sha256"]), _short(digest)),
            "请到该考场的监考机核实结果包；同一考场同一场次只能回收一个结果包，如确需更换请联系技术支持。",
            detail="kept {} refused {}".format(old["sha256"], digest))

    def _report_if_complete(self, actor: str) -> Optional[str]:
        """Enqueue ``recovery_status`` once when every pair is recovered; the outbox id or None.

        Runs inside the caller's runtime transaction, so the report and ``checks/recovery``
        are one durable write.
        """
        runtime = self.ctx.stores.runtime
        if runtime.get(model.CHECKS, model.RECOVERY) is not None:
            return None
        plan = self.plan()
        pairs = plan.pairs
        docs = {records.rs_key_of(d): d for d in records.room_sessions(runtime)}
        if not pairs or any(not lifecycle.recovered(docs.get(model.rs_key(r, s))) for r, s in pairs):
            return None
        sessions = []
        for session in plan.sessions:
            rooms = [r for r, s in pairs if s == session["id"]]
            if rooms:
                sessions.append({"session_id": session["id"], "rooms": len(rooms), "recovered": len(rooms)})
        item = self.outbox.enqueue("recovery_status", {"sessions": sessions, "complete": True})
        runtime.put(model.CHECKS, model.RECOVERY, {"completed_at": format_time(self.ctx.now()),
                                                   "outbox_id": item["id"]})
        return item["id"]

    # -- reading -------------------------------------------------------------------------
    def recovered(self) -> List[Dict[str, Any]]:
        """Every ``room_sessions`` record that holds a result, in session and room order."""
        plan = self.plan_or_none()
        docs = [d for d in self.ctx.stores.runtime.all(model.ROOM_SESSIONS) if lifecycle.recovered(_rs(d))]
        if plan is None:
            return sorted(docs, key=lambda d: (d["session"], d["room"]))
        return sorted(docs, key=lambda d: plan.order(d["room"], d["session"]))

    def conflicts(self) -> List[Dict[str, Any]]:
        """Refused packages (another hash for a recovered room and session), newest first."""
        docs = self.ctx.stores.runtime.all(model.RESULT_CONFLICTS)
        return sorted(docs, key=lambda d: d.get("last_at") or "", reverse=True)

    def detail(self, room_code: str, session_id: str) -> JsonObject:
        """考场情况 (查看): the room's candidates with their status from the recovered package.

        Raises ``UserError`` when the room and session have no result yet, ``FormatError``
        when the stored package no longer checks (spool damaged).
        """
        plan = self.plan()
        doc = self.ctx.stores.runtime.get(model.ROOM_SESSIONS, model.rs_key(room_code, session_id)) or {}
        res = doc.get("result")
        if not res:
            raise UserError("{}尚未回收。".format(labels.result_label(room_code, session_id, plan.session_by_id)),
                            "请等待监考机上报或手工回收。")
        result = load_result(self.ctx.spool.path(res["sha256"]), room_code=room_code, session_id=session_id)
        people = {c["ticket"]: c for c in plan.by_pair.get((room_code, session_id), [])}
        rows = []
        for cand in result.candidates:
            info = people.get(cand["ticket"], {})
            rows.append({"ticket": cand["ticket"], "name": info.get("name"), "seat": info.get("seat"),
                         "subject": cand["subject"],
                         "subject_name": plan.subject_names.get(cand["subject"], cand["subject"]),
                         "status": cand["status"],
                         "collected": cand.get("answer") is not None})
        rows.sort(key=lambda r: (r["seat"] or 0, r["ticket"]))
        return {"room": room_code, "session": session_id,
                "session_name": labels.session_label(session_id, plan.session_by_id), "result": res,
                "candidates": rows,
                "conflicts": [c for c in self.conflicts() if c["room"] == room_code and c["session"] == session_id]}

    def all_recovered(self) -> bool:
        plan = self.plan_or_none()
        if plan is None:
            return False
        docs = {records.rs_key_of(d): d for d in records.room_sessions(self.ctx.stores.runtime)}
        pairs = plan.pairs
        return bool(pairs) and all(lifecycle.recovered(docs.get(model.rs_key(r, s))) for r, s in pairs)

    # -- the §5.1 table ------------------------------------------------------------------
    def view(self, session_id: Optional[str] = None) -> RecoverySnapshot:
        """The 数据回收 table for one session or all (``None`` = 全部), with totals
        (``kd.core.livesnapshots.RecoverySnapshot``; its rows carry ``situation`` and ``report``
        as enums). Raises ``NotLoaded`` before 导入考务, ``UserError`` for an unknown session.
        """
        plan = self.plan()
        if session_id is not None and session_id not in plan.session_by_id:
            raise UserError("没有{}。".format(labels.session_label(session_id)), "请从场次列表中选择。")
        subject_names = plan.subject_names
        session_by_id = plan.session_by_id
        docs = {records.rs_key_of(d): d for d in records.room_sessions(self.ctx.stores.runtime)}
        conflicts = self.conflicts()
        conflicted = {model.rs_key(c["room"], c["session"]) for c in conflicts}
        rows = []
        for room, sid in plan.pairs:
            if session_id is not None and sid != session_id:
                continue
            session = session_by_id.get(sid, {"id": sid, "name": sid, "subjects": []})
            key = model.rs_key(room, sid)
            rows.append(recovery_row(room, plan.room_names.get(room, room), session, dict(docs.get(key) or {}),
                                     plan.subject_counts[(room, sid)], subject_names, key in conflicted))
        multi = session_id is not None and len(session_by_id[session_id].get("subjects", [])) > 1
        totals: Dict[str, Any] = {"label": TOTALS_LABEL, "rooms": len(rows),
                                  "recovered": sum(1 for r in rows if r.recovered),
                                  "reported": sum(1 for r in rows if r.report == ReportState.REPORTED)}
        for k in COUNT_KEYS:
            totals[k] = sum(getattr(r, k) for r in rows)
        totals["not_recovered"] = totals["rooms"] - totals["recovered"]
        totals["subjects"] = []
        if multi and session_id is not None:
            for i, code in enumerate(session_by_id[session_id]["subjects"]):
                sub = {"label": "科目{}".format(i + 1), "code": code, "name": subject_names.get(code, code)}
                for k in COUNT_KEYS:
                    sub[k] = sum(getattr(s, k) for r in rows for s in r.subjects if s.code == code)
                totals["subjects"].append(sub)
        status = self.ctx.stores.runtime.get(model.CHECKS, model.RECOVERY)
        report = None
        if status is not None:
            item = self.outbox.get(status["outbox_id"])
            report = dict(status, state=(item or {}).get("state"), sent_at=(item or {}).get("sent_at"))
        return RecoverySnapshot(
            session=session_id,
            sessions=tuple({"id": s["id"], "name": s["name"], "subjects": list(s.get("subjects", []))}
                           for s in plan.sessions),
            columns=tuple(COLUMNS), subject_columns=tuple(s["label"] for s in totals["subjects"]),
            rows=tuple(rows), totals=totals,
            conflicts=tuple(c for c in conflicts if session_id is None or c["session"] == session_id),
            all_recovered=bool(plan.pairs) and all(lifecycle.recovered(docs.get(model.rs_key(r, sid)))
                                                   for r, sid in plan.pairs),
            recovery_report=report)

    def snapshot(self, session_id: Optional[str] = None) -> JsonObject:
        """The 数据回收 table as plain JSON (``view(session_id).as_dict()``).

        ``{"session", "sessions": [{"id", "name", "subjects"}], "columns": [[key, label]],
        "subject_columns": ["科目1", "科目2"] or [], "rows": [...], "totals": {...},
        "conflicts": [...], "all_recovered", "recovery_report": {...} | None}``. A row:
        ``room``, ``room_name``, ``session``, ``session_name``, the counts
        (``candidates`` 考生人数 from the loaded package; ``present``, ``absent``,
        ``collected`` from the result; ``not_collected`` = 考生 − 缺考 − 回收),
        ``recovered``, ``situation`` (已回收 / 未回收 / 已回收（有冲突）), ``report``
        (无数据 / 未上报 / 上报成功), ``source``, ``received_at``, ``sha256``, ``size`` and
        ``subjects`` (per-subject counts with ``label`` 科目1/科目2 when the session has
        more than one subject). Raises ``NotLoaded`` before 导入考务.
        """
        return self.view(session_id).as_dict()


def _rs(doc: Dict[str, Any]) -> records.RoomSession:
    return cast(records.RoomSession, doc)
