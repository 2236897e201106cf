"""系统恢复's plan: what a restore keeps from here, merged into the backup's tables, and its guards.

``RestorePlan(backup, now)`` holds the backup's runtime and settings tables (``_Tables``:
a store body's tables by document key) and merges into them what is here and must
survive the restore; ``kd.core.restore.RestoreService`` builds it under ``ctx.lock``,
stages its tables and copies the kept result files. The rules (why each thing is kept,
when a restore is refused) are in ``kd.core.restore``'s docstring.
"""

import copy
import json
from typing import Any, Dict, List, Mapping, NamedTuple, Optional, Set, Tuple, cast

from kd.core import lifecycle, model, records
from kd.core.backup import SystemRefused
from kd.core.extratime import EXTRA_TIME
from kd.core.incidents import INCIDENTS
from kd.core.labels import result_label, summary
from kd.core.outbox import PENDING
from kd.formats.timeutil import format_time, read_time

KEY = "_key"  # the key field of a stored document, as in a store's body (kd.store.database.KEY)
#: ``result_conflicts.origin`` of a conflict a restore found (the backup and here disagree)
ORIGIN_RESTORE = "restore"
REPORTED_FIELDS = ("started_reported_at", "ended_reported_at")
Tables = Dict[str, Dict[str, Any]]


class BackupTables(NamedTuple):
    tables: Dict[str, Tables]  # settings, exam, runtime: table → doc id → document
    spool: Set[str]  # the SHA-256 of every result file the backup holds


class _Tables:
    """A store body's tables as a backup holds them (table → doc id → document with its ``_key``), by key."""

    def __init__(self, tables: Tables) -> None:
        self.tables = tables
        self._ids: Dict[str, Dict[str, str]] = {}
        self._next: Dict[str, int] = {}

    def _index(self, table: str) -> Dict[str, str]:
        ids = self._ids.get(table)
        if ids is None:
            ids, top = {}, 0
            for doc_id, doc in self.tables.get(table, {}).items():
                if isinstance(doc, dict) and isinstance(doc.get(KEY), str):
                    ids[doc[KEY]] = doc_id
                if doc_id.isdigit():
                    top = max(top, int(doc_id))
            self._ids[table], self._next[table] = ids, top + 1
        return ids

    def items(self, table: str) -> Dict[str, Dict[str, Any]]:
        rows = self.tables.get(table, {})
        return {key: _strip(rows[doc_id]) for key, doc_id in self._index(table).items()}

    def get(self, table: str, key: Optional[str]) -> Optional[Dict[str, Any]]:
        doc_id = self._index(table).get(key or "")
        return None if doc_id is None else _strip(self.tables[table][doc_id])

    def put(self, table: str, key: str, doc: Dict[str, Any]) -> None:
        ids = self._index(table)
        rows = self.tables.setdefault(table, {})
        doc_id = ids.get(key)
        if doc_id is None:
            doc_id = str(self._next[table])
            self._next[table] += 1
            ids[key] = doc_id
        row = copy.deepcopy(doc)
        row[KEY] = key
        rows[doc_id] = row

    def count(self, table: str) -> int:
        return len(self._index(table))

    def body(self) -> bytes:
        """The store body (compact UTF-8 JSON, as the store writes it)."""
        return json.dumps(self.tables, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


class RestorePlan:
    """What a restore keeps from here, merged into the backup's tables, and whether it may run.

    Built under ``ctx.lock`` by ``SystemService._plan`` (the module docstring says what is
    kept and why). ``runtime`` / ``settings``: the backup's tables with what is kept
    merged in; ``files``: result files to copy from here into the staged spool;
    ``refusal``: the first guard that refuses, or None.
    """

    def __init__(self, backup: BackupTables, now: Any) -> None:
        self.runtime = _Tables(backup.tables["runtime"])
        self.settings = _Tables(backup.tables["settings"])
        self.package = find_doc(backup.tables["exam"], model.PACKAGE, model.MANIFEST) or {}
        self.backup_spool = backup.spool
        self.now = format_time(now)
        self.refusal: Optional[SystemRefused] = None
        self.results: List[Dict[str, Any]] = []
        self.receipts: List[Dict[str, Any]] = []
        self.conflicts: List[Dict[str, Any]] = []
        self.conflict_records = 0
        self.outbox = 0
        self.reported = 0
        self.checks: List[str] = []
        self.accounts: List[str] = []
        self.accounts_changed: List[str] = []
        self.incidents = 0
        self.grants = 0
        self.files: List[str] = []
        self.sizes: Dict[str, int] = {}
        self._pairs: Dict[str, Tuple[str, str]] = {}
        self.backup_holds = self._holds()

    def _site(self) -> Dict[str, Any]:
        return self.settings.get(model.SETTINGS, model.SITE) or {}

    def _holds(self) -> Dict[str, Any]:
        return holds(self._site(), self.package, self.runtime.items(model.ROOMS),
                      self.runtime.items(model.ROOM_SESSIONS), self.runtime.count(model.RESULT_CONFLICTS))

    def after_holds(self) -> Dict[str, Any]:
        """What the folder holds after the restore (the backup with what is kept)."""
        return self._holds()

    def refuse(self, err: SystemRefused) -> None:
        if self.refusal is None:
            self.refusal = err

    # -- the guards ----------------------------------------------------------------------------
    def guard_formal(self, rows: Dict[str, Dict[str, Any]]) -> None:
        """A formal exam here: refuse a mock backup once it ran, and a started room the backup does not know."""
        ran = any(lifecycle.started(d) or lifecycle.recovered(d) for d in _typed(rows))
        if ran and self._site().get("mode") == model.MOCK:
            self.refuse(SystemRefused(
                "该备份是模拟考试的备份，本系统正在进行正式考试，恢复后系统将不再把本次考试当作正式考试。",
                "请选择本次正式考试的备份文件。"))
        unknown = [d for _, d in sorted(rows.items()) if lifecycle.started(_rs(d)) and not lifecycle.recovered(_rs(d))
                   and not lifecycle.started(_rs(self.runtime.get(model.ROOM_SESSIONS, _rs_key(d))))]
        if unknown:
            labels = [result_label(d.get("room"), d.get("session")) for d in unknown]
            self.refuse(SystemRefused(
                "正在考试的考场在该备份中尚未开考：{}。恢复后系统将不再知道这些考场已开考，"
                "考试数据可能无法回收和上报。".format(summary(labels)),
                "请选择这些考场开考之后的较新备份；或待这些考场考试结束、数据回收并上报后再恢复。",
                detail="; ".join(labels)))

    # -- what is kept --------------------------------------------------------------------------
    def merge_results(self, rows: Dict[str, Dict[str, Any]], conflicts: Dict[str, Dict[str, Any]],
                      manifest: Optional[Mapping[str, Any]], actor: str) -> None:
        """Recovered results, receipts and conflicts here that the backup lacks (or refuse naming them)."""
        planned = set(_planned(self.package))
        same_exam = manifest is None or (manifest.get("exam_name") == self.package.get("exam_name"))
        foreign: List[str] = []
        for key, doc in sorted(rows.items()):
            res = doc.get("result")
            if not res:
                continue
            room, session = str(doc.get("room")), str(doc.get("session"))
            if not same_exam or (room, session) not in planned:
                foreign.append(result_label(room, session))
                continue
            held = self.runtime.get(model.ROOM_SESSIONS, key)
            theirs = (held or {}).get("result")
            upload = doc.get("upload")
            if not theirs:
                new = dict(held) if held else dict(records.new_room_session(room, session))
                for field in ("started_at", "ended_at"):  # a result means the exam ran
                    if not new.get(field):
                        new[field] = doc.get(field)
                new["result"], new["upload"] = res, upload
                self.runtime.put(model.ROOM_SESSIONS, key, new)
                self.results.append({"room": room, "session": session, "sha256": res.get("sha256"),
                                     "uploaded": bool(upload)})
                continue
            assert held is not None  # the backup's result came from its record
            if theirs.get("sha256") == res.get("sha256"):
                if upload and not held.get("upload"):
                    self.runtime.put(model.ROOM_SESSIONS, key, dict(held, upload=upload))
                    self.receipts.append({"room": room, "session": session, "sha256": res.get("sha256")})
            elif upload and not held.get("upload"):  # the platform holds ours: ours stays the result
                self.runtime.put(model.ROOM_SESSIONS, key, dict(held, result=res, upload=upload))
                self._conflict(room, session, theirs, held.get("upload"), res, "backup", actor)
            else:
                self._conflict(room, session, res, upload, theirs, "here", actor)
        for ckey, c in sorted(conflicts.items()):
            if self.runtime.get(model.RESULT_CONFLICTS, ckey) is not None:
                continue
            if not same_exam or (c.get("room"), c.get("session")) not in planned:
                foreign.append("{}（冲突结果包）".format(result_label(c.get("room"), c.get("session"))))
                continue
            self.runtime.put(model.RESULT_CONFLICTS, ckey, c)
            self.conflict_records += 1
        if foreign:
            if same_exam:
                cause = "该备份的考务数据中没有安排以下已回收的考试结果：{}，恢复会丢失它们。"
            else:
                cause = "该备份是另一次考试（{}）的备份".format(self.package.get("exam_name") or "未知考试") + \
                    "，不含本系统已回收的考试结果：{}，恢复会丢失它们。"
            self.refuse(SystemRefused(
                cause.format(summary(foreign)),
                "请选择本次考试的备份文件；如确需恢复该备份，请先把这些结果备份到外部存储并完成考后上报，"
                "再执行“系统初始化”后恢复。", detail="; ".join(foreign)))

    def _conflict(self, room: str, session: str, other: Dict[str, Any], other_upload: Optional[Dict[str, Any]],
                  kept: Dict[str, Any], origin: str, actor: str) -> None:
        """Keep ``other`` (from ``origin``: backup | here) visibly, as a refused package beside ``kept``."""
        sha = str(other.get("sha256"))
        ckey = "{}|{}".format(model.rs_key(room, session), sha)
        if self.runtime.get(model.RESULT_CONFLICTS, ckey) is None:
            self.runtime.put(model.RESULT_CONFLICTS, ckey, {
                "room": room, "session": session, "sha256": sha, "size": other.get("size"),
                "source": other.get("source"), "kept_sha256": kept.get("sha256"), "first_at": self.now,
                "last_at": self.now, "times": 1, "actor": actor, "origin": ORIGIN_RESTORE, "held_by": origin,
                "received_at": other.get("received_at"), "upload": other_upload})
        self.conflicts.append({"room": room, "session": session, "kept_sha256": kept.get("sha256"),
                               "other_sha256": sha, "other_from": origin, "other_uploaded": bool(other_upload)})

    def merge_records(self, outbox: Dict[str, Dict[str, Any]], sessions: Dict[str, Dict[str, Any]],
                      recovery: Optional[Dict[str, Any]], external: Optional[Dict[str, Any]]) -> None:
        """Outbox reports, the sessions' reported times, checks/recovery and a newer checks/external."""
        held = self.runtime.items(model.OUTBOX)
        for oid, doc in sorted(outbox.items()):
            theirs = held.get(oid)
            if theirs is None or (theirs.get("state") == PENDING and doc.get("state") != PENDING):
                self.runtime.put(model.OUTBOX, oid, doc)
                self.outbox += 1
        held_sessions = self.runtime.items(model.SESSIONS)
        for sid, doc in sorted(sessions.items()):
            theirs = held_sessions.get(sid)
            if theirs is None:
                continue
            changes = {f: doc[f] for f in REPORTED_FIELDS if doc.get(f) and not theirs.get(f)}
            if changes:
                self.runtime.put(model.SESSIONS, sid, dict(theirs, **changes))
                self.reported += len(changes)
        if recovery and self.runtime.get(model.CHECKS, model.RECOVERY) is None \
                and self.runtime.get(model.OUTBOX, recovery.get("outbox_id")) is not None:
            self.runtime.put(model.CHECKS, model.RECOVERY, recovery)
            self.checks.append(model.RECOVERY)
        theirs_ext = self.runtime.get(model.CHECKS, model.EXTERNAL)
        if external and (theirs_ext is None or _later(external.get("verified_at"), theirs_ext.get("verified_at"))):
            self.runtime.put(model.CHECKS, model.EXTERNAL, external)
            self.checks.append(model.EXTERNAL)

    def merge_incidents(self, incidents: Dict[str, Dict[str, Any]], grants: Dict[str, Dict[str, Any]],
                        rows: Dict[str, Dict[str, Any]]) -> None:
        """考场情况记录 and 补时 here: each record here replaces the backup's of its id (the
        backup's others stay), and a room-session's ``extra_time_min`` / ``expected_end``
        here is kept when it grants more than the backup's (补时 only ever adds)."""
        for table, docs in ((INCIDENTS, incidents), (EXTRA_TIME, grants)):
            held = self.runtime.items(table)
            for key, doc in sorted(docs.items()):
                if held.get(key) != doc:
                    self.runtime.put(table, key, doc)
                    if table == INCIDENTS:
                        self.incidents += 1
                    else:
                        self.grants += 1
        for key, doc in sorted(rows.items()):
            minutes = int(doc.get("extra_time_min") or 0)
            if not minutes:
                continue
            theirs = self.runtime.get(model.ROOM_SESSIONS, key)
            if theirs is None:
                theirs = dict(records.new_room_session(str(doc.get("room")), str(doc.get("session"))))
            if minutes > int(theirs.get("extra_time_min") or 0):
                self.runtime.put(model.ROOM_SESSIONS, key, dict(theirs, extra_time_min=minutes,
                                                                expected_end=doc.get("expected_end")))

    def merge_accounts(self, accounts: Dict[str, Dict[str, Any]]) -> None:
        """Every account here replaces the backup's (password, salt, iterations, must_change, lockout)."""
        held = self.settings.items(model.ACCOUNTS)
        for user, doc in sorted(accounts.items()):
            self.accounts.append(user)
            if held.get(user) != doc:
                self.settings.put(model.ACCOUNTS, user, doc)
                self.accounts_changed.append(user)

    def find_files(self) -> None:
        """The result files the merged records refer to that the backup lacks (copied from here)."""
        refs: Dict[str, Tuple[str, str, Optional[int]]] = {}
        for doc in self.runtime.items(model.ROOM_SESSIONS).values():
            res = doc.get("result") or {}
            if res.get("sha256"):
                refs[res["sha256"]] = (str(doc.get("room")), str(doc.get("session")), res.get("size"))
        for doc in self.runtime.items(model.RESULT_CONFLICTS).values():
            if doc.get("sha256"):
                refs.setdefault(doc["sha256"], (str(doc.get("room")), str(doc.get("session")), doc.get("size")))
        for sha, (room, session, size) in sorted(refs.items()):
            if sha in self.backup_spool:
                continue
            self.files.append(sha)
            self._pairs[sha] = (room, session)
            if isinstance(size, int):
                self.sizes[sha] = size

    # -- telling it ------------------------------------------------------------------------------
    def damaged_line(self, sha: str, problem: str) -> str:
        room, session = self._pairs.get(sha, ("?", "?"))
        return "{} 的结果包文件在本机已损坏（{}），未能随恢复保留；恢复后请重新回收该考场的结果包。".format(
            result_label(room, session), problem)

    def kept(self) -> Dict[str, Any]:
        """``{"results": [{"room", "session", "sha256", "uploaded"}], "receipts": [...], "conflicts":
        [{"room", "session", "kept_sha256", "other_sha256", "other_from" (backup | here),
        "other_uploaded"}], "conflict_records", "files", "outbox", "reported", "checks",
        "accounts", "accounts_changed", "incidents", "grants" (考场情况记录 / 补时 records kept)}``:
        what is here and kept."""
        return {"results": list(self.results), "receipts": list(self.receipts), "conflicts": list(self.conflicts),
                "conflict_records": self.conflict_records, "files": len(self.files), "outbox": self.outbox,
                "reported": self.reported, "checks": list(self.checks), "accounts": list(self.accounts),
                "accounts_changed": list(self.accounts_changed), "incidents": self.incidents, "grants": self.grants}

    def lines(self) -> List[str]:
        """What is kept, for the administrator (Chinese)."""
        out = []
        if self.results:
            uploaded = sum(1 for r in self.results if r["uploaded"])
            out.append("保留本机已回收而备份中没有的考试结果 {} 个（其中已上报 {} 个）：{}。".format(
                len(self.results), uploaded, summary([result_label(r["room"], r["session"]) for r in self.results])))
        else:
            out.append("本机没有备份中缺少的考试结果。")
        if self.receipts:
            out.append("保留本机的上报回执 {} 个（备份时这些结果尚未上报）：{}。".format(
                len(self.receipts), summary([result_label(r["room"], r["session"]) for r in self.receipts])))
        for c in self.conflicts:
            which = "备份中的结果" if c["other_from"] == "here" else "本机已上报的结果"
            out.append("{}：备份中的结果与本机的不同，两个都保留：{}（校验值 {}…）作为该考场的结果，另一个（{}…）"
                       "列为冲突，数据回收中显示“已回收（有冲突）”。".format(
                           result_label(c["room"], c["session"]), which, str(c["kept_sha256"])[:12],
                           str(c["other_sha256"])[:12]))
        if self.conflict_records:
            out.append("保留本机记录的冲突结果包 {} 个。".format(self.conflict_records))
        if self.outbox:
            out.append("保留本机的上报记录 {} 条（未发送的仍会发送）。".format(self.outbox))
        if self.incidents or self.grants:
            out.append("保留本机的考场情况记录 {} 条、补时记录 {} 条。".format(self.incidents, self.grants))
        if self.accounts:
            out.append("保留本机当前的账号和密码（{}）：恢复后请用现在的密码登录。".format("、".join(self.accounts)))
        return out


def _strip(doc: Dict[str, Any]) -> Dict[str, Any]:
    return {k: v for k, v in doc.items() if k != KEY}


def _rs_key(doc: Dict[str, Any]) -> str:
    return model.rs_key(str(doc.get("room")), str(doc.get("session")))


def _planned(package: Dict[str, Any]) -> List[Tuple[str, str]]:
    """The (room, session) pairs a package plans (those with candidates)."""
    return sorted({(str(c.get("room")), str(c.get("session"))) for c in package.get("candidates", [])
                   if isinstance(c, dict)})


def holds(site: Mapping[str, Any], manifest: Optional[Mapping[str, Any]], rooms: Dict[str, Dict[str, Any]],
           rows: Dict[str, Dict[str, Any]], conflicts: int) -> Dict[str, Any]:
    """What a data folder holds, for the restore's comparison."""
    recovered = [d for d in _typed(rows) if lifecycle.recovered(d)]
    code = site.get("site_code") or ""
    return {"site_code": code, "mode": site.get("mode", model.FORMAL) if code else None,
            "exam_name": (manifest or {}).get("exam_name") or "", "rooms": len(rooms),
            "rooms_registered": sum(1 for r in rooms.values() if r.get("token") or r.get("registered_at")),
            "rooms_started": sum(1 for d in _typed(rows) if lifecycle.started(d)),
            "results_recovered": len(recovered), "results_uploaded": sum(1 for d in recovered if lifecycle.uploaded(d)),
            "conflicts": conflicts}


def _later(a: Any, b: Any) -> bool:
    """True when time ``a`` is later than ``b`` (an unreadable ``b`` counts as older)."""
    try:
        first = read_time(a)
    except ValueError:
        return False
    try:
        return first > read_time(b)
    except ValueError:
        return True


def audit_kept(kept: Dict[str, Any]) -> Dict[str, Any]:
    """The audit record's summary of what was kept (room|session keys, counts)."""
    return {"results": ["{}|{}".format(r["room"], r["session"]) for r in kept["results"]],
            "receipts": ["{}|{}".format(r["room"], r["session"]) for r in kept["receipts"]],
            "conflicts": [dict(c) for c in kept["conflicts"]],
            "conflict_records": kept["conflict_records"], "files": kept["files"], "outbox": kept["outbox"],
            "reported": kept["reported"], "checks": kept["checks"],
            "incidents": kept.get("incidents", 0), "grants": kept.get("grants", 0)}


def find_doc(tables: Dict[str, Dict[str, Any]], table: str, key: str) -> Optional[Dict[str, Any]]:
    for doc in tables.get(table, {}).values():
        if isinstance(doc, dict) and doc.get("_key") == key:
            return doc
    return None


def _rs(doc: Optional[Dict[str, Any]]) -> Optional[records.RoomSession]:
    """A room-session document of a backup's tables, as the record it is."""
    return cast(Optional[records.RoomSession], doc)


def _typed(rows: Dict[str, Dict[str, Any]]) -> List[records.RoomSession]:
    return [cast(records.RoomSession, d) for d in rows.values()]
