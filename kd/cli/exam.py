"""考前 commands (manual §3.1-§3.3): ``load``, ``rooms``, ``export-site-info``,
``restore-registration``, ``revoke``, ``authorize``.

Each is one call of the site core's ``loading`` / ``registration`` / ``authorization``
service; the output is the service's snapshot (``--json``) or a plain table. Every one
asks the administrator's password first (``kd.cli.authorize``): they change state or
export data, and ``rooms`` prints the rooms' registration codes.
"""

import argparse
import sys
from typing import Any, Dict, List

from kd.cli import Session, arg, command
from kd.core.labels import mark, shown
from kd.core.model import LAN_PORT
from kd.errors import UserError


def register(commands: Any) -> None:
    command(commands, "load", "导入考务：从监控平台载入考场数据包，或 --zip 手工导入", run_load,
            arg("--zip", metavar="F", help="手工导入的考场数据包文件（.zip）"))
    command(commands, "rooms", "考场列表（导入考务与考场注册的表格）", run_rooms)
    command(commands, "export-site-info", "导出考点信息（考点信息表 HTML 与 .KDINFO）到文件夹", run_export,
            arg("dir", metavar="DIR", help="目标文件夹（如 U 盘）"),
            arg("--address", metavar="A", help="考点服务器地址（默认：本机地址）"),
            arg("--port", type=int, default=LAN_PORT, help="端口（默认 {}）".format(LAN_PORT)))
    command(commands, "restore-registration", "恢复注册：从考点信息备份文件（.KDINFO）恢复", run_restore,
            arg("file", metavar="F", help="考点信息备份文件（*.KDINFO）"),
            arg("--yes", action="store_true", help="确认断开会失去或改变注册的已连接考场（先显示将发生的变化）"))
    command(commands, "revoke", "撤销考场注册", run_revoke, arg("room", metavar="ROOM", help="考场代码"))
    command(commands, "authorize", "考试授权：从监控平台获取，或 --ptq 手工导入", run_authorize,
            arg("--ptq", metavar="F", help="考试授权文件（.PTQ）"),
            arg("--session", metavar="N", help="场次（默认：全部场次）"))


def _yes(flag: Any) -> str:
    return mark(flag)


def _table(header: List[str], rows: List[List[Any]]) -> str:
    cells = [header] + [["" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells)


def _loading_text(snap: Dict[str, Any]) -> str:
    if not snap["loaded"]:
        return "尚未导入考务。"
    rows = [[r["code"], r["session_count"], shown(r["loaded_at"]), _yes(r["verified"]), shown(r["verified_at"])]
            for r in snap["rooms"]]
    return "{}\n考场数据包发布时间：{}  载入时间：{}（{}）  校验通过：{}".format(
        _table(snap["columns"], rows), shown(snap["publish_time"]), shown(snap["loaded_at"]),
        "联网载入" if snap["source"] == "online" else "手工导入", shown(snap["verified_at"]))


def _registration_text(snap: Dict[str, Any]) -> str:
    rows = [[r["code"], r["reg_code"], r["ip"] or "", _yes(r["data_imported"]), r["note"]] for r in snap["rooms"]]
    return "{}\n已注册考场{}个，未注册考场{}个".format(_table(snap["columns"], rows), snap["registered"],
                                                    snap["unregistered"])


def _authorization_text(snap: Dict[str, Any]) -> str:
    rows = [[r["id"], r["name"], shown(r["start"]), "{} 分钟".format(r["duration_min"]), _yes(r["authorized"]),
             _yes(r["verified"])] for r in snap["sessions"]]
    return _table(snap["columns"], rows)


def run_load(s: Session) -> int:
    opts: argparse.Namespace = s.opts
    svc = s.core.loading
    snap = svc.import_zip(opts.zip, s.actor) if opts.zip else svc.load_online(s.actor)
    s.out(snap, _loading_text(snap))
    return 0


def run_rooms(s: Session) -> int:
    loading = s.core.loading.snapshot()
    registration = s.core.registration.snapshot()
    s.out({"loading": loading, "registration": registration},
          "导入考务\n{}\n\n考场注册\n{}".format(_loading_text(loading), _registration_text(registration)))
    return 0


def run_export(s: Session) -> int:
    opts: argparse.Namespace = s.opts
    paths = s.core.registration.export_site_info(opts.dir, s.actor, opts.address, opts.port)
    s.out(paths, "考点信息表：{}\n考点信息备份文件：{}".format(paths["html"], paths["kdinfo"]))
    return 0


def run_restore(s: Session) -> int:
    """Show what 恢复注册 changes (the same preview as the page), then apply it.

    A connected room that would lose or change its registration needs ``--yes``: the
    confirmation is the preview's, so a change after the preview is refused by the core.
    """
    preview = s.core.registration.restore_preview(s.opts.file)
    print("\n".join(preview["lines"]), file=sys.stderr if getattr(s.opts, "json", False) else sys.stdout)
    if preview["at_risk"] and not s.opts.yes:
        raise UserError("恢复注册会断开已连接的考场：{}。".format("、".join(preview["at_risk"])),
                        "请核对备份文件；确认无误后加 --yes 重新执行。")
    snap = s.core.registration.restore(s.opts.file, s.actor, confirm=preview["confirm"])
    s.out(snap, "已恢复注册。\n" + _registration_text(snap))
    return 0


def run_revoke(s: Session) -> int:
    doc = s.core.registration.revoke(s.opts.room, s.actor)
    s.out(doc, "已撤销考场 {} 的注册。".format(doc["code"]))
    return 0


def run_authorize(s: Session) -> int:
    opts: argparse.Namespace = s.opts
    svc = s.core.authorization
    snap = svc.import_ptq(opts.ptq, s.actor, opts.session) if opts.ptq else svc.authorize_online(opts.session, s.actor)
    s.out(snap, _authorization_text(snap))
    return 0
