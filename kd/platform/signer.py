"""Offline platform files for 手工导入 tests and training, signed with the simulator's keys.

    python -m kd.platform.signer --data DIR --out OUT [--what package,authorization,verification]
                                 [--session ID ...] [--site 11003 --rooms 30 ...  (first run only)]

Writes into OUT, from the simulator data folder DIR (made on first use, like the
simulator does; see ``kd.platform.simdata``)::

    <site>-package.zip            the site package (考场数据包), as the platform serves it
    <site>-<session>.PTQ          考试授权 of each session
    <site>-<session>.KDV          授权验证 of each session (valid from two hours before the start)
    platform.pub                  the public key that signed them (trust it in drill mode)

Each file is written as ``.part`` and renamed, so OUT never holds a half file. Prints one
line per file written.
"""

import argparse
import os
import shutil
import sys
from typing import Callable, Dict, List, Optional

from kd.fileio import write_file_durably
from kd.platform.simdata import SimData

WHATS = ("package", "authorization", "verification")


def write_offline_files(data: SimData, out: str, whats: List[str], sessions: Optional[List[str]] = None,
                        say: Callable[[str], None] = lambda line: None) -> List[str]:
    """Write the chosen offline files of ``data`` into ``out``; the paths written.

    Raises ``KeyError`` for an unknown session id and ``ValueError`` for an unknown kind.
    """
    for what in whats:
        if what not in WHATS:
            raise ValueError("unknown file kind: " + what)
    ids = sessions or [s["id"] for s in data.site["sessions"]]
    names: Dict[str, str] = {}
    for sid in ids:
        session = data.session(sid)
        if session is None:
            raise KeyError(sid)
        names[sid] = session["name"]
    os.makedirs(out, exist_ok=True)
    written: List[str] = []
    code = data.site_code

    def put(name: str, payload: bytes, label: str) -> None:
        path = os.path.join(out, name)
        write_file_durably(path, payload)
        written.append(path)
        say("{}  {}  ({} 字节)".format(label, path, len(payload)))

    if "package" in whats:
        put(f"{code}-package.zip", data.package_bytes(), "考场数据包")
    for sid in ids:
        name = names[sid]
        if "authorization" in whats:
            put(f"{code}-{sid}.PTQ", data.authorization(sid), "考试授权 " + name)
        if "verification" in whats:
            put(f"{code}-{sid}.KDV", data.verification(sid), "授权验证 " + name)
    pub = os.path.join(out, "platform.pub")
    shutil.copyfile(data.public_key_path, pub)
    written.append(pub)
    say(f"平台公钥  {pub}  (key id {data.key_id})")
    return written


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kd.platform.signer",
                                     description="生成手工导入用的离线文件（考场数据包、考试授权、授权验证）")
    parser.add_argument("--data", required=True, help="监控平台模拟器的数据目录（密钥与演示考点）")
    parser.add_argument("--out", required=True, help="输出目录")
    parser.add_argument("--what", default=",".join(WHATS), help="要生成的文件：package,authorization,verification")
    parser.add_argument("--session", action="append", help="场次编号（可重复；默认全部场次）")
    parser.add_argument("--site", default="11003", help="考点代码（仅首次创建数据目录时生效）")
    parser.add_argument("--rooms", type=int, default=30)
    parser.add_argument("--sessions", type=int, default=2)
    parser.add_argument("--candidates", type=int, default=40)
    parser.add_argument("--first-start-in", type=int, default=60, metavar="MIN")
    parser.add_argument("--duration", type=int, default=90, metavar="MIN")
    parser.add_argument("--room-kb", type=int, default=1024)
    args = parser.parse_args(argv)
    data = SimData(args.data, site_code=args.site, rooms=args.rooms, sessions=args.sessions,
                   candidates=args.candidates, first_start_in=args.first_start_in, duration=args.duration,
                   room_kb=args.room_kb)
    whats = [w.strip() for w in args.what.split(",") if w.strip()]
    try:
        write_offline_files(data, args.out, whats, args.session, say=print)
    except KeyError as e:
        sys.stderr.write(f"场次不存在：{e.args[0]}\n")
        return 2
    except ValueError as e:
        sys.stderr.write(f"{e}\n")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
