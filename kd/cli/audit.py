"""``audit``: show the audit log, or check its hash chain (``--verify``).

``--verify`` prints 审计日志完整 and one line per torn record sealed after a power cut or a
full disk (not tampering), and exits 2 naming the first broken line when the chain does
not hold (kd.store.audit).
"""

import argparse
from typing import Any

from kd.cli import Session, add_json
from kd.errors import UserError


def register(commands: Any) -> None:
    p = commands.add_parser("audit", help="查看操作日志（审计记录）")
    p.add_argument("--verify", action="store_true", help="校验审计记录的哈希链")
    p.add_argument("--last", type=int, default=50, help="显示最后 N 条（默认 50）")
    add_json(p)
    p.set_defaults(handler=run)


def run(s: Session) -> int:
    opts: argparse.Namespace = s.opts
    audit = s.ctx.audit
    if opts.verify:
        report = audit.verify_report()
        if report.broken is not None:
            raise UserError(
                "审计记录第 {} 行校验失败：该行或其前一行被修改或删除。".format(report.broken),
                "请保留 audit.log 原样并联系技术服务单位。",
            )
        lines = ["审计日志完整。"]
        lines += ["第 {} 行：断电或磁盘满造成的残缺记录，已封存。".format(n) for n in report.sealed]
        if report.torn_tail is not None:
            lines.append("第 {} 行：断电或磁盘满造成的残缺记录，将在下次写入时封存。".format(report.torn_tail))
        s.out({"ok": True, "sealed": report.sealed, "torn_tail": report.torn_tail}, "\n".join(lines))
        return 0
    entries = list(audit.entries())[-opts.last:]
    s.out(entries, "\n".join("{time} {actor} {action} {details}".format(**e) for e in entries) or "（无记录）")
    return 0
