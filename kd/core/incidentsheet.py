"""考场情况记录单: the printable A4 record of one room's session (incidents, times, 补时) for signatures.

API (the GUI's button and ``main.py incident sheet`` call these)::

    write_sheet(core, session_id, room_code, folder=None) -> str        # one room: the file's path
    write_session_sheets(core, session_id, folder=None) -> str          # every room of the session, one sheet each
    sheet_data(core, session_id, room_code) -> Dict[str, Any]           # what a sheet shows (plain data)
    sheet_html(sheets: Sequence[Dict[str, Any]]) -> str                 # the HTML document of those sheets

``core`` is the site's ``kd.core.services.Core`` (its ``ctx``, ``incidents``, ``extra_time``).
``folder`` None writes into ``DATA/print`` (as the door sheet, ``kd.core.printing``); the
file is ``考场情况记录单-<session>-<room>.html`` (``考场情况记录单-<session>.html`` for a
whole session), written atomically (``kd.core.printing.write_print_file``: ``.part``, fsync,
rename), and returned as an absolute path for ``webbrowser``. Raises ``UserError`` for a
room or session not in the loaded package (or no package), a room without candidates or a
record in that session; ``StoreError`` when the file cannot be written.

**The sheet** (docs/incidents.md §8): a UTF-8 HTML document with the print stylesheet of
``kd.core.printing`` (``@page { size: A4 }``, one ``<section class="page">`` per room):

- head: the exam name, the site code, the session's name, its 开考 and scheduled 结束
  (start + duration), the room's code and name, its proctor machine (the registered IP
  and when it registered), its recorded start (and 未经许可开考) and end, the 补时 total and
  the expected end after it (``ExtraTimeService.expected_end``);
- 情况记录: every incident of the room and session (all states), by start: number,
  category label, 开始, 结束 (or 未结束), lost minutes (rounded up; an open one counts until
  the sheet was made and says so), state label, source (``SOURCE_LABELS``: by hand or which
  fact it was drafted from), description, the affected candidates (ticket and name; none:
  全考场), recorded by (and who decided it, with the note);
- 补时: every grant: minutes, total, tier label, reason, the incidents it rests on, who
  granted it and when, the dongle's confirmation (lock id and its signed clock) for a grant
  over 30 minutes, whether the proctor machine acknowledged it;
- the signature lines 监考员（签名）, 考点主考（签名）, 日期, and when the sheet was made.

Every value from the package or the database is ``html.escape``d (a description with
``<script>`` prints as text); every time is ``kd.core.labels.shown`` (``2026-06-13 09:00``,
China Standard Time).
"""

import datetime
import os
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence

from kd.core import labels, model, printing, records
from kd.core.extratime import Tier
from kd.core.incidents import CATEGORY_LABELS, STATE_LABELS, Category, IncidentState, recorder_label
from kd.core.printing import esc
from kd.errors import UserError
from kd.formats.timeutil import CST, read_time

if TYPE_CHECKING:  # pragma: no cover
    from kd.core.services import Core

TITLE = "考场情况记录单"

#: where an incident comes from, as the sheet says it (``kind``)
SOURCE_LABELS: Dict[str, str] = {
    "manual": "人工记录", "outage": "系统检测：考场失去连接", "late_start": "系统检测：开考延迟",
    "unpermitted": "系统检测：未经许可开考", "not_ended": "系统检测：未按时结束",
    "stale_end": "考点标记考场已结束",
}
#: a grant's tier, as the sheet says it
TIER_SHORT: Dict[str, str] = {Tier.ON_SITE.value: "考点管理员当场批准", Tier.DONGLE.value: "二次确认并验证机考锁"}

SHEET_CSS = """
.sheet h1 { font-size: 20pt; margin-bottom: 3mm; }
.sheet h2 { font-size: 12pt; }
.sheet h3 { font-size: 12pt; margin: 5mm 0 2mm; }
.sheet table { font-size: 9pt; }
.sheet th, .sheet td { padding: 1.2mm 1.5mm; vertical-align: top; }
.sheet th, .sheet td.nowrap { white-space: nowrap; }
.sheet table.head td { border: none; padding: 0.8mm 1.5mm; font-size: 10.5pt; }
.sheet .none { font-size: 10.5pt; margin: 1mm 0; }
.sheet .note { font-size: 9pt; margin: 2mm 0; }
.sheet table.signs { margin-top: 12mm; }
.sheet table.signs td { border: none; font-size: 11pt; padding: 0 1.5mm; white-space: nowrap; }
.sheet table.signs td.line { border-bottom: 1px solid #000; width: 22%; }
.sheet .made { margin-top: 6mm; font-size: 8pt; color: #333; text-align: right; }
"""


def _manifest_part(manifest: records.Manifest) -> Dict[str, Any]:
    return {"site_code": manifest.get("site_code"), "exam_name": manifest.get("exam_name"),
            "rooms": [dict(r) for r in manifest.get("rooms") or []],
            "sessions": [dict(s) for s in manifest.get("sessions") or []],
            "candidates": [{"room": c.get("room"), "session": c.get("session"), "ticket": c.get("ticket"),
                            "name": c.get("name")} for c in manifest.get("candidates") or []]}


def _package(core: "Core") -> Dict[str, Any]:
    part = core.ctx.manifest_view(_manifest_part)
    if part is None:
        raise UserError("尚未导入考务数据。", "请先导入考务。")
    return part


def _lock_clock(dongle: Optional[Dict[str, Any]]) -> str:
    if not dongle:
        return ""
    try:
        clock = datetime.datetime.fromtimestamp(int(dongle["clock_ms"]) / 1000.0, CST)
    except (KeyError, TypeError, ValueError, OverflowError, OSError):
        return "机考锁 {} 已验证".format(dongle.get("lock_id"))
    return "机考锁 {} 已验证（锁时钟 {}）".format(dongle.get("lock_id"), labels.shown(clock))


def _incident_row(core: "Core", doc: Dict[str, Any], names: Dict[str, str]) -> Dict[str, Any]:
    lost = core.incidents.lost_minutes(doc)
    decided = ""
    if doc.get("decided_by"):
        decided = "{} 于 {} {}".format(recorder_label(doc["decided_by"]), labels.shown(doc.get("decided_at")),
                                      "确认" if doc["state"] == IncidentState.CONFIRMED.value else "驳回")
        if doc.get("note"):
            decided += "：{}".format(doc["note"])
    return {
        "id": doc["id"], "category": CATEGORY_LABELS[Category(doc["category"])],
        "start": labels.shown(doc["start"]), "end": labels.shown(doc.get("end")) if doc.get("end") else "未结束",
        "lost_min": lost, "open": not doc.get("end"), "state": STATE_LABELS[IncidentState(doc["state"])],
        "source": SOURCE_LABELS.get(doc.get("kind") or "", doc.get("kind") or ""),
        "description": doc.get("description") or "",
        "candidates": ["{} {}".format(t, names.get(t, "")).strip() for t in doc.get("candidates") or []],
        "recorded_by": recorder_label(doc.get("recorded_by")), "recorded_at": labels.shown(doc.get("recorded_at")),
        "decided": decided,
    }


def _grant_row(doc: Dict[str, Any]) -> Dict[str, Any]:
    return {
        "id": doc["id"], "minutes": doc["minutes"], "total_min": doc["total_min"],
        "tier": TIER_SHORT.get(doc.get("tier") or "", doc.get("tier") or ""), "reason": doc.get("reason") or "",
        "incidents": ["#{}".format(i) for i in doc.get("incidents") or []],
        "granted_by": doc.get("granted_by") or "", "granted_at": labels.shown(doc.get("granted_at")),
        "dongle": _lock_clock(doc.get("dongle")), "expected_end": labels.shown(doc.get("expected_end")),
        "acked": labels.shown(doc.get("acked_at")) if doc.get("acked_at") else "",
    }


def sheet_data(core: "Core", session_id: str, room_code: str) -> Dict[str, Any]:
    """What the sheet of ``room_code`` in ``session_id`` shows (texts ready to print; see the module docstring).

    ``UserError``: no package, a room or session not in it, a room with neither candidates
    nor a record in that session.
    """
    package = _package(core)
    session = next((s for s in package["sessions"] if str(s.get("id")) == str(session_id)), None)
    if session is None:
        raise UserError("没有场次 {}。".format(session_id), "请输入考场数据包中的场次编号。")
    room = next((r for r in package["rooms"] if r.get("code") == room_code), None)
    if room is None:
        raise UserError("没有考场 {}。".format(room_code), "请输入考场数据包中的考场编号。")
    runtime = core.ctx.stores.runtime
    rs = records.as_doc(records.room_session(runtime, room_code, session_id) or {})
    names = {c["ticket"]: c.get("name") or "" for c in package["candidates"]
             if c.get("room") == room_code and c.get("session") == session_id}
    if not names and not rs:
        raise UserError("考场 {} 在{}没有考生。".format(room_code, labels.session_label(session_id, package)),
                        "请选择该考场有考生的场次。")
    start = read_time(session["start"])
    scheduled_end = start + datetime.timedelta(minutes=int(session.get("duration_min") or 0))
    reg = records.as_doc(runtime.get(model.ROOMS, room_code) or {})
    incidents = [_incident_row(core, d, names) for d in core.incidents.list(session=session_id, room=room_code)]
    grants = [_grant_row(d) for d in core.extra_time.grants(room=room_code, session=session_id)]
    extra_min = int(rs.get("extra_time_min") or 0)
    return {
        "exam_name": package.get("exam_name") or "", "site_code": package.get("site_code") or "",
        "session_id": str(session_id), "session_name": labels.session_label(session_id, package),
        "start": labels.shown(start), "scheduled_end": labels.shown(scheduled_end),
        "duration_min": int(session.get("duration_min") or 0),
        "room_code": room_code, "room_name": room.get("name") or "", "candidates": len(names),
        "proctor_ip": reg.get("ip") or "", "registered_at": labels.shown(reg.get("registered_at")),
        "started_at": labels.shown(rs.get("started_at")), "unpermitted": bool(rs.get("unpermitted_at")),
        "ended_at": labels.shown(rs.get("ended_at")),
        "extra_time_min": extra_min,
        "expected_end": labels.shown(core.extra_time.expected_end(room_code, session_id)),
        "incidents": incidents, "grants": grants, "made_at": labels.shown(core.ctx.now()),
    }


def _cell(values: Sequence[Any], nowrap: Sequence[int] = ()) -> str:
    return "".join(('<td class="nowrap">{}</td>' if n in nowrap else "<td>{}</td>").format(v)
                   for n, v in enumerate(values))


def _span(start: str, end: str) -> str:
    """``2026-06-13 09:10<br>至 09:30`` (the end's date only when it is another day), escaped."""
    if end[:10] == start[:10] and len(end) == len(start):
        end = end[11:]
    return "{}<br>至 {}".format(esc(start), esc(end))


def _page(d: Dict[str, Any]) -> str:
    started = esc(d["started_at"]) or "未开考"
    if d["unpermitted"]:
        started += "（未经许可开考）"
    ended = esc(d["ended_at"]) or "未结束"
    proctor = esc(d["proctor_ip"]) or "未注册"
    if d["registered_at"]:
        proctor += "（{} 注册）".format(esc(d["registered_at"]))
    end_line = esc(d["scheduled_end"])
    if d["extra_time_min"]:
        end_line += "；补时 {} 分钟，补时后应结束于 <b>{}</b>".format(esc(d["extra_time_min"]), esc(d["expected_end"]))
    head = (
        '<table class="head"><tr><td>考点代码：{site}</td><td>场次：{session}（{sid}）</td></tr>'
        "<tr><td>考场：{room} {room_name}</td><td>考生人数：{n} 人</td></tr>"
        "<tr><td>开考时间：{start}</td><td>结束时间：{end}</td></tr>"
        "<tr><td>监考机：{proctor}</td><td>考场实际开考：{started}；实际结束：{ended}</td></tr>"
        "</table>").format(
        site=esc(d["site_code"]), session=esc(d["session_name"]), sid=esc(d["session_id"]), room=esc(d["room_code"]),
        room_name=esc(d["room_name"]), n=esc(d["candidates"]), start=esc(d["start"]), end=end_line,
        proctor=proctor, started=started, ended=ended)
    parts = ["<h1>{}</h1>".format(TITLE), "<h2>{}</h2>".format(esc(d["exam_name"])), head, "<h3>一、情况记录</h3>"]
    if d["incidents"]:
        rows = []
        for i in d["incidents"]:
            lost = "{} 分钟{}".format(i["lost_min"], "（至制表时）" if i["open"] else "")
            recorded = "{}（{}）".format(esc(i["recorded_by"]), esc(i["recorded_at"]))
            if i["decided"]:
                recorded += "<br>{}".format(esc(i["decided"]))
            rows.append("<tr>{}</tr>".format(_cell([
                esc(i["id"]), esc(i["category"]), _span(i["start"], i["end"]), esc(lost).replace("（", "<br>（"),
                esc(i["state"]), esc(i["source"]), esc(i["description"]),
                "<br>".join(esc(c) for c in i["candidates"]) or "全考场", recorded], nowrap=(1, 2, 3, 4))))
        parts.append("<table><thead><tr><th>编号</th><th>类别</th><th>时间</th><th>损失</th>"
                     "<th>状态</th><th>来源</th><th>情况说明</th><th>涉及考生</th><th>记录人</th></tr></thead>"
                     "<tbody>\n{}\n</tbody></table>".format("\n".join(rows)))
        if any(i["state"] == STATE_LABELS[IncidentState.DRAFTED] for i in d["incidents"]):
            parts.append('<p class="note">“待确认”的记录由系统根据考点所见自动生成，须由考点管理员确认或驳回。</p>')
    else:
        parts.append('<p class="none">本场次本考场无情况记录。</p>')
    parts.append("<h3>二、补时</h3>")
    if d["grants"]:
        rows = []
        for g in d["grants"]:
            rows.append("<tr>{}</tr>".format(_cell([
                esc(g["id"]), esc("{} 分钟".format(g["minutes"])), esc("{} 分钟".format(g["total_min"])),
                esc(g["tier"]),
                esc(g["reason"]), esc("、".join(g["incidents"]) or "-"),
                "{}<br>{}".format(esc(g["granted_by"]), esc(g["granted_at"])), esc(g["dongle"]) or "-",
                esc(g["expected_end"]).replace(" ", "<br>", 1), esc(g["acked"]).replace(" ", "<br>", 1) or "未确认"],
                nowrap=(1, 2, 6, 8, 9))))
        parts.append("<table><thead><tr><th>编号</th><th>补时</th><th>合计</th><th>批准方式</th><th>原因</th>"
                     "<th>依据</th><th>批准人</th><th>机考锁确认</th><th>应结束于</th><th>监考机<br>确认</th></tr>"
                     "</thead><tbody>\n{}\n</tbody></table>".format("\n".join(rows)))
    else:
        parts.append('<p class="none">本场次本考场未补时。</p>')
    parts.append('<table class="signs"><tr><td>监考员（签名）：</td><td class="line"></td>'
                 '<td>考点主考（签名）：</td><td class="line"></td><td>日期：</td><td class="line"></td></tr></table>')
    parts.append('<p class="made">制表时间 {} · 考点管理系统</p>'.format(esc(d["made_at"])))
    return '<div class="sheet">\n{}\n</div>'.format("\n".join(parts))


def sheet_html(sheets: Sequence[Dict[str, Any]]) -> str:
    """The HTML document of ``sheets`` (``sheet_data`` results), one A4 page each."""
    title = TITLE
    if len(sheets) == 1:
        title = "{} {} {}".format(TITLE, sheets[0]["session_name"], sheets[0]["room_code"])
    elif sheets:
        title = "{} {}".format(TITLE, sheets[0]["session_name"])
    text = printing.document(title, [_page(d) for d in sheets])
    return text.replace("</style>", SHEET_CSS + "</style>", 1)


def _folder(core: "Core", folder: Optional[str]) -> str:
    return os.path.abspath(folder if folder else os.path.join(core.ctx.data_dir, printing.PRINT_DIR))


def _safe(code: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in str(code))


def write_sheet(core: "Core", session_id: str, room_code: str, folder: Optional[str] = None) -> str:
    """The 考场情况记录单 of one room and session as an HTML file in ``folder`` (default ``DATA/print``); its path."""
    text = sheet_html([sheet_data(core, session_id, room_code)])
    name = "{}-{}-{}.html".format(TITLE, _safe(session_id), _safe(room_code))
    return printing.write_print_file(_folder(core, folder), name, text)


def session_rooms(core: "Core", session_id: str) -> List[str]:
    """The rooms of a session, in the package's order: those with candidates in it or a record of it."""
    package = _package(core)
    if not any(str(s.get("id")) == str(session_id) for s in package["sessions"]):
        raise UserError("没有场次 {}。".format(session_id), "请输入考场数据包中的场次编号。")
    seated = {c.get("room") for c in package["candidates"] if c.get("session") == session_id}
    seated |= {d["room"] for d in records.room_sessions(core.ctx.stores.runtime, session_id)}
    return [r["code"] for r in package["rooms"] if r.get("code") in seated]


def write_session_sheets(core: "Core", session_id: str, folder: Optional[str] = None) -> str:
    """Every room's 考场情况记录单 of a session in one HTML file (one A4 page per room); its path."""
    sheets = [sheet_data(core, session_id, room) for room in session_rooms(core, session_id)]
    if not sheets:
        raise UserError("{}没有考场。".format(labels.session_label(session_id)), "请选择有考生的场次。")
    name = "{}-{}.html".format(TITLE, _safe(session_id))
    return printing.write_print_file(_folder(core, folder), name, sheet_html(sheets))
