"""Site data package (考场数据包): round trip and the bad-input corpus.

Every bad input must be refused with a FormatError before anything is written: the
``import_into`` helper plays the app's import (verify, then extract into a folder that
already holds the previous package's files) and each refusal test asserts that the
folder is byte-for-byte unchanged.
"""

import base64
import hashlib
import io
import json
import os
import struct
import zipfile

import pytest

from kd.errors import FormatError
from kd.formats import package as pkg
from kd.formats.package import build_package, load_package, room_member_name
from kd.formats.safezip import name_problem
from kd.formats.signing import Signer, canonical_json
from tests.unit.formats_helpers import make_manifest, many_members_zip, raw_zip, room_files, zip_members

SITE = "11003"


@pytest.fixture(scope="module")
def lock():
    return Signer.generate()


@pytest.fixture(scope="module")
def manifest(lock):
    return make_manifest(lock, rooms=3, sessions=2, per_room=4)


@pytest.fixture(scope="module")
def files(manifest):
    return room_files(manifest, size=300)


@pytest.fixture(scope="module")
def good(platform, manifest, files):
    return build_package(platform, manifest, files)


@pytest.fixture
def target(tmp_path):
    """A rooms folder holding the previous package's files."""
    folder = tmp_path / "rooms"
    folder.mkdir()
    (folder / "11003001.dat").write_bytes(b"previous package")
    return folder


def snapshot(folder):
    out = {}
    for root, dirs, names in os.walk(str(folder)):
        for name in dirs + names:
            path = os.path.join(root, name)
            out[os.path.relpath(path, str(folder))] = open(path, "rb").read() if os.path.isfile(path) else None
    return out


def import_into(folder, source, trusted, site=SITE, loaded=None):
    package = load_package(source, trusted, site, loaded)
    package.extract_rooms(str(folder))
    return package


def assert_refused(folder, source, trusted, *words, site=SITE, loaded=None):
    before = snapshot(folder)
    with pytest.raises(FormatError) as info:
        import_into(folder, source, trusted, site, loaded)
    assert snapshot(folder) == before
    message = str(info.value)
    assert message.startswith("考场数据包校验失败：")
    assert "手工导入" in info.value.remedy
    for word in words:
        assert word in message, message
    return info.value


def signed_manifest(signer, body):
    return signer.sign_document(pkg.KIND, body)


def head_of(data):
    envelope = json.loads(dict(zip_members(data))["manifest.json"])
    return json.loads(envelope["body"])


def replace(data, name, new_bytes=None, drop=False, add=()):
    members = [(n, b) for n, b in zip_members(data) if not (drop and n == name)]
    if new_bytes is not None:
        members = [(n, new_bytes if n == name else b) for n, b in members]
    return raw_zip(members + list(add))


# -- round trip ----------------------------------------------------------------------

def test_round_trip_from_bytes(good, trusted, manifest, files):
    package = load_package(good, trusted, SITE)
    assert package.site_code == SITE
    assert package.publish_time == manifest["publish_time"]
    assert package.published_at.utcoffset().total_seconds() == 8 * 3600
    assert package.exam_name == manifest["exam_name"]
    assert package.rooms == manifest["rooms"]
    assert package.sessions == manifest["sessions"]
    assert package.subjects == manifest["subjects"]
    assert package.candidates == manifest["candidates"]
    assert package.lock_id == manifest["lock"]["id"]
    assert base64.b64encode(package.lock_public_key).decode() == manifest["lock"]["public_key"]
    assert package.manifest["candidate_count"] == len(manifest["candidates"]) == 24
    for code, data in files.items():
        assert package.room_file(code) == data
        assert package.members[room_member_name(code)]["sha256"] == hashlib.sha256(data).hexdigest()
    assert len(package.candidates_of("11003001", "1")) == 4
    assert package.session_start("2").hour == 13


def test_round_trip_from_path_and_extract(good, trusted, files, tmp_path, target):
    path = tmp_path / "考场数据包(11003).zip"
    path.write_bytes(good)
    package = import_into(target, str(path), trusted)
    assert sorted(os.listdir(str(target))) == sorted(code + ".dat" for code in files)
    for code, data in files.items():
        assert (target / (code + ".dat")).read_bytes() == data
    dest = tmp_path / "one.dat"
    package.copy_room_file("11003002", str(dest))
    assert dest.read_bytes() == files["11003002"]
    with pytest.raises(KeyError):
        package.room_file("99999999")


def test_manifest_sha256_names_the_package(good, trusted):
    package = load_package(good, trusted, SITE)
    raw = dict(zip_members(good))["manifest.json"]
    assert package.manifest_sha256 == hashlib.sha256(raw).hexdigest()


def test_realistic_site_metadata_fits(platform, lock, trusted):
    manifest = make_manifest(lock, rooms=100, sessions=2, per_room=40)
    data = build_package(platform, manifest, room_files(manifest, size=8))
    package = load_package(data, trusted, SITE)
    assert len(package.rooms) == 100 and len(package.candidates) == 8000
    assert len(dict(zip_members(data))["manifest.json"]) < pkg.MAX_MANIFEST_BYTES // 4


def test_compressed_rooms_load(platform, manifest, trusted):
    text_like = {room["code"]: ("第{}考场数据".format(i) * 400).encode() for i, room in enumerate(manifest["rooms"])}
    data = build_package(platform, manifest, text_like, compress_rooms=True)
    package = load_package(data, trusted, SITE)
    assert package.room_file("11003003") == text_like["11003003"]


# -- trust and binding ----------------------------------------------------------------

def test_wrong_signature(good, target, trusted):
    raw = dict(zip_members(good))["manifest.json"]
    envelope = json.loads(raw)
    envelope["body"] = envelope["body"].replace('"exam_name":"', '"exam_name":"伪造')
    tampered = replace(good, "manifest.json", json.dumps(envelope, ensure_ascii=False).encode())
    assert_refused(target, tampered, trusted, "签名校验失败")


def test_unknown_key(manifest, files, target, trusted):
    other = build_package(Signer.generate(), manifest, files)
    assert_refused(target, other, trusted, "不受信任")


def test_wrong_site(good, target, trusted):
    assert_refused(target, good, trusted, "考点代码不符", site="11004")


def test_rollback_refused_same_or_newer_accepted(good, target, trusted, manifest):
    assert_refused(target, good, trusted, "不能回退", loaded="2026-06-10T18:00:01+08:00")
    # the same instant written in another zone is the same time, not a rollback
    load_package(good, trusted, SITE, "2026-06-10T10:00:00Z")
    load_package(good, trusted, SITE, manifest["publish_time"])
    load_package(good, trusted, SITE, "2026-06-01T00:00:00+08:00")


def test_other_kind_of_document_as_manifest(good, target, trusted, platform):
    ptq = platform.sign_document("session_authorization", head_of(good))
    assert_refused(target, replace(good, "manifest.json", ptq), trusted, "文件类型不符")


# -- member list ----------------------------------------------------------------------

def test_missing_member(good, target, trusted):
    assert_refused(target, replace(good, "rooms/11003002.dat", drop=True), trusted, "缺少", "rooms/11003002.dat")


def test_missing_manifest(good, target, trusted):
    assert_refused(target, replace(good, "manifest.json", drop=True), trusted, "缺少成员 manifest.json")


def test_extra_member(good, target, trusted):
    assert_refused(target, replace(good, "", add=[("rooms/11003009.dat", b"x")]), trusted, "多出",
                   "rooms/11003009.dat")


def test_signed_list_without_a_room_file(good, target, trusted, platform):
    body = head_of(good)
    body["members"] = [m for m in body["members"] if m["name"] != "rooms/11003003.dat"]
    data = replace(replace(good, "manifest.json", signed_manifest(platform, body)), "rooms/11003003.dat", drop=True)
    assert_refused(target, data, trusted, "清单成员与考场不符")


def test_size_mismatch(good, target, trusted):
    assert_refused(target, replace(good, "rooms/11003001.dat", os.urandom(301)), trusted, "大小不符")


def test_hash_mismatch_same_size(good, target, trusted):
    assert_refused(target, replace(good, "rooms/11003001.dat", os.urandom(300)), trusted, "SHA-256 不符")


def test_hash_mismatch_in_candidates(good, target, trusted):
    original = dict(zip_members(good))["candidates.json"]
    forged = original.replace(b"11003001", b"11003002", 1)
    assert len(forged) == len(original)
    assert_refused(target, replace(good, "candidates.json", forged), trusted, "candidates.json", "SHA-256")


def test_oversized_member_by_header(good, target, trusted):
    members = zip_members(good)
    data = raw_zip(members, declared_sizes={"rooms/11003001.dat": pkg.CAPS.max_member_bytes + 1})
    assert_refused(target, data, trusted, "成员过大")


def test_oversized_manifest(good, target, trusted):
    assert_refused(target, replace(good, "manifest.json", b" " * (pkg.MAX_MANIFEST_BYTES + 1)), trusted,
                   "manifest.json 过大")


def test_signed_size_above_cap(good, target, trusted, platform):
    body = head_of(good)
    body["members"][1]["size"] = pkg.CAPS.max_member_bytes + 1
    assert_refused(target, replace(good, "manifest.json", signed_manifest(platform, body)), trusted, "members[1].size")


# -- names ------------------------------------------------------------------------------

BAD_NAMES = ["../x", "rooms/../../x", "/abs", "/etc/passwd", "C:x", "c:/x", "C:\\x", "rooms\\11003001.dat",
             "CON", "con.txt", "rooms/NUL.dat", "COM1", "lpt9.log", "aux", "a//b", "./a", "x.", "x ", "a\x01b",
             "a?b", "a*b", "", "rooms/" + "x" * 200]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_name_problem(name):
    assert name_problem(name) is not None


@pytest.mark.parametrize("name", ["manifest.json", "rooms/11003001.dat", "rooms/考场.dat", "a/b/c.txt",
                                  "console.txt", "com10", "lpt", "nul_x"])
def test_name_ok(name):
    assert name_problem(name) is None


@pytest.mark.parametrize("name", [n for n in BAD_NAMES if n])
def test_zip_slip_names_refused(good, target, trusted, name):
    data = raw_zip(zip_members(good) + [(name, b"evil")])
    assert_refused(target, data, trusted)
    assert not (target.parent / "x").exists()


def test_duplicate_names(good, target, trusted):
    members = zip_members(good)
    assert_refused(target, raw_zip(members + [members[1]]), trusted, "重复")
    assert_refused(target, raw_zip(members + [("ROOMS/11003001.DAT", b"x")]), trusted, "重复")


def test_directory_entry(good, target, trusted):
    assert_refused(target, raw_zip(zip_members(good) + [("rooms/", b"")]), trusted)


def test_encrypted_member(good, target, trusted):
    assert_refused(target, raw_zip(zip_members(good), flags=0x1), trusted, "加密")


def test_unsupported_compression(good, target, trusted):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in zip_members(good):
            zf.writestr(name, data, compress_type=zipfile.ZIP_BZIP2)
    assert_refused(target, buf.getvalue(), trusted, "压缩方式")


# -- bombs, counts, broken files --------------------------------------------------------

def test_zip_bomb_by_ratio(good, target, trusted):
    members = zip_members(good) + [("bomb.dat", bytes(8 * 1024 * 1024))]
    assert_refused(target, raw_zip(members, method=zipfile.ZIP_DEFLATED), trusted, "压缩比")


def test_zip_bomb_lying_about_its_size(good, target, trusted, platform):
    """Headers and signed list say 300 bytes; the deflate stream holds 8 MiB of zeros."""
    members = dict(zip_members(good))
    bomb = bytes(8 * 1024 * 1024)
    body = head_of(good)
    for entry in body["members"]:
        if entry["name"] == "rooms/11003001.dat":
            entry["sha256"] = hashlib.sha256(bomb[:300]).hexdigest()
    members["manifest.json"] = signed_manifest(platform, body)
    members["rooms/11003001.dat"] = bomb
    data = raw_zip(list(members.items()), method=zipfile.ZIP_DEFLATED, declared_sizes={"rooms/11003001.dat": 300})
    assert_refused(target, data, trusted, "rooms/11003001.dat")


def test_100k_members_refused_from_end_record(target, trusted):
    assert_refused(target, many_members_zip(100000), trusted, "成员数过多")


def test_members_hidden_behind_a_lying_count(target, trusted):
    assert_refused(target, many_members_zip(100000, lie_count=3), trusted, "目录过大")


def test_just_over_member_cap(target, trusted):
    assert_refused(target, many_members_zip(pkg.CAPS.max_members + 1), trusted, "成员数过多")


@pytest.mark.parametrize("cut", [0.5, 0.99, 40])
def test_truncated(good, target, trusted, cut):
    size = int(len(good) * cut) if isinstance(cut, float) else cut
    assert_refused(target, good[:size], trusted)


def test_truncated_end_record(good, target, trusted):
    assert_refused(target, good[:-5], trusted, "不是有效的 zip")


@pytest.mark.parametrize("junk", [b"", b"hello", b"PK\x05\x06", os.urandom(4096), b'{"format": "kd-signed/1"}',
                                  b"PK\x03\x04" + os.urandom(200)])
def test_not_a_zip(target, trusted, junk):
    assert_refused(target, junk, trusted)


def test_missing_file(tmp_path, trusted):
    with pytest.raises(FormatError) as info:
        load_package(str(tmp_path / "nope.zip"), trusted, SITE)
    assert "无法读取文件" in str(info.value)


# -- garbage inside a valid signature -----------------------------------------------------

def test_garbage_manifest_json(good, target, trusted):
    assert_refused(target, replace(good, "manifest.json", b"{not json"), trusted, "无法解析")


@pytest.mark.parametrize("field,value,words", [
    ("rooms", "x", "rooms"),
    ("rooms", [], "rooms"),
    ("site_code", 11003, "site_code"),
    ("publish_time", "2026-06-10 18:00:00", "publish_time"),
    ("publish_time", "2026-06-10T18:00:00", "缺少时区"),
    ("format_version", 2, "format_version"),
    ("lock", {"id": "LK1", "public_key": "AAAA"}, "lock.public_key"),
    ("sessions", [{"id": "1", "name": "第一场次", "start": "2026-06-13T09:00:00+08:00", "duration_min": "90",
                   "subjects": ["S01"]}], "duration_min"),
    ("sessions", [{"id": "1", "name": "第一场次", "start": "2026-06-13T09:00:00+08:00", "duration_min": 90,
                   "subjects": ["S99"]}], "subjects"),
    ("members", "all", "members"),
])
def test_bad_field_types_with_valid_signature(good, target, trusted, platform, field, value, words):
    body = head_of(good)
    body[field] = value
    assert_refused(target, replace(good, "manifest.json", signed_manifest(platform, body)), trusted, words)


def test_unsafe_room_code_with_valid_signature(good, target, trusted, platform):
    body = head_of(good)
    body["rooms"][0]["code"] = "../evil"
    assert_refused(target, replace(good, "manifest.json", signed_manifest(platform, body)), trusted, "rooms[0].code")


def _resign_candidates(good, platform, candidates_bytes):
    body = head_of(good)
    for entry in body["members"]:
        if entry["name"] == "candidates.json":
            entry["size"] = len(candidates_bytes)
            entry["sha256"] = hashlib.sha256(candidates_bytes).hexdigest()
    data = replace(good, "candidates.json", candidates_bytes)
    return replace(data, "manifest.json", signed_manifest(platform, body))


def test_garbage_candidates_with_valid_hash(good, target, trusted, platform):
    assert_refused(target, _resign_candidates(good, platform, b"\xff\xfe garbage"), trusted, "考生名单无法解析")


def test_candidate_in_unknown_room(good, target, trusted, platform, manifest):
    candidates = [dict(c) for c in manifest["candidates"]]
    candidates[5]["room"] = "99999001"
    data = _resign_candidates(good, platform, canonical_json(candidates).encode())
    assert_refused(target, data, trusted, "candidates[5].room")


def test_candidate_count_mismatch(good, target, trusted, platform, manifest):
    data = _resign_candidates(good, platform, canonical_json(manifest["candidates"][:-1]).encode())
    assert_refused(target, data, trusted, "考生人数")


# -- after loading: the source changes ------------------------------------------------------

def test_source_changed_after_load(good, trusted, tmp_path, target):
    path = tmp_path / "pkg.zip"
    path.write_bytes(good)
    package = load_package(str(path), trusted, SITE)
    path.write_bytes(replace(good, "rooms/11003003.dat", os.urandom(300)))
    before = snapshot(target)
    with pytest.raises(FormatError):
        package.extract_rooms(str(target))
    assert snapshot(target) == before
    with pytest.raises(FormatError):
        package.room_file("11003003")
    dest = tmp_path / "copy.dat"
    with pytest.raises(FormatError):
        package.copy_room_file("11003003", str(dest))
    assert not dest.exists() and not (tmp_path / "copy.dat.part").exists()


# -- builder ---------------------------------------------------------------------------------

def test_builder_refuses_bad_input(platform, manifest, files):
    with pytest.raises(ValueError):
        build_package(platform, manifest, {k: v for k, v in list(files.items())[:-1]})
    bad = dict(manifest, site_code="../x")
    with pytest.raises(ValueError):
        build_package(platform, bad, files)
    bad = dict(manifest, publish_time="yesterday")
    with pytest.raises(ValueError):
        build_package(platform, bad, files)


def test_builder_is_deterministic_for_same_input(platform, manifest, files):
    assert build_package(platform, manifest, files) == build_package(platform, manifest, files)


@pytest.mark.parametrize("codes", [["11003001", "CON"], ["A1", "a1"]])
def test_room_codes_unsafe_as_file_names(good, target, trusted, platform, codes):
    """A reserved device name or a case-only difference would collide in a Windows folder."""
    body = head_of(good)
    body["rooms"] = [{"code": c, "name": "第{}考场".format(i)} for i, c in enumerate(codes)]
    assert_refused(target, replace(good, "manifest.json", signed_manifest(platform, body)), trusted, "rooms[1].code")


def test_refused_from_a_file_on_disk(good, trusted, tmp_path, target):
    bad = tmp_path / "bad.zip"
    bad.write_bytes(good[: len(good) - 30])
    assert_refused(target, str(bad), trusted)
    bad.write_bytes(many_members_zip(100000))
    assert_refused(target, str(bad), trusted, "成员数过多")
    folder = tmp_path / "a folder.zip"
    folder.mkdir()
    with pytest.raises(FormatError):
        load_package(str(folder), trusted, SITE)


def test_package_from_pathlike_and_bytearray(good, trusted, tmp_path):
    path = tmp_path / "pkg.zip"
    path.write_bytes(good)
    assert load_package(path, trusted, SITE).room_file("11003001") == load_package(
        bytearray(good), trusted, SITE).room_file("11003001")


def test_zip64_end_records_are_followed(good, trusted, monkeypatch):
    monkeypatch.setattr(zipfile, "ZIP_FILECOUNT_LIMIT", 2)  # makes zipfile write zip64 end records
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in zip_members(good):
            zf.writestr(name, data)
    data = buf.getvalue()
    assert b"PK\x06\x06" in data[-200:]
    # the classic end record may defer to the zip64 one: 0xFFFF counts, 0xFFFFFFFF size/offset
    data = data[:-22] + struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)
    monkeypatch.undo()
    assert load_package(data, trusted, SITE).room_codes == ["11003001", "11003002", "11003003"]
