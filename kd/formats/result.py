"""The room result package (考场结果包, ``.zip``): what a proctor machine hands back.

One package per room and session. Layout (docs/formats.md "Room result package" is the
reference)::

    result.json             canonical JSON (UTF-8): the summary and the member list
    answers/<ticket>.dat    one opaque answer file per collected candidate

``result.json``::

    {"format_version": 1, "kind": "room_result",
     "site_code": "11003", "room_code": "11003001", "session_id": "1",
     "created_at": "2026-06-13T11:05:00+08:00",
     "subjects": [{"code": "0101", "candidates": 5, "present": 4, "absent": 1, "collected": 4}],
     "candidates": [{"ticket": "...", "subject": "0101", "status": "参考",
                     "answer": "answers/<ticket>.dat"},
                    {"ticket": "...", "subject": "0101", "status": "缺考", "answer": null}],
     "members": [{"name": "answers/<ticket>.dat", "size": 1234, "sha256": "<hex>"}]}

The counts per subject are 考生人数 (``candidates``), 参考人数 (``present``), 缺考人数
(``absent``) and 回收人数 (``collected``: present candidates whose answer file is in the
package); they must equal what the candidate list says. Every member is listed once,
lives under ``answers/`` and belongs to exactly one present candidate.

The package is not signed: a proctor machine holds no platform key. Its integrity is the
SHA-256 of the whole file that travels with it (LAN upload, external backup, platform
upload); its authenticity is the proctor's LAN token (online) or the administrator who
imports it by hand (回收). ``load_result`` reads it with ``kd.formats.safezip`` (caps,
safe names, streamed hashes; nothing is extracted) and checks structure, member list,
sizes and hashes; ``build_result`` writes one (tests, proctor simulator).
"""

import datetime
import hashlib
import json
import zipfile
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

from kd.errors import FormatError
from kd.formats.safezip import Caps, SafeZip, name_problem, zip_bytes
from kd.formats.schema import Check
from kd.formats.signing import canonical_json
from kd.formats.timeutil import format_time, require_aware

KIND = "room_result"
FORMAT_VERSION = 1
SUMMARY_NAME = "result.json"
ANSWER_PREFIX = "answers/"
ANSWER_SUFFIX = ".dat"
PRESENT, ABSENT = "参考", "缺考"
STATUSES = (PRESENT, ABSENT)

WHAT = "考场结果包"
PREFIX = "考场结果包校验失败："
REMEDY = "请在该考场的监考机上重新导出本场次的结果包，再重新回收。"

MiB = 1024 * 1024
GiB = 1024 * MiB
MAX_CANDIDATES = 999
MAX_SUBJECTS = 20
MAX_SUMMARY_BYTES = 4 * MiB
#: zip limits of a result package (docs/formats.md)
CAPS = Caps(
    max_source_bytes=2 * GiB,
    max_members=MAX_CANDIDATES + 1,
    max_central_dir_bytes=1 * MiB,
    max_member_bytes=256 * MiB,
    max_total_bytes=2 * GiB,
)

Source = Union[bytes, bytearray, memoryview, str]

COUNT_FIELDS = ("candidates", "present", "absent", "collected")


#: the loader's checks (a ``Check`` holds no state: one serves every load)
CHECK = Check(WHAT, REMEDY, PREFIX)


def answer_member_name(ticket: str) -> str:
    """The member name of a candidate's answer file: ``answers/<ticket>.dat``."""
    return ANSWER_PREFIX + ticket + ANSWER_SUFFIX


def file_name(site_code: str, room_code: str, session_id: str) -> str:
    """The file name of a room's result package for a session (backup copies, upload file id)."""
    return "RESULT_{}_{}_{}.zip".format(site_code, room_code, session_id)


class RoomResult:
    """A checked result package (its summary; answer bytes stay in the source).

    Attributes: ``body`` (the parsed ``result.json``), ``site_code``, ``room_code``,
    ``session_id``, ``created_at`` (text as written), ``subjects`` (count dicts in file
    order), ``candidates``, ``members`` (name → {name, size, sha256}) and
    ``summary_sha256`` (hash of the ``result.json`` bytes).
    """

    def __init__(self, body: Dict[str, Any], members: Dict[str, Dict[str, Any]], summary_sha256: str) -> None:
        self.body = body
        self.site_code: str = body["site_code"]
        self.room_code: str = body["room_code"]
        self.session_id: str = body["session_id"]
        self.created_at: str = body["created_at"]
        self.subjects: List[Dict[str, Any]] = body["subjects"]
        self.candidates: List[Dict[str, Any]] = body["candidates"]
        self.members = members
        self.summary_sha256 = summary_sha256

    def counts(self) -> Dict[str, Any]:
        """Totals and per-subject counts: ``{candidates, present, absent, collected, subjects: [...]}``."""
        out: Dict[str, Any] = {f: sum(s[f] for s in self.subjects) for f in COUNT_FIELDS}
        out["subjects"] = [{k: s[k] for k in ("code",) + COUNT_FIELDS} for s in self.subjects]
        return out


# -- schema ----------------------------------------------------------------------------

def _validate(body: Any, check: Check) -> Dict[str, Dict[str, Any]]:
    """Check the summary; return its members as name → entry."""
    check.obj(body, SUMMARY_NAME)
    check.integer(body.get("format_version"), "format_version", FORMAT_VERSION, FORMAT_VERSION)
    if body.get("kind") != KIND:
        raise check.field_error("kind", "应为 {}".format(KIND))
    check.code(body.get("site_code"), "site_code")
    check.code(body.get("room_code"), "room_code")
    check.code(body.get("session_id"), "session_id")
    check.time(body.get("created_at"), "created_at")

    members: Dict[str, Dict[str, Any]] = {}
    folded = set()
    for i, entry in enumerate(check.lst(body.get("members"), "members", MAX_CANDIDATES)):
        field = "members[{}]".format(i)
        check.obj(entry, field)
        name = check.text(entry.get("name"), field + ".name")
        problem = name_problem(name)
        if problem or not name.startswith(ANSWER_PREFIX) or name.count("/") != 1:
            raise check.field_error(field + ".name", "应为 answers/ 下的安全文件名（{}）".format(problem or name))
        if name.casefold() in folded:
            raise check.field_error(field + ".name", "重复（{}）".format(name))
        folded.add(name.casefold())
        check.integer(entry.get("size"), field + ".size", 0, CAPS.max_member_bytes)
        check.sha256(entry.get("sha256"), field + ".sha256")
        members[name] = entry

    subjects: Dict[str, Dict[str, Any]] = {}
    for field, listed, code in check.keyed(body.get("subjects"), "subjects", MAX_SUBJECTS, 1):
        for name in COUNT_FIELDS:
            check.integer(listed.get(name), "{}.{}".format(field, name), 0, MAX_CANDIDATES)
        subjects[code] = listed

    derived = {code: dict.fromkeys(COUNT_FIELDS, 0) for code in subjects}
    used = set()
    for field, cand, _ticket in check.keyed(body.get("candidates"), "candidates", MAX_CANDIDATES, key="ticket"):
        subject = cand.get("subject")
        if subject not in subjects:
            raise check.field_error(field + ".subject", "不是已列出的科目（{}）".format(subject))
        status = cand.get("status")
        if status not in STATUSES:
            raise check.field_error(field + ".status", "应为“参考”或“缺考”")
        answer = cand.get("answer")
        counts = derived[subject]
        counts["candidates"] += 1
        counts["present" if status == PRESENT else "absent"] += 1
        if answer is None:
            continue
        if status == ABSENT:
            raise check.field_error(field + ".answer", "缺考考生不应有作答文件")
        if answer not in members:
            raise check.field_error(field + ".answer", "不是已列出的成员（{}）".format(answer))
        if answer in used:
            raise check.field_error(field + ".answer", "与其他考生重复（{}）".format(answer))
        used.add(answer)
        counts["collected"] += 1
    unused = sorted(set(members) - used)
    if unused:
        raise check.refuse("成员 {} 不属于任何参考考生".format(unused[0]))
    for code, subject in subjects.items():
        for name in COUNT_FIELDS:
            if subject[name] != derived[code][name]:
                raise check.refuse("科目 {} 的人数统计（{}={}）与考生列表（{}）不符".format(
                    code, name, subject[name], derived[code][name]))
    return members


# -- building (proctor side) -----------------------------------------------------------

def build_result(*, site_code: str, room_code: str, session_id: str, created_at: datetime.datetime,
                 candidates: Sequence[Mapping[str, Any]], subjects: Optional[Sequence[str]] = None) -> bytes:
    """The result package as zip bytes.

    ``candidates``: dicts with ``ticket``, ``subject``, ``status`` (参考/缺考) and
    ``answer`` (the answer file's bytes, or None when not collected or absent).
    ``subjects``: the session's subject codes in order (default: as the candidates name
    them). Counts and the member list are computed. Raises ``ValueError`` for a package
    the loader would refuse.
    """
    require_aware(created_at, "created_at")
    codes: List[Any] = list(subjects) if subjects is not None else []  # a candidate may name a bad one
    for cand in candidates:
        if cand.get("subject") not in codes and subjects is None:
            codes.append(cand.get("subject"))
    counts = {code: dict.fromkeys(COUNT_FIELDS, 0) for code in codes}
    entries: List[Dict[str, Any]] = []
    members: List[Dict[str, Any]] = []
    contents: List[Any] = []
    for cand in candidates:
        answer = cand.get("answer")
        name = None
        subject_counts = counts.get(cand.get("subject"))
        if subject_counts is not None:
            subject_counts["candidates"] += 1
            subject_counts["present" if cand.get("status") == PRESENT else "absent"] += 1
        if answer is not None:
            name = answer_member_name(str(cand.get("ticket")))
            data = bytes(answer)
            members.append({"name": name, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()})
            contents.append((name, data))
            if subject_counts is not None:
                subject_counts["collected"] += 1
        entries.append({"ticket": cand.get("ticket"), "subject": cand.get("subject"),
                        "status": cand.get("status"), "answer": name})
    body = {
        "format_version": FORMAT_VERSION, "kind": KIND, "site_code": site_code, "room_code": room_code,
        "session_id": session_id, "created_at": format_time(created_at),
        "subjects": [dict({"code": code}, **counts[code]) for code in codes],
        "candidates": entries, "members": members,
    }
    try:
        _validate(body, Check(WHAT, ""))
    except FormatError as e:
        raise ValueError(e.cause) from None
    summary = canonical_json(body).encode("utf-8")
    if len(summary) > MAX_SUMMARY_BYTES:
        raise ValueError("result.json is {} bytes, above the {} cap".format(len(summary), MAX_SUMMARY_BYTES))
    return zip_bytes([(SUMMARY_NAME, summary, zipfile.ZIP_DEFLATED)]
                     + [(n, d, zipfile.ZIP_STORED) for n, d in contents], created_at.timetuple())


# -- loading (site side) ---------------------------------------------------------------

def load_result(source: Source, *, site_code: Optional[str] = None, room_code: Optional[str] = None,
                session_id: Optional[str] = None) -> RoomResult:
    """Check a result package completely and return its summary; nothing is written.

    ``source``: zip bytes or a file path. ``site_code``, ``room_code``, ``session_id``:
    when given, the package must name exactly these. Raises ``FormatError``
    ("考场结果包校验失败：...") for anything else: not a zip, unsafe or extra members,
    a bad ``result.json``, counts that disagree with the candidate list, a member whose
    size or SHA-256 differs from the list.
    """
    check = CHECK
    with SafeZip(source, CAPS, CHECK.refuse) as zf:
        raw = zf.read_member(SUMMARY_NAME, MAX_SUMMARY_BYTES)
        try:
            body = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise check.refuse("result.json 不是有效的 JSON") from None
        members = _validate(body, check)
        for field, expected, label in (("site_code", site_code, "考点代码"), ("room_code", room_code, "考场编号"),
                                       ("session_id", session_id, "场次")):
            if expected is not None and body[field] != expected:
                raise check.refuse("{}不符（结果包为 {}，应为 {}）".format(label, body[field], expected))
        present = set(zf.names()) - {SUMMARY_NAME}
        if present != set(members):
            missing = sorted(set(members) - present)
            extra = sorted(present - set(members))
            raise check.refuse("成员与 result.json 清单不符（缺少 {}，多出 {}）".format(missing or "无", extra or "无"))
        for name in zf.names():
            if name != SUMMARY_NAME:
                entry = members[name]
                zf.stream_member(name, entry["size"], entry["sha256"])
    return RoomResult(body, members, hashlib.sha256(raw).hexdigest())
