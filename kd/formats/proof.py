"""考点数据完整性证明 (completeness proof, ``kd-proof/1``): its checks, its signature, its verifier.

One proof per session: the site's signed account of every candidate of the roster, every
room's result package, its external backup copy and its platform receipt
(docs/formats.md "考点数据完整性证明" is the reference, precise enough for an independent
verifier). This module is pure: it needs no site, only the document and, to verify, the
platform's public keys (``TrustedKeys``).

File (UTF-8 JSON, any whitespace; ``encode`` writes it as one canonical line)::

    {"format": "kd-proof/1",
     "body": {"format_version": 1, "kind": "completeness_proof", "site_code", "session_id",
              "session_name", "created_at", "package": {"manifest", "manifest_sha256",
              "publish_time"}, "roster": [...], "rooms": [...], "audit": {"seq", "head"},
              "checks": [...]},
     "signature": {"lock_id", "clock_ms", "signature"}}

``digest = SHA-256(canonical(body))`` (``canonical``: ``signing.canonical_json`` as UTF-8);
``signature`` is the dongle's answer to ``CHAL`` with ``digest`` as the nonce: Ed25519 over
``challenge_message(lock_id, digest, clock_ms)`` (docs/lock-protocol.md) by the key the
embedded, platform-signed package manifest names in ``lock``. So the platform key alone
verifies it: manifest → dongle key → dongle signature → the checks, recomputed from the
document's own data (``run_checks``) → equal to the recorded ``checks``.

``verify(data, trusted)`` returns a ``Verdict``: ok, and the failures in that order, the
first named as ``<check id>: <message>`` (``attendance: 考场 001 准考证号 … …``).
"""

import base64
import binascii
import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Set, Tuple

from kd.errors import FormatError
from kd.formats.documents import KIND_RECEIPT
from kd.formats.package import KIND as PACKAGE_KIND
from kd.formats.signing import TrustedKeys, canonical_json, verify_document, verify_raw

FORMAT = "kd-proof/1"
FORMAT_VERSION = 1
KIND = "completeness_proof"
WHAT = "考点数据完整性证明"
MAX_BYTES = 64 * 1024 * 1024
SIGNATURE_BYTES = 64
#: docs/lock-protocol.md ``CHAL`` (kd.lock.protocol.challenge_message; formats/ imports no lock code)
CHALLENGE_DOMAIN = b"kaodian-lock-challenge-v1\0"
LOCK_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,32}\Z")

PRESENT, ABSENT = "参考", "缺考"
STATUSES = (PRESENT, ABSENT)
DECIDED = ("confirmed", "dismissed")

#: stages of ``run_checks``: before the upload (no receipts yet; backup only if done) and final
PREVIEW, FINAL = "preview", "final"

# check ids, in the order they run (docs/formats.md)
FORMAT_ID = "format"
MANIFEST = "manifest"
SIGNATURE = "signature"
ROSTER = "roster"
ROOMS = "rooms"
RESULT = "result"
ATTENDANCE = "attendance"
BACKUP = "backup"
RECEIPT = "receipt"
RESULT_HASH = "result_hash"
INCIDENTS = "incidents"
RECORDED = "checks"
ROOM_CHECKS = (RESULT, ATTENDANCE, BACKUP, RECEIPT, RESULT_HASH, INCIDENTS)

REMEDY_RECOVER = "请在“数据回收”中回收该考场本场次的结果包（监考机上传或手工导入），再重新生成证明。"
REMEDY_RESULT = "请与该考场监考员核对结果包，必要时在“数据回收”中重新回收，再重新生成证明。"
REMEDY_BACKUP = "请在“考后上报”第一步重新备份到外部存储（U 盘）并等待回读校验通过。"
REMEDY_UPLOAD = "请在“考后上报”中重新上报（续报）该考场，收到上报回执后再生成证明。"
REMEDY_INCIDENT = "请在“考中 → 考场情况”中确认或驳回这条记录，再重新生成证明。"
REMEDY_FILE = "请向考点索取原始证明文件，或在考点机上重新导出；文件不能被修改。"


@dataclass(frozen=True)
class Check:
    """One check's result: ``id`` (see the module), ``room``/``ticket`` it concerns (or None)."""

    id: str
    ok: bool
    room: Optional[str] = None
    ticket: Optional[str] = None
    message: str = ""

    def as_dict(self) -> Dict[str, Any]:
        return {"id": self.id, "ok": self.ok, "room": self.room, "ticket": self.ticket, "message": self.message}

    def text(self) -> str:
        """``<id>: <message>`` (what the CLI prints)."""
        return "{}: {}".format(self.id, self.message or "通过")


@dataclass(frozen=True)
class Verdict:
    """What ``verify`` found: ``ok`` only when the signature and every check hold."""

    ok: bool
    failures: Tuple[Check, ...]
    body: Optional[Dict[str, Any]] = None

    @property
    def first(self) -> Optional[Check]:
        return self.failures[0] if self.failures else None

    def message(self) -> str:
        """The first failure as ``<id>: <message>``, or the summary of a good proof."""
        if self.first is not None:
            return self.first.text()
        body = self.body or {}
        return "证明有效：考点 {}，场次 {}，{} 个考场，{} 名考生，签名与全部检查均通过".format(
            body.get("site_code"), body.get("session_id"), len(body.get("rooms") or []), len(body.get("roster") or []))


# -- names and bytes -------------------------------------------------------------------

def file_name(site_code: str, session_id: str) -> str:
    """``考点数据完整性证明(<site>-<session>).json``."""
    return "{}({}-{}).json".format(WHAT, site_code, session_id)


def canonical(body: Mapping[str, Any]) -> bytes:
    """The signed bytes of a proof body: ``canonical_json(body)`` as UTF-8."""
    return canonical_json(body).encode("utf-8")


def digest(body: Mapping[str, Any]) -> bytes:
    """The 32 bytes the dongle signs: SHA-256 of ``canonical(body)``."""
    return hashlib.sha256(canonical(body)).digest()


def seal(body: Dict[str, Any], sign: Callable[[bytes], Sequence[Any]]) -> Dict[str, Any]:
    """The whole document: ``body`` with the dongle's signature over ``digest(body)``.

    ``sign(digest)`` returns (lock_id, clock_ms, 64-byte signature), e.g. the core's
    ``Dongle.sign`` (a ``DongleSignature``).
    """
    lock_id, clock_ms, signature = sign(digest(body))
    return {"format": FORMAT, "body": body,
            "signature": {"lock_id": lock_id, "clock_ms": int(clock_ms),
                          "signature": base64.b64encode(bytes(signature)).decode("ascii")}}


def encode(doc: Mapping[str, Any]) -> bytes:
    """The file bytes: the canonical JSON of the whole document (one line) and a newline."""
    return (canonical_json(doc) + "\n").encode("utf-8")


def document_sha256(data: bytes) -> str:
    """The proof's hash as printed on the 确认单: SHA-256 of ``canonical(body)``, hex."""
    return digest(_parse(data)["body"]).hex()


# -- the checks ------------------------------------------------------------------------

def manifest_body(body: Mapping[str, Any], trusted: TrustedKeys) -> Tuple[Optional[Dict[str, Any]], Check]:
    """The embedded package manifest, verified with ``trusted``, and the ``manifest`` check."""
    package = body.get("package")
    if not isinstance(package, dict) or not isinstance(package.get("manifest"), str):
        return None, _fail(MANIFEST, None, None, "证明中没有考场数据包清单：" + REMEDY_FILE)
    raw = package["manifest"].encode("utf-8")
    try:
        head = verify_document(raw, PACKAGE_KIND, trusted, "考场数据包清单")
    except FormatError as e:
        return None, _fail(MANIFEST, None, None, "{}：无法用监控平台公钥验证（{}）".format("考场数据包清单", e.cause))
    problem = None
    if hashlib.sha256(raw).hexdigest() != package.get("manifest_sha256"):
        problem = "清单摘要与 manifest_sha256 不符"
    elif head.get("site_code") != body.get("site_code"):
        problem = "清单的考点代码 {} 与证明的考点代码 {} 不符".format(head.get("site_code"), body.get("site_code"))
    elif head.get("publish_time") != package.get("publish_time"):
        problem = "清单的发布时间与证明不符"
    elif not any(isinstance(s, dict) and s.get("id") == body.get("session_id") for s in head.get("sessions") or []):
        problem = "场次 {} 不在考场数据包中".format(body.get("session_id"))
    elif not isinstance(head.get("lock"), dict):
        problem = "清单没有机考锁"
    if problem:
        return None, _fail(MANIFEST, None, None, "考场数据包清单不符：{}。{}".format(problem, REMEDY_FILE))
    return head, Check(MANIFEST, True)


def run_checks(body: Mapping[str, Any], trusted: TrustedKeys, stage: str = FINAL,
               manifest: Optional[Mapping[str, Any]] = None) -> List[Check]:
    """Every check of the proof, recomputed from ``body``'s own data, in the documented order.

    ``manifest``: the package manifest body when the caller already holds it verified (the
    site's preview); otherwise the embedded manifest is verified with ``trusted`` and its
    ``manifest`` check comes first. ``stage`` ``preview``: no receipts are expected yet and
    the backup is checked only when some room has one. The body must be structurally valid
    (``verify`` checks the structure first); a failure is one ``Check`` with ``ok`` False
    naming the room and ticket, an ok room check is one ``Check`` per room.
    """
    out: List[Check] = []
    if manifest is None:
        head, check = manifest_body(body, trusted)
        out.append(check)
        manifest = head or {}
    rooms_in_package = {r.get("code") for r in manifest.get("rooms") or [] if isinstance(r, dict)}
    roster = body.get("roster") or []
    rooms = body.get("rooms") or []
    out.extend(_roster(roster, rooms_in_package))
    owner: Dict[str, str] = {}
    by_room: Dict[str, List[str]] = {}
    for entry in roster:
        owner.setdefault(entry["ticket"], entry["room"])
        by_room.setdefault(entry["room"], []).append(entry["ticket"])
    out.extend(_rooms(rooms, by_room, rooms_in_package))
    backup_done = stage == FINAL or any(room.get("backup") is not None for room in rooms)
    per_room: Dict[str, List[Check]] = {cid: [] for cid in ROOM_CHECKS}
    for room in sorted(rooms, key=lambda r: r["code"]):
        code = room["code"]
        result = room.get("result")
        if result is None:
            per_room[RESULT].append(_fail(RESULT, code, None,
                                          "考场 {} 没有回收的结果包。{}".format(code, REMEDY_RECOVER)))
        else:
            per_room[RESULT].append(Check(RESULT, True, code))
            per_room[ATTENDANCE].extend(_attendance(code, room.get("attendance") or [], by_room.get(code, []), owner))
            if backup_done:
                per_room[BACKUP].append(_backup(code, room.get("backup")))
            receipt_body = None
            if stage == FINAL:
                receipt_check, receipt_body = _receipt(code, room.get("receipt"), body, trusted)
                per_room[RECEIPT].append(receipt_check)
            per_room[RESULT_HASH].append(_result_hash(code, result, room.get("backup"), receipt_body))
        per_room[INCIDENTS].extend(_incidents(code, room.get("incidents") or []))
    for cid in ROOM_CHECKS:
        out.extend(per_room[cid])
    return out


def _fail(cid: str, room: Optional[str], ticket: Optional[str], message: str) -> Check:
    return Check(cid, False, room, ticket, message)


def _roster(roster: List[Dict[str, Any]], rooms_in_package: Set[Any]) -> List[Check]:
    out = []
    seen: Set[str] = set()
    for entry in roster:
        ticket, room = entry["ticket"], entry["room"]
        if ticket in seen:
            out.append(_fail(ROSTER, room, ticket, "名单中准考证号 {} 出现多次。{}".format(ticket, REMEDY_FILE)))
        elif room not in rooms_in_package:
            out.append(_fail(ROSTER, room, ticket, "名单中准考证号 {} 的考场 {} 不在考场数据包中。{}".format(
                ticket, room, REMEDY_FILE)))
        seen.add(ticket)
    return out or [Check(ROSTER, True)]


def _rooms(rooms: List[Dict[str, Any]], by_room: Mapping[str, List[str]], rooms_in_package: Set[Any]) -> List[Check]:
    out = []
    codes = [room["code"] for room in rooms]
    for code in sorted(set(codes)):
        if codes.count(code) > 1:
            out.append(_fail(ROOMS, code, None, "考场 {} 在证明中出现多次。{}".format(code, REMEDY_FILE)))
        if code not in rooms_in_package:
            out.append(_fail(ROOMS, code, None, "考场 {} 不在考场数据包中（多出的考场）。{}".format(code, REMEDY_FILE)))
        elif code not in by_room:
            out.append(_fail(ROOMS, code, None, "考场 {} 本场次没有考生，不应有结果（多出的考场）。{}".format(
                code, REMEDY_FILE)))
    for code in sorted(set(by_room) - set(codes)):
        out.append(_fail(ROOMS, code, None, "考场 {} 有 {} 名考生，但证明中没有这个考场。{}".format(
            code, len(by_room[code]), REMEDY_RECOVER)))
    return out or [Check(ROOMS, True)]


def _attendance(code: str, attendance: List[Dict[str, Any]], expected: List[str],
                owner: Mapping[str, str]) -> List[Check]:
    out = []
    counted: Dict[str, int] = {}
    for entry in attendance:
        ticket, status = entry["ticket"], entry["status"]
        counted[ticket] = counted.get(ticket, 0) + 1
        where = "考场 {} 准考证号 {}".format(code, ticket)
        if owner.get(ticket) is None:
            out.append(_fail(ATTENDANCE, code, ticket, "{} 不在考场数据包的名单中。{}".format(where, REMEDY_RESULT)))
        elif owner[ticket] != code:
            out.append(_fail(ATTENDANCE, code, ticket, "{} 属于考场 {}，不应出现在本考场的结果中。{}".format(
                where, owner[ticket], REMEDY_RESULT)))
        elif status not in STATUSES:
            out.append(_fail(ATTENDANCE, code, ticket, "{} 的状态“{}”不是参考或缺考。{}".format(
                where, status, REMEDY_RESULT)))
        elif counted[ticket] == 2:
            out.append(_fail(ATTENDANCE, code, ticket, "{} 在结果中出现多次。{}".format(where, REMEDY_RESULT)))
    for ticket in expected:
        if ticket not in counted:
            out.append(_fail(ATTENDANCE, code, ticket,
                             "考场 {} 准考证号 {} 在结果中既不是参考也不是缺考（缺少记录）。{}".format(
                                 code, ticket, REMEDY_RESULT)))
    return out or [Check(ATTENDANCE, True, code)]


def _backup(code: str, backup: Optional[Dict[str, Any]]) -> Check:
    if backup is None:
        return _fail(BACKUP, code, None, "考场 {} 的结果包没有外部存储备份。{}".format(code, REMEDY_BACKUP))
    if backup.get("valid") is not True:
        return _fail(BACKUP, code, None, "考场 {} 的外部存储备份回读校验未通过（{}）。{}".format(
            code, backup.get("folder"), REMEDY_BACKUP))
    return Check(BACKUP, True, code)


def _receipt(code: str, receipt: Optional[Dict[str, Any]], body: Mapping[str, Any],
             trusted: TrustedKeys) -> Tuple[Check, Optional[Dict[str, Any]]]:
    if receipt is None:
        return _fail(RECEIPT, code, None, "考场 {} 没有监控平台的上报回执。{}".format(code, REMEDY_UPLOAD)), None
    try:
        signed = verify_document(receipt["document"].encode("utf-8"), KIND_RECEIPT, trusted, "上报回执")
    except FormatError as e:
        return _fail(RECEIPT, code, None, "考场 {} 的上报回执无法用监控平台公钥验证（{}）。{}".format(
            code, e.cause, REMEDY_UPLOAD)), None
    for field, want in (("site_code", body.get("site_code")), ("session_id", body.get("session_id")),
                        ("room_code", code)):
        if signed.get(field) != want:
            return _fail(RECEIPT, code, None, "考场 {} 的上报回执属于别处（{} 为 {}，应为 {}）。{}".format(
                code, field, signed.get(field), want, REMEDY_UPLOAD)), None
    return Check(RECEIPT, True, code), signed


def _result_hash(code: str, result: Mapping[str, Any], backup: Optional[Mapping[str, Any]],
                 receipt: Optional[Mapping[str, Any]]) -> Check:
    want = (result.get("sha256"), result.get("size"))
    for what, other in (("外部存储备份", backup), ("上报回执", receipt)):
        if other is not None and (other.get("sha256"), other.get("size")) != want:
            return _fail(RESULT_HASH, code, None,
                         "考场 {} 的结果包（SHA-256 {}…，{} 字节）与{}（SHA-256 {}…，{} 字节）不符。{}".format(
                code, str(want[0])[:16], want[1], what, str(other.get("sha256"))[:16], other.get("size"),
                REMEDY_UPLOAD if what == "上报回执" else REMEDY_BACKUP))
    return Check(RESULT_HASH, True, code)


def _incidents(code: str, incidents: List[Dict[str, Any]]) -> List[Check]:
    out = []
    for incident in incidents:
        if incident["state"] not in DECIDED:
            out.append(_fail(INCIDENTS, code, None, "考场 {} 的考场情况记录 {}（{}）尚未确认或驳回。{}".format(
                code, incident["id"], incident.get("category"), REMEDY_INCIDENT)))
    return out or [Check(INCIDENTS, True, code)]


# -- structure -------------------------------------------------------------------------

class _Bad(Exception):
    pass


def _no_duplicates(pairs: List[Tuple[str, Any]]) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _Bad("键“{}”重复".format(key))
        out[key] = value
    return out


def _no_number(text: str) -> Any:
    raise _Bad("含有非整数的数值（{}）".format(text[:20]))


def _parse(data: bytes) -> Dict[str, Any]:
    if len(data) > MAX_BYTES:
        raise _Bad("文件过大（{} 字节）".format(len(data)))
    try:
        doc = json.loads(bytes(data).decode("utf-8"), object_pairs_hook=_no_duplicates,
                         parse_float=_no_number, parse_constant=_no_number)
    except (UnicodeDecodeError, ValueError):
        raise _Bad("不是有效的 JSON 文件") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise _Bad("格式标识不是 {}".format(FORMAT))
    return doc


def _want(value: Any, kind: type, field: str, nullable: bool = False) -> Any:
    if value is None and nullable:
        return value
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise _Bad("字段“{}”类型不符".format(field))
    return value


def _structure(doc: Mapping[str, Any]) -> Tuple[Dict[str, Any], str, int, bytes]:
    """The body and the signature parts, or ``_Bad`` naming the first bad field."""
    body = _want(doc.get("body"), dict, "body")
    sig = _want(doc.get("signature"), dict, "signature")
    lock_id = _want(sig.get("lock_id"), str, "signature.lock_id")
    clock_ms = _want(sig.get("clock_ms"), int, "signature.clock_ms")
    try:
        signature = base64.b64decode(_want(sig.get("signature"), str, "signature.signature").encode("ascii"),
                                     validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise _Bad("字段“signature.signature”不是 base64") from None
    if len(signature) != SIGNATURE_BYTES:
        raise _Bad("签名不是 {} 字节".format(SIGNATURE_BYTES))
    if body.get("format_version") != FORMAT_VERSION or body.get("kind") != KIND:
        raise _Bad("版本或类型不符")
    for field in ("site_code", "session_id", "session_name", "created_at"):
        _want(body.get(field), str, field)
    package = _want(body.get("package"), dict, "package")
    for field in ("manifest", "manifest_sha256", "publish_time"):
        _want(package.get(field), str, "package." + field)
    for i, entry in enumerate(_want(body.get("roster"), list, "roster")):
        at = "roster[{}]".format(i)
        _want(entry, dict, at)
        _want(entry.get("ticket"), str, at + ".ticket")
        _want(entry.get("room"), str, at + ".room")
        _want(entry.get("seat"), int, at + ".seat")
    for i, room in enumerate(_want(body.get("rooms"), list, "rooms")):
        _room_structure(room, "rooms[{}]".format(i))
    audit = _want(body.get("audit"), dict, "audit")
    _want(audit.get("seq"), int, "audit.seq")
    _want(audit.get("head"), str, "audit.head")
    for i, check in enumerate(_want(body.get("checks"), list, "checks")):
        _want(check, dict, "checks[{}]".format(i))
    return body, lock_id, clock_ms, signature


def _room_structure(room: Any, at: str) -> None:
    _want(room, dict, at)
    _want(room.get("code"), str, at + ".code")
    result = _want(room.get("result"), dict, at + ".result", nullable=True)
    if result is not None:
        _want(result.get("sha256"), str, at + ".result.sha256")
        _want(result.get("size"), int, at + ".result.size")
    for j, entry in enumerate(_want(room.get("attendance"), list, at + ".attendance")):
        _want(entry, dict, "{}.attendance[{}]".format(at, j))
        _want(entry.get("ticket"), str, "{}.attendance[{}].ticket".format(at, j))
        _want(entry.get("status"), str, "{}.attendance[{}].status".format(at, j))
    backup = _want(room.get("backup"), dict, at + ".backup", nullable=True)
    if backup is not None:
        _want(backup.get("sha256"), str, at + ".backup.sha256")
        _want(backup.get("size"), int, at + ".backup.size")
        _want(backup.get("valid"), bool, at + ".backup.valid")
    receipt = _want(room.get("receipt"), dict, at + ".receipt", nullable=True)
    if receipt is not None:
        _want(receipt.get("document"), str, at + ".receipt.document")
    for j, incident in enumerate(_want(room.get("incidents"), list, at + ".incidents")):
        _want(incident, dict, "{}.incidents[{}]".format(at, j))
        _want(incident.get("id"), str, "{}.incidents[{}].id".format(at, j))
        _want(incident.get("state"), str, "{}.incidents[{}].state".format(at, j))
    _want(room.get("extra_time"), list, at + ".extra_time")


def challenge_message(lock_id: str, nonce: bytes, clock_ms: int) -> bytes:
    """The bytes the dongle signs for ``CHAL`` (the same as ``kd.lock.protocol.challenge_message``)."""
    if not LOCK_ID_RE.match(lock_id) or len(nonce) != 32 or clock_ms < 0:
        raise ValueError("bad challenge")
    return CHALLENGE_DOMAIN + lock_id.encode("ascii") + b"\0" + nonce + b"\0" + str(int(clock_ms)).encode("ascii")


# -- verifying -------------------------------------------------------------------------

def _key(entry: Mapping[str, Any]) -> Tuple[Any, ...]:
    """What a recorded check must repeat: id, ok, room, ticket (the message is for people)."""
    return entry.get("id"), entry.get("ok"), entry.get("room"), entry.get("ticket")


def verify(data: bytes, trusted: TrustedKeys) -> Verdict:
    """Check a proof file with nothing but the platform's public keys (docs/formats.md order).

    1. structure (``format``); 2. the embedded package manifest verifies with ``trusted``
    and names this site and session (``manifest``); 3. the signature is the manifest's
    dongle's over ``digest(body)`` (``signature``); 4. every check recomputed from the
    body holds (its own id: ``attendance``, ``result_hash``, ``receipt`` …); 5. the
    recorded ``checks`` repeat the recomputed ones (id, ok, room, ticket, in order:
    ``checks``). Never raises for a bad file.
    """
    try:
        doc = _parse(data)
        body, lock_id, clock_ms, signature = _structure(doc)
    except _Bad as e:
        return Verdict(False, (_fail(FORMAT_ID, None, None, "{}无法读取：{}。{}".format(WHAT, e, REMEDY_FILE)),))
    head, manifest_check = manifest_body(body, trusted)
    if head is None:
        return Verdict(False, (manifest_check,), body)
    failures: List[Check] = []
    lock = head["lock"]
    try:
        public_key = base64.b64decode(str(lock.get("public_key")).encode("ascii"), validate=True)
        message = challenge_message(lock_id, digest(body), clock_ms)
        good = lock_id == lock.get("id") and verify_raw(public_key, message, signature)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        good = False
    if not good:
        failures.append(_fail(SIGNATURE, None, None,
                              "证明的签名不是考场数据包指定的机考锁（{}）所签，或文件在签名后被修改。{}".format(
                                  lock.get("id"), REMEDY_FILE)))
    try:
        checks = run_checks(body, trusted, FINAL)
    except (KeyError, TypeError, AttributeError) as e:
        failures.append(_fail(FORMAT_ID, None, None, "{}的内容不完整（{!r}）。{}".format(WHAT, e, REMEDY_FILE)))
        return Verdict(False, tuple(failures), body)
    failures.extend(check for check in checks if not check.ok)
    if [_key(check.as_dict()) for check in checks] != [_key(entry) for entry in body["checks"]]:
        failures.append(_fail(RECORDED, None, None, "证明中记录的检查结果与重新计算的结果不符。{}".format(REMEDY_FILE)))
    return Verdict(not failures, tuple(failures), body)
