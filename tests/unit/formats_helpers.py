"""Test data for kd/formats: a site manifest of any size, zips crafted by hand.

Used by the format tests and by benchmarks/package_load.py. Names are varied but
deterministic (seeded), room files are random bytes (they do not compress).
"""

import base64
import datetime
import io
import os
import random
import struct
import zipfile
import zlib
from typing import Any, Dict, List, Optional, Sequence, Tuple

from kd.formats.signing import Signer
from kd.formats.timeutil import CST

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
GIVEN = "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超秀兰霞平刚桂英"
PUBLISH = datetime.datetime(2026, 6, 10, 18, 0, tzinfo=CST)
FIRST_START = datetime.datetime(2026, 6, 13, 9, 0, tzinfo=CST)
SESSION_NAMES = ["第一场次", "第二场次", "第三场次", "第四场次"]


def make_manifest(lock: Signer, *, site: str = "11003", rooms: int = 3, sessions: int = 2,
                  per_room: int = 4, publish: datetime.datetime = PUBLISH, seed: int = 1) -> Dict[str, Any]:
    """A valid manifest (with candidates) for ``rooms`` x ``sessions`` x ``per_room``."""
    rnd = random.Random(seed)
    room_list = [{"code": "{}{:03d}".format(site, i), "name": "第{}考场".format(i)} for i in range(1, rooms + 1)]
    subjects = [{"code": "S01", "name": "计算机基础"}, {"code": "S02", "name": "办公软件应用"}]
    session_list = []
    for s in range(sessions):
        start = FIRST_START + datetime.timedelta(hours=4 * s)
        session_list.append({"id": str(s + 1), "name": SESSION_NAMES[s % 4], "start": start.isoformat(),
                             "duration_min": 90, "subjects": ["S01"] if s % 2 == 0 else ["S01", "S02"]})
    candidates = []
    for session in session_list:
        for room in room_list:
            for seat in range(1, per_room + 1):
                candidates.append({
                    "ticket": "{}{}{:02d}".format(room["code"], session["id"], seat),
                    "name": rnd.choice(SURNAMES) + "".join(rnd.choice(GIVEN) for _ in range(rnd.randint(1, 2))),
                    "room": room["code"], "seat": seat, "session": session["id"],
                })
    return {
        "format_version": 1,
        "site_code": site,
        "exam_name": "2026年全国计算机等级考试",
        "publish_time": publish.isoformat(),
        "lock": {"id": "LK{}".format(site), "public_key": base64.b64encode(lock.public_key).decode("ascii")},
        "rooms": room_list,
        "subjects": subjects,
        "sessions": session_list,
        "candidates": candidates,
    }


def room_files(manifest: Dict[str, Any], size: int = 256) -> Dict[str, bytes]:
    return {room["code"]: os.urandom(size) for room in manifest["rooms"]}


# -- hand-made zips ---------------------------------------------------------------------

def raw_zip(members: Sequence[Tuple[str, bytes]], *, method: int = zipfile.ZIP_STORED,
            declared_sizes: Optional[Dict[str, int]] = None, flags: int = 0) -> bytes:
    """A zip written byte by byte: any name, any declared size (zipfile would refuse some).

    ``declared_sizes`` overrides the uncompressed size written in both headers.
    """
    out = io.BytesIO()
    central: List[bytes] = []
    for name, data in members:
        raw_name = name.encode("utf-8")
        body = data if method == zipfile.ZIP_STORED else _deflate(data)
        crc = zlib.crc32(data) & 0xFFFFFFFF
        size = (declared_sizes or {}).get(name, len(data))
        offset = out.tell()
        out.write(struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, flags | 0x800, method, 0, 0x21,
                              crc, len(body), size, len(raw_name), 0))
        out.write(raw_name)
        out.write(body)
        central.append(struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, flags | 0x800, method, 0, 0x21,
                                   crc, len(body), size, len(raw_name), 0, 0, 0, 0, 0o644 << 16, offset)
                       + raw_name)
    cd_offset = out.tell()
    cd = b"".join(central)
    out.write(cd)
    count = len(central)
    out.write(struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, min(count, 0xFFFF), min(count, 0xFFFF),
                          len(cd), cd_offset, 0))
    return out.getvalue()


def many_members_zip(count: int, lie_count: Optional[int] = None) -> bytes:
    """``count`` empty stored members, built fast (no zipfile overhead).

    Above 65,535 members the zip64 end records carry the count; ``lie_count`` writes that
    number into the classic end record instead (and no zip64 records).
    """
    local = []
    central = []
    offset = 0
    for i in range(count):
        name = "r/{}".format(i).encode("ascii")
        header = struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, 0, 0, 0x21, 0, 0, 0, len(name), 0) + name
        local.append(header)
        central.append(struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, 0, 0, 0x21, 0, 0, 0, len(name),
                                   0, 0, 0, 0, 0, offset) + name)
        offset += len(header)
    cd = b"".join(central)
    end = b""
    if count > 0xFFFF and lie_count is None:
        zip64_at = offset + len(cd)
        end = (struct.pack("<4sQ2H2L4Q", b"PK\x06\x06", 44, 45, 45, 0, 0, count, count, len(cd), offset)
               + struct.pack("<4sLQL", b"PK\x06\x07", 0, zip64_at, 1))
    n = min(count, 0xFFFF) if lie_count is None else lie_count
    return b"".join(local) + cd + end + struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, n, n, len(cd), offset, 0)


def _deflate(data: bytes) -> bytes:
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    return comp.compress(data) + comp.flush()


def zip_members(data: bytes) -> List[Tuple[str, bytes]]:
    """(name, bytes) of every member of a (trusted, test-made) zip."""
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return [(info.filename, zf.read(info)) for info in zf.infolist()]
