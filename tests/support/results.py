"""Result packages built from the loaded package like a proctor machine would, and a site that takes them.

``result_package(ctx, room, session, absent=1, salt=b"")`` returns the bytes of a valid
result package (``kd.formats.result.build_result``) listing the room's candidates of the
session in the loaded manifest: the first ``absent`` absent, the next ``uncollected``
present without an answer file; ``salt`` changes the answers (another hash: a conflict);
``site`` and ``tickets`` make a package that does not match (another site code, other
candidates). ``write_package(folder, ...)`` writes it as a file for 回收 and returns the path.
``pairs(ctx)`` lists the (room, session) pairs that must be recovered.

``deliver(recovery, room, session, data)`` hands a package to ``RecoveryService.receive``
as the LAN service does (its sha256 and size, from ``proctor-<room>``).
``results_env(tmp_path, actor, received=False, **sizes)``: a ``make_env`` site with the
package loaded and ``env.outbox``, ``env.recovery``, ``env.upload`` (the 数据回收 and
考后上报 services); ``received=True`` also delivers every pair's package
(``env.packages[(room, session)]``).
"""

import hashlib
import io
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

from kd.core.loading import LoadingService
from kd.core.outbox import Outbox
from kd.core.recovery import RecoveryService
from kd.core.upload import UploadService
from kd.formats.result import ABSENT, PRESENT, build_result
from tests.support.env import make_env


def pairs(ctx: Any) -> List[Tuple[str, str]]:
    return RecoveryService.expected_pairs(ctx.manifest())


def result_package(ctx: Any, room: str, session: str, absent: int = 1, salt: bytes = b"", answer_kb: int = 4,
                   uncollected: int = 0, site: Optional[str] = None,
                   tickets: Optional[Sequence[str]] = None) -> bytes:
    manifest = ctx.manifest()
    people = sorted((c for c in manifest["candidates"] if c["room"] == room and c["session"] == session),
                    key=lambda c: c["seat"])
    if tickets is not None:
        people = [dict(c, ticket=t) for c, t in zip(people, tickets)]
    cands = []
    for i, c in enumerate(people):
        status = ABSENT if i < absent else PRESENT
        answer = None
        if status == PRESENT and i >= absent + uncollected:
            answer = hashlib.sha256(salt + c["ticket"].encode()).digest() * (answer_kb * 32)
        cands.append({"ticket": c["ticket"], "subject": c["subject"], "status": status, "answer": answer})
    subjects = next(s["subjects"] for s in manifest["sessions"] if s["id"] == session)
    return build_result(site_code=site or ctx.site_code(), room_code=room, session_id=session,
                        created_at=ctx.now(), candidates=cands, subjects=subjects)


def write_package(folder: str, ctx: Any, room: str, session: str, **kw: Any) -> str:
    data = result_package(ctx, room, session, **kw)
    path = os.path.join(folder, "RESULT_{}_{}_{}.zip".format(ctx.site_code(), room, session))
    if os.path.exists(path):
        path = path[:-4] + "_{}.zip".format(hashlib.sha256(data).hexdigest()[:6])
    with open(path, "wb") as f:
        f.write(data)
    return path


def deliver(recovery: Any, room: str, session: str, data: bytes, source: str = "lan", sha: Optional[str] = None,
            size: Optional[int] = None, by: Optional[str] = None) -> Dict[str, Any]:
    """``recovery.receive`` of ``data`` as the LAN service calls it (``sha``/``size``: what the sender claims)."""
    return recovery.receive(room, session, io.BytesIO(data), sha or hashlib.sha256(data).hexdigest(),
                            len(data) if size is None else size, source, by or "proctor-" + room)


def results_env(tmp_path: Any, actor: str = "admin", received: bool = False, **sizes: Any) -> Any:
    env = make_env(tmp_path, **sizes)
    LoadingService(env.ctx).load_online(actor)
    env.outbox = Outbox(env.ctx)
    env.recovery = RecoveryService(env.ctx, env.outbox)
    env.upload = UploadService(env.ctx, env.outbox)
    env.packages = {}
    if received:
        for room, session in pairs(env.ctx):
            data = env.packages[(room, session)] = result_package(env.ctx, room, session)
            deliver(env.recovery, room, session, data)
    return env
