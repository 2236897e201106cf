"""kd/formats/proof.py without a site: each check's rule, the structure, the signature chain.

The proof is signed by the emulated dongle itself (``kd.lock.emulator.Dongle`` answering
``CHAL``, no transport), the manifest and receipts by a platform key; ``verify`` gets
nothing but that platform key.
"""

import base64
import datetime
import hashlib
import json

import pytest

from kd.formats import proof as P
from kd.formats.documents import build_upload_receipt
from kd.formats.signing import Signer, TrustedKeys
from kd.lock import protocol as LP
from kd.lock.emulator import Dongle

SITE, SESSION = "11003", "1"
ROOMS = ["R1", "R2", "R3"]
NOW = datetime.datetime(2026, 6, 13, 12, 0, tzinfo=datetime.timezone(datetime.timedelta(hours=8)))
SHA = "ab" * 32


@pytest.fixture
def platform():
    return Signer.generate()


@pytest.fixture
def dongle(tmp_path, platform):
    return Dongle(str(tmp_path / "lock"), trust=[platform.public_key], lock_id="KL-0001", site_code=SITE)


def signer_of(dongle):
    def sign(digest):
        reply = LP.parse_reply(dongle.handle(b"CHAL " + digest.hex().encode()).rstrip(b"\n"))
        assert reply.ok
        return dongle.lock_id, int(reply.fields[0]), LP.b64decode(reply.fields[1])
    return sign


def make_body(platform, dongle):
    head = {"format_version": 1, "site_code": SITE, "exam_name": "鉴定", "publish_time": "2026-06-01T09:00:00+08:00",
            "lock": {"id": dongle.lock_id, "public_key": base64.b64encode(dongle.public_key).decode("ascii")},
            "rooms": [{"code": r, "name": r} for r in ROOMS], "sessions": [{"id": SESSION, "name": "第一场"}]}
    envelope = platform.sign_document("site_package", head).decode("utf-8")

    roster = [{"ticket": "{}-{}".format(r, i), "room": r, "seat": i} for r in ROOMS for i in (1, 2)]
    rooms = []
    for r in ROOMS:
        receipt = build_upload_receipt(platform, site_code=SITE, session_id=SESSION, room_code=r, file_id="f-" + r,
                                       sha256=SHA, size=100, received_at=NOW)
        rooms.append({"code": r, "result": {"sha256": SHA, "size": 100, "received_at": None, "source": "lan"},
                      "attendance": [{"ticket": "{}-1".format(r), "status": P.ABSENT},
                                     {"ticket": "{}-2".format(r), "status": P.PRESENT}],
                      "backup": {"folder": "E:\\KD", "name": r + ".zip", "sha256": SHA, "size": 100,
                                 "verified_at": None, "valid": True},
                      "receipt": {"file_id": "f-" + r, "received_at": None, "document": receipt.decode("utf-8")},
                      "incidents": [], "extra_time": []})
    return {"format_version": 1, "kind": P.KIND, "site_code": SITE, "session_id": SESSION, "session_name": "第一场",
            "created_at": "2026-06-13T12:00:00+08:00",
            "package": {"manifest": envelope, "manifest_sha256": hashlib.sha256(envelope.encode()).hexdigest(),
                        "publish_time": head["publish_time"]},
            "roster": roster, "rooms": rooms, "audit": {"seq": 3, "head": "0" * 64}}


def sealed(body, dongle, trusted, recorded=None):
    body["checks"] = recorded if recorded is not None else [c.as_dict() for c in P.run_checks(body, trusted)]
    return P.encode(P.seal(body, signer_of(dongle)))


@pytest.fixture
def case(platform, dongle):
    return make_body(platform, dongle), dongle, TrustedKeys([platform.public_key])


def first_failure(case, change):
    body, dongle, trusted = case
    change(body)
    verdict = P.verify(sealed(body, dongle, trusted), trusted)
    assert not verdict.ok
    return verdict.first


def test_a_good_proof_verifies_and_the_signed_bytes_are_the_dongle_s_challenge(case):
    body, dongle, trusted = case
    data = sealed(body, dongle, trusted)
    verdict = P.verify(data, trusted)
    assert verdict.ok and verdict.failures == () and "3 个考场，6 名考生" in verdict.message()
    assert P.challenge_message("KL-0001", b"\1" * 32, 5) == LP.challenge_message("KL-0001", b"\1" * 32, 5)
    assert P.document_sha256(data) == P.digest(body).hex()
    assert json.loads(data.decode("utf-8"))["format"] == "kd-proof/1" and data.endswith(b"\n")
    assert P.file_name(SITE, SESSION) == "考点数据完整性证明(11003-1).json"


def test_a_ticket_in_two_rooms_is_named_in_the_room_it_does_not_belong_to(case):
    first = first_failure(case, lambda b: b["rooms"][1]["attendance"].append({"ticket": "R1-1", "status": P.PRESENT}))
    assert (first.id, first.room, first.ticket) == ("attendance", "R2", "R1-1")
    assert first.message.startswith("考场 R2 准考证号 R1-1 属于考场 R1")


@pytest.mark.parametrize("entry, words", [
    ({"ticket": "X-9", "status": P.PRESENT}, "不在考场数据包的名单中"),
    ({"ticket": "R1-2", "status": P.PRESENT}, "出现多次"),
])
def test_a_ticket_outside_the_roster_or_twice(case, entry, words):
    first = first_failure(case, lambda b: b["rooms"][0]["attendance"].append(entry))
    assert first.id == "attendance" and first.room == "R1" and first.ticket == entry["ticket"]
    assert words in first.message


def test_a_status_other_than_present_or_absent_and_a_missing_ticket(case):
    def change(body):
        body["rooms"][2]["attendance"][0]["status"] = "迟到"
        del body["rooms"][2]["attendance"][1]
    body, dongle, trusted = case
    change(body)
    verdict = P.verify(sealed(body, dongle, trusted), trusted)
    got = [(f.id, f.room, f.ticket) for f in verdict.failures]
    assert got == [("attendance", "R3", "R3-1"), ("attendance", "R3", "R3-2")]
    assert "不是参考或缺考" in verdict.failures[0].message and "缺少记录" in verdict.failures[1].message


def test_an_added_room_and_a_room_left_out(case):
    def added(body):
        body["rooms"].append(dict(body["rooms"][0], code="R9"))
    first = first_failure(case, added)
    assert (first.id, first.room) == ("rooms", "R9") and "多出的考场" in first.message
    first = first_failure(case, lambda b: (b["rooms"].pop(), b["rooms"].pop(1)))  # R9 away, then R2
    assert (first.id, first.room) == ("rooms", "R2") and "证明中没有这个考场" in first.message


def test_no_result_no_backup_a_damaged_backup_and_a_hash_that_differs(platform, dongle):
    trusted = TrustedKeys([platform.public_key])
    for change, named in (
        (lambda b: b["rooms"][0].update(result=None, attendance=[]), ("result", "R1", "没有回收的结果包")),
        (lambda b: b["rooms"][1].update(backup=None), ("backup", "R2", "没有外部存储备份")),
        (lambda b: b["rooms"][1]["backup"].update(valid=False), ("backup", "R2", "回读校验未通过")),
        (lambda b: b["rooms"][2]["backup"].update(size=99), ("result_hash", "R3", "外部存储备份")),
    ):
        first = first_failure((make_body(platform, dongle), dongle, trusted), change)
        assert (first.id, first.room) == named[:2] and named[2] in first.message, first.text()


def test_a_receipt_of_another_room_an_unsigned_one_and_a_missing_one(platform, dongle):
    trusted = TrustedKeys([platform.public_key])
    forged = build_upload_receipt(Signer.generate(), site_code=SITE, session_id=SESSION, room_code="R2",
                                  file_id="f", sha256=SHA, size=100, received_at=NOW).decode("utf-8")
    for change, words in (
        (lambda b: b["rooms"][1].update(receipt=b["rooms"][0]["receipt"]), "属于别处"),
        (lambda b: b["rooms"][1]["receipt"].update(document=forged), "无法用监控平台公钥验证"),
        (lambda b: b["rooms"][1].update(receipt=None), "没有监控平台的上报回执"),
    ):
        first = first_failure((make_body(platform, dongle), dongle, trusted), change)
        assert (first.id, first.room) == ("receipt", "R2") and words in first.message, first.text()


def test_an_undecided_incident(case):
    incident = {"id": "7", "category": "网络中断", "state": "drafted", "start": None, "end": None, "description": ""}
    first = first_failure(case, lambda b: b["rooms"][0]["incidents"].append(incident))
    assert (first.id, first.room) == ("incidents", "R1") and "7" in first.message and "确认或驳回" in first.message
    assert "请在“考中 → 考场情况”中" in first.message  # the navigation entry, as the page list names it


def test_recorded_checks_that_claim_more_than_the_data_holds(case):
    body, dongle, trusted = case
    body["rooms"][0]["attendance"].pop()
    lying = [dict(c, ok=True, message="") for c in (x.as_dict() for x in P.run_checks(body, trusted))]
    verdict = P.verify(sealed(body, dongle, trusted, recorded=lying), trusted)
    assert [f.id for f in verdict.failures] == ["attendance", "checks"]


def test_a_changed_byte_a_foreign_dongle_and_an_untrusted_platform(case, tmp_path, platform):
    body, dongle, trusted = case
    data = sealed(body, dongle, trusted)
    doc = json.loads(data)
    doc["body"]["audit"]["seq"] += 1
    assert P.verify(P.encode(doc), trusted).first.id == "signature"
    other = Dongle(str(tmp_path / "other"), trust=[platform.public_key], lock_id="KL-0001", site_code=SITE)
    assert P.verify(sealed(make_body(platform, dongle), other, trusted), trusted).first.id == "signature"
    assert P.verify(data, TrustedKeys([Signer.generate().public_key])).first.id == "manifest"


@pytest.mark.parametrize("data", [b"", b"\xff", b"[]", b'{"format": "kd-proof/2"}',
                                  b'{"format": "kd-proof/1", "format": "kd-proof/1"}',
                                  b'{"format": "kd-proof/1", "body": {}, "signature": {}}'])
def test_what_is_not_a_proof_is_a_format_failure(data, platform):
    verdict = P.verify(data, TrustedKeys([platform.public_key]))
    assert not verdict.ok and verdict.first.id == "format"
    assert verdict.first.message.startswith("考点数据完整性证明无法读取")


def test_preview_stage_expects_no_receipt_and_a_backup_only_once_one_was_made(case):
    body, _dongle, trusted = case
    for room in body["rooms"]:
        room["receipt"] = None
        room["backup"] = None
    checks = P.run_checks(body, trusted, P.PREVIEW)
    assert all(c.ok for c in checks) and not {c.id for c in checks} & {"receipt", "backup"}
    body["rooms"][0]["backup"] = {"sha256": SHA, "size": 100, "valid": True}
    failed = [c for c in P.run_checks(body, trusted, P.PREVIEW) if not c.ok]
    assert [(c.id, c.room) for c in failed] == [("backup", "R2"), ("backup", "R3")]


def test_a_recorded_message_in_other_words_still_verifies_but_a_float_is_refused(case):
    body, dongle, trusted = case
    recorded = [dict(c.as_dict(), message="旧版本的说明") for c in P.run_checks(body, trusted)]
    data = sealed(body, dongle, trusted, recorded=recorded)
    assert P.verify(data, trusted).ok
    floated = data.replace(b'"seq":3', b'"seq":3.0')
    assert floated != data and P.verify(floated, trusted).first.id == "format"
