"""考点信息表 (``考点信息表(<site>).KDINFO``): the registration backup, signed by the site's dongle.

The file is one UTF-8 JSON object in canonical form (``signing.canonical_json``: sorted
keys, no spaces, non-ASCII as is) and nothing else (no BOM, no trailing newline)::

    {"format": "kd-kdinfo/1",
     "body": {"format_version": 1,
              "site_code": "11003",
              "manifest_sha256": "<64 hex: the loaded package's manifest.json>",
              "created_at": "2026-11-26T08:10:00+08:00",
              "rooms": [{"code": "11003001", "reg_code": "FBLDUFBO",
                         "ip": "192.168.1.21" | null, "registered_at": <time> | null}, ...]},
     "signature": {"lock_id": "KDLOCK-11003-01", "clock_ms": 1795000000000,
                   "signature": "<base64 of 64 bytes>"}}

``digest = SHA-256(canonical_json(body) as UTF-8)``. ``signature`` is the dongle's
answer to ``CHAL`` with ``digest`` as the 32-byte nonce: an Ed25519 signature over
``challenge_message(lock_id, digest, clock_ms)`` (docs/lock-protocol.md) by the key the
site package names in ``lock.public_key``. Whoever holds the package can check a KDINFO;
nobody without the dongle can make one.

``parse_kdinfo`` checks the structure and that the bytes are exactly the canonical form
(so any changed byte, even whitespace, is refused); checking the signature (with the
dongle port) and the binding to the site and the loaded package is the caller's job
(``check_binding`` here, the signature in ``kd.core.registration``).
"""

import base64
import binascii
import hashlib
import json
from typing import Any, Dict, List, NamedTuple, Optional

from kd.errors import FormatError
from kd.formats.schema import Check
from kd.formats.signing import canonical_json

FORMAT = "kd-kdinfo/1"
FORMAT_VERSION = 1
SUFFIX = ".KDINFO"
WHAT = "考点信息备份文件"
REMEDY = "请选择本考点在当前考务数据下导出的、未经修改的考点信息备份文件（*.KDINFO）。"
MAX_BYTES = 1024 * 1024
MAX_ROOMS = 1000
SIGNATURE_BYTES = 64


class KdInfo(NamedTuple):
    """A structurally valid KDINFO: its body, the body's digest and the dongle signature parts."""

    body: Dict[str, Any]
    digest: bytes
    lock_id: str
    clock_ms: int
    signature: bytes

    @property
    def rooms(self) -> List[Dict[str, Any]]:
        return self.body["rooms"]


def file_name(site_code: str) -> str:
    """``考点信息表(<site>).KDINFO``."""
    return "考点信息表({}){}".format(site_code, SUFFIX)


#: the loader's checks (a ``Check`` holds no state: one serves every load)
CHECK = Check(WHAT, REMEDY)


def make_body(site_code: str, manifest_sha256: str, created_at: str, rooms: List[Dict[str, Any]]) -> Dict[str, Any]:
    """The body to sign; ``rooms`` items keep only ``code``, ``reg_code``, ``ip``, ``registered_at``."""
    return {
        "format_version": FORMAT_VERSION,
        "site_code": site_code,
        "manifest_sha256": manifest_sha256,
        "created_at": created_at,
        "rooms": [{"code": r["code"], "reg_code": r["reg_code"], "ip": r.get("ip"),
                   "registered_at": r.get("registered_at")} for r in rooms],
    }


def body_digest(body: Dict[str, Any]) -> bytes:
    """SHA-256 of the body's canonical JSON: what the dongle signs."""
    return hashlib.sha256(canonical_json(body).encode("utf-8")).digest()


def build_kdinfo(body: Dict[str, Any], lock_id: str, clock_ms: int, signature: bytes) -> bytes:
    """The file bytes for a body and the dongle's signature over ``body_digest(body)``."""
    _validate_body(body, Check(WHAT, ""))
    doc = {"format": FORMAT, "body": body,
           "signature": {"lock_id": lock_id, "clock_ms": int(clock_ms),
                         "signature": base64.b64encode(signature).decode("ascii")}}
    return canonical_json(doc).encode("utf-8")


def _validate_body(body: Any, check: Check) -> None:
    check.obj(body, "body")
    check.integer(body.get("format_version"), "body.format_version", FORMAT_VERSION, FORMAT_VERSION)
    check.code(body.get("site_code"), "body.site_code")
    check.sha256(body.get("manifest_sha256"), "body.manifest_sha256")
    check.time(body.get("created_at"), "body.created_at")
    for field, room, _code in check.keyed(body.get("rooms"), "body.rooms", MAX_ROOMS, 1):
        reg = check.text(room.get("reg_code"), field + ".reg_code", 8)
        if len(reg) != 8 or not (reg.isascii() and reg.isalpha() and reg.isupper()):
            raise check.field_error(field + ".reg_code", "应为 8 个大写字母")
        ip = room.get("ip")
        if ip is not None:
            check.text(ip, field + ".ip", 64)
        if room.get("registered_at") is not None:
            check.time(room.get("registered_at"), field + ".registered_at")
        if set(room) - {"code", "reg_code", "ip", "registered_at"}:
            raise check.field_error(field, "含未知字段")


def parse_kdinfo(data: bytes) -> KdInfo:
    """Parse and check a KDINFO file's bytes (structure and canonical form, not the signature).

    Raises ``FormatError`` for anything else than an unchanged KDINFO file.
    """
    check = CHECK
    if not isinstance(data, (bytes, bytearray)):
        raise check.refuse("内容不是字节数据")
    if len(data) > MAX_BYTES:
        raise check.refuse("文件过大（{} 字节，上限 {} 字节）".format(len(data), MAX_BYTES))
    try:
        doc = json.loads(bytes(data).decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise check.refuse("不是考点信息备份文件（无法解析）") from None
    check.obj(doc, "文件")
    if doc.get("format") != FORMAT:
        raise check.refuse("不是考点信息备份文件（格式标记为 {!r}）".format(doc.get("format"))[:120])
    if canonical_json(doc).encode("utf-8") != bytes(data):
        raise check.refuse("文件内容被修改过（不是导出时的原样）")
    body = doc.get("body")
    _validate_body(body, check)
    sig = check.obj(doc.get("signature"), "signature")
    lock_id = check.code(sig.get("lock_id"), "signature.lock_id")
    clock_ms = check.integer(sig.get("clock_ms"), "signature.clock_ms", 0, 2 ** 53)
    text = sig.get("signature")
    try:
        raw = base64.b64decode(str(text).encode("ascii"), validate=True)
    except (ValueError, binascii.Error, UnicodeEncodeError):
        raw = b""
    if not isinstance(text, str) or len(raw) != SIGNATURE_BYTES:
        raise check.field_error("signature.signature", "不是有效的签名")
    if set(doc) != {"format", "body", "signature"}:
        raise check.refuse("含未知字段")
    return KdInfo(body, body_digest(body), lock_id, clock_ms, raw)


def check_binding(info: KdInfo, site_code: Optional[str], manifest_sha256: Optional[str]) -> None:
    """Refuse a KDINFO of another site or made under another site package (``FormatError``)."""
    check = CHECK
    if info.body["site_code"] != site_code:
        raise check.refuse("考点代码不符（文件为 {}，本考点为 {}）".format(info.body["site_code"], site_code))
    if info.body["manifest_sha256"] != manifest_sha256:
        raise FormatError(
            "考点信息备份文件不是在当前已载入的考场数据包下导出的，不能用于恢复注册。",
            "请先载入导出该文件时所用的考场数据包，或选择在当前考务数据下导出的考点信息备份文件（*.KDINFO）。",
            detail="kdinfo manifest {} != loaded {}".format(info.body["manifest_sha256"], manifest_sha256))


def signature_error(detail: str) -> FormatError:
    """The refusal for a KDINFO whose dongle signature does not verify."""
    return FormatError("考点信息备份文件校验失败：签名无效（文件被修改过，或不是本考点机考锁签发的）。", REMEDY,
                       detail=detail)
