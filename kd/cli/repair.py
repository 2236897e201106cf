"""``main.py repair-db NAME``: the explicit way out when a data file is missing or was rolled back.

A data folder refuses to open a store whose files were deleted, or whose newer
generation is gone (kd.store.datafolder, kd.store.atomic). When putting the file back
and 系统恢复 are not possible, the administrator may accept the store as it is: the
remaining older generation, or an empty store when nothing is left (for ``settings``
that means the initial account admin/888 and no site code). The command says what is
wrong and what accepting means, asks to type the store's name, then opens it with
``accept`` (one new generation is written, so the store opens normally afterwards) and
records ``store.repaired`` in the audit log. It runs before the dongle gate and the
site are opened, since those need the stores. See docs/storage.md "数据文件缺失或被回退".

``repair-db exam`` and ``repair-db runtime`` ask the administrator's password (checked
against the settings store alone, ``kd.cli.settings_accounts``, with the login's back-off)
once the problem is confirmed to be that store and before the confirmation; with
``--password-stdin`` it is stdin's first line and the confirmation (``--stdin``) the
second. ``repair-db settings`` cannot ask one (the accounts are in the store being
repaired): it takes the typed store name only, refuses ``--password-stdin``, and its
audit entry says ``"password_checked": false``.
"""

import argparse
import sys
from typing import Any

from kd.cli import actor_of, arg, check_folder_password, command, needs_password
from kd.errors import StoreError, UserError
from kd.store.database import DB_FILES

EMPTY_MEANS = {
    "settings": "账号恢复为初始账号 admin / 888，考点代码和考试模式需重新设置",
    "exam": "已导入的考务数据清空，需重新“导入考务”",
    "runtime": "考场注册、授权、监控和回收记录清空（已回收的结果包文件仍保留在 spool 中）",
}


def register(commands: Any) -> None:
    command(commands, "repair-db", "数据文件缺失或被回退时，确认按现有文件打开（丢失的更改无法找回）", run_repair,
            arg("name", choices=DB_FILES, help="数据库名称"),
            arg("--stdin", action="store_true",
                help="从标准输入读取确认（一行：数据库名称；与 --password-stdin 同用时在密码的下一行）"),
            json_option=False, stdin_then="第二行是确认（--stdin）；修复 settings 时不询问密码",
            handler_key="folder_handler")


def run_repair(opts: argparse.Namespace, data_dir: str) -> int:
    from kd.store.datafolder import DataFolder  # noqa: PLC0415

    name = opts.name
    checked = needs_password(opts)
    if not checked and opts.password_stdin:
        raise UserError("repair-db settings 不询问管理员密码：账号保存在要修复的 settings 数据库中，无法校验。",
                        "请去掉 --password-stdin（标准输入只需一行：数据库名称）。")
    folder = DataFolder(data_dir)
    folder.finish_interrupted()
    try:
        stores = folder.open_stores()
    except StoreError as e:
        problem = e
    else:
        stores.close()
        print("数据库 {} 完好，无需修复。".format(name))
        return 0
    if name not in str(problem.cause) and name not in str(problem.detail or ""):
        print("数据库 {} 不是出问题的那一个：{}".format(name, problem.cause), file=sys.stderr)
        return 2
    user = check_folder_password(opts, data_dir) if checked else actor_of(opts)
    print("问题：{}".format(problem.cause))
    print("确认后将按现有文件打开数据库 {}：现存的较早版本将成为当前版本；若文件已全部缺失，则新建空数据库"
          "（{}）。丢失的更改无法找回。".format(name, EMPTY_MEANS[name]))
    print("如能从回收站或副本找回文件，或用“系统恢复”恢复最近的系统备份，请不要继续。")
    print("确认请输入数据库名称 {}：".format(name), end="", flush=True)
    answer = (sys.stdin.readline() if opts.stdin else input()).strip()
    if answer != name:
        raise UserError("未确认，数据库未修改。", "如需修复，请重新运行并输入数据库名称。")
    stores = folder.open_stores(accept=(name,))
    try:
        audit = folder.open_audit()
        audit.append(user or "admin", "store.repaired", {"store": name, "problem": problem.cause,
                                                          "detail": problem.detail or "", "password_checked": checked})
    finally:
        stores.close()
    print("已按现有文件打开数据库 {}，操作已记入审计日志。".format(name))
    return 0
