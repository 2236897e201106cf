"""Login, settings and system management commands (screens.md §登录, §参数设置; manual §6).

``login``, ``setup``, ``passwd``, ``backup``, ``restore``, ``to-formal``, ``init``,
``status``: each one call of the site core's ``accounts`` / ``backup`` / ``system`` service. Passwords are
read with ``getpass`` or, for scripts, one per line from stdin; they never appear on the
command line. The acting account is ``--user`` (default admin); an account that still
has the initial password may only ``login`` and ``passwd`` (and the read-only ``status``).

``setup``, ``backup``, ``restore``, ``to-formal`` and ``init`` ask the acting account's
password first (``kd.cli.authorize``); ``login`` and ``passwd`` check a password
themselves; ``status`` asks none. The stdin lines, in order:

- ``login --password-stdin``: the password;
- ``passwd --stdin``: 原密码 (its password check), 新密码, 确认新密码;
- ``setup --password-stdin --platform-password-stdin``: the administrator's password,
  then the platform's; ``--platform-password-stdin`` alone: the platform's (the
  administrator's is typed on the terminal);
- ``to-formal --password-stdin`` without ``--yes``: the password, then ``yes``.
"""

import sys
from typing import Any, Dict, List

from kd.cli import USER, Session, arg, command, read_line, read_secret
from kd.core.labels import shown
from kd.errors import UserError


def register(commands: Any) -> None:
    command(commands, "login", "登录检查（首次登录须修改初始密码）", run_login,
            USER, arg("--password-stdin", action="store_true", help="从标准输入读取密码（一行）"), asks=False)
    command(commands, "setup", "系统设置：考点代码与考试模式（考点代码设置后不能修改）", run_setup,
            arg("--site", required=True, metavar="CODE", help="考点代码，如 11003"),
            arg("--mode", required=True, choices=("formal", "mock"), help="formal 正式考试 / mock 模拟考试"),
            arg("--platform-url", metavar="U", help="监控平台地址"),
            arg("--platform-password-stdin", action="store_true",
                help="从标准输入读取监控平台密码（一行；与 --password-stdin 同用时在管理员密码的下一行）"),
            arg("--platform-key", action="append", metavar="B64", help="信任的监控平台公钥（Base64，可重复）"),
            stdin_then="与 --platform-password-stdin 同用时，第二行是监控平台密码")
    command(commands, "passwd", "修改密码（原密码、新密码、确认新密码）", run_passwd,
            USER, arg("--stdin", action="store_true",
                      help="从标准输入读取三行：原密码、新密码、确认新密码（原密码即本命令的密码校验）"), asks=False)
    command(commands, "backup", "系统备份：写入 .bak 备份文件到文件夹", run_backup,
            arg("dir", metavar="DIR", help="目标文件夹（如 U 盘）"),
            arg("--note", default="", metavar="T", help="备注"))
    command(commands, "restore", "系统恢复：从 .bak 备份文件恢复（之后须重新启动）", run_restore,
            arg("file", metavar="F", help="系统备份文件（*.bak）"))
    command(commands, "to-formal", "模考转正考：清除模拟考试数据，切换为正式考试", run_to_formal,
            arg("--yes", action="store_true", help="不再询问，直接执行"),
            stdin_then="未给 --yes 时，第二行是确认（yes）")
    command(commands, "init", "系统初始化：清除考点代码和全部考试数据（保留账号密码）", run_init,
            arg("--confirm", required=True, metavar="SITECODE", help="输入本系统的考点代码以确认"))
    command(commands, "status", "系统状态：考点代码、考试模式、考务与各项计数", run_status, asks=False)


def _terminal() -> bool:
    return sys.stdin is not None and sys.stdin.isatty()


def run_login(s: Session) -> int:
    opts = s.opts
    user = opts.user or ("admin" if opts.password_stdin or not _terminal() else input("账号：").strip())
    svc = s.core.accounts
    out = svc.login(user, read_secret("密码", opts.password_stdin))
    out["needs_setup"] = svc.needs_setup()
    lines = ["登录成功：{}".format(out["user"])]
    if out["must_change"]:
        lines.append("首次登录：请先修改初始密码（passwd），否则不能进行其他操作。")
    if out["needs_setup"]:
        lines.append("尚未完成系统设置：请设置考点代码和考试模式（setup --site CODE --mode formal|mock）。")
    s.out(out, "\n".join(lines))
    return 0


def run_setup(s: Session) -> int:
    from kd.core.labels import MODE_LABELS  # noqa: PLC0415

    opts = s.opts
    password = read_line("监控平台密码") if opts.platform_password_stdin else None
    out = s.core.accounts.setup(opts.site, opts.mode, s.actor, platform_url=opts.platform_url,
                                      platform_password=password, platform_keys=opts.platform_key)
    s.out(out, "系统设置完成：考点代码 {}，{}。".format(out["site_code"], MODE_LABELS[out["mode"]]))
    return 0


def run_passwd(s: Session) -> int:
    opts = s.opts
    user = s.actor
    old = read_secret("原密码", opts.stdin, "--stdin")
    new = read_secret("新密码", opts.stdin, "--stdin")
    confirm = read_secret("确认新密码", opts.stdin, "--stdin")
    out = s.core.accounts.change_password(user, old, new, confirm)
    s.out(out, "密码已修改：{}".format(user))
    return 0


def run_backup(s: Session) -> int:
    path = s.core.backup.backup(s.opts.dir, s.opts.note, s.actor)
    lines = ["系统备份完成（已校验）：{}".format(path)] + ["注意：" + w for w in path.warnings]
    s.out(path.as_dict(), "\n".join(lines))
    return 0


def run_restore(s: Session) -> int:
    out = s.core.system.restore(s.opts.file, s.actor)
    s.out(out, "系统已从备份恢复（考点 {}，备份时间 {}，备注：{}）。\n请重新启动考点管理系统。".format(
        out["site_code"], shown(out["created_at"]), out["note"] or "无"))
    return 0


def run_to_formal(s: Session) -> int:
    if not s.opts.yes:
        question = ("模考转正考将清除模拟考试的全部考试数据（考场、注册、授权、回收的结果），"
                    "保留考点代码、账号和设置。确认执行请输入 yes：")
        if s.opts.password_stdin or not _terminal():  # a script: the line after the password
            print(question, file=sys.stderr, flush=True)
            answer = read_line("确认（yes）").strip().lower()
        else:
            answer = input(question).strip().lower()
        if answer != "yes":
            raise UserError("已取消模考转正考。", "")
    out = s.core.system.to_formal(s.actor)
    s.out(out, "已切换为正式考试，模拟考试数据已清除。请重新启动考点管理系统。")
    return 0


def run_init(s: Session) -> int:
    out = s.core.system.initialize(s.opts.confirm, s.actor)
    s.out(out, "系统已初始化（考点代码与考试数据已清除，账号密码保留）。请重新启动考点管理系统。")
    return 0


def _status_text(snap: Dict[str, Any]) -> str:
    lines: List[str] = [
        "考点代码：{}    考试模式：{}".format(snap["site_code"] or "未设置", snap["mode_label"]),
        "考试名称：{}".format(snap["exam_name"] or "（尚未导入考务）"),
    ]
    if snap["package_loaded"]:
        lines += [
            "考场：{}（已注册 {}，已导入数据 {}）".format(snap["rooms"], snap["rooms_registered"],
                                                   snap["rooms_data_imported"]),
            "场次：{}（已授权 {}，已验证 {}）".format(snap["sessions"], snap["sessions_authorized"],
                                                snap["sessions_verified"]),
            "回收结果：{}（已上报 {}）    待发送报告：{}".format(snap["results_recovered"], snap["results_uploaded"],
                                                      snap["outbox_pending"]),
        ]
    lines.append("退出系统：{}".format("允许" if snap["exit_allowed"] else snap["exit_reason"]))
    return "\n".join(lines)


def run_status(s: Session) -> int:
    snap = s.core.system.snapshot()
    s.out(snap, _status_text(snap))
    return 0
