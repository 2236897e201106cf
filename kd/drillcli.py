"""``main.py drill``: the command line of the drill (``kd.drill``): its options, the report printed.

``--json`` prints the report (``kd.drill``'s module docstring) as one line; without it, one
line of Chinese text and each failure. The work folder is removed unless ``--keep`` or a
failure. Exit 0 only when the report's ``failures`` is empty, else 1 (2: bad options).
"""

import argparse
import json
import os
import shutil
import sys
from typing import Any, Callable

from kd.drill import DEFAULTS, DrillOptions, run_drill


def _positive(kind: Callable[[str], Any], low: float, high: float) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError("not a number: {!r}".format(text)) from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError("must be between {} and {}".format(low, high))
        return value

    return parse


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``drill`` to ``main.py``'s subcommands."""
    p = subparsers.add_parser("drill", help="演练：在本机用模拟的监控平台、机考锁和监考机走完整个考试日",
                              description="演练 (drill): a whole exam day on this machine, in a temp folder")
    p.add_argument("--rooms", type=_positive(int, 1, 999), required=True, help="考场数（模拟的监考机数）")
    p.add_argument("--candidates", type=_positive(int, 1, 99), default=DEFAULTS.candidates,
                   help="每考场每场次考生数")
    p.add_argument("--result-mb", type=_positive(float, 0.001, 2048), default=DEFAULTS.result_mb,
                   help="每个结果包的作答数据量（MB）")
    p.add_argument("--sessions", type=_positive(int, 1, 8), default=DEFAULTS.sessions, help="场次数")
    p.add_argument("--mode", choices=("mock", "formal"), default=DEFAULTS.mode, help="考试模式（默认 mock）")
    p.add_argument("--timeout", type=_positive(float, 10, 86400), default=DEFAULTS.timeout,
                   help="整个演练的时限（秒）")
    p.add_argument("--keep", action="store_true", help="保留演练的工作目录（失败时总是保留）")
    p.add_argument("--no-upload", type=_positive(int, 0, 999), default=0, metavar="K",
                   help="前 K 个模拟监考机不上传考试结果（演练以失败结束，完整性证明指出这些考场）")
    p.add_argument("--outage", type=_positive(int, 0, 999), default=0, metavar="K",
                   help="前 K 个模拟监考机在考试中断网（模拟时间 90 秒）后重连：考点应告警、起草情况记录并补时")
    p.add_argument("--skew", type=_positive(int, 0, 999), default=0, metavar="K",
                   help="前 K 个模拟监考机的时钟快 5 分钟：考点应发出时钟偏差告警")
    p.add_argument("--json", action="store_true", help="以一行 JSON 输出报告")
    return p


def options_of(opts: argparse.Namespace) -> DrillOptions:
    return DrillOptions(rooms=opts.rooms, candidates=opts.candidates, result_mb=opts.result_mb,
                        sessions=opts.sessions, mode=opts.mode, timeout=opts.timeout,
                        no_upload=getattr(opts, "no_upload", 0), outage=getattr(opts, "outage", 0),
                        skew=getattr(opts, "skew", 0))


def run_cli(opts: argparse.Namespace, work_dir: str) -> int:
    """``main.py drill``: run in ``work_dir``, print the report, remove the folder unless kept."""
    report = run_drill(options_of(opts), work_dir)
    if opts.keep or not report["ok"]:
        report["work_dir"] = os.path.abspath(work_dir)
    else:
        shutil.rmtree(work_dir, ignore_errors=True)
        report["proof_files"] = []  # they were in the work folder
    if opts.json:
        print(json.dumps(report, ensure_ascii=False), flush=True)
    else:
        print(("演练{}：{} 个考场，{} 个场次；结果 应回收 {} / 已回收 {} / 已上报 {} / 平台收到 {}；"
               "回执验证 {}；用时 {} 秒").format(
            "成功" if report["ok"] else "失败", report["rooms"], report["sessions"], report["results_expected"],
            report["results_received"], report["results_uploaded"], report["results_at_platform"],
            report["receipts_verified"], report["seconds"]))
        injected = report.get("injected") or {}
        if injected.get("outage") or injected.get("skew"):
            alarms = report.get("alarms") or {}
            print("考中监测：模拟断网 {} 个 → 失去连接告警 {} 个、情况记录 {} 条、补时 {} 分钟；"
                  "模拟时钟偏差 {} 个 → 时钟偏差告警 {} 个，最大偏差 {} 秒".format(
                      injected.get("outage", 0), alarms.get("room_lost", 0), len(report.get("incidents") or []),
                      sum(g["minutes"] for g in report.get("extra_time_granted") or []), injected.get("skew", 0),
                      alarms.get("clock_skew", 0), report.get("clock_skew_max_s")))
        for failure in report["failures"]:
            print("失败：" + failure)
        if report["work_dir"]:
            print("工作目录：" + report["work_dir"])
        sys.stdout.flush()
    return 0 if report["ok"] else 1
