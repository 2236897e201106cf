"""``recover``, ``results``, ``backup-external``, ``upload``: 数据回收 and 考后上报.

- ``recover F [--json]``: 回收 by hand: import a proctor's exported result package.
  A package for a room and session already recovered with another hash is refused
  (exit 2), the recovered one is kept.
- ``results [--session N] [--json]``: the §5.1 table (all sessions by default) with
  the 人数统计 totals and any refused (conflicting) packages.
- ``backup-external DIR [--json]``: step 1 of 考后上报: copy every recovered package and
  a manifest into a new folder in DIR (the USB drive), read them back and check them.
- ``upload [--session N] [--json]``: step 2: upload what is not yet uploaded (running it
  again after a cut is 续报); prints the §5.2 table afterwards.

``results`` only reads (no password); the other three ask the administrator's password
first (``kd.cli.authorize``).

Reports the platform must get (recovery_status, upload_status) are only enqueued; the
command never waits for the platform. They stay pending in the data folder's outbox
until a running instance (GUI or ``--headless``) sends them, or ``outbox --send``.
"""

import argparse
from typing import Any, Dict, List

from kd.cli import Session, arg, command
from kd.core.labels import SessionNames, result_label, shown


def register(commands: Any) -> None:
    command(commands, "recover", "数据回收：手工导入监考机导出的考场结果包", run_recover,
            arg("file", help="考场结果包文件（.zip）"))
    command(commands, "results", "数据回收表（各考场各场次的回收情况）", run_results,
            arg("--session", help="场次编号（默认全部）"), asks=False)
    command(commands, "backup-external", "考后上报第一步：备份到外部存储（U盘/移动硬盘）", run_backup,
            arg("folder", help="外部存储上的文件夹"))
    command(commands, "upload", "考后上报第二步：上报考试数据（再次执行即续报）", run_upload,
            arg("--session", help="场次编号（默认全部）"))


def _services(s: Session) -> Any:
    core = s.core
    return core.outbox, core.recovery, core.upload


def results_text(snap: Dict[str, Any], names: SessionNames = None) -> str:
    """The §5.1 table as text (per-subject cells as 科目1/科目2 when the session has two).

    ``names``: how the refused packages' sessions are named (``kd.core.labels.session_label``).
    """
    from kd.core.recovery import COLUMNS, COUNT_KEYS  # noqa: PLC0415

    subjects = snap["subject_columns"]
    head: List[str] = []
    for key, label in COLUMNS:
        head.append(label)
        if key in COUNT_KEYS and subjects:
            head.extend("{}{}".format(label, sub) for sub in subjects)
    lines = [" | ".join(head)]

    def cells(row: Dict[str, Any], first: List[str]) -> str:
        out = list(first)
        for key in COUNT_KEYS:
            out.append(str(row[key]))
            if subjects:
                out.extend(str(sub[key]) for sub in row["subjects"])
        return " | ".join(out)

    for row in snap["rows"]:
        line = cells(row, [row["room"], row["session_name"]])
        lines.append("{} | {} | {}".format(line, row["situation"], row["report"]))
    totals = snap["totals"]
    lines.append("{} | 已回收 {} / {} 个考场".format(cells(totals, [totals["label"], ""]), totals["recovered"],
                                                  totals["rooms"]))
    for c in snap["conflicts"]:
        lines.append("已拒绝：{} 的结果包 {}…（与已回收的 {}… 不同），共 {} 次，最近 {}".format(
            result_label(c["room"], c["session"], names), c["sha256"][:12], c["kept_sha256"][:12], c["times"],
            shown(c["last_at"])))
    report = snap.get("recovery_report")
    if report:
        lines.append("回收状态上报：{}（{}）".format("已上报" if report.get("state") == "sent" else "待上报",
                                              shown(report.get("sent_at") or report.get("completed_at"))))
    return "\n".join(lines)


def upload_text(snap: Dict[str, Any]) -> str:
    """The §5.2 table as text."""
    from kd.core.upload import COLUMNS  # noqa: PLC0415

    lines = [" | ".join(label for _, label in COLUMNS)]
    for row in snap["sessions"]:
        lines.append(" | ".join([row["session_name"]] + [str(row[key]) for key, _ in COLUMNS[1:]]))
    ext = snap.get("external")
    if ext:
        lines.append("外部存储备份：{}（{}，{}）".format(ext["folder"], shown(ext["verified_at"]),
                                                "有效" if ext.get("valid") else "已失效，请重新备份"))
    if snap["not_backed_up"]:
        lines.append("尚未备份的结果包：{} 个，请先执行 backup-external。".format(len(snap["not_backed_up"])))
    return "\n".join(lines)


def run_recover(s: Session) -> int:
    _outbox, recovery, _upload = _services(s)
    got = recovery.import_package(s.opts.file, s.actor)
    counts = got["counts"]
    text = "{} {}：参考 {} 人，缺考 {} 人，回收 {} 人。".format(
        result_label(got["room"], got["session"], s.session_names()),
        "已回收过（相同文件），无变化" if got["duplicate"] else "回收成功",
        counts["present"], counts["absent"], counts["collected"])
    s.out(got, text)
    return 0


def run_results(s: Session) -> int:
    _outbox, recovery, _upload = _services(s)
    snap = recovery.snapshot(s.opts.session)
    s.out(snap, results_text(snap, s.session_names()))
    return 0


def run_backup(s: Session) -> int:
    _outbox, _recovery, upload = _services(s)
    done = upload.backup_external(s.opts.folder, s.actor)
    lines = ["备份完成！{} 个结果包（{} 字节）已写入并校验：{}".format(len(done["files"]), done["bytes"],
                                                                 done["folder"])]
    lines.extend("注意：" + w for w in done["warnings"])
    s.out(done, "\n".join(lines))
    return 0


def run_upload(s: Session) -> int:
    opts: argparse.Namespace = s.opts
    _outbox, _recovery, upload = _services(s)
    result = upload.upload(opts.session, s.actor)
    lines = ["本次上报 {} 个，之前已上报 {} 个。".format(len(result["uploaded"]), result["already"])]
    lines.extend("注意：" + w for w in result["warnings"])
    from kd.core.labels import session_label  # noqa: PLC0415
    from kd.core.proofflow import proof_line  # noqa: PLC0415

    lines.extend("{}：{}".format(session_label(p["session"], s.session_names().get(p["session"])), proof_line(p)[0])
                 for p in result.get("proofs") or [])
    lines.append(upload_text(upload.snapshot()))
    s.out(result, "\n".join(lines))
    return 0
