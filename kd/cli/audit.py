"""``audit``: show the audit log, or check its hash chain (``--verify``)."""

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
        broken = audit.verify()
        if broken is not None:
            raise UserError(
                "审计记录第 {} 行校验失败：该行或其前一行被修改或删除。".format(broken),
                "请保留 audit.log 原样并联系技术服务单位。",
            )
        s.out({"ok": True}, "审计记录完整。")
        return 0
    entries = list(audit.entries())[-opts.last:]
    s.out(entries, "\n".join("{time} {actor} {action} {details}".format(**e) for e in entries) or "（无记录）")
    return 0
