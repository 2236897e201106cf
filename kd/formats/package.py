"""The site data package (考场数据包, ``.zip``): build it (platform side), verify and load it.

Layout (docs/formats.md §2 is the reference)::

    manifest.json          signed envelope (kd-signed/1, kind "site_package"): the manifest
    candidates.json        canonical JSON list of candidates (hashed in the manifest)
    rooms/<room code>.dat  one room data file per room (hashed in the manifest; kept unread:
                           its format, kd-room-data/1, is the proctor's, docs/formats.md §2.7)

The manifest body carries ``format_version`` (1), ``site_code``, ``exam_name``,
``publish_time``, ``lock`` {``id``, ``public_key``}, ``rooms``, ``sessions``,
``subjects``, ``candidate_count`` and ``members`` [{``name``, ``size``, ``sha256``}] for
every member but ``manifest.json`` itself. The candidates live in their own member because
a signed envelope is capped at 1 MiB and a large site has thousands of candidates.

``load_package`` checks everything before anything is written anywhere (order in
docs/formats.md §2.4) and returns a ``SitePackage``; room files are written only by
``SitePackage.copy_room_file``/``extract_rooms``, which re-verify each byte against the
signed hash while writing a ``.part`` file and rename it only when it matched.
"""

import datetime
import hashlib
import json
import logging
import os
import secrets
import shutil
import zipfile
from typing import Any, Dict, List, Mapping, Optional, Union

from kd.errors import FormatError
from kd.formats.safezip import Caps, SafeZip, zip_bytes
from kd.formats.schema import Check
from kd.formats.signing import Signer, TrustedKeys, canonical_json, verify_document
from kd.formats.timeutil import parse_time

log = logging.getLogger(__name__)

KIND = "site_package"
FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
CANDIDATES_NAME = "candidates.json"
ROOM_PREFIX = "rooms/"
ROOM_SUFFIX = ".dat"

WHAT = "考场数据包"
PREFIX = "考场数据包校验失败："
REMEDY = "请重新从监控平台下载考场数据包；如无法下载，请用“手工导入”选择监控平台提供的正确考场数据包文件（.zip）。"

MiB = 1024 * 1024
GiB = 1024 * MiB
MAX_ROOMS = 1000
MAX_SESSIONS = 50
MAX_SUBJECTS = 200
MAX_CANDIDATES = 200000
MAX_MANIFEST_BYTES = 1 * MiB
MAX_CANDIDATES_BYTES = 64 * MiB
#: the package's zip limits (docs/formats.md §2.3); a realistic site (100 rooms x ~1 MiB)
#: is about 100 MiB and 102 members
CAPS = Caps(
    max_source_bytes=4 * GiB,
    max_members=MAX_ROOMS + 2,
    max_central_dir_bytes=1 * MiB,
    max_member_bytes=256 * MiB,
    max_total_bytes=4 * GiB,
)

Source = Union[bytes, bytearray, memoryview, str, "os.PathLike[str]"]


#: the loader's checks (a ``Check`` holds no state: one serves every load)
CHECK = Check(WHAT, REMEDY, PREFIX)


def room_member_name(room_code: str) -> str:
    """The member name of a room's data file: ``rooms/<room code>.dat``."""
    return ROOM_PREFIX + room_code + ROOM_SUFFIX


# -- manifest schema -------------------------------------------------------------------

def _validate_head(body: Mapping[str, Any], check: Check) -> None:
    """Types and cross-references of the signed manifest body (not the candidates)."""
    check.integer(body.get("format_version"), "format_version", FORMAT_VERSION, FORMAT_VERSION)
    check.code(body.get("site_code"), "site_code")
    check.text(body.get("exam_name"), "exam_name")
    check.time(body.get("publish_time"), "publish_time")
    lock = check.obj(body.get("lock"), "lock")
    check.code(lock.get("id"), "lock.id")
    check.b64key(lock.get("public_key"), "lock.public_key")
    # room files live in one (case-insensitive) folder
    for field, room, _code in check.keyed(body.get("rooms"), "rooms", MAX_ROOMS, 1, fold=True):
        check.text(room.get("name"), field + ".name")
    subject_codes = set()
    for field, subject, code in check.keyed(body.get("subjects"), "subjects", MAX_SUBJECTS, 1):
        subject_codes.add(code)
        check.text(subject.get("name"), field + ".name")
    for field, session, _sid in check.keyed(body.get("sessions"), "sessions", MAX_SESSIONS, 1, key="id"):
        check.text(session.get("name"), field + ".name")
        check.time(session.get("start"), field + ".start")
        check.integer(session.get("duration_min"), field + ".duration_min", 1, 24 * 60)
        codes = check.lst(session.get("subjects"), field + ".subjects", MAX_SUBJECTS, 1)
        for j, code in enumerate(codes):
            if code not in subject_codes:
                raise check.field_error(f"{field}.subjects[{j}]", "不是已列出的科目代码")
    check.integer(body.get("candidate_count"), "candidate_count", 0, MAX_CANDIDATES)


def _validate_members(members: Any, check: Check, room_codes: List[str]) -> Dict[str, Dict[str, Any]]:
    """The signed member list as name → entry; exactly candidates.json + one file per room."""
    check.lst(members, "members", MAX_ROOMS + 1, 1)
    out: Dict[str, Dict[str, Any]] = {}
    for i, entry in enumerate(members):
        field = f"members[{i}]"
        check.obj(entry, field)
        name = check.text(entry.get("name"), field + ".name")
        if name in out:
            raise check.field_error(field + ".name", f"重复（{name}）")
        limit = MAX_CANDIDATES_BYTES if name == CANDIDATES_NAME else CAPS.max_member_bytes
        check.integer(entry.get("size"), field + ".size", 0, limit)
        check.sha256(entry.get("sha256"), field + ".sha256")
        out[name] = entry
    expected = {CANDIDATES_NAME} | {room_member_name(code) for code in room_codes}
    if set(out) != expected:
        missing = sorted(expected - set(out))
        extra = sorted(set(out) - expected)
        raise check.refuse("清单成员与考场不符（缺少 {}，多出 {}）".format(missing or "无", extra or "无"))
    return out


def _validate_candidates(candidates: Any, check: Check, head: Mapping[str, Any]) -> List[Dict[str, Any]]:
    check.lst(candidates, CANDIDATES_NAME, MAX_CANDIDATES)
    rooms = {room["code"] for room in head["rooms"]}
    sessions = {session["id"] for session in head["sessions"]}
    tickets = set()
    seats = set()
    for i, cand in enumerate(candidates):
        field = f"candidates[{i}]"
        check.obj(cand, field)
        ticket = check.code(cand.get("ticket"), field + ".ticket")
        check.text(cand.get("name"), field + ".name")
        room = cand.get("room")
        if room not in rooms:
            raise check.field_error(field + ".room", f"不是已列出的考场代码（{room}）")
        session = cand.get("session")
        if session not in sessions:
            raise check.field_error(field + ".session", f"不是已列出的场次（{session}）")
        seat = check.integer(cand.get("seat"), field + ".seat", 1, 9999)
        if (session, ticket) in tickets:
            raise check.field_error(field + ".ticket", f"在同一场次中重复（{ticket}）")
        tickets.add((session, ticket))
        if (session, room, seat) in seats:
            raise check.field_error(field + ".seat", f"在同一场次同一考场中重复（{seat}）")
        seats.add((session, room, seat))
    if len(candidates) != head["candidate_count"]:
        raise check.refuse("考生人数与清单不符（清单 {}，实为 {}）".format(head["candidate_count"], len(candidates)))
    return candidates


# -- building (platform side) ----------------------------------------------------------

def build_package(signer: Signer, manifest: Mapping[str, Any], room_files: Mapping[str, bytes], *,
                  compress_rooms: bool = False) -> bytes:
    """The signed package as zip bytes.

    ``manifest``: the site manifest (docs/formats.md §2.2) with ``candidates``; the keys
    ``members``, ``candidate_count`` and a missing ``format_version`` are filled in.
    ``room_files``: room code → that room's data file, exactly one per room.
    Room files are stored uncompressed unless ``compress_rooms`` (they are usually
    already compressed or encrypted by the vendor). Raises ``ValueError`` for a manifest
    that the loader would refuse.
    """
    head = {k: v for k, v in manifest.items() if k not in ("candidates", "members")}
    head.setdefault("format_version", FORMAT_VERSION)
    candidates = list(manifest.get("candidates", []))
    head["candidate_count"] = len(candidates)
    check = Check(WHAT, REMEDY, "manifest invalid: ")
    try:
        _validate_head(head, check)
        room_codes = [room["code"] for room in head["rooms"]]
        if set(room_files) != set(room_codes):
            raise check.refuse(f"room_files keys {sorted(set(room_files) ^ set(room_codes))} != room codes")
        _validate_candidates(candidates, check, head)
    except FormatError as e:
        raise ValueError(e.cause) from None
    candidates_bytes = canonical_json(candidates).encode("utf-8")
    contents = [(CANDIDATES_NAME, candidates_bytes, zipfile.ZIP_DEFLATED)]
    room_method = zipfile.ZIP_DEFLATED if compress_rooms else zipfile.ZIP_STORED
    for code in sorted(room_codes):
        contents.append((room_member_name(code), bytes(room_files[code]), room_method))
    head["members"] = [
        {"name": name, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        for name, data, _method in contents
    ]
    envelope = signer.sign_document(KIND, head)
    if len(envelope) > MAX_MANIFEST_BYTES:
        raise ValueError(f"signed manifest is {len(envelope)} bytes, above the {MAX_MANIFEST_BYTES} cap")
    stamp = parse_time(head["publish_time"], "publish_time", WHAT).timetuple()
    return zip_bytes([(MANIFEST_NAME, envelope, zipfile.ZIP_DEFLATED)] + contents, stamp)


# -- loading (site side) ---------------------------------------------------------------

class SitePackage:
    """A verified site package. Room data stays in the source until asked for.

    Attributes: ``manifest`` (the signed body plus ``candidates``), ``site_code``,
    ``exam_name``, ``publish_time`` (ISO text as signed), ``published_at`` (datetime),
    ``lock_id``, ``lock_public_key`` (32 raw bytes), ``rooms``, ``sessions``,
    ``subjects``, ``candidates`` (lists of dicts as in the manifest), ``members``
    (name → {name, size, sha256}), ``manifest_sha256`` (hash of the signed
    ``manifest.json`` bytes: names this exact package in logs and audit) and
    ``manifest_raw`` (those bytes: the platform-signed envelope, which the
    completeness proof carries to bind the dongle key, kd/formats/proof.py).
    """

    def __init__(self, source: Source, manifest: Dict[str, Any], members: Dict[str, Dict[str, Any]],
                 manifest_sha256: str, manifest_raw: bytes = b"") -> None:
        self._source = source
        self.manifest = manifest
        self.members = members
        self.manifest_sha256 = manifest_sha256
        self.manifest_raw = manifest_raw
        self.site_code: str = manifest["site_code"]
        self.exam_name: str = manifest["exam_name"]
        self.publish_time: str = manifest["publish_time"]
        self.published_at: datetime.datetime = parse_time(self.publish_time, "publish_time", WHAT)
        self.lock_id: str = manifest["lock"]["id"]
        self.lock_public_key: bytes = CHECK.b64key(manifest["lock"]["public_key"], "lock.public_key")
        self.rooms: List[Dict[str, Any]] = manifest["rooms"]
        self.sessions: List[Dict[str, Any]] = manifest["sessions"]
        self.subjects: List[Dict[str, Any]] = manifest["subjects"]
        self.candidates: List[Dict[str, Any]] = manifest["candidates"]

    @property
    def room_codes(self) -> List[str]:
        return [room["code"] for room in self.rooms]

    def session(self, session_id: str) -> Dict[str, Any]:
        """The session with this id; ``KeyError`` when there is none."""
        for session in self.sessions:
            if session["id"] == session_id:
                return session
        raise KeyError(session_id)

    def session_start(self, session_id: str) -> datetime.datetime:
        return parse_time(self.session(session_id)["start"], "start", WHAT)

    def candidates_of(self, room_code: str, session_id: Optional[str] = None) -> List[Dict[str, Any]]:
        return [c for c in self.candidates
                if c["room"] == room_code and (session_id is None or c["session"] == session_id)]

    def _entry(self, room_code: str) -> Dict[str, Any]:
        entry = self.members.get(room_member_name(room_code)) if isinstance(room_code, str) else None
        if entry is None:
            raise KeyError(room_code)
        return entry

    def room_file(self, room_code: str) -> bytes:
        """The verified bytes of a room's data file (re-read and re-hashed from the source)."""
        entry = self._entry(room_code)
        parts: List[bytes] = []
        with SafeZip(self._source, CAPS, CHECK.refuse) as zf:
            zf.stream_member(entry["name"], entry["size"], entry["sha256"], parts.append)
        return b"".join(parts)

    def copy_room_file(self, room_code: str, dest_path: str) -> None:
        """Write a room's data file to ``dest_path``: ``.part``, verify, fsync, rename."""
        entry = self._entry(room_code)
        with SafeZip(self._source, CAPS, CHECK.refuse) as zf:
            _write_verified(zf, entry, dest_path)

    def extract_rooms(self, folder: str) -> Dict[str, str]:
        """Write every room file into ``folder`` as ``<room code>.dat``; room code → path.

        Each file is verified into a staging folder inside ``folder`` first; only when all
        of them matched are they renamed into place, so a source that changed since
        ``load_package`` leaves ``folder`` as it was (``FormatError``).
        """
        os.makedirs(folder, exist_ok=True)
        staging = os.path.join(folder, ".staging-" + secrets.token_hex(6))
        os.mkdir(staging)
        try:
            with SafeZip(self._source, CAPS, CHECK.refuse) as zf:
                for code in self.room_codes:
                    _write_verified(zf, self._entry(code), os.path.join(staging, code + ROOM_SUFFIX))
            out = {}
            for code in self.room_codes:
                final = os.path.join(folder, code + ROOM_SUFFIX)
                os.replace(os.path.join(staging, code + ROOM_SUFFIX), final)
                out[code] = final
            return out
        finally:
            shutil.rmtree(staging, ignore_errors=True)


def _write_verified(zf: SafeZip, entry: Mapping[str, Any], dest_path: str) -> None:
    part = dest_path + ".part"
    try:
        with open(part, "wb") as out:
            zf.stream_member(entry["name"], entry["size"], entry["sha256"], out.write)
            out.flush()
            os.fsync(out.fileno())
        os.replace(part, dest_path)
    except BaseException:
        try:
            os.remove(part)
        except OSError:
            pass
        raise


def load_package(source: Source, trusted: TrustedKeys, site_code: str,
                 loaded_publish_time: Optional[str] = None) -> SitePackage:
    """Verify a package completely and return it; nothing is written anywhere.

    ``source``: zip bytes or a file path. ``site_code``: this site's code.
    ``loaded_publish_time``: the publish time of the package already loaded, if any; an
    older package is refused (rollback), the same or a newer one is accepted.
    Raises ``FormatError`` ("考场数据包校验失败：...") for anything else.
    """
    check = CHECK
    with SafeZip(source, CAPS, CHECK.refuse) as zf:
        raw_manifest = zf.read_member(MANIFEST_NAME, MAX_MANIFEST_BYTES)
        try:
            head = verify_document(raw_manifest, KIND, trusted, WHAT)
        except FormatError as e:
            raise check.refuse(e.detail or e.cause) from None
        _validate_head(head, check)
        if head["site_code"] != site_code:
            raise check.refuse("考点代码不符（数据包为 {}，本考点为 {}）".format(head["site_code"], site_code))
        published = check.time(head["publish_time"], "publish_time")
        if loaded_publish_time is not None:
            loaded = parse_time(loaded_publish_time, "loaded_publish_time", WHAT)
            if published < loaded:
                raise check.refuse("数据包发布时间 {} 早于已载入数据包的发布时间 {}，不能回退到旧版本".format(
                    head["publish_time"], loaded_publish_time))
        room_codes = [room["code"] for room in head["rooms"]]
        members = _validate_members(head.get("members"), check, room_codes)
        present = set(zf.names()) - {MANIFEST_NAME}
        if present != set(members):
            missing = sorted(set(members) - present)
            extra = sorted(present - set(members))
            raise check.refuse("成员与签名清单不符（缺少 {}，多出 {}）".format(missing or "无", extra or "无"))
        for name, entry in members.items():
            if zf.infos[name].file_size != entry["size"]:
                raise check.refuse("成员 {} 大小不符（应为 {} 字节，实为 {} 字节）".format(
                    name, entry["size"], zf.infos[name].file_size))
        candidates_parts: List[bytes] = []
        for name in zf.names():
            if name == MANIFEST_NAME:
                continue
            entry = members[name]
            sink = candidates_parts.append if name == CANDIDATES_NAME else None
            zf.stream_member(name, entry["size"], entry["sha256"], sink)
    try:
        candidates = json.loads(b"".join(candidates_parts).decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise check.refuse("考生名单无法解析") from None
    _validate_candidates(candidates, check, head)
    manifest = dict(head)
    manifest["candidates"] = candidates
    package = SitePackage(source if isinstance(source, (bytes, str)) or hasattr(source, "__fspath__")
                          else bytes(source), manifest, members, hashlib.sha256(raw_manifest).hexdigest(),
                          raw_manifest)
    log.info("site package verified: site %s, published %s, %d rooms, %d candidates, manifest %s",
             package.site_code, package.publish_time, len(package.rooms), len(candidates),
             package.manifest_sha256[:16])
    return package
