"""The room result package (kd/formats/result.py): round trip and every refusal."""

import datetime
import json

import pytest

from kd.errors import FormatError
from kd.formats.result import ABSENT, PRESENT, SUMMARY_NAME, answer_member_name, build_result, file_name, load_result
from kd.formats.signing import canonical_json
from kd.formats.timeutil import CST
from tests.unit.formats_helpers import raw_zip, zip_members

CREATED = datetime.datetime(2026, 6, 13, 11, 5, tzinfo=CST)


def candidates(n=4, absent=1, subjects=("S01",), missing_answer=0):
    out = []
    for i in range(n):
        status = ABSENT if i < absent else PRESENT
        answer = None
        if status == PRESENT and i >= absent + missing_answer:
            answer = "answer of {}".format(i).encode("utf-8") * 50
        out.append({"ticket": "T{:03d}".format(i), "subject": subjects[i % len(subjects)], "status": status,
                    "answer": answer})
    return out


def build(**kw):
    args = dict(site_code="11003", room_code="11003001", session_id="1", created_at=CREATED,
                candidates=candidates())
    args.update(kw)
    return build_result(**args)


def rebuilt(data, change=None, members=None):
    """The package with its result.json changed by ``change(body)`` and/or other members."""
    parts = zip_members(data)
    body = json.loads(parts[0][1].decode("utf-8"))
    if change is not None:
        change(body)
    rest = parts[1:] if members is None else members(parts[1:])
    return raw_zip([(SUMMARY_NAME, canonical_json(body).encode("utf-8"))] + rest)


def test_round_trip_bytes_and_path(tmp_path):
    data = build(candidates=candidates(5, absent=1, subjects=("S01", "S02"), missing_answer=1))
    res = load_result(data, site_code="11003", room_code="11003001", session_id="1")
    assert (res.site_code, res.room_code, res.session_id) == ("11003", "11003001", "1")
    counts = res.counts()
    assert counts["candidates"] == 5 and counts["present"] == 4 and counts["absent"] == 1
    assert counts["collected"] == 3
    assert [s["code"] for s in counts["subjects"]] == ["S01", "S02"]
    assert sum(s["collected"] for s in counts["subjects"]) == 3
    path = tmp_path / "r.zip"
    path.write_bytes(data)
    again = load_result(str(path))
    assert again.summary_sha256 == res.summary_sha256 and again.members == res.members
    assert answer_member_name("T002") in res.members and answer_member_name("T001") not in res.members


def test_file_name():
    assert file_name("11003", "11003001", "2") == "RESULT_11003_11003001_2.zip"


@pytest.mark.parametrize("field,value,words", [
    ("site_code", "99999", "考点代码不符"), ("room_code", "11003002", "考场编号不符"), ("session_id", "2", "场次不符"),
])
def test_binding(field, value, words):
    with pytest.raises(FormatError, match=words):
        load_result(build(), **{field: value})


def test_answer_bytes_changed_same_size():
    data = build()
    parts = zip_members(data)
    name, blob = parts[1]
    tampered = raw_zip([parts[0], (name, bytes([blob[0] ^ 1]) + blob[1:])] + parts[2:])
    with pytest.raises(FormatError, match="SHA-256 不符"):
        load_result(tampered)


def test_member_missing_and_extra():
    data = build()
    with pytest.raises(FormatError, match="缺少"):
        load_result(rebuilt(data, members=lambda rest: rest[1:]))
    with pytest.raises(FormatError, match="多出"):
        load_result(rebuilt(data, members=lambda rest: rest + [("answers/EXTRA.dat", b"x")]))


def test_size_mismatch():
    def grow(body):
        body["members"][0]["size"] += 1
    with pytest.raises(FormatError, match="大小不符"):
        load_result(rebuilt(build(), grow))


@pytest.mark.parametrize("change,words", [
    (lambda b: b.update(format_version=2), "format_version"),
    (lambda b: b.update(kind="site_package"), "kind"),
    (lambda b: b.update(created_at="2026-06-13 11:05"), "created_at"),
    (lambda b: b.update(room_code="../x"), "room_code"),
    (lambda b: b["subjects"][0].update(present=9), "人数统计"),
    (lambda b: b["subjects"][0].update(collected=0), "人数统计"),
    (lambda b: b["candidates"][0].update(status="迟到"), "status"),
    (lambda b: b["candidates"][0].update(subject="S99"), "subject"),
    (lambda b: b["candidates"][1].update(ticket=b["candidates"][2]["ticket"]), "重复"),
    (lambda b: b["candidates"][0].update(answer=b["candidates"][1]["answer"]), "缺考考生不应有作答文件"),
    (lambda b: b["candidates"][2].update(answer=b["candidates"][1]["answer"]), "重复"),
    (lambda b: b["candidates"][1].update(answer=None), "不属于任何参考考生"),
    (lambda b: b.update(candidates="x"), "应为列表"),
])
def test_bad_summary(change, words):
    with pytest.raises(FormatError, match=words):
        load_result(rebuilt(build(), change))


@pytest.mark.parametrize("name", ["../evil.dat", "answers/../x.dat", "other/x.dat", "answers/a/b.dat",
                                  "answers/CON.dat", "/answers/x.dat"])
def test_unsafe_member_names_in_list(name):
    data = build()

    def rename(body):
        body["members"][0]["name"] = name
        body["candidates"][1]["answer"] = name

    def move(rest):
        return [(name, rest[0][1])] + rest[1:]
    with pytest.raises(FormatError):
        load_result(rebuilt(data, rename, move))


def test_not_a_zip_and_garbage_json():
    with pytest.raises(FormatError, match="zip"):
        load_result(b"PK not really a zip" * 10)
    with pytest.raises(FormatError, match="result.json"):
        load_result(raw_zip([(SUMMARY_NAME, b"{not json")]))
    with pytest.raises(FormatError, match="缺少成员 result.json"):
        load_result(raw_zip([("answers/x.dat", b"x")]))


def test_missing_file(tmp_path):
    with pytest.raises(FormatError, match="无法读取"):
        load_result(str(tmp_path / "nope.zip"))


def test_builder_refuses_what_loader_refuses():
    bad = candidates()
    bad[0]["answer"] = b"absent but answered"
    with pytest.raises(ValueError):
        build(candidates=bad)
    with pytest.raises(ValueError):
        build(candidates=candidates(), subjects=["S02"])


def test_all_absent_package_has_no_members():
    data = build(candidates=candidates(3, absent=3))
    res = load_result(data)
    assert res.members == {} and res.counts()["present"] == 0 and res.counts()["absent"] == 3
