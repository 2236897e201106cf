"""``main.py timeline [--session N] [--json]``: 考点时间线 (the day's deadlines and the open alarms).

Read-only (no password: ``OPEN_COMMANDS``): it builds the timeline now
(``TimelineService.snapshot``) and lists the open alarms; it never ticks, so it opens or
closes no alarm and writes nothing. When the window or ``--headless`` holds the data
folder it runs there over the control channel (``kd.cli.run``), so it sees that
instance's live heartbeats and its open alarms; otherwise it reads the folder (the open
alarms as last stored in runtime ``checks/alarms``; no heartbeats, so no room is lost).
Text shows times as people read them (``kd.core.labels.shown``), the clock items' measured
offsets (``skew_text``: ``时钟偏差考场：R1（+300 秒）``, ``监控平台 +2 秒，机考锁 -1 秒``) and the
rooms with 补时 of an item not done (``extra_time_text``); ``--json`` prints
``TimelineService.snapshot`` as it is (ISO 8601 times). docs/timeline.md has both.
"""

from typing import Any, Dict, List, Optional

from kd.cli import Session, arg, command


def register(commands: Any) -> None:
    command(commands, "timeline", "考点时间线（各场次的时间节点、状态与告警）", run_timeline,
            arg("--session", help="场次编号（默认全部场次）"), asks=False)


def timeline_text(snap: Dict[str, Any], names: Optional[Dict[str, str]] = None) -> str:
    """The snapshot as the administrator reads it (one block per session, then the open alarms)."""
    from kd.core.labels import session_label, shown  # noqa: PLC0415
    from kd.core.timelinebuild import extra_time_text, skew_text  # noqa: PLC0415

    names = names or {}
    lines: List[str] = ["考点时间线（{}）  未处理告警：{} 个".format(shown(snap["at"]), snap["open_alarms"])]
    if not snap["items"]:
        lines.append("尚未导入考务，没有场次。")
    current: Any = object()
    for item in snap["items"]:
        if item["session"] != current:
            current = item["session"]
            lines.append("")
            lines.append("考点" if current is None else "场次：{}".format(session_label(current, names)))
        text = "  {}  {}  {}".format(shown(item["due_at"]), item["state_label"], item["label"])
        clocks = skew_text(item["id"], [(e["source"], e["offset_s"]) for e in item.get("skew") or []],
                           item["rooms_left"])
        if item["completed_at"]:
            text += "（完成于 {}）".format(shown(item["completed_at"]))
        elif item["rooms_left"] and not clocks:
            rooms = item["rooms_left"]
            what = "失去连接的考场" if item["id"] == "connected" else "未完成的考场"
            text += "（{}：{}{}）".format(what, "、".join(rooms[:10]), "等 {} 个".format(len(rooms)) if len(rooms) > 10
                                         else "")
        if clocks:
            text += "（{}）".format(clocks)
        extra = extra_time_text((e["room"], e["minutes"], e["expected_end"]) for e in item.get("extra_time") or [])
        if extra and item["state"] != "done":
            text += "（{}）".format(extra)
        lines.append(text)
    if snap["alarms"]:
        lines.append("")
        lines.append("未处理告警：")
        for alarm in snap["alarms"]:
            lines.append("  {}  {}：{}".format(shown(alarm["opened_at"]), alarm["kind_label"], alarm["label"]))
    return "\n".join(lines)


def run_timeline(s: Session) -> int:
    snap = s.core.timeline.snapshot(s.opts.session)
    s.out(snap, timeline_text(snap, s.session_names()))
    return 0
