"""``proof sheet --session N [DIR]``: the 考点数据上报确认单 on the command line (issue 16).

Writes the session's 确认单 (A4 HTML, ``kd.core.proofsheet``) of the proof the upload kept
(``core.upload.proofs.sheet``): into ``DIR`` when given, else ``DATA/print/``; prints the
path, the proof's SHA-256 and the verdict. It writes a file with the site's exam data, so
it asks the administrator's password like the other exports. Exit 0 when the proof
verifies, 2 otherwise (the sheet is still written: it lists the failing checks), and a
``UserError`` (exit 2) when no proof was built yet. Added to ``proof``'s actions by
``kd.cli.proof`` (``add_sheet``).
"""

from typing import Any

from kd.cli import Session, add_json, add_password


def add_sheet(actions: Any) -> None:
    """Add ``sheet`` to the ``proof`` command's actions (an argparse sub-parsers object)."""
    p = actions.add_parser("sheet", help="生成本场次的考点数据上报确认单（A4 网页，供打印签字）")
    p.add_argument("--session", required=True, help="场次编号")
    p.add_argument("dir", metavar="DIR", nargs="?", default=None,
                   help="目标文件夹（不给则写入数据目录的 print 文件夹）")
    p.set_defaults(action_handler=run_sheet, writes=True)
    add_json(p)
    add_password(p)


def run_sheet(s: Session) -> int:
    flow = s.core.upload.proofs
    path = flow.sheet(s.opts.session, s.opts.dir)
    summary = flow.status(s.opts.session) or {}
    data = {"path": path, "sha256": summary.get("sha256"), "ok": bool(summary.get("ok")),
            "message": summary.get("message")}
    s.out(data, "已写入确认单：{}\n证明摘要（SHA-256）：{}\n{}{}".format(
        path, data["sha256"], "证明有效：" if data["ok"] else "证明未通过：", data["message"]))
    return 0 if data["ok"] else 2
