"""``incident`` and ``extra-time``: 考场情况记录 and 补时 on the command line (kd.core.incidents, kd.core.extratime).

- ``incident list [--session N] [--room R] [--state S] [--json]``: the register (reads only).
- ``incident add --room R --session N --category C --start T [--end T] --description TEXT
  [--candidates T1,T2]``: record an incident by hand (confirmed at once). ``C``: a code
  (``device``, ``network``, ``candidate``, ``staff``, ``other``) or its label (设备故障…);
  ``T``: ``HH:MM`` (today), ``YYYY-MM-DD HH:MM`` (Beijing time) or ISO 8601 with offset.
- ``incident confirm ID [--note TEXT]`` / ``incident dismiss ID [--note TEXT]``: decide a draft.
- ``incident end-room --room R --session N --reason TEXT``: a stale room (its proctor
  machine died) marked 已结束, with a confirmed 设备故障 incident.
- ``incident sheet --session N [--room R] DIR``: the printable 考场情况记录单 (A4 HTML,
  ``kd.core.incidentsheet``) of a room, or of every room of the session in one file, written
  into ``DIR``; prints the file's path. It exports candidates' names and tickets to a file,
  so it asks the password like ``export-site-info``.
- ``extra-time list [--room R] [--session N]`` and ``extra-time propose --room R --session N``:
  the grants, and the 补时 the confirmed incidents call for (read only).
- ``extra-time grant --room R --session N --minutes M --reason TEXT [--incident ID ...]
  [--confirm]``: approve 补时; a total over 30 minutes needs ``--confirm`` and the site's
  dongle, over 45 is refused (改期重考).

``list`` and ``propose`` only read; the others (``sheet`` too: it writes a file) ask the administrator's password first
(``kd.cli.needs_password``: ``STATE_OPTIONS`` names the ``writes`` default they set).
"""

import argparse
import datetime
from typing import Any, Dict, List

from kd.cli import Session, add_json, add_password, command
from kd.errors import UserError


def _action(sub: Any, name: str, help_text: str, handler: Any, writes: bool) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(name, help=help_text)
    parser.set_defaults(action_handler=handler, writes=writes)
    return parser


def _finish(parser: argparse.ArgumentParser, writes: bool) -> None:
    add_json(parser)
    if writes:
        add_password(parser)


def register(commands: Any) -> None:
    top = command(commands, "incident", "考场情况记录：查看、添加、确认、驳回，或将失联考场标记为已结束", run_action,
                  json_option=False, asks=False)
    sub = top.add_subparsers(dest="action", metavar="ACTION")
    sub.required = True
    p = _action(sub, "list", "列出考场情况记录（只读）", run_list, False)
    p.add_argument("--session", help="场次编号")
    p.add_argument("--room", help="考场编号")
    p.add_argument("--state", choices=["drafted", "confirmed", "dismissed"], help="只列出此状态的记录")
    _finish(p, False)
    p = _action(sub, "add", "添加一条考场情况记录（记为已确认）", run_add, True)
    p.add_argument("--room", required=True, help="考场编号")
    p.add_argument("--session", required=True, help="场次编号")
    p.add_argument("--category", required=True, help="类别：设备故障/网络中断/考生原因/考务原因/其他（或其代码）")
    p.add_argument("--start", required=True, help="开始时间：HH:MM（今天）、YYYY-MM-DD HH:MM 或带时区的 ISO 8601")
    p.add_argument("--end", help="结束时间（同上；不给表示尚未结束）")
    p.add_argument("--description", required=True, help="情况说明")
    p.add_argument("--candidates", default="", help="涉及考生的准考证号，以逗号分隔（可不填）")
    _finish(p, True)
    for name, text, handler in (("confirm", "确认一条待确认的记录", run_confirm),
                                ("dismiss", "驳回一条记录", run_dismiss)):
        p = _action(sub, name, text, handler, True)
        p.add_argument("id", help="记录编号（见 incident list）")
        p.add_argument("--note", default="", help="处理意见")
        _finish(p, True)
    p = _action(sub, "end-room", "将失联考场（监考机无法恢复）标记为已结束，并记录情况", run_end_room, True)
    p.add_argument("--room", required=True, help="考场编号")
    p.add_argument("--session", required=True, help="场次编号")
    p.add_argument("--reason", required=True, help="原因")
    _finish(p, True)
    p = _action(sub, "sheet", "将考场情况记录单（A4，HTML，供打印签字）写入文件夹", run_sheet, True)
    p.add_argument("--session", required=True, help="场次编号")
    p.add_argument("--room", help="考场编号（不给：本场次全部考场，每个考场一页）")
    p.add_argument("dir", metavar="DIR", help="目标文件夹")
    _finish(p, True)

    top = command(commands, "extra-time", "补时：查看、建议、批准", run_action, json_option=False, asks=False)
    sub = top.add_subparsers(dest="action", metavar="ACTION")
    sub.required = True
    p = _action(sub, "list", "列出已批准的补时（只读）", run_grants, False)
    p.add_argument("--room", help="考场编号")
    p.add_argument("--session", help="场次编号")
    _finish(p, False)
    p = _action(sub, "propose", "按已确认的情况记录计算建议补时（只读）", run_propose, False)
    p.add_argument("--room", required=True, help="考场编号")
    p.add_argument("--session", required=True, help="场次编号")
    _finish(p, False)
    p = _action(sub, "grant", "批准补时（合计超过 30 分钟须 --confirm 并插入机考锁；超过 45 分钟不能补时）",
                run_grant, True)
    p.add_argument("--room", required=True, help="考场编号")
    p.add_argument("--session", required=True, help="场次编号")
    p.add_argument("--minutes", required=True, type=int, help="补时分钟数")
    p.add_argument("--reason", required=True, help="补时原因")
    p.add_argument("--incident", action="append", default=[], metavar="ID", help="依据的情况记录编号（可重复）")
    p.add_argument("--confirm", action="store_true", help="二次确认（补时合计超过 30 分钟时必须，并须插入机考锁）")
    _finish(p, True)


def run_action(s: Session) -> int:
    return int(s.opts.action_handler(s))


# -- time input -------------------------------------------------------------------------------
def parse_moment(text: str, now: datetime.datetime) -> datetime.datetime:
    """``HH:MM`` (on ``now``'s day), ``YYYY-MM-DD HH:MM`` (in ``now``'s zone) or ISO 8601 with an offset."""
    value = text.strip()
    for fmt, today in (("%H:%M", True), ("%Y-%m-%d %H:%M", False), ("%Y-%m-%d %H:%M:%S", False)):
        try:
            parsed = datetime.datetime.strptime(value, fmt)
        except ValueError:
            continue
        if today:
            parsed = datetime.datetime.combine(now.date(), parsed.time())
        return parsed.replace(tzinfo=now.tzinfo)
    try:
        moment = datetime.datetime.fromisoformat(value)
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise UserError("无法识别的时间：{}".format(text), "请写成 HH:MM、YYYY-MM-DD HH:MM 或带时区的 ISO 8601 时间。")
    return moment


# -- texts ------------------------------------------------------------------------------------
def incident_line(doc: Dict[str, Any], names: Dict[str, str]) -> str:
    from kd.core.incidents import label_of  # noqa: PLC0415
    from kd.core.labels import session_label, shown  # noqa: PLC0415

    labels = label_of(doc)
    text = "#{} [{}] {} {} {}：{} ～ {}  {}".format(
        doc["id"], labels["state"], session_label(doc["session"], names), doc["room"], labels["category"],
        shown(doc["start"]), shown(doc["end"]) if doc.get("end") else "未结束", doc["description"])
    if doc.get("candidates"):
        text += "（涉及考生：{}）".format("、".join(doc["candidates"]))
    return text


def grant_line(doc: Dict[str, Any], names: Dict[str, str]) -> str:
    from kd.core.labels import session_label, shown  # noqa: PLC0415

    return "#{} {} {} 补时 {} 分钟（合计 {} 分钟，应结束于 {}）{}：{}，批准人 {}{}".format(
        doc["id"], session_label(doc["session"], names), doc["room"], doc["minutes"], doc["total_min"],
        shown(doc["expected_end"]), "，已验证机考锁" if doc.get("dongle") else "", doc["reason"], doc["granted_by"],
        "，监考机已确认" if doc.get("acked_at") else "")


# -- handlers ---------------------------------------------------------------------------------
def run_list(s: Session) -> int:
    opts = s.opts
    states = [opts.state] if opts.state else None
    docs = s.core.incidents.list(session=opts.session, room=opts.room, states=states)
    names = s.session_names()
    lines: List[str] = [incident_line(d, names) for d in docs] or ["没有考场情况记录。"]
    s.out(docs, "\n".join(lines))
    return 0


def run_add(s: Session) -> int:
    opts = s.opts
    now = s.ctx.now()
    doc = s.core.incidents.add(
        room=opts.room, session=opts.session, category=opts.category, start=parse_moment(opts.start, now),
        end=parse_moment(opts.end, now) if opts.end else None, description=opts.description, actor=s.actor,
        candidates=[t for t in opts.candidates.split(",") if t.strip()])
    s.out(doc, "已记录：" + incident_line(doc, s.session_names()))
    return 0


def run_confirm(s: Session) -> int:
    doc = s.core.incidents.confirm(s.opts.id, s.actor, s.opts.note)
    s.out(doc, "已确认：" + incident_line(doc, s.session_names()))
    return 0


def run_dismiss(s: Session) -> int:
    doc = s.core.incidents.dismiss(s.opts.id, s.actor, s.opts.note)
    s.out(doc, "已驳回：" + incident_line(doc, s.session_names()))
    return 0


def run_end_room(s: Session) -> int:
    opts = s.opts
    doc = s.core.incidents.end_stale(opts.room, opts.session, opts.reason, s.actor)
    s.out(doc, "考场 {} 已标记为已结束，并已记录：{}".format(opts.room, incident_line(doc, s.session_names())))
    return 0


def run_sheet(s: Session) -> int:
    from kd.core import incidentsheet  # noqa: PLC0415

    opts = s.opts
    if opts.room:
        path = incidentsheet.write_sheet(s.core, opts.session, opts.room, opts.dir)
    else:
        path = incidentsheet.write_session_sheets(s.core, opts.session, opts.dir)
    s.out({"path": path}, "考场情况记录单：{}".format(path))
    return 0


def run_grants(s: Session) -> int:
    docs = s.core.extra_time.grants(room=s.opts.room, session=s.opts.session)
    names = s.session_names()
    s.out(docs, "\n".join([grant_line(d, names) for d in docs] or ["没有已批准的补时。"]))
    return 0


def run_propose(s: Session) -> int:
    from kd.core.extratime import TIER_LABELS  # noqa: PLC0415

    p = s.core.extra_time.proposal(s.opts.room, s.opts.session)
    text = "考场 {}：已确认的情况共损失 {} 分钟，已补时 {} 分钟，建议再补 {} 分钟（{}）。".format(
        p.room, p.lost_min, p.granted_min, p.proposed_min, TIER_LABELS[p.tier])
    s.out(p.as_dict(), text)
    return 0


def run_grant(s: Session) -> int:
    opts = s.opts
    doc = s.core.extra_time.grant(opts.room, opts.session, opts.minutes, actor=s.actor, reason=opts.reason,
                                  confirmed=opts.confirm, incident_ids=opts.incident)
    s.out(doc, "已批准：" + grant_line(doc, s.session_names()))
    return 0
