"""考点数据上报确认单 (kd.core.proofsheet, ``main.py proof sheet``) over a real site and real files.

After 考后上报 the sheet of a session's kept proof: A4 print CSS, one row per room with its
参考/缺考 counts, backup ✓, receipt id, incidents and 补时, the proof's SHA-256, the verdict,
signature lines; every value escaped. A session whose proof fails lists the failing check
naming the room. Before any proof: a UserError saying to upload first. The command line
asks the password and writes the same sheet into a folder.
"""

import copy
import html
import json
import os
import re

import pytest

from kd.core import proofsheet
from kd.errors import UserError
from kd.formats import proof as P
from tests.support.cli import backed_up, cli_env, kd, ok
from tests.support.env import SITE, make_env
from tests.support.fixtures import closed_after
from tests.support.results import deliver, pairs, result_package

env = closed_after(lambda tmp_path: make_env(tmp_path, rooms=3, sessions=2, candidates=4, room_kb=4))


def uploaded(env, usb, skip=()):
    core = env.core
    core.loading.load_online("admin")
    for room, session in pairs(env.ctx):
        if (room, session) not in skip:
            deliver(core.recovery, room, session, result_package(env.ctx, room, session, absent=1))
    core.upload.backup_external(usb, "admin")
    return core.upload.upload(None, "admin")


def text_of(page):
    return html.unescape(re.sub(r"<[^>]+>", " ", page))


def test_the_sheet_of_a_good_proof_sums_up_every_room_with_the_proofs_hash(env, external_dir):
    flow = env.core.upload.proofs
    with pytest.raises(UserError) as refused:
        flow.sheet("1")
    assert "上报" in refused.value.remedy
    result = uploaded(env, external_dir)
    summary = next(p for p in result["proofs"] if p["session"] == "1")
    path = flow.sheet("1")
    assert path == os.path.join(env.ctx.data_dir, "print", "考点数据上报确认单({}-1).html".format(SITE))
    page = open(path, encoding="utf-8").read()
    assert "@page { size: A4" in page and "<!DOCTYPE html>" in page
    text = text_of(page)
    assert "考点数据上报确认单" in text and "证明有效 ✓" in text and summary["sha256"] in text
    assert "考点主考（签字）" in text and "日期" in text
    rooms = sorted({room for room, session in pairs(env.ctx) if session == "1"})
    doc = json.loads(open(env.core.proof.path_of("1"), "rb").read().decode("utf-8"))
    rows = proofsheet.room_rows(doc["body"], env.ctx.trusted)
    assert [r["code"] for r in rows] == rooms
    for row in rows:  # 4 candidates a room, the first absent
        assert (row["expected"], row["present"], row["absent"]) == (4, 3, 1)
        assert row["backup_ok"] and row["receipt_ok"] and row["receipt"] and row["sha256"]
        assert row["receipt"] in text and row["code"] in text
        cell = '<span class="mono">{}…</span> {}</td>'.format(row["sha256"][:16], proofsheet.size_text(row["size"]))
        assert cell in page
    # the result's size short, the result and the totals cells kept on one line (no "21747 / 字节" on paper)
    assert "字节" not in text and '<td class="nw">{} 个已备份</td>'.format(len(rows)) in page
    assert [proofsheet.size_text(n) for n in (812, 21747, 3565158)] == ["812 字节", "21.2 KB", "3.4 MB"]
    assert "全部 {} 项检查通过".format(len(doc["body"]["checks"])) in text
    assert "合计" in text and " 12 " in text and " 9 " in text and " 3 " in text  # 应考 / 参考 / 缺考


def test_the_sheet_of_a_failing_proof_names_the_room_and_escapes_what_it_prints(env, external_dir):
    env.core.loading.load_online("admin")
    missing = pairs(env.ctx)[0]
    uploaded(env, external_dir, skip=[missing])
    page = open(env.core.upload.proofs.sheet(missing[1]), encoding="utf-8").read()
    text = text_of(page)
    assert "未通过 ✗" in text and "未通过的检查" in text
    assert "考场 {} 没有回收的结果包".format(missing[0]) in text

    # whatever the proof holds is printed as text, never as markup
    doc = json.loads(open(env.core.proof.path_of(missing[1]), "rb").read().decode("utf-8"))
    hostile = copy.deepcopy(doc)
    hostile["body"]["session_name"] = "<script>alert(1)</script>"
    hostile["body"]["rooms"][0]["code"] = "<img src=x onerror=alert(1)>"
    verdict = P.verify(P.encode(hostile), env.ctx.trusted)
    page = proofsheet.sheet_html(hostile, verdict, env.ctx.trusted)
    assert "<script>alert" not in page and "<img src=x" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "&lt;img src=x onerror=alert(1)&gt;" in page


cli = closed_after(lambda tmp_path: cli_env(tmp_path, rooms=2, sessions=1, candidates=3, room_kb=4))


def test_proof_sheet_on_the_command_line_asks_the_password_and_writes_the_sheet(cli, tmp_path, external_dir):
    data = backed_up(cli, "site", tmp_path, external_dir)
    uploaded = ok(kd(cli, data, "upload")).stdout
    assert "第一场" in uploaded and "上报完成 ✓ 考点数据完整性证明已验证（SHA-256 " in uploaded  # the CLI upload too
    out = str(tmp_path / "paper")
    refused = kd(cli, data, "proof", "sheet", "--session", "1", out, password=None)
    assert refused.returncode == 2 and "--password-stdin" in refused.stderr and not os.path.exists(out)
    done = json.loads(ok(kd(cli, data, "proof", "sheet", "--session", "1", out, "--json")).stdout)
    assert done["ok"] and done["path"] == os.path.join(out, "考点数据上报确认单({}-1).html".format(SITE))
    page = open(done["path"], encoding="utf-8").read()
    assert done["sha256"] in page and "证明有效 ✓" in text_of(page)
    kept = os.path.join(data, "proofs", P.file_name(SITE, "1"))
    assert done["sha256"] == P.document_sha256(open(kept, "rb").read())  # the proof the upload built and sent
