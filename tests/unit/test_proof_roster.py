"""kd.formats.proofroster: the platform's pure comparison of a proof's roster and package
with what it published (no site, no network: the data as a platform holds it)."""

import hashlib

import pytest

from kd.formats import proofroster as R

MANIFEST = '{"body":"{}","format":"kd-signed/1"}'
SHA = hashlib.sha256(MANIFEST.encode("utf-8")).hexdigest()
PUBLISHED = R.Published("11003", SHA, (
    {"ticket": "A1", "room": "001", "seat": 1, "session": "1"},
    {"ticket": "A2", "room": "001", "seat": 2, "session": "1"},
    {"ticket": "B1", "room": "002", "seat": 1, "session": "1"},
    {"ticket": "Z1", "room": "001", "seat": 1, "session": "2"},
))


def body(roster, site="11003", session="1", sha=SHA, manifest=MANIFEST):
    return {"site_code": site, "session_id": session, "roster": roster,
            "package": {"manifest": manifest, "manifest_sha256": sha}}


def good():
    return [{"ticket": "A1", "room": "001", "seat": 1}, {"ticket": "A2", "room": "001", "seat": 2},
            {"ticket": "B1", "room": "002", "seat": 1}]


def failed(checks):
    return [(c.id, c.room, c.ticket) for c in checks if not c.ok]


def test_the_published_roster_and_package_pass():
    checks = R.compare_roster(body(good()), PUBLISHED)
    assert [(c.id, c.ok) for c in checks] == [(R.PACKAGE_PLATFORM, True), (R.ROSTER_PLATFORM, True)]
    assert R.summary(checks)["ok"] is True


def test_each_difference_is_named_with_its_ticket():
    roster = good()
    roster[0]["seat"] = 3  # A1 in another seat
    roster[1] = {"ticket": "X9", "room": "001", "seat": 2}  # A2 dropped, X9 added
    roster.append({"ticket": "B1", "room": "002", "seat": 1})  # B1 twice
    checks = R.compare_roster(body(roster), PUBLISHED)
    assert failed(checks) == [(R.ROSTER_PLATFORM, "001", "A1"), (R.ROSTER_PLATFORM, "001", "X9"),
                              (R.ROSTER_PLATFORM, "002", "B1"), (R.ROSTER_PLATFORM, "001", "A2")]
    text = R.summary(checks)["message"]
    assert text.startswith("roster_platform: 准考证号 A1 在证明中为考场 001 座号 3，平台发布的是考场 001 座号 1")
    assert "不在考点上报的证明中" in checks[-1].message and "座号 2" in checks[-1].message


@pytest.mark.parametrize("kw", [{"site": "11004"}, {"sha": "0" * 64}, {"manifest": MANIFEST + " "}])
def test_another_site_or_package_fails_the_package_check(kw):
    checks = R.compare_roster(body(good(), **kw), PUBLISHED)
    assert failed(checks) == [(R.PACKAGE_PLATFORM, None, None)]


@pytest.mark.parametrize("bad", [None, "text", {}, {"session_id": "1", "roster": "x"},
                                 body([{"ticket": 1, "room": "001", "seat": 1}]), body(good(), session="9")])
def test_a_malformed_body_fails_and_never_raises(bad):
    checks = R.compare_roster(bad, PUBLISHED)
    assert not R.summary(checks)["ok"] and any(c.id == R.ROSTER_PLATFORM and not c.ok for c in checks)
