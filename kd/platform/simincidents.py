"""The simulated platform's side of the ``incidents`` report (docs/platform-api.md §6.2).

``check(body)`` validates a report of kind ``incidents`` before it is recorded and raises
``ApiError(400, "bad_incidents", <Chinese message naming the field>)`` for a bad shape:
``data.session_id`` a code (equal to the envelope's ``session_id`` when that is given),
``data.mode`` ``formal`` or ``mock``, ``data.version`` an integer ≥ 1,
``data.content_sha256`` the SHA-256 of the canonical JSON of ``{"session_id", "incidents",
"extra_time"}`` (recomputed here), ``data.incidents`` and ``data.extra_time`` lists (at
most ``MAX_ITEMS`` each) of objects with every field of §6.2 in its type.
``latest(lines)``: from the report log's lines, each (site, session, mode)'s highest
version (what ``GET /_sim/received`` shows as ``incidents``, §8).
"""

import hashlib
import re
from typing import Any, Dict, List, Optional

from kd.formats.signing import canonical_json
from kd.formats.timeutil import read_time
from kd.platform.simhttp import ApiError

KIND = "incidents"
MAX_ITEMS = 10000
CODE_RE = re.compile(r"[0-9A-Za-z_-]{1,32}", re.ASCII)
ID_RE = re.compile(r"[0-9]{1,12}", re.ASCII)
SHA_RE = re.compile(r"[0-9a-f]{64}", re.ASCII)
CATEGORIES = ("device", "network", "candidate", "staff", "other")
STATES = ("drafted", "confirmed", "dismissed")
MODES = ("formal", "mock")
TIERS = ("on_site", "dongle")


def _bad(where: str) -> ApiError:
    return ApiError(400, "bad_incidents", "考场情况记录上报的字段缺少或错误：" + where)


def _str(obj: Dict[str, Any], name: str, where: str, *, null: bool = False,
         pattern: Optional["re.Pattern[str]"] = None) -> None:
    value = obj.get(name)
    if value is None and null and name in obj:
        return
    if not isinstance(value, str) or (pattern is not None and not pattern.fullmatch(value)):
        raise _bad(where + name)


def _time(obj: Dict[str, Any], name: str, where: str, *, null: bool = False) -> None:
    value = obj.get(name)
    if value is None and null and name in obj:
        return
    try:
        read_time(value)
    except Exception:  # noqa: BLE001 - any unreadable time is a bad field
        raise _bad(where + name) from None


def _int(obj: Dict[str, Any], name: str, where: str, *, low: int, null: bool = False) -> None:
    value = obj.get(name)
    if value is None and null and name in obj:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise _bad(where + name)


def _choice(obj: Dict[str, Any], name: str, where: str, choices: Any) -> None:
    if obj.get(name) not in choices:
        raise _bad(where + name)


def _strings(obj: Dict[str, Any], name: str, where: str) -> None:
    value = obj.get(name)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _bad(where + name)


def _list(data: Dict[str, Any], name: str) -> List[Dict[str, Any]]:
    items = data.get(name)
    if not isinstance(items, list) or len(items) > MAX_ITEMS or not all(isinstance(i, dict) for i in items):
        raise _bad("data." + name)
    return items


def _incident(item: Dict[str, Any], where: str) -> None:
    _str(item, "id", where, pattern=ID_RE)
    _str(item, "room_code", where, pattern=CODE_RE)
    _str(item, "kind", where, pattern=CODE_RE)
    _choice(item, "category", where, CATEGORIES)
    _time(item, "start", where)
    _time(item, "end", where, null=True)
    _int(item, "lost_min", where, low=0, null=True)
    _strings(item, "candidates", where)
    _str(item, "description", where)
    _str(item, "recorded_by", where, null=True)
    _time(item, "recorded_at", where, null=True)
    _choice(item, "state", where, STATES)
    _str(item, "decided_by", where, null=True)
    _time(item, "decided_at", where, null=True)
    _str(item, "note", where)


def _grant(item: Dict[str, Any], where: str) -> None:
    _str(item, "id", where, pattern=ID_RE)
    _str(item, "room_code", where, pattern=CODE_RE)
    _int(item, "minutes", where, low=1)
    _int(item, "total_min", where, low=int(item["minutes"]))
    _choice(item, "tier", where, TIERS)
    _str(item, "reason", where)
    _strings(item, "incidents", where)
    _str(item, "granted_by", where, null=True)
    _time(item, "granted_at", where)
    dongle = item.get("dongle")
    if dongle is not None or "dongle" not in item:
        if not isinstance(dongle, dict):
            raise _bad(where + "dongle")
        _str(dongle, "lock_id", where + "dongle.", pattern=CODE_RE)
        _int(dongle, "clock_ms", where + "dongle.", low=0)
    _time(item, "expected_end", where)
    _time(item, "acked_at", where, null=True)


def content_sha256(data: Dict[str, Any]) -> str:
    part = {k: data.get(k) for k in ("session_id", "incidents", "extra_time")}
    return hashlib.sha256(canonical_json(part).encode("utf-8")).hexdigest()


def check(body: Dict[str, Any]) -> None:
    """Validate an ``incidents`` report's body; ``ApiError`` 400 ``bad_incidents`` naming the bad field."""
    data = body["data"]
    _str(data, "session_id", "data.", pattern=CODE_RE)
    if body.get("session_id") is not None and body["session_id"] != data["session_id"]:
        raise _bad("data.session_id（与 session_id 不同）")
    _choice(data, "mode", "data.", MODES)
    _int(data, "version", "data.", low=1)
    _str(data, "content_sha256", "data.", pattern=SHA_RE)
    for n, item in enumerate(_list(data, "incidents")):
        _incident(item, "data.incidents[{}].".format(n))
    for n, item in enumerate(_list(data, "extra_time")):
        _grant(item, "data.extra_time[{}].".format(n))
    if content_sha256(data) != data["content_sha256"]:
        raise _bad("data.content_sha256（与内容不符）")


def latest(lines: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Each (site, session, mode)'s highest version of the ``incidents`` reports in ``lines`` (the
    report log), by site, session and mode: ``{"site_code", "session_id", "mode", "version", "versions",
    "report_id", "received_at", "incidents", "extra_time"}`` (``versions``: every version
    received, in order; equal versions: the later received wins)."""
    best: Dict[Any, Dict[str, Any]] = {}
    seen: Dict[Any, List[int]] = {}
    for line in lines:
        report = line.get("report") or {}
        if report.get("kind") != KIND:
            continue
        data = report.get("data") or {}
        key = (report.get("site_code"), data.get("session_id"), data.get("mode"))
        seen.setdefault(key, []).append(int(data.get("version") or 0))
        if key not in best or int(data.get("version") or 0) >= best[key]["version"]:
            best[key] = {"site_code": report.get("site_code"), "session_id": data.get("session_id"),
                         "mode": data.get("mode"),
                         "version": int(data.get("version") or 0), "report_id": line.get("report_id"),
                         "received_at": line.get("received_at"), "content_sha256": data.get("content_sha256"),
                         "incidents": data.get("incidents"), "extra_time": data.get("extra_time")}
    out = []
    for key in sorted(best, key=lambda k: (str(k[0]), str(k[1]), str(k[2]))):
        out.append(dict(best[key], versions=seen[key]))
    return out
