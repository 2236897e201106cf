"""proof: build and verify time and the size of the 考点数据完整性证明 (issue 16's closing figures).

A temporary data folder holds a 100-room x 2-session site after the upload, written into the
stores the way the core keeps it: 40 candidates per room and session (8,000 in all), the
package's manifest signed by a platform key (``manifest_envelope`` in the package meta),
every room-session's result package in the spool (``build_result``: 40 candidates, the
first absent, ``--answer-kib`` KiB of answers each, default 16), its record, a receipt
signed by the platform key, the external backup record, and two confirmed incidents and
one 补时 per session. The dongle is the real emulator over TCP (``LockEmulator``,
``LockDriver``, ``DonglePort``): the proof is signed with ``CHAL`` like on site.

Timed (medians of ``--rounds``, default 5, per session): ``build_ms``
(``ProofService.build``: gather, read every result package back from the spool and check
it, run the checks, sign with the dongle, write ``DATA/proofs/…``), ``verify_ms``
(``kd.formats.proof.verify`` of the file's bytes with the platform key alone), ``checks_ms``
(``run_checks`` alone), ``preview_ms`` (``ProofService.preview`` once the result files were
read: their attendance is kept by hash) and ``first_preview_ms`` (the first preview of a
session on a fresh service: every result file read). ``size_bytes`` is the proof file of
one session (``size_kib`` too).

Prints one JSON line: ``{"bench": "proof", "rooms": 100, "sessions": 2, "per_room": 40,
"answer_kib", "build_ms", "verify_ms", "checks_ms", "preview_ms", "first_preview_ms", "size_bytes",
"size_kib", "rounds"}``. Target: build_ms <= 2000 and verify_ms <= 500 per session.
"""

import argparse
import base64
import datetime
import hashlib
import io
import os
import statistics
import tempfile
import time

from _common import emit, scratch_context, two_session_site

from kd.core import model
from kd.core.proof import ProofService
from kd.formats import proof as P
from kd.formats.documents import build_upload_receipt
from kd.formats.result import ABSENT, PRESENT, build_result
from kd.formats.signing import Signer, TrustedKeys
from kd.formats.timeutil import CST, format_time
from kd.lock.coreport import DonglePort
from kd.lock.driver import LockDriver
from kd.lock.emulator import LockEmulator

ROOMS, PER_ROOM = 100, 40
SITE = "11003"


class Register:
    """The synthetic day's 补时 and incidents, read from the runtime store as ``ExtraTimeService.grants``
    and ``IncidentService.list`` read them (the benchmark builds only the service it measures)."""

    def __init__(self, ctx):  # type: ignore[no-untyped-def]
        self.ctx = ctx

    def grants(self, room=None, session=None):  # type: ignore[no-untyped-def]
        return [d for d in self.ctx.stores.runtime.all("extra_time")
                if (room is None or d["room"] == room) and (session is None or d["session"] == session)]

    def list(self, session=None, room=None):  # type: ignore[no-untyped-def]
        return [d for d in self.ctx.stores.runtime.all("incidents")
                if (session is None or d["session"] == session) and (room is None or d["room"] == room)]


def populate(ctx, platform, lock_id, lock_key, answer_kib):  # type: ignore[no-untyped-def]
    now = datetime.datetime.now(CST).replace(microsecond=0)
    start = now - datetime.timedelta(hours=6)
    stamp = format_time(now - datetime.timedelta(days=1))
    codes, sessions, candidates = two_session_site(SITE, ROOMS, PER_ROOM, format_time(start),
                                                   format_time(start + datetime.timedelta(hours=3)))
    head = {"format_version": 1, "site_code": SITE, "exam_name": "职业技能鉴定", "publish_time": stamp,
            "lock": {"id": lock_id, "public_key": base64.b64encode(lock_key).decode("ascii")},
            "rooms": [{"code": c, "name": c} for c in codes], "subjects": [{"code": "K1", "name": "科目一"}],
            "sessions": sessions, "candidate_count": len(candidates),
            "members": [{"name": "candidates.json", "size": 1, "sha256": "0" * 64}]
            + [{"name": "rooms/{}.dat".format(c), "size": 4096, "sha256": "0" * 64} for c in codes]}
    envelope = platform.sign_document("site_package", head)
    exam, runtime = ctx.stores.exam, ctx.stores.runtime
    with exam.transaction():
        exam.put(model.PACKAGE, model.MANIFEST, dict(head, candidates=candidates))
        exam.put(model.PACKAGE, model.PACKAGE_META, {
            "publish_time": stamp, "loaded_at": stamp, "source": "online", "verified_at": stamp, "zip_sha256": "1" * 64,
            "manifest_sha256": hashlib.sha256(envelope).hexdigest(), "manifest_envelope": envelope.decode("utf-8")})
    answer = os.urandom(answer_kib * 1024)
    room_sessions, files = {}, []
    for s in sessions:
        for code in codes:
            people = [c for c in candidates if c["room"] == code and c["session"] == s["id"]]
            data = build_result(site_code=SITE, room_code=code, session_id=s["id"], created_at=now, candidates=[
                {"ticket": c["ticket"], "subject": "K1", "status": ABSENT if i == 0 else PRESENT,
                 "answer": None if i == 0 else answer + c["ticket"].encode()} for i, c in enumerate(people)],
                subjects=["K1"])
            digest = hashlib.sha256(data).hexdigest()
            ctx.spool.put(io.BytesIO(data), digest, len(data))
            receipt = build_upload_receipt(platform, site_code=SITE, session_id=s["id"], room_code=code,
                                           file_id="f-" + digest[:12], sha256=digest, size=len(data), received_at=now)
            room_sessions[model.rs_key(code, s["id"])] = {
                "room": code, "session": s["id"], "started_at": stamp, "ended_at": stamp,
                "result": {"sha256": digest, "size": len(data), "received_at": stamp, "source": "lan",
                           "counts": {}, "created_at": stamp, "actor": "proctor-" + code},
                "upload": {"receipt": base64.b64encode(receipt).decode("ascii"), "uploaded_at": stamp,
                           "file_id": "f-" + digest[:12], "sha256": digest, "size": len(data), "received_at": stamp}}
            files.append({"name": "RESULT_{}_{}_{}.zip".format(SITE, code, s["id"]), "room": code,
                          "session": s["id"], "sha256": digest, "size": len(data)})
    with runtime.transaction():
        runtime.replace_table(model.ROOM_SESSIONS, room_sessions)
        runtime.put(model.CHECKS, model.EXTERNAL, {"folder": "E:\\KDRESULT-{}-x".format(SITE), "files": files,
                                                   "missing": [], "verified_at": stamp, "valid": True})
        n = 0
        for s in sessions:
            for code in codes[:2]:
                n += 1
                runtime.put("incidents", str(n), {"id": str(n), "room": code, "session": s["id"], "state": "confirmed",
                                                  "category": "网络中断", "start": stamp, "end": stamp,
                                                  "description": "网络中断 3 分钟"})
            runtime.put("extra_time", str(n), {"id": str(n), "room": codes[0], "session": s["id"], "minutes": 5,
                                               "granted_at": stamp, "reason": "网络中断"})
    return [s["id"] for s in sessions]


def timed(fn, rounds):  # type: ignore[no-untyped-def]
    out = []
    for _ in range(rounds):
        start = time.perf_counter()
        value = fn()
        out.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(out), value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--answer-kib", type=int, default=16)
    opts = parser.parse_args()
    platform = Signer.generate()
    trusted = TrustedKeys([platform.public_key])
    with tempfile.TemporaryDirectory() as lock_dir, scratch_context("kd-bench-proof-") as ctx:
        emu = LockEmulator(lock_dir, trust=[platform.public_key], site_code=SITE)
        url = emu.start_tcp()
        driver = LockDriver(url, keepalive=None).start(wait=True)
        try:
            settings = dict(ctx.site(), site_code=SITE)
            ctx.stores.settings.put(model.SETTINGS, model.SITE, settings)
            ctx.dongle = DonglePort(driver)
            ctx.trusted = trusted
            session_ids = populate(ctx, platform, emu.lock_id, emu.public_key, opts.answer_kib)
            start = time.perf_counter()
            ProofService(ctx, Register(ctx), Register(ctx)).preview(session_ids[0])
            first_preview_ms = (time.perf_counter() - start) * 1000.0
            service = ProofService(ctx, Register(ctx), Register(ctx))
            builds, verifies, checks, previews, sizes = [], [], [], [], []
            for sid in session_ids:
                build_ms, doc = timed(lambda sid=sid: service.build(sid, "bench"), opts.rounds)
                with open(service.path_of(sid), "rb") as f:
                    data = f.read()
                verify_ms, verdict = timed(lambda data=data: P.verify(data, trusted), opts.rounds)
                assert verdict.ok, verdict.message()
                checks_ms, _ = timed(lambda doc=doc: P.run_checks(doc["body"], trusted), opts.rounds)
                preview_ms, _ = timed(lambda sid=sid: service.preview(sid), opts.rounds)
                builds.append(build_ms)
                verifies.append(verify_ms)
                checks.append(checks_ms)
                previews.append(preview_ms)
                sizes.append(len(data))
        finally:
            driver.stop()
            emu.stop()
    emit(bench="proof", rooms=ROOMS, sessions=len(session_ids), per_room=PER_ROOM, answer_kib=opts.answer_kib,
         build_ms=round(statistics.median(builds), 1), verify_ms=round(statistics.median(verifies), 1),
         checks_ms=round(statistics.median(checks), 1), preview_ms=round(statistics.median(previews), 1),
         first_preview_ms=round(first_preview_ms, 1),
         size_bytes=max(sizes), size_kib=round(max(sizes) / 1024, 1), rounds=opts.rounds)


if __name__ == "__main__":
    main()
