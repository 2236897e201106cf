"""Database.view: a part of a stored document, copied out, without copying the rest."""

from kd.store.database import Database


def test_view_returns_a_copy_of_what_fn_picks(tmp_path):
    db = Database.open(str(tmp_path / "exam.json"))
    try:
        db.put("package", "manifest", {"sessions": [{"id": "S1"}], "candidates": [{"room": "R1"}] * 3})
        part = db.view("package", "manifest", lambda m: {"sessions": m["sessions"]})
        assert part == {"sessions": [{"id": "S1"}]}
        part["sessions"][0]["id"] = "changed"  # the caller's copy, not the stored document
        assert db.get("package", "manifest")["sessions"] == [{"id": "S1"}]
        assert db.view("package", "manifest", lambda m: len(m["candidates"])) == 3
        assert db.view("package", "missing", lambda m: 1) is None
    finally:
        db.close()
