"""``proof export`` / ``proof verify``: the 考点数据完整性证明 on the command line (issue 16).

- ``proof export --session N DIR [--json]``: build the session's proof from the site
  (``kd.core.proof.ProofService.export``: gathered, checked, signed by the site's dongle,
  kept in the data folder) and write ``考点数据完整性证明(<site>-<session>).json`` into
  ``DIR``; prints the path, the proof's hash and the verdict. It exports candidates'
  tickets to a file, so it asks the administrator's password like the other exports.
  Exit 0 when the written proof verifies, 2 otherwise (the file is still written: it
  records which check failed).
- ``proof verify FILE [--trust KEY ...] [--json]``: check a proof with nothing but the
  platform's public key (``kd.formats.proof.verify``). ``KEY``: the key as base64, or a
  file holding it (base64 text or the 32 raw bytes); without ``--trust``, the trusted
  platform keys of the data folder's settings (``settings/site.trusted_keys``), read
  from the store's files without opening the site. No password, no dongle, no site, no
  instance lock (it reads only the file and those keys, so it also runs while the
  window is open). Exit 0 only when the signature and every check hold, 2 otherwise,
  printing the first failure (``attendance: 考场 … 准考证号 … …``) and the others after it.
- ``proof sheet --session N [DIR]``: the 考点数据上报确认单 (``kd.cli.proofsheet``).
"""

import base64
import binascii
import os
from typing import Any, Dict, List, Optional

from kd.cli import Session, add_json, add_password, command
from kd.errors import UserError


def register(commands: Any) -> None:
    top = command(commands, "proof", "考点数据完整性证明：导出（签名）或验证", run_action,
                  json_option=False, asks=False)
    sub = top.add_subparsers(dest="action", metavar="ACTION")
    sub.required = True
    p = sub.add_parser("export", help="生成本场次的考点数据完整性证明（机考锁签名）并写入文件夹")
    p.add_argument("--session", required=True, help="场次编号")
    p.add_argument("dir", metavar="DIR", help="目标文件夹")
    p.set_defaults(action_handler=run_export, writes=True)
    add_json(p)
    add_password(p)
    p = sub.add_parser("verify", help="验证考点数据完整性证明文件（只读该文件，无需密码）")
    p.add_argument("file", metavar="FILE", help="证明文件（考点数据完整性证明(<考点>-<场次>).json）")
    p.add_argument("--trust", action="append", default=[], metavar="KEY",
                   help="监控平台公钥（base64，或存放公钥的文件；可重复）；不给则用数据目录中受信任的监控平台公钥")
    p.set_defaults(file_handler=run_verify, writes=False)
    add_json(p)
    from kd.cli.proofsheet import add_sheet  # noqa: PLC0415 - proof sheet: the 确认单 (kd.cli.proofsheet)

    add_sheet(sub)


def run_action(s: Session) -> int:
    return int(s.opts.action_handler(s))


def verdict_data(verdict: Any) -> Dict[str, Any]:
    first = verdict.first
    return {"ok": verdict.ok, "message": verdict.message(), "first": first.as_dict() if first else None,
            "failures": [f.as_dict() for f in verdict.failures]}


def verdict_text(verdict: Any, limit: int = 10) -> str:
    """The first failure (or the summary), then up to ``limit`` more failures."""
    lines = [("验证通过：" if verdict.ok else "验证未通过：") + verdict.message()]
    rest = list(verdict.failures[1:])
    for failure in rest[:limit]:
        lines.append("  另：" + failure.text())
    if len(rest) > limit:
        lines.append("  另有 {} 项未通过".format(len(rest) - limit))
    return "\n".join(lines)


def run_export(s: Session) -> int:
    from kd.formats import proof as P  # noqa: PLC0415

    path = s.core.proof.export(s.opts.session, s.opts.dir, s.actor)
    verdict = s.core.proof.verify_file(path)
    with open(path, "rb") as f:
        digest = P.document_sha256(f.read())
    data = dict(verdict_data(verdict), path=path, sha256=digest)
    s.out(data, "已写入：{}\n证明摘要（SHA-256）：{}\n{}".format(path, digest, verdict_text(verdict)))
    return 0 if verdict.ok else 2


# -- verify: no site --------------------------------------------------------------------------
def _key_bytes(text: str) -> bytes:
    raw: Optional[bytes] = None
    if os.path.isfile(text):
        with open(text, "rb") as f:
            content = f.read(4096)
        raw = content if len(content) == 32 else None
        text = content.decode("ascii", "replace").strip() if raw is None else text
    if raw is None:
        try:
            raw = base64.b64decode(text.encode("ascii"), validate=True)
        except (binascii.Error, ValueError, UnicodeEncodeError):
            raw = None
    if raw is None or len(raw) != 32:
        raise UserError("无法识别的监控平台公钥：{}".format(text[:60]),
                        "--trust 应为 32 字节 Ed25519 公钥的 base64 编码，或存放该公钥的文件。")
    return raw


def folder_keys(data_dir: str) -> List[bytes]:
    """The trusted platform keys of ``settings/site`` in ``data_dir``, read from the store's files (no write)."""
    from kd.site import trusted_keys  # noqa: PLC0415
    from kd.store.atomic import SLOTS, CorruptFile, decode  # noqa: PLC0415
    from kd.store.datafolder import DataFolder  # noqa: PLC0415

    best: Optional[Dict[str, Any]] = None
    best_gen = -1
    base = DataFolder(data_dir).store_path("settings")
    for slot in SLOTS:
        try:
            with open(base + slot, "rb") as f:
                gen, tables, _body = decode(f.read())
        except (OSError, CorruptFile):
            continue
        if gen > best_gen:
            best_gen, best = gen, tables
    site: Dict[str, Any] = {}
    for doc in ((best or {}).get("settings") or {}).values():
        if isinstance(doc, dict) and doc.get("_key") == "site":
            site = doc
    keys = trusted_keys(site)
    return [keys.get(kid) for kid in keys.key_ids()]


def run_verify(opts: Any, data_dir: str) -> int:
    import json  # noqa: PLC0415
    import sys  # noqa: PLC0415

    from kd.formats import proof as P  # noqa: PLC0415
    from kd.formats.signing import TrustedKeys  # noqa: PLC0415

    keys = [_key_bytes(k) for k in opts.trust] if opts.trust else folder_keys(data_dir)
    if not keys:
        raise UserError("数据目录 {} 中没有受信任的监控平台公钥。".format(data_dir),
                        "请用 --trust 指定监控平台公钥（base64 或公钥文件），"
                        "或用 --data-dir 指定已设置的考点数据目录。")
    try:
        with open(opts.file, "rb") as f:
            data = f.read(P.MAX_BYTES + 1)
    except OSError as e:
        raise UserError("无法读取证明文件：{}".format(opts.file), "请检查文件路径后重试。", detail=repr(e)) from e
    verdict = P.verify(data, TrustedKeys(keys))
    if getattr(opts, "json", False):
        print(json.dumps(verdict_data(verdict), ensure_ascii=False))
    else:
        print(verdict_text(verdict))
    sys.stdout.flush()
    return 0 if verdict.ok else 2
