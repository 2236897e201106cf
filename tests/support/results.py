"""Result packages for GUI tests, built from the loaded package like a proctor machine would.

``result_package(ctx, room, session, absent=1, salt=b"")`` returns the bytes of a valid
result package (``kd.formats.result.build_result``) listing the room's candidates of the
session in the loaded manifest; ``salt`` changes the answers (another hash: a conflict).
``write_package(folder, ...)`` writes it as a file for 回收 and returns the path.
``pairs(ctx)`` lists the (room, session) pairs that must be recovered.
"""

import hashlib
import os
from typing import Any, List, Tuple

from kd.core.recovery import RecoveryService
from kd.formats.result import ABSENT, PRESENT, build_result


def pairs(ctx: Any) -> List[Tuple[str, str]]:
    return RecoveryService.expected_pairs(ctx.manifest())


def result_package(ctx: Any, room: str, session: str, absent: int = 1, salt: bytes = b"", answer_kb: int = 4) -> bytes:
    manifest = ctx.manifest()
    people = sorted((c for c in manifest["candidates"] if c["room"] == room and c["session"] == session),
                    key=lambda c: c["seat"])
    cands = []
    for i, c in enumerate(people):
        status = ABSENT if i < absent else PRESENT
        answer = None
        if status == PRESENT:
            answer = hashlib.sha256(salt + c["ticket"].encode()).digest() * (answer_kb * 32)
        cands.append({"ticket": c["ticket"], "subject": c["subject"], "status": status, "answer": answer})
    subjects = next(s["subjects"] for s in manifest["sessions"] if s["id"] == session)
    return build_result(site_code=ctx.site_code(), room_code=room, session_id=session, created_at=ctx.now(),
                        candidates=cands, subjects=subjects)


def write_package(folder: str, ctx: Any, room: str, session: str, **kw: Any) -> str:
    data = result_package(ctx, room, session, **kw)
    path = os.path.join(folder, "RESULT_{}_{}_{}.zip".format(ctx.site_code(), room, session))
    if os.path.exists(path):
        path = path[:-4] + "_{}.zip".format(hashlib.sha256(data).hexdigest()[:6])
    with open(path, "wb") as f:
        f.write(data)
    return path
