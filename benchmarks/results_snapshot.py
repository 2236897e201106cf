"""results_snapshot: receive 200 result packages, then build the 数据回收 (§5.1) table.

A temporary data folder gets a loaded package the way the core keeps it
(kd/core/model.py: 100 rooms x 2 sessions x 40 candidates, the second session with two
subjects), then ``RecoveryService.receive`` takes one real result package per room and
session (40 candidates, 2 absent, 1 KiB answers: ~45 KiB each) through the spool. Figures:
``receive_ms`` (median per package: spool write + fsync, full package check, record) and
``ms`` (median ``snapshot(None)`` over the 200 recovered rows, what the table refreshes).
Prints ``{"bench": "results_snapshot", "ms": .., "receive_ms": .., "rows": 200, ...}``.
"""

import datetime
import hashlib
import io
import statistics
import time

from _common import emit, median_ms, scratch_context

from kd.core import model
from kd.core.outbox import Outbox
from kd.core.recovery import RecoveryService
from kd.formats.result import ABSENT, PRESENT, build_result
from kd.formats.timeutil import CST, format_time

ROOMS, PER_ROOM, REPEAT = 100, 40, 50
SITE = "11003"


def populate(ctx) -> None:  # type: ignore[no-untyped-def]
    now = datetime.datetime.now(CST)
    codes = ["{}{:03d}".format(SITE, r) for r in range(1, ROOMS + 1)]
    sessions = [{"id": "1", "name": "第一场次", "start": format_time(now), "duration_min": 120, "subjects": ["K1"]},
                {"id": "2", "name": "第二场次", "start": format_time(now + datetime.timedelta(hours=4)),
                 "duration_min": 120, "subjects": ["K1", "K2"]}]
    candidates = []
    for s in sessions:
        for code in codes:
            for i in range(1, PER_ROOM + 1):
                subject = s["subjects"][0] if len(s["subjects"]) == 1 or i <= PER_ROOM // 2 else s["subjects"][1]
                candidates.append({"ticket": "{}{}{:02d}".format(code, s["id"], i), "name": "考生{}".format(i),
                                   "room": code, "session": s["id"], "seat": i, "subject": subject})
    manifest = {"format_version": 1, "site_code": SITE, "exam_name": "职业技能鉴定", "publish_time": format_time(now),
                "lock": {"id": "L1", "public_key": "A" * 43 + "="}, "rooms": [{"code": c, "name": c} for c in codes],
                "subjects": [{"code": "K1", "name": "科目一"}, {"code": "K2", "name": "科目二"}],
                "sessions": sessions, "candidate_count": len(candidates), "candidates": candidates}
    ctx.stores.exam.put(model.PACKAGE, model.MANIFEST, manifest)
    ctx.stores.exam.put(model.PACKAGE, model.PACKAGE_META, {
        "publish_time": format_time(now), "loaded_at": format_time(now), "source": "online",
        "verified_at": format_time(now), "zip_sha256": "1" * 64, "manifest_sha256": "2" * 64})
    ctx.stores.settings.put(model.SETTINGS, model.SITE, {"site_code": SITE, "mode": model.FORMAL})
    ctx.stores.runtime.replace_table(model.ROOM_SESSIONS, {
        model.rs_key(c["room"], c["session"]): {"room": c["room"], "session": c["session"], "started_at": None,
                                                "ended_at": None, "result": None, "upload": None}
        for c in candidates})


def packages(ctx):  # type: ignore[no-untyped-def]
    manifest = ctx.manifest()
    by_pair = {}
    for c in manifest["candidates"]:
        by_pair.setdefault((c["room"], c["session"]), []).append(c)
    subjects = {s["id"]: s["subjects"] for s in manifest["sessions"]}
    for (room, session), people in sorted(by_pair.items()):
        cands = [{"ticket": c["ticket"], "subject": c["subject"], "status": ABSENT if i < 2 else PRESENT,
                  "answer": None if i < 2 else hashlib.sha256(c["ticket"].encode()).digest() * 32}
                 for i, c in enumerate(people)]
        yield room, session, build_result(site_code=SITE, room_code=room, session_id=session,
                                          created_at=ctx.now(), candidates=cands, subjects=subjects[session])


def main() -> None:
    with scratch_context("kd-bench-results-") as ctx:
        populate(ctx)
        recovery = RecoveryService(ctx, Outbox(ctx))
        samples = []
        size = 0
        for room, session, data in packages(ctx):
            size += len(data)
            start = time.perf_counter()
            recovery.receive(room, session, io.BytesIO(data), hashlib.sha256(data).hexdigest(), len(data),
                             "lan", "bench")
            samples.append((time.perf_counter() - start) * 1000.0)
        snap = recovery.snapshot(None)
        assert len(snap["rows"]) == 2 * ROOMS and snap["totals"]["recovered"] == 2 * ROOMS
        assert snap["totals"]["absent"] == 2 * ROOMS * 2 and snap["all_recovered"]
        ms = median_ms(lambda: recovery.snapshot(None), REPEAT)
    emit(bench="results_snapshot", ms=round(ms, 3), receive_ms=round(statistics.median(samples), 3),
         rows=2 * ROOMS, candidates=2 * ROOMS * PER_ROOM, package_kb=round(size / len(samples) / 1024, 1))


if __name__ == "__main__":
    main()
