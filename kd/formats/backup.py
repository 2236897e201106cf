"""The system backup (系统备份, ``.bak``): write it, and read it back without trusting it.

A ``.bak`` is a zip (docs/formats.md, "System backup"). Members::

    db/settings.json  db/exam.json  db/runtime.json   the TinyDB tables of each store (JSON)
    spool/<sha256>.dat                                 every result package of the spool
    rooms/<file>                                       the extracted room data files
    audit.log                                          the audit log (hash-chained lines)
    manifest.json                                      canonical JSON, see below
    signature.json                                     the dongle's signature over the manifest

``manifest.json`` (canonical JSON, UTF-8)::

    {"format": "kd-backup/1", "site_code", "mode", "exam_name", "note", "created_at",
     "app_version", "lock": {"id", "public_key" (base64, 32 bytes)},
     "members": [{"name", "size", "sha256"}, ...]}

``signature.json``: ``{"manifest_sha256", "lock_id", "clock_ms", "signature"}`` where
``signature`` (base64, 64 bytes) is the dongle's Ed25519 signature (docs/lock-protocol.md,
``CHAL``) over ``manifest_sha256`` as 32 raw bytes; checking it needs the public key the
manifest names, and the reader (``kd.core.system``) also requires that key to be the
dongle the backed-up site package names and the dongle that is attached.

Reading refuses, before a member is used: a zip the safe reader refuses
(``kd.formats.safezip``), a manifest or signature that is not exactly this shape, a member
name outside the list above, a member in the zip that the manifest does not list (or the
reverse), a spool member whose name is not its own hash, and a signature record whose
``manifest_sha256`` is not the hash of ``manifest.json``. Member bytes are checked
against the manifest's size and SHA-256 while they are read (``stream``).

This module writes to a file object the caller gives (the caller owns ``.part``, fsync
and rename) and imports nothing of the project but ``kd.errors`` and ``kd.formats``.
"""

import base64
import hashlib
import json
import os
import re
import zipfile
from typing import Any, BinaryIO, Callable, Dict, Iterable, List, NamedTuple, Optional, Tuple, Union

from kd.errors import FormatError
from kd.formats.safezip import Caps, SafeZip, name_problem
from kd.formats.schema import Check
from kd.formats.signing import canonical_json

FORMAT = "kd-backup/1"
SUFFIX = ".bak"
MANIFEST = "manifest.json"
SIGNATURE = "signature.json"
DB_NAMES = ("settings", "exam", "runtime")
AUDIT = "audit.log"

MEMBER_RE = re.compile(
    r"(db/(settings|exam|runtime)\.json|spool/[0-9a-f]{64}\.dat|rooms/[0-9A-Za-z_.-]{1,100}|audit\.log)",
    re.ASCII)
MAX_MANIFEST_BYTES = 16 * 1024 * 1024
MAX_SIGNATURE_BYTES = 4096
MAX_MEMBERS = 100000
MAX_NOTE_CHARS = 200
CHUNK = 1024 * 1024

CAPS = Caps(
    max_source_bytes=64 * 1024 ** 3,
    max_members=MAX_MEMBERS + 2,
    max_central_dir_bytes=64 * 1024 * 1024,
    max_member_bytes=16 * 1024 ** 3,
    max_total_bytes=64 * 1024 ** 3,
    max_ratio=1000,
)
REMEDY = "请确认选择的是本系统生成的 .bak 文件且未被修改；如文件已损坏，请改用其他备份文件。"


class Member(NamedTuple):
    name: str
    size: int
    sha256: str


class Seal(NamedTuple):
    """The dongle signature stored in ``signature.json``."""

    lock_id: str
    clock_ms: int
    signature: bytes


#: a member's content: bytes, or the path of a file to copy
Source = Union[bytes, str]
#: the signing function: manifest digest (32 bytes) -> Seal
Sign = Callable[[bytes], Seal]


def _check() -> Check:
    return Check("系统备份文件", REMEDY)


def refuse(detail: str) -> FormatError:
    return _check().refuse(detail)


def member_problem(name: str) -> Optional[str]:
    """Why ``name`` may not be a data member of a backup, or None."""
    problem = name_problem(name)
    if problem:
        return problem
    if not MEMBER_RE.fullmatch(name) or name in (MANIFEST, SIGNATURE):
        return "成员名不在允许范围内（{}）".format(name[:80])
    return None


def write(out: BinaryIO, header: Dict[str, Any], sources: Iterable[Tuple[str, Source]], sign: Sign,
          ) -> Dict[str, Any]:
    """Write a backup zip to ``out``; return the manifest.

    ``header`` holds the manifest fields other than ``format`` and ``members`` (checked
    like a reader would). Each source is hashed while it is written, so a file that
    changes meanwhile cannot get a wrong hash into the manifest.
    """
    members: List[Dict[str, Any]] = []
    with zipfile.ZipFile(out, "w", allowZip64=True) as zf:
        for name, source in sources:
            problem = member_problem(name)
            if problem:
                raise ValueError(problem)
            members.append(_write_member(zf, name, source))
        manifest = dict(header, format=FORMAT, members=members)
        _check_manifest(manifest)
        raw = canonical_json(manifest).encode("utf-8")
        digest = hashlib.sha256(raw).digest()
        seal = sign(digest)
        zf.writestr(_info(MANIFEST, zipfile.ZIP_DEFLATED), raw)
        zf.writestr(_info(SIGNATURE, zipfile.ZIP_STORED), seal_bytes(digest, seal))
    return manifest


def seal_bytes(digest: bytes, seal: Seal) -> bytes:
    """The ``signature.json`` bytes for ``seal`` over ``digest``."""
    return canonical_json({"manifest_sha256": digest.hex(), "lock_id": seal.lock_id, "clock_ms": seal.clock_ms,
                           "signature": base64.b64encode(seal.signature).decode("ascii")}).encode("utf-8")


def _info(name: str, method: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
    info.compress_type = method
    info.external_attr = 0o644 << 16
    return info


def _write_member(zf: zipfile.ZipFile, name: str, source: Source) -> Dict[str, Any]:
    # result packages are compressed already; JSON and logs shrink well
    method = zipfile.ZIP_STORED if name.startswith("spool/") else zipfile.ZIP_DEFLATED
    digest = hashlib.sha256()
    size = 0
    if isinstance(source, bytes):
        digest.update(source)
        size = len(source)
        zf.writestr(_info(name, method), source)
    else:
        declared = os.path.getsize(source)
        with open(source, "rb") as src, zf.open(_info(name, method), "w", force_zip64=declared > 2 ** 31) as dst:
            for chunk in iter(lambda: src.read(CHUNK), b""):
                digest.update(chunk)
                size += len(chunk)
                dst.write(chunk)
    return {"name": name, "size": size, "sha256": digest.hexdigest()}


def _check_manifest(manifest: Any) -> Dict[str, Any]:
    c = _check()
    m = c.obj(manifest, "manifest")
    if m.get("format") != FORMAT:
        raise c.field_error("format", "应为 {}（实为 {!r}）".format(FORMAT, str(m.get("format"))[:40]))
    c.text(m.get("site_code"), "site_code", 32, allow_empty=True)
    if m.get("mode") not in ("formal", "mock", ""):
        raise c.field_error("mode", "应为 formal 或 mock")
    c.text(m.get("exam_name"), "exam_name", allow_empty=True)
    c.text(m.get("note"), "note", MAX_NOTE_CHARS, allow_empty=True)
    c.time(m.get("created_at"), "created_at")
    c.text(m.get("app_version"), "app_version", 40)
    lock = c.obj(m.get("lock"), "lock")
    c.code(lock.get("id"), "lock.id")
    c.b64key(lock.get("public_key"), "lock.public_key")
    seen = set()
    for i, entry in enumerate(c.lst(m.get("members"), "members", MAX_MEMBERS)):
        e = c.obj(entry, "members[{}]".format(i))
        name = c.text(e.get("name"), "members[{}].name".format(i))
        problem = member_problem(name)
        if problem:
            raise c.refuse(problem)
        if name.casefold() in seen:
            raise c.refuse("成员名重复（{}）".format(name))
        seen.add(name.casefold())
        c.integer(e.get("size"), "members[{}].size".format(i), 0, CAPS.max_member_bytes)
        sha = c.sha256(e.get("sha256"), "members[{}].sha256".format(i))
        if name.startswith("spool/") and name[len("spool/"):-len(".dat")] != sha:
            raise c.refuse("结果文件 {} 的名称与其 SHA-256 不符".format(name))
    return m


class BackupFile:
    """An opened ``.bak`` whose structure, manifest and signature record are checked.

    The signature itself is checked by the caller (it needs the dongle). Use as a
    context manager or call ``close()``.
    """

    def __init__(self, source: Union[bytes, str]) -> None:
        self._zip = SafeZip(source, CAPS, refuse)
        try:
            self._load()
        except BaseException:
            self._zip.close()
            raise

    def _load(self) -> None:
        c = _check()
        raw = self._zip.read_member(MANIFEST, MAX_MANIFEST_BYTES)
        try:
            manifest = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            raise c.refuse("manifest.json 不是有效的 JSON（{}）".format(e)) from None
        self.manifest: Dict[str, Any] = _check_manifest(manifest)
        self.manifest_bytes = raw
        self.digest = hashlib.sha256(raw).digest()
        sig_raw = self._zip.read_member(SIGNATURE, MAX_SIGNATURE_BYTES)
        try:
            sig = c.obj(json.loads(sig_raw.decode("utf-8")), "signature")
        except (UnicodeDecodeError, ValueError) as e:
            raise c.refuse("signature.json 不是有效的 JSON（{}）".format(e)) from None
        if c.sha256(sig.get("manifest_sha256"), "manifest_sha256") != self.digest.hex():
            raise c.refuse("签名记录与 manifest.json 不符，文件可能被篡改")
        lock_id = c.code(sig.get("lock_id"), "lock_id")
        clock_ms = c.integer(sig.get("clock_ms"), "clock_ms", 0, 2 ** 53)
        signature = c.b64key(sig.get("signature"), "signature", 64)
        self.seal = Seal(lock_id, clock_ms, signature)
        self.members = [Member(e["name"], e["size"], e["sha256"]) for e in self.manifest["members"]]
        listed = {m.name for m in self.members} | {MANIFEST, SIGNATURE}
        present = set(self._zip.names())
        extra = sorted(present - listed)
        if extra:
            raise c.refuse("含有清单之外的成员（{}）".format(extra[0][:80]))
        missing = sorted(listed - present)
        if missing:
            raise c.refuse("缺少成员 {}".format(missing[0][:80]))

    @property
    def lock_id(self) -> str:
        return str(self.manifest["lock"]["id"])

    @property
    def lock_public_key(self) -> bytes:
        return base64.b64decode(self.manifest["lock"]["public_key"])

    def member(self, name: str) -> Member:
        for m in self.members:
            if m.name == name:
                return m
        raise refuse("缺少成员 {}".format(name))

    def stream(self, member: Member, sink: Optional[Callable[[bytes], object]] = None) -> None:
        """Read ``member`` through ``sink``; ``FormatError`` when its size or SHA-256 differs."""
        self._zip.stream_member(member.name, member.size, member.sha256, sink)

    def read(self, member: Member) -> bytes:
        parts: List[bytes] = []
        self.stream(member, parts.append)
        return b"".join(parts)

    def verify_all(self) -> None:
        """Re-read every member against the manifest (``FormatError`` at the first mismatch)."""
        for m in self.members:
            self.stream(m)

    def close(self) -> None:
        self._zip.close()

    def __enter__(self) -> "BackupFile":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
