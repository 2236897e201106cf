"""Signed documents: 考试授权 (.PTQ), 授权验证, 校时 ticket, upload receipt; round trips and bad input."""

import datetime
import hashlib
import json

import pytest

from kd.errors import FormatError
from kd.formats import documents as d
from kd.formats.signing import MAX_DOCUMENT_BYTES, Signer
from kd.formats.timeutil import CST

SITE = "11003"
START = datetime.datetime(2026, 6, 13, 9, 0, tzinfo=CST)
H = datetime.timedelta(hours=1)
M = datetime.timedelta(minutes=1)


def ptq(signer, **over):
    args = dict(site_code=SITE, session_id="1", session_name="第一场次", start=START, duration_min=90,
                valid_from=START - 24 * H, valid_until=START + 3 * H, issued_at=START - 48 * H)
    args.update(over)
    return d.build_session_authorization(signer, **args)


def verification(signer, **over):
    args = dict(site_code=SITE, session_id="1", lock_id="LK11003", valid_from=START - 2 * H,
                valid_until=START + 2 * H, issued_at=START - 3 * H)
    args.update(over)
    return d.build_authorization_verification(signer, **args)


def ticket(signer, **over):
    args = dict(lock_id="LK11003", site_code=SITE, server_time=START - 50 * M, valid_until=START + 4 * H)
    args.update(over)
    return d.build_sync_ticket(signer, **args)


DATA = b"result package bytes"
DIGEST = hashlib.sha256(DATA).hexdigest()


def receipt(signer, **over):
    args = dict(site_code=SITE, session_id="1", room_code="11003001", file_id="r-11003001-1", sha256=DIGEST,
                size=len(DATA), received_at=START + 2 * H)
    args.update(over)
    return d.build_upload_receipt(signer, **args)


def refused(call, *words):
    with pytest.raises(FormatError) as info:
        call()
    for word in words:
        assert word in str(info.value), str(info.value)
    assert info.value.remedy
    return info.value


def resign(signer, data, kind, **changes):
    """The same document with body fields changed and a valid signature."""
    body = json.loads(json.loads(data)["body"])
    body.update(changes)
    for key in [k for k, v in changes.items() if v is None]:
        del body[key]
    return signer.sign_document(kind, body)


# -- 考试授权 -----------------------------------------------------------------------------

def test_authorization_round_trip(platform, trusted):
    data = ptq(platform)
    doc = d.load_session_authorization(data, trusted, SITE, now=START - H, session_id="1")
    assert (doc.site_code, doc.session_id, doc.session_name, doc.duration_min) == (SITE, "1", "第一场次", 90)
    assert doc.start == START and doc.valid_until == START + 3 * H
    assert doc.raw == data and doc.body["auth_id"] == doc.auth_id


def test_authorization_window_edges(platform, trusted):
    data = ptq(platform)
    d.load_session_authorization(data, trusted, SITE, now=START - 24 * H)
    refused(lambda: d.load_session_authorization(data, trusted, SITE, now=START - 24 * H - M), "尚未生效")
    refused(lambda: d.load_session_authorization(data, trusted, SITE, now=START + 3 * H), "已过期")
    d.load_session_authorization(data, trusted, SITE, now=START + 3 * H, skew=M)


@pytest.mark.parametrize("site,session,words", [("11004", None, "考点代码不符"), (SITE, "2", "场次不符")])
def test_authorization_binding(platform, trusted, site, session, words):
    refused(lambda: d.load_session_authorization(ptq(platform), trusted, site, START, session), words)


def test_authorization_unknown_key(trusted):
    refused(lambda: d.load_session_authorization(ptq(Signer.generate()), trusted, SITE, START), "不受信任")


def test_authorization_tampered(platform, trusted):
    data = ptq(platform).replace("第一场次".encode(), "第二场次".encode())
    err = refused(lambda: d.load_session_authorization(data, trusted, SITE, START), "签名校验失败")
    assert err.remedy == d.REMEDY_AUTHORIZATION and "PTQ" in err.remedy


def test_authorization_is_not_a_verification(platform, trusted):
    refused(lambda: d.load_authorization_verification(ptq(platform), trusted, SITE, START), "文件类型不符")


@pytest.mark.parametrize("junk", [b"", b"{", b"[]", b"\xff\xfe", b'{"format":"kd-signed/1"}', "字".encode() * 10])
def test_authorization_garbage(trusted, junk):
    refused(lambda: d.load_session_authorization(junk, trusted, SITE, START), "考试授权文件")


def test_authorization_oversized(trusted):
    refused(lambda: d.load_session_authorization(b" " * (MAX_DOCUMENT_BYTES + 1), trusted, SITE, START), "过大")


def test_authorization_not_bytes(trusted):
    refused(lambda: d.load_session_authorization("text", trusted, SITE, START), "字节")


@pytest.mark.parametrize("changes,words", [
    ({"duration_min": "90"}, "duration_min"),
    ({"duration_min": True}, "duration_min"),
    ({"session_id": "../1"}, "session_id"),
    ({"start": "2026-06-13T09:00:00"}, "缺少时区"),
    ({"valid_until": 5}, "valid_until"),
    ({"format_version": 2}, "format_version"),
    ({"site_code": None}, "site_code"),
    ({"valid_until": "2026-06-12T09:00:00+08:00"}, "有效期无效"),
])
def test_authorization_bad_fields_with_valid_signature(platform, trusted, changes, words):
    data = resign(platform, ptq(platform), d.KIND_AUTHORIZATION, **changes)
    refused(lambda: d.load_session_authorization(data, trusted, SITE, START), words)


def test_naive_now_is_a_programming_error(platform, trusted):
    with pytest.raises(ValueError):
        d.load_session_authorization(ptq(platform), trusted, SITE, datetime.datetime(2026, 6, 13, 9, 0))


def test_builders_refuse_bad_input(platform):
    with pytest.raises(ValueError):
        ptq(platform, session_id="第一")
    with pytest.raises(ValueError):
        ptq(platform, start=datetime.datetime(2026, 6, 13, 9, 0))
    with pytest.raises(ValueError):
        receipt(platform, sha256="ABC")
    with pytest.raises(ValueError):
        ticket(platform, lock_id="")


# -- 授权验证 ------------------------------------------------------------------------------

def test_verification_round_trip(platform, trusted):
    doc = d.load_authorization_verification(verification(platform), trusted, SITE, START - H, "1", "LK11003")
    assert (doc.site_code, doc.session_id, doc.lock_id) == (SITE, "1", "LK11003")
    assert len(doc.nonce) == 32


@pytest.mark.parametrize("kwargs,words", [
    (dict(site_code="11004"), "考点代码不符"),
    (dict(session_id="2"), "场次不符"),
    (dict(lock_id="LK99999"), "机考锁编号不符"),
    (dict(now=START + 2 * H), "已过期"),
    (dict(now=START - 3 * H), "尚未生效"),
])
def test_verification_refused(platform, trusted, kwargs, words):
    args = dict(site_code=SITE, now=START, session_id="1", lock_id="LK11003")
    args.update(kwargs)
    data = verification(platform)
    err = refused(lambda: d.load_authorization_verification(data, trusted, **args), words)
    assert err.remedy == d.REMEDY_VERIFICATION


def test_verification_unknown_key(trusted):
    refused(lambda: d.load_authorization_verification(verification(Signer.generate()), trusted, SITE, START),
            "不受信任")


# -- 校时 ----------------------------------------------------------------------------------

def test_sync_ticket_round_trip_and_session_rule(platform, trusted):
    doc = d.load_sync_ticket(ticket(platform), trusted, START - 50 * M, lock_id="LK11003", site_code=SITE)
    assert doc.server_time == START - 50 * M and doc.lock_id == "LK11003"
    assert d.synced_for_session(doc, START)
    assert d.synced_for_session(doc, START - 50 * M)
    assert not d.synced_for_session(doc, START - 51 * M)  # synced after that start
    assert not d.synced_for_session(doc, START + 11 * M)  # more than an hour before
    d.require_sync_for_session(doc, START + 10 * M)
    refused(lambda: d.require_sync_for_session(doc, START + 11 * M), "机考锁校时不符合要求", "60 分钟")


@pytest.mark.parametrize("kwargs,words", [
    (dict(lock_id="LK99999"), "机考锁编号不符"),
    (dict(site_code="11004"), "考点代码不符"),
    (dict(now=START - 51 * M), "尚未生效"),
    (dict(now=START + 4 * H), "已过期"),
])
def test_sync_ticket_refused(platform, trusted, kwargs, words):
    args = dict(now=START, lock_id="LK11003", site_code=SITE)
    args.update(kwargs)
    data = ticket(platform)
    err = refused(lambda: d.load_sync_ticket(data, trusted, **args), words)
    assert "校时" in err.remedy


def test_sync_ticket_tampered_and_replayed_as_other_kind(platform, trusted):
    data = ticket(platform)
    forged = data.replace(b"T08:10:00", b"T08:30:00")
    assert forged != data
    refused(lambda: d.load_sync_ticket(forged, trusted, START), "签名校验失败")
    refused(lambda: d.load_session_authorization(data, trusted, SITE, START), "文件类型不符")


# -- upload receipt -------------------------------------------------------------------------

def test_receipt_round_trip(platform, trusted):
    doc = d.load_upload_receipt(receipt(platform), trusted, SITE, session_id="1", room_code="11003001",
                                file_id="r-11003001-1", sha256=DIGEST, size=len(DATA))
    assert (doc.sha256, doc.size, doc.room_code) == (DIGEST, len(DATA), "11003001")
    assert doc.received_at == START + 2 * H


@pytest.mark.parametrize("kwargs,words", [
    (dict(sha256="0" * 64), "文件摘要（SHA-256）不符"),
    (dict(size=len(DATA) + 1), "文件大小不符"),
    (dict(room_code="11003002"), "考场代码不符"),
    (dict(file_id="other"), "文件编号不符"),
    (dict(session_id="2"), "场次不符"),
])
def test_receipt_refused(platform, trusted, kwargs, words):
    data = receipt(platform)
    err = refused(lambda: d.load_upload_receipt(data, trusted, SITE, **kwargs), words)
    assert "续报" in err.remedy


def test_receipt_wrong_site_and_bad_fields(platform, trusted):
    refused(lambda: d.load_upload_receipt(receipt(platform), trusted, "11004"), "考点代码不符")
    data = resign(platform, receipt(platform), d.KIND_RECEIPT, size=-1)
    refused(lambda: d.load_upload_receipt(data, trusted, SITE), "size")
    data = resign(platform, receipt(platform), d.KIND_RECEIPT, sha256=DIGEST.upper())
    refused(lambda: d.load_upload_receipt(data, trusted, SITE), "sha256")


def test_window_and_sync_refusals_show_times_as_people_read_them(platform, trusted):
    """The 已过期 / 尚未生效 / 校时 refusals say ``2026-06-13 12:00``, never ISO text."""
    data = ptq(platform)
    late = refused(lambda: d.load_session_authorization(data, trusted, SITE, now=START + 3 * H), "已过期")
    assert "有效期至 2026-06-13 12:00，当前时间 2026-06-13 12:00" in late.cause and "T" not in late.cause
    early = refused(lambda: d.load_session_authorization(data, trusted, SITE, now=START - 25 * H), "尚未生效")
    assert "生效时间 2026-06-12 09:00" in early.cause
    stale = d.load_sync_ticket(ticket(platform, server_time=START - 2 * H), trusted, now=START - 2 * H)
    sync = refused(lambda: d.require_sync_for_session(stale, START), "机考锁校时不符合要求")
    assert "校时时间 2026-06-13 07:00 不在开考时间 2026-06-13 09:00 前 60 分钟内" in sync.cause
