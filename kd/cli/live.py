"""``seal-check``, ``verify``, ``monitor``, ``outbox``: 封场检测, 授权验证, 考场监控 and the report outbox.

- ``seal-check [--min-free-gb G] [--json]``: run 封场检测, print every item; a passing
  check enqueues its report (sent by a running instance or ``outbox --send``). Exit 0 when the
  check passes, 1 when an item failed (the items say why and what to do).
- ``verify --session N [--file F.KDV] [--json]``: 授权验证 of a session, online or from a file.
- ``monitor [--session N] [--json]``: the §4.3 table (this process receives no
  heartbeats, so it shows the persisted state: every room as not connected); a room with
  补时 reads ``否（补时）`` in 是否结束考试 and a last line gives each such room's expected end.
- ``outbox [--send] [--json]``: the stored reports and their states; ``--send`` first
  tries to deliver every pending one.

``monitor`` and ``outbox`` only read (no password); ``seal-check``, ``verify`` and
``outbox --send`` ask the administrator's password first (``kd.cli.authorize``).
"""

import argparse
from typing import Any, Dict, List

from kd.cli import Session, arg, command


def register(commands: Any) -> None:
    command(commands, "seal-check", "封场检测", run_seal,
            arg("--min-free-gb", type=float, default=2.0, help="磁盘剩余空间下限（GB，默认 2）"))
    command(commands, "verify", "授权验证（联网或导入授权验证文件）", run_verify,
            arg("--session", required=True, help="场次编号"),
            arg("--file", help="授权验证文件（.KDV）；不给则联网验证"))
    command(commands, "monitor", "考场监控", run_monitor,
            arg("--session", help="场次编号（默认当前场次）"), asks=False)
    command(commands, "outbox", "查看待上报/已上报的状态报告", run_outbox,
            arg("--send", action="store_true", help="先尝试上报所有待上报的报告"),
            stdin_then="只有 --send 需要密码")


def _seal_text(result: Dict[str, Any]) -> str:
    from kd.core import labels  # noqa: PLC0415
    from kd.core.states import CheckStatus  # noqa: PLC0415

    lines = []
    for item in result["items"]:
        lines.append("{} {}：{}".format(labels.check_mark(item["status"]), item["label"], item["detail"]))
        if item.get("remedy"):
            lines.append("    处理：" + item["remedy"])
    lines.append("封场检测{}（{}）".format(labels.label(CheckStatus.PASS if result["passed"] else CheckStatus.FAIL),
                                      labels.shown(result["checked_at"])))
    if result.get("report_label"):
        lines.append("状态上报：" + result["report_label"])
    return "\n".join(lines)


def run_seal(s: Session) -> int:
    from kd.core.seal import GB  # noqa: PLC0415

    opts: argparse.Namespace = s.opts
    service = s.core.seal
    result = service.run(s.actor, min_free_bytes=int(opts.min_free_gb * GB))
    s.out(result, _seal_text(result))
    return 0 if result["passed"] else 1


def run_verify(s: Session) -> int:
    from kd.core.labels import VERIFICATION_SOURCE_LABELS, session_label, shown  # noqa: PLC0415

    opts: argparse.Namespace = s.opts
    service = s.core.verification
    if opts.file:
        row = service.import_verification(opts.file, opts.session, s.actor)
    else:
        row = service.verify_online(opts.session, s.actor)
    s.out(row, "{}授权验证通过：{}（{}）。".format(
        session_label(row["id"], row.get("name")), shown(row["verified_at"]),
        VERIFICATION_SOURCE_LABELS.get(row.get("verification_source") or "", "")))
    return 0


def _monitor_text(snap: Dict[str, Any]) -> str:
    from kd.core.labels import UNPERMITTED_LABEL, session_label, shown  # noqa: PLC0415
    from kd.core.livesnapshots import extra_time_line, row_cell  # noqa: PLC0415
    from kd.core.monitor import COLUMNS  # noqa: PLC0415

    if snap.get("session") is None:
        return "尚未导入考务，没有场次。"
    session = snap["session"]
    lines: List[str] = ["场次：{}  开考时间：{}".format(session_label(session["id"], session.get("name")),
                                                    shown(session.get("start"))),
                        " | ".join(label for _, label in COLUMNS)]
    for row in snap["rows"]:
        lines.append(" | ".join(row_cell(row, key) for key, _ in COLUMNS))
    totals = snap["totals"]
    lines.append(" | ".join([totals.get("room", "")] + [str(totals.get(key, "")) for key, _ in COLUMNS[1:]]))
    if snap.get("status_report", {}).get("label"):
        lines.append("考场状态上报：" + snap["status_report"]["label"])
    unpermitted = [row["room"] for row in snap["rows"] if row.get("unpermitted")]
    if unpermitted:
        lines.append("{}：考场 {}".format(UNPERMITTED_LABEL, "、".join(unpermitted)))
    extra = extra_time_line(snap["rows"])
    if extra:
        lines.append(extra)
    return "\n".join(lines)


def run_monitor(s: Session) -> int:
    snap = s.core.monitor.snapshot(s.opts.session)
    s.out(snap, _monitor_text(snap))
    return 0


def run_outbox(s: Session) -> int:
    from kd.core.labels import session_label, shown  # noqa: PLC0415

    outbox = s.core.outbox
    sent = outbox.deliver_once() if s.opts.send else 0
    snap = outbox.snapshot()
    snap["sent_now"] = sent
    names = s.session_names()
    lines = ["{created_at} {kind_label} {session} {room} {state_label} {extra}".format(
        created_at=shown(r["created_at"]), kind_label=r["kind_label"],
        session=session_label(r["session_id"], names) if r["session_id"] else "",
        room=r["room_code"] or "", state_label=r["state_label"],
        extra=shown(r["sent_at"]) or r["last_error"] or "") for r in snap["items"]]
    counts = snap["counts"]
    lines.append("待上报 {} 条，已上报 {} 条，上报失败 {} 条。".format(
        counts["pending"], counts["sent"], counts["failed"]))
    s.out(snap, "\n".join(lines))
    return 0
