"""考点数据完整性证明 (issue 16) over a real site: platform simulator over HTTP, dongle emulator, real files.

The site goes through 导入考务, 数据回收 (every room delivered as the LAN service does),
考后上报 第一步 (external backup, read back) and 第二步 (upload, receipts); then the proof
is built, signed by the dongle emulator, kept and exported, and verified with nothing but
the platform key. A site that lies (data changed, then signed again by its own dongle) is
caught naming the check; a file changed after signing fails on the signature.
"""

import json
import os

import pytest

from kd.core import model
from kd.errors import UserError
from kd.formats import proof as P
from kd.formats.signing import Signer, TrustedKeys
from tests.support.env import SITE, make_env
from tests.support.fixtures import closed_after
from tests.support.results import deliver, pairs, result_package

env = closed_after(lambda tmp_path: make_env(tmp_path, rooms=3, sessions=2, candidates=5, room_kb=4))

SESSION = "1"


def recover(env, skip=()):
    for room, session in pairs(env.ctx):
        if (room, session) not in skip:
            deliver(env.core.recovery, room, session, result_package(env.ctx, room, session))


def uploaded_site(env, usb):
    env.core.loading.load_online("admin")
    recover(env)
    env.core.upload.backup_external(usb, "admin")
    env.core.upload.upload(SESSION, "admin")


def resign(env, body):
    """The site's own dongle signs a changed body (a site that lies): only the checks can catch it."""
    return P.encode(P.seal(body, env.core.ctx.dongle.sign))


def rooms_of(env):
    return sorted({room for room, session in pairs(env.ctx) if session == SESSION})


def test_a_good_proof_is_built_kept_exported_and_verifies_with_the_platform_key_alone(env, external_dir, tmp_path):
    uploaded_site(env, external_dir)
    out = str(tmp_path / "export")
    path = env.core.proof.export(SESSION, out, "admin")
    assert os.path.basename(path) == "考点数据完整性证明({}-{}).json".format(SITE, SESSION)
    data = open(path, "rb").read()
    verdict = P.verify(data, TrustedKeys([env.sim.public_key]))
    assert verdict.ok, verdict.message()
    body = verdict.body
    assert [r["code"] for r in body["rooms"]] == rooms_of(env)
    roster = [c for c in env.ctx.manifest()["candidates"] if c["session"] == SESSION]
    assert len(body["roster"]) == len(roster) == sum(len(r["attendance"]) for r in body["rooms"])
    assert all(c["ok"] for c in body["checks"])
    assert {c["id"] for c in body["checks"]} == {"manifest", "roster", "rooms", "result", "attendance", "backup",
                                                  "receipt", "result_hash", "incidents"}
    assert body["audit"]["seq"] > 0 and len(body["audit"]["head"]) == 64
    kept = env.core.proof.stored(SESSION)
    assert kept is not None and kept.ok
    actions = [e["action"] for e in env.ctx.audit.entries()]
    assert "proof.signed" in actions and "proof.exported" in actions


@pytest.mark.parametrize("change, named", [
    ("attendance", "attendance"), ("result", "result_hash"), ("receipt", "receipt"),
])
def test_a_lying_site_is_caught_naming_the_check(env, external_dir, change, named):
    uploaded_site(env, external_dir)
    body = env.core.proof.build(SESSION, "admin")["body"]
    room = body["rooms"][1]
    if change == "attendance":
        room["attendance"][0]["status"] = "缺席"
        ticket = room["attendance"][0]["ticket"]
    elif change == "result":
        room["result"]["sha256"] = "0" * 64
    else:  # another room's receipt
        room["receipt"] = body["rooms"][2]["receipt"]
    verdict = P.verify(resign(env, body), env.trusted)
    assert not verdict.ok
    first = verdict.first
    assert first.id == named and first.room == room["code"], verdict.message()
    assert "考场 {}".format(room["code"]) in first.message
    if change == "attendance":
        assert first.ticket == ticket and ticket in first.message
    # the recorded checks no longer match the recomputed ones either
    assert verdict.failures[-1].id == "checks"


def test_a_file_changed_after_signing_or_a_wrong_key_fails(env, external_dir):
    uploaded_site(env, external_dir)
    doc = env.core.proof.build(SESSION, "admin")
    doc["body"]["rooms"][0]["attendance"][0]["status"] = P.ABSENT if \
        doc["body"]["rooms"][0]["attendance"][0]["status"] == P.PRESENT else P.PRESENT
    verdict = P.verify(P.encode(doc), env.trusted)
    assert not verdict.ok and verdict.first.id == "signature"
    good = P.encode(env.core.proof.build(SESSION, "admin"))
    other = P.verify(good, TrustedKeys([Signer.generate().public_key]))
    assert not other.ok and other.first.id == "manifest"


def test_preview_names_a_missing_room_and_the_tickets_before_the_upload(env):
    env.core.loading.load_online("admin")
    missing = rooms_of(env)[1]
    recover(env, skip={(missing, SESSION)})
    checks = env.core.proof.preview(SESSION)
    failed = [c for c in checks if not c.ok]
    assert [(c.id, c.room) for c in failed] == [("result", missing)], [c.text() for c in failed]
    assert "考场 {}".format(missing) in failed[0].message and "数据回收" in failed[0].message
    assert not any(c.id in ("receipt", "backup") for c in checks)  # before the upload and the backup


def test_checks_name_a_ticket_missing_from_a_room_s_attendance(env):
    env.core.loading.load_online("admin")
    room = rooms_of(env)[0]
    recover(env)
    body = env.core.proof._gather(SESSION, P.PREVIEW)  # noqa: SLF001 - the preview's own body
    target = next(r for r in body["rooms"] if r["code"] == room)
    dropped = target["attendance"].pop()
    checks = P.run_checks(body, env.trusted, P.PREVIEW, manifest=env.ctx.manifest())
    failed = [c for c in checks if not c.ok]
    assert [(c.id, c.room, c.ticket) for c in failed] == [("attendance", room, dropped["ticket"])]
    assert "考场 {} 准考证号 {}".format(room, dropped["ticket"]) in failed[0].message


def test_a_package_loaded_without_the_signed_manifest_asks_to_load_it_again(env):
    env.core.loading.load_online("admin")
    meta = env.ctx.stores.exam.get(model.PACKAGE, model.PACKAGE_META)
    env.ctx.stores.exam.put(model.PACKAGE, model.PACKAGE_META, {k: v for k, v in meta.items()
                                                                if k != "manifest_envelope"})
    with pytest.raises(UserError) as caught:
        env.core.proof.build(SESSION, "admin")
    assert "导入考务" in str(caught.value)
    assert json.loads(json.dumps(env.core.proof.preview(SESSION)[0].as_dict()))["id"] == "roster"


def test_build_reads_every_result_file_again_and_names_a_damaged_one(env):
    env.core.loading.load_online("admin")
    recover(env)
    assert all(c.ok for c in env.core.proof.preview(SESSION))
    room = rooms_of(env)[2]
    digest = env.ctx.stores.runtime.get(model.ROOM_SESSIONS, model.rs_key(room, SESSION))["result"]["sha256"]
    with open(env.ctx.spool.path(digest), "r+b") as f:  # the PC's disk damaged the file since
        f.write(b"\0" * 64)
    assert all(c.ok for c in env.core.proof.preview(SESSION))  # the preview read it before
    body = env.core.proof.build(SESSION, "admin")["body"]
    failed = [c for c in body["checks"] if not c["ok"] and c["id"] == "attendance"]
    assert failed and {c["room"] for c in failed} == {room}
    assert "缺少记录" in failed[0]["message"]


def test_a_room_s_incidents_are_carried_with_their_category_and_state(env, external_dir):
    uploaded_site(env, external_dir)
    room = rooms_of(env)[0]
    doc = env.core.incidents.add(room=room, session=SESSION, category="network", start=env.ctx.now(), end=None,
                                 description="交换机掉电 3 分钟", actor="admin")
    body = env.core.proof.build(SESSION, "admin")["body"]
    carried = next(r for r in body["rooms"] if r["code"] == room)["incidents"]
    assert carried == [{"id": str(doc["id"]), "category": "网络中断", "state": "confirmed", "start": doc["start"],
                        "end": None, "description": "交换机掉电 3 分钟"}]
    assert all(c["ok"] for c in body["checks"])
    env.core.incidents.dismiss(doc["id"], "admin", note="误报")
    assert env.core.proof.build(SESSION, "admin")["body"]["rooms"][0]["incidents"][0]["state"] == "dismissed"
