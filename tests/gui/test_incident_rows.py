"""考场情况's pure parts: the form's parsing and the rows, lines and 补时 marks (no display)."""

import datetime

import pytest

from kd.errors import UserError
from kd.formats.timeutil import CST
from kd.views.incident_form import FormFields, parse_fields
from kd.views.incidents import counts_text, detail_text, grant_lines, incident_row

LOST = ("outage", "manual")


def fields(**kw):
    base = dict(room="11003001", category=1, start="2026-12-01 09:20", end="2026-12-01 09:32", candidates="",
                description=" 交换机断电 ")
    base.update(kw)
    return FormFields(**base)


def test_parse_fields_gives_the_core_its_arguments():
    kw = parse_fields(fields(candidates="A1, A2、A3；A4"), CST)
    assert kw == {"room": "11003001", "category": "network",
                  "start": datetime.datetime(2026, 12, 1, 9, 20, tzinfo=CST),
                  "end": datetime.datetime(2026, 12, 1, 9, 32, tzinfo=CST),
                  "candidates": ["A1", "A2", "A3", "A4"], "description": "交换机断电"}
    assert parse_fields(fields(end="  "), CST)["end"] is None


@pytest.mark.parametrize("change, cause", [
    ({"room": ""}, "请选择考场"), ({"category": -1}, "请选择情况类别"), ({"start": ""}, "请填写开始时间"),
    ({"start": "09:20"}, "开始时间“09:20”不是有效的时间"), ({"end": "2026-13-01 09:00"}, "结束时间"),
    ({"description": "  "}, "情况说明不能为空")])
def test_parse_fields_refuses_in_chinese(change, cause):
    with pytest.raises(UserError) as e:
        parse_fields(fields(**change), CST)
    assert cause in e.value.cause and e.value.remedy


def doc(**kw):
    base = {"id": "3", "kind": "outage", "category": "network", "room": "11003001", "session": "1",
            "start": "2026-12-01T09:20:00+08:00", "end": None, "candidates": [],
            "description": "考场 11003001 与考点机失去连接。",
            "recorded_by": "system", "state": "drafted", "decided_by": None, "decided_at": None, "note": "",
            "lost_min": 4}
    base.update(kw)
    return base


def test_rows_and_marks():
    row = incident_row(doc())
    assert (row["category"], row["start"], row["end"], row["lost"], row["state"], row["source"], row["recorded_by"],
            row["_tags"]) == ("网络中断", "2026-12-01 09:20", "未结束", "4", "待确认", "自动", "系统", ("drafted",))
    done = incident_row(doc(kind="manual", recorded_by="admin", state="dismissed", end="2026-12-01T09:30:00+08:00"))
    assert (done["source"], done["recorded_by"], done["state"], done["_tags"]) == (
        "手工", "admin", "已驳回", ("dismissed",))
    assert counts_text(doc(), LOST) == "确认后计入补时"
    assert counts_text(doc(state="confirmed"), LOST) == "结束后计入补时"
    assert counts_text(doc(state="confirmed", end="2026-12-01T09:30:00+08:00"), LOST) == "计入补时"
    assert counts_text(doc(state="confirmed", candidates=["A1"]), LOST).startswith("只涉及部分考生")
    assert counts_text(doc(kind="late_start", state="confirmed"), LOST) == "此类记录不计入补时"
    assert counts_text(doc(state="dismissed"), LOST) == "已驳回，不计入补时"
    text = detail_text(doc(counts="确认后计入补时", state="confirmed", decided_by="admin",
                           decided_at="2026-12-01T09:40:00+08:00", note="已核实"))
    assert text == ("记录 3：考场 11003001 与考点机失去连接；受影响考生：全考场；丢失 4 分钟，确认后计入补时；"
                    "admin 于 2026-12-01 09:40 确认（已核实）。")
    assert grant_lines([]) == ""
    grant = {"room": "11003001", "minutes": 12, "total_min": 12, "expected_end": "2026-12-01T11:12:00+08:00",
             "tier": "on_site", "granted_by": "admin", "acked_at": None}
    assert grant_lines([grant]) == (
        "补时：考场 11003001 12 分钟（合计 12 分钟，预计结束 2026-12-01 11:12；admin 当场批准；等待监考机确认收到）")
    assert grant_lines([dict(grant, tier="dongle", acked_at="2026-12-01T10:00:05+08:00")]).endswith(
        "admin 经二次确认并验证机考锁后批准；监考机已确认收到）")
