"""The proof where the upload shows it (kd.core.proofflow): 第一步's preview, then after the receipts.

A real site (platform simulator over HTTP, dongle emulator, real files): after 考后上报 the
upload itself builds each session's proof, keeps it in DATA/proofs, copies it next to the
external backup (read back), and sends it with the session's ``upload_status`` through the
outbox; the simulator verifies it with its own key and shows the verdict. A room not
recovered makes the proof fail naming that room, here and at the platform; once it is
recovered, backed up and uploaded, the proof verifies.
"""

import datetime
import os

from kd.core import names
from kd.core.incidents import Category, Draft, Kind
from kd.core.proofflow import proof_line
from kd.formats import proof as P
from kd.formats.signing import TrustedKeys
from tests.support.env import SITE, make_env
from tests.support.fixtures import closed_after
from tests.support.results import deliver, pairs, result_package

env = closed_after(lambda tmp_path: make_env(tmp_path, rooms=3, sessions=2, candidates=4, room_kb=4))


def recover(env, skip=(), **kw):
    for room, session in pairs(env.ctx):
        if (room, session) not in skip:
            deliver(env.core.recovery, room, session, result_package(env.ctx, room, session, **kw))


def backed_up(env, external_dir):
    """The package loaded online, every room's every session recovered and backed up: the backup's result."""
    env.core.loading.load_online("admin")
    recover(env)
    return env.core.upload.backup_external(external_dir, "admin")


def statuses(env):
    return [i for i in env.core.outbox.items() if i["kind"] == "upload_status"]


def test_the_upload_builds_keeps_copies_and_sends_each_sessions_proof(env, external_dir):
    core = env.core
    backup = backed_up(env, external_dir)
    result = core.upload.upload(None, "admin")

    proofs = {p["session"]: p for p in result["proofs"]}
    sessions = [s["id"] for s in env.ctx.manifest()["sessions"]]
    assert sorted(proofs) == sorted(sessions)
    for sid, summary in proofs.items():
        assert summary["ok"], summary["message"]
        assert summary["message"].startswith("证明有效") and summary["failures"] == [] and summary["error"] is None
        kept = core.proof.path_of(sid)
        assert summary["path"] == kept and os.path.basename(kept) == P.file_name(SITE, sid)
        data = open(kept, "rb").read()
        assert summary["sha256"] == P.document_sha256(data) and summary["size"] == len(data)
        # next to the external backup, the same bytes
        external = summary["external"]
        assert external["ok"] and external["path"] == os.path.join(backup["folder"], P.file_name(SITE, sid))
        assert open(external["path"], "rb").read() == data
        assert P.verify(open(external["path"], "rb").read(), TrustedKeys([env.sim.public_key])).ok
    assert not result["warnings"]
    assert names.PROOF_SIGNED in [e["action"] for e in env.ctx.audit.entries()]

    # the upload tool's table shows each session's proof
    rows = {r["session"]: r for r in core.upload.snapshot()["sessions"]}
    assert all(rows[sid]["proof"]["ok"] and rows[sid]["proof"]["sha256"] == proofs[sid]["sha256"] for sid in sessions)

    # sent with the upload status; the platform verifies it with its own key
    items = statuses(env)
    assert sorted(i["session_id"] for i in items) == sorted(sessions)
    for item in items:
        assert item["data"]["proof"]["format"] == P.FORMAT
        assert item["data"]["proof_sha256"] == proofs[item["session_id"]]["sha256"]
    core.outbox.deliver_once()
    received = env.sim.received()["proofs"]
    assert sorted(p["session_id"] for p in received) == sorted(sessions)
    for line in received:
        assert line["ok"], line["message"]
        assert line["sha256"] == proofs[line["session_id"]]["sha256"]
        assert env.sim.proofs.document(line) == open(core.proof.path_of(line["session_id"]), "rb").read()

    # a later 上报 with nothing left to upload and every proof good builds and sends nothing new
    again = core.upload.upload(None, "admin")
    assert again["proofs"] == [] and len(statuses(env)) == len(sessions)


def test_a_room_not_recovered_fails_the_proof_naming_it_until_it_is_uploaded(env, external_dir):
    core = env.core
    core.loading.load_online("admin")
    missing = pairs(env.ctx)[0]
    room, sid = missing
    recover(env, skip=[missing])
    core.upload.backup_external(external_dir, "admin")
    result = core.upload.upload(sid, "admin")
    [summary] = result["proofs"]
    assert summary["session"] == sid and not summary["ok"]
    first = summary["failures"][0]
    assert (first["id"], first["room"]) == ("result", room) and room in summary["message"]
    assert summary["message"].startswith("result: ")  # the id stays in the JSON, not in the line for people
    text, ok = proof_line(summary)
    assert not ok and text == "考点数据完整性证明未通过：" + first["message"] and "result" not in text and room in text
    core.outbox.deliver_once()
    [line] = env.sim.received()["proofs"]
    assert not line["ok"] and line["failures"][0]["room"] == room and room in line["message"]
    assert not core.upload.snapshot()["sessions"][0]["proof"]["ok"]

    # the room's result comes in: backed up again, uploaded, the proof holds
    deliver(core.recovery, room, sid, result_package(env.ctx, room, sid))
    core.upload.backup_external(external_dir, "admin")
    [summary] = core.upload.upload(sid, "admin")["proofs"]
    assert summary["ok"], summary["message"]
    core.outbox.deliver_once()
    assert [p["ok"] for p in env.sim.received()["proofs"]] == [False, True]


def test_a_session_already_uploaded_whose_proof_fails_is_built_again_on_the_next_upload(env, external_dir):
    core = env.core
    backed_up(env, external_dir)
    sid = pairs(env.ctx)[0][1]
    core.upload.upload(sid, "admin")
    kept = core.proof.path_of(sid)
    with open(kept, "r+b") as f:  # the kept file damaged on this PC's disk
        f.write(b"X")
    assert not core.upload.snapshot()["sessions"][0]["proof"]["ok"]
    [summary] = core.upload.upload(sid, "admin")["proofs"]  # nothing to upload: the proof is built again
    assert summary["ok"] and core.upload.snapshot()["sessions"][0]["proof"]["ok"]


def test_preview_names_a_room_not_recovered_and_an_incident_not_decided_with_what_to_do(env):
    core = env.core
    core.loading.load_online("admin")
    (missing, sid), (other, _) = pairs(env.ctx)[0], pairs(env.ctx)[1]
    recover(env, skip=[(missing, sid)])
    start = env.ctx.now() - datetime.timedelta(minutes=5)
    (draft,) = core.incidents.store_drafts([Draft("outage|{}|{}|t".format(other, sid), Kind.OUTAGE, Category.NETWORK,
                                                  other, sid, start, start + datetime.timedelta(minutes=2),
                                                  "考场 {} 与考点机失去连接".format(other))])
    preview = core.upload.proofs.preview()
    assert not preview["ok"]
    failing = [(c["id"], c["room"]) for s in preview["sessions"] if s["session"] == sid for c in s["failures"]]
    assert failing == [("result", missing), ("incidents", other)]
    lines = [line for line in preview["lines"] if missing in line or other in line]
    assert len(lines) == 2 and "数据回收" in lines[0] and draft["id"] in lines[1] and "确认或驳回" in lines[1]
    # the backup not made yet is 第一步's own business, not a failure here
    assert not [c for s in preview["sessions"] for c in s["failures"] if c["id"] == "backup"]
    core.incidents.confirm(draft["id"], "admin")
    assert [c["id"] for s in core.upload.proofs.preview()["sessions"] for c in s["failures"]] == ["result"]


def test_without_the_dongle_the_upload_still_reports_and_says_why_there_is_no_proof(env, external_dir):
    core = env.core
    backed_up(env, external_dir)
    sid = pairs(env.ctx)[0][1]
    env.driver.stop()  # the dongle does not answer any more: nothing can sign the proof
    result = core.upload.upload(sid, "admin")
    assert result["uploaded"]  # the results are at the platform all the same
    [summary] = result["proofs"]
    assert not summary["ok"] and summary["error"] and summary["message"].startswith("完整性证明未能生成：")
    [item] = statuses(env)
    assert "proof" not in item["data"] and item["data"]["proof_error"] == summary["error"]
    assert item["data"]["uploaded"] == len([p for p in pairs(env.ctx) if p[1] == sid])
    core.outbox.deliver_once()
    assert env.sim.received()["proofs"] == [] and len(env.sim.received()["reports"]) >= 1
