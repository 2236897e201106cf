"""The platform's own check of a 考点数据完整性证明: its roster and package against what it published.

``kd.formats.proof.verify`` is the independent verifier: it needs nothing but the platform's
public key, and so it can only take the proof's roster as the site states it (the dongle
vouches for it; the platform-signed manifest holds the hash of the whole
``candidates.json``, not the session's list). A platform that receives a proof holds the
package it published for that site, and MUST compare (docs/platform-api.md §6.1,
docs/formats.md "考点数据完整性证明" Limits):

- ``package_platform``: the proof is of that site (``body.site_code``) and names the package
  the platform published: ``body.package.manifest_sha256`` and the SHA-256 of the embedded
  ``body.package.manifest`` text are both the SHA-256 of the published ``manifest.json``
  bytes. One entry: ok, or one failure (room and ticket null).
- ``roster_platform``: ``body.roster`` is exactly the published candidates of
  ``body.session_id`` (``candidates.json`` entries whose ``session`` is it), each with its
  room and seat. Per proof roster entry, in order, the first of these that fails is one
  failure with the ticket: the entry is an object with text ``ticket``/``room`` and an
  integer ``seat``; its ticket is not a repeat of an earlier entry's; it is a published
  candidate of the session (else 多出的); its room and seat are the published ones (else
  in another room/seat: the failure names the published room). Then per published
  candidate, sorted by room, seat, ticket, one missing from the proof's roster is a
  failure with its room and ticket (``准考证号 … 不在考点上报的证明中``). A session that is not
  in the published package is one failure. One ok entry (room and ticket null) when none
  failed.

``compare_roster(body, published)`` is pure (the body may be anything: a malformed one
fails, it never raises); ``published_package(data)`` reads the facts it needs from the
package zip the platform built (its own bytes: not verified again).
"""

import hashlib
import io
import json
import zipfile
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Set, Tuple

from kd.formats.package import CANDIDATES_NAME, MANIFEST_NAME
from kd.formats.proof import Check

PACKAGE_PLATFORM = "package_platform"
ROSTER_PLATFORM = "roster_platform"
#: the ids of the platform's checks, in the order ``compare_roster`` gives them
PLATFORM_CHECKS = (PACKAGE_PLATFORM, ROSTER_PLATFORM)

REMEDY_PLATFORM = "请考点用平台最新发布的考场数据包重新核对名单并重新上报；如名单无误，请联系监控平台核对。"


@dataclass(frozen=True)
class Published:
    """What the platform published for a site: its code, the SHA-256 of the package's
    ``manifest.json`` bytes, and every candidate (``candidates.json``: ``ticket``, ``room``,
    ``seat``, ``session``, …)."""

    site_code: str
    manifest_sha256: str
    candidates: Tuple[Mapping[str, Any], ...]

    def roster(self, session_id: str) -> Optional[Dict[str, Tuple[str, int]]]:
        """Ticket → (room, seat) of the session's candidates; None when no candidate has it."""
        out = {str(c["ticket"]): (str(c["room"]), int(c["seat"]))
               for c in self.candidates if c.get("session") == session_id}
        return out or None


def published_package(data: bytes) -> Published:
    """The facts ``compare_roster`` needs, from the package zip the platform built (``data``).

    Raises ``ValueError`` (or ``zipfile.BadZipFile``/``KeyError``) for bytes that are not
    such a package: the platform's own artefact, so that is its bug, not the site's.
    """
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        manifest = z.read(MANIFEST_NAME)
        candidates = json.loads(z.read(CANDIDATES_NAME).decode("utf-8"))
    body = json.loads(manifest.decode("utf-8"))["body"]  # kd-signed/1: the body is its canonical JSON text
    body = json.loads(body) if isinstance(body, str) else body
    if not isinstance(candidates, list):
        raise ValueError("candidates.json is not a list")
    return Published(str(body["site_code"]), hashlib.sha256(manifest).hexdigest(), tuple(candidates))


def _fail(cid: str, room: Optional[str], ticket: Optional[str], message: str) -> Check:
    return Check(cid, False, room, ticket, message + REMEDY_PLATFORM)


def _package(body: Mapping[str, Any], published: Published) -> Check:
    site = body.get("site_code")
    if site != published.site_code:
        return _fail(PACKAGE_PLATFORM, None, None, "证明的考点代码 {} 不是平台发布考场数据包的考点 {}。".format(
            site, published.site_code))
    package = body.get("package")
    package = package if isinstance(package, dict) else {}
    stated = package.get("manifest_sha256")
    text = package.get("manifest")
    embedded = hashlib.sha256(text.encode("utf-8")).hexdigest() if isinstance(text, str) else None
    if stated != published.manifest_sha256 or embedded != published.manifest_sha256:
        return _fail(PACKAGE_PLATFORM, None, None,
                     "证明中的考场数据包（清单 SHA-256 {}）不是平台为考点 {} 发布的考场数据包（{}）。".format(
                         str(stated)[:16], published.site_code, published.manifest_sha256[:16]))
    return Check(PACKAGE_PLATFORM, True)


def _entry(entry: Any) -> Optional[Tuple[str, str, int]]:
    if not isinstance(entry, dict):
        return None
    ticket, room, seat = entry.get("ticket"), entry.get("room"), entry.get("seat")
    if not (isinstance(ticket, str) and isinstance(room, str)) or isinstance(seat, bool) or not isinstance(seat, int):
        return None
    return ticket, room, seat


def _roster(body: Mapping[str, Any], published: Published) -> List[Check]:
    session = body.get("session_id")
    expected = published.roster(session) if isinstance(session, str) else None
    if expected is None:
        return [_fail(ROSTER_PLATFORM, None, None, "平台发布的考场数据包中没有场次 {} 的考生。".format(session))]
    roster = body.get("roster")
    if not isinstance(roster, list):
        return [_fail(ROSTER_PLATFORM, None, None, "证明中没有可读的考生名单。")]
    out: List[Check] = []
    seen: Set[str] = set()
    for n, raw in enumerate(roster):
        entry = _entry(raw)
        if entry is None:
            out.append(_fail(ROSTER_PLATFORM, None, None, "证明名单的第 {} 项格式错误。".format(n + 1)))
            continue
        ticket, room, seat = entry
        if ticket in seen:
            out.append(_fail(ROSTER_PLATFORM, room, ticket, "准考证号 {} 在考点上报的证明中出现多次。".format(ticket)))
            continue
        seen.add(ticket)
        want = expected.get(ticket)
        if want is None:
            out.append(_fail(ROSTER_PLATFORM, room, ticket,
                             "准考证号 {}（证明中考场 {} 座号 {}）不在平台发布的场次 {} 名单中。".format(
                                 ticket, room, seat, session)))
        elif want != (room, seat):
            out.append(_fail(ROSTER_PLATFORM, want[0], ticket,
                             "准考证号 {} 在证明中为考场 {} 座号 {}，平台发布的是考场 {} 座号 {}。".format(
                                 ticket, room, seat, want[0], want[1])))
    for ticket, (room, seat) in sorted(expected.items(), key=lambda kv: (kv[1][0], kv[1][1], kv[0])):
        if ticket not in seen:
            out.append(_fail(ROSTER_PLATFORM, room, ticket,
                             "准考证号 {}（考场 {} 座号 {}）不在考点上报的证明中。".format(ticket, room, seat)))
    return out or [Check(ROSTER_PLATFORM, True)]


def compare_roster(body: Any, published: Published) -> List[Check]:
    """The platform's checks of a proof's ``body`` against what it published (module docstring):
    ``package_platform`` then ``roster_platform``; failures name the room and ticket."""
    if not isinstance(body, dict):
        return [_fail(PACKAGE_PLATFORM, None, None, "证明无法读取，无法与平台发布的考场数据包核对。"),
                _fail(ROSTER_PLATFORM, None, None, "证明中没有可读的考生名单。")]
    return [_package(body, published)] + _roster(body, published)


def summary(checks: List[Check]) -> Dict[str, Any]:
    """``{"ok", "message", "checks"}`` of the platform's checks: ``message`` is the first
    failure as ``<id>: <message>``, or that the roster and package match."""
    failed = [c for c in checks if not c.ok]
    message = failed[0].text() if failed else "名单与考场数据包均与平台发布的一致"
    return {"ok": not failed, "message": message, "checks": [c.as_dict() for c in checks]}
