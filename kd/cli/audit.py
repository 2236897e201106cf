"""``audit``: show the audit log, or check its hash chain (``--verify``).

The log is ``audit.log`` and the rotated files kept next to it (``audit.log.<n>``,
kd.store.audit). ``--last N`` lists the newest N entries across them. ``--verify`` checks
the chain over the kept files, oldest first, and prints 审计日志完整, then (only when they
apply) which files were checked, that older files were rotated away by the size cap
(the chain is then checked from the oldest kept entry), rotated files that are not on
the chain (e.g. kept from before a 系统恢复), and one line per torn record sealed after a
power cut or a full disk (not tampering). When the chain does not hold it exits 2 naming
the file and the first broken line (or the file missing in the middle of the chain).
``--json`` prints ``{"ok", "sealed", "torn_tail", "files", "sealed_rotated",
"rotated_away", "first_seq", "unlinked"}`` (sealed lines and ``torn_tail`` are lines of
``audit.log``; ``sealed_rotated`` lists ``{"file", "line"}``).
"""

import argparse
import re
from typing import Any, List

from kd.cli import Session, arg, command
from kd.core.labels import shown
from kd.errors import UserError

CURRENT = "audit.log"
TORN = "断电或磁盘满造成的残缺记录"
#: a time in a record's details (ISO 8601, kd/formats/timeutil.py)
ISO_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d(?::\d\d(?:\.\d+)?)?(?:[+-]\d\d:\d\d|Z)?")


def register(commands: Any) -> None:
    command(commands, "audit", "查看操作日志（审计记录）", run,
            arg("--verify", action="store_true", help="校验审计记录的哈希链（含已轮转的审计日志文件）"),
            arg("--last", type=int, default=50, help="显示最后 N 条（默认 50）"), asks=False)


def _details(details: Any) -> str:
    """An entry's details as text, each ISO time in it as people read it (``--json``: the record itself)."""
    return ISO_TIME.sub(lambda m: shown(m.group(0)), str(details))


def _where(name: str, line: int) -> str:
    return "第 {} 行".format(line) if name == CURRENT else "{} 第 {} 行".format(name, line)


def run(s: Session) -> int:
    opts: argparse.Namespace = s.opts
    audit = s.ctx.audit
    if opts.verify:
        report = audit.verify_report()
        name = report.broken_file or CURRENT
        if report.missing is not None:
            raise UserError(
                "审计记录 {} 校验失败：它接续的审计日志文件 {} 缺失，而更早的审计日志文件仍在。".format(
                    name, report.missing),
                "请保留数据目录中的 audit.log* 文件原样并联系技术服务单位。",
            )
        if report.broken is not None:
            raise UserError(
                "审计记录{}校验失败：该行或其前一行被修改或删除。".format(
                    ("" if name == CURRENT else " ") + _where(name, report.broken)),
                "请保留数据目录中的 audit.log* 文件原样并联系技术服务单位。",
            )
        lines: List[str] = ["审计日志完整。"]
        if len(report.files) > 1:
            lines.append("已校验 {} 个文件：{}。".format(len(report.files), "、".join(report.files)))
        if report.rotated_away is not None:
            lines.append("更早的审计日志文件（{} 及之前）已因容量上限被删除；哈希链从第 {} 条记录开始校验。".format(
                report.rotated_away, report.first_seq))
        if report.unlinked:
            lines.append("以下审计日志文件不在当前哈希链上（例如系统恢复之前留下的），未校验：{}。".format(
                "、".join(report.unlinked)))
        lines += ["{}：{}，已封存。".format(_where(f, n), TORN) for f, n in report.sealed_rotated]
        lines += ["第 {} 行：{}，已封存。".format(n, TORN) for n in report.sealed]
        if report.torn_tail is not None:
            lines.append("第 {} 行：{}，将在下次写入时封存。".format(report.torn_tail, TORN))
        s.out({"ok": True, "sealed": report.sealed, "torn_tail": report.torn_tail, "files": list(report.files),
               "sealed_rotated": [{"file": f, "line": n} for f, n in report.sealed_rotated],
               "rotated_away": report.rotated_away, "first_seq": report.first_seq,
               "unlinked": list(report.unlinked)}, "\n".join(lines))
        return 0
    entries = audit.last_entries(opts.last)
    s.out(entries, "\n".join("{} {} {} {}".format(shown(e["time"]), e["actor"], e["action"], _details(e["details"]))
                             for e in entries) or "（无记录）")
    return 0
