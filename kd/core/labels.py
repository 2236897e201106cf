"""Labels for people: every Chinese text the core, the views and the CLI show for a state or code.

Records and snapshots carry codes (the enums of ``kd.core.states``, ``"formal"``,
``"online"``...); this module turns them into the words of the manual, in one place, so
that the views and the CLI show the same text and nobody decides anything by comparing
Chinese strings.

- ``label(member)``: the label of a state enum member (``SessionState.VERIFIED`` → 已验证,
  ``Situation.CONFLICT`` → 已回收（有冲突）...); ``None`` is "", an unknown value its text.
- ``mark(flag)``: the manual's done marks ✓ / ✗; ``check_mark(status)``: ✓ / ✗ / - of a
  封场检测 item; ``yes_no(key, flag)``: a 考场监控 cell.
- the code tables: ``MODE_LABELS``, ``VERIFICATION_SOURCE_LABELS``,
  ``RECOVERY_SOURCE_LABELS``, ``OUTBOX_STATE_LABELS``, ``OUTBOX_KIND_LABELS``,
  ``SEAL_ITEM_LABELS``, ``MONITOR_BOOL_LABELS``, ``CHANGE_LABELS``, ``STEP_LABELS``.
- ``result_label(room, session, names=None)``: ``考场 X 第一场次``; ``session_label(session,
  names)``: a session as the tables name it (its name in the package, ``第一场次``),
  ``session_names(manifest)``: ``{id: name}``;
  ``summary(lines)``: at most three lines and the count.
- ``shown(time)``: the one formatter of every time a person reads (screens, printed
  sheets, messages): ``2026-12-01 17:35`` — minute precision, in the site's zone (China
  Standard Time, ``kd.formats.timeutil.CST``); an ISO text or an aware datetime; "" for none.

Enum members of different types may share a code (``started``), so the state tables are
kept per enum type.
"""

import datetime
from enum import Enum
from typing import Any, Dict, List, Mapping, Optional, Type, Union

from kd.core.states import (
    CheckStatus,
    RegistrationState,
    ReportState,
    RoomSessionState,
    SessionState,
    Situation,
    StartKind,
    Step,
    UploadStatus,
)
from kd.formats.timeutil import SHOWN, human_time

#: the manual's done marks
YES_MARK, NO_MARK = "✓", "✗"

STATE_LABELS: Dict[Type[Enum], Dict[Any, str]] = {
    SessionState: {
        SessionState.LOADED: "未授权", SessionState.AUTHORIZED: "已授权", SessionState.VERIFIED: "已验证",
        SessionState.STARTED: "已开考", SessionState.ENDED: "已结束", SessionState.RECOVERED: "已回收",
        SessionState.UPLOADED: "已上报",
    },
    RoomSessionState: {
        RoomSessionState.PLANNED: "未开考", RoomSessionState.PERMITTED: "已许可开考",
        RoomSessionState.STARTED: "已开考", RoomSessionState.STARTED_UNPERMITTED: "未经许可开考",
        RoomSessionState.ENDED: "已结束考试", RoomSessionState.RECOVERED: "已回收",
        RoomSessionState.UPLOADED: "已上报",
    },
    StartKind: {StartKind.PERMITTED: "已开考", StartKind.UNPERMITTED: "未经许可开考"},
    RegistrationState: {RegistrationState.UNREGISTERED: "未注册", RegistrationState.REGISTERED: "已注册",
                        RegistrationState.DATA_IMPORTED: "已导入考场数据"},
    CheckStatus: {CheckStatus.PASS: "通过", CheckStatus.FAIL: "未通过", CheckStatus.SKIPPED: "未检测"},
    Situation: {Situation.RECOVERED: "已回收", Situation.NOT_RECOVERED: "未回收",
                Situation.CONFLICT: "已回收（有冲突）"},
    ReportState: {ReportState.NO_DATA: "无数据", ReportState.REPORTED: "上报成功", ReportState.NOT_REPORTED: "未上报"},
    UploadStatus: {UploadStatus.NONE: "全部未上报", UploadStatus.ALL: "全部已上报", UploadStatus.PARTLY: "{}个未上报"},
    Step: {Step.LOAD: "导入考务", Step.REGISTER: "考场注册", Step.AUTHORIZE: "考试授权", Step.SEAL: "封场检测",
           Step.VERIFY: "授权验证"},
}

#: exam modes (参数设置)
MODE_LABELS = {"formal": "正式考试", "mock": "模拟考试"}
#: how a session was verified (授权验证)
VERIFICATION_SOURCE_LABELS = {"online": "联网验证", "manual": "手工导入"}
#: how a result came in (数据回收)
RECOVERY_SOURCE_LABELS = {"lan": "联网回收", "manual": "手工回收"}
#: a report's delivery (kd.core.outbox)
OUTBOX_STATE_LABELS = {"pending": "待上报", "sent": "已上报", "failed": "上报失败"}
OUTBOX_KIND_LABELS = {
    "seal_check": "封场检测", "room_status": "考场状态", "session_started": "场次开考",
    "session_ended": "场次结束", "recovery_status": "数据回收", "upload_status": "考后上报",
    "incidents": "考场情况记录",
}
#: the items of 封场检测
SEAL_ITEM_LABELS = {
    "package": "考场数据包已校验",
    "registered": "考场全部注册",
    "room_data": "考场数据全部导入",
    "authorized": "场次全部授权",
    "dongle": "机考锁在位",
    "lan": "局域网服务运行",
    "lan_address": "考点信息表地址可连接",
    "disk": "磁盘剩余空间",
    "clock": "系统时间准确",
}
#: 考场监控's yes/no columns: (yes, no)
MONITOR_BOOL_LABELS = {
    "data_imported": ("已导入", "未导入"), "authorized": ("已授权", "未授权"), "verified": ("已验证", "未验证"),
    "ended": ("是", "否"), "reported": ("是", "否"), "connected": ("是", "否"),
}
UNPERMITTED_LABEL = "未经许可开考"
TOTALS_LABEL = "人数统计"
#: 恢复注册: what a room's registration becomes (kd.core.regrestore)
CHANGE_LABELS = {"loses": "将失去注册", "changes": "注册将改变", "gains": "将恢复注册", "same": "不变"}
CONNECTED_MARK = "当前已连接"
#: the five 考前 steps, as the step header shows them
STEP_LABELS = STATE_LABELS[Step]


def label(value: Any) -> str:
    """The label of a state enum member; "" for None; the value's text when it has no label."""
    if value is None:
        return ""
    table = STATE_LABELS.get(type(value))
    if table is not None and value in table:
        return table[value]
    if isinstance(value, Enum):
        return str(value.value)
    return str(value)


def upload_status_label(status: UploadStatus, left: int) -> str:
    """上报状态 of a session: 全部未上报 / N个未上报 / 全部已上报."""
    return label(status).format(left) if status == UploadStatus.PARTLY else label(status)


#: 封场检测 item marks: ✓ passed, ✗ failed, - not checked
CHECK_MARKS = {CheckStatus.PASS: YES_MARK, CheckStatus.FAIL: NO_MARK, CheckStatus.SKIPPED: "-"}


def check_mark(status: Any) -> str:
    """✓ / ✗ / - of a 封场检测 item status (a ``CheckStatus`` or its code); ? when unknown."""
    try:
        return CHECK_MARKS[CheckStatus(status)]
    except ValueError:
        return "?"


def mark(flag: Any) -> str:
    """✓ for a true value, ✗ otherwise (the manual's done marks)."""
    return YES_MARK if flag else NO_MARK


def yes_no(key: str, flag: Any) -> str:
    """A yes/no cell of 考场监控 (已导入 / 未导入...)."""
    yes, no = MONITOR_BOOL_LABELS[key]
    return yes if flag else no


#: what names the sessions: the manifest (``{"sessions": [{"id", "name"}...]}``), a mapping
#: ``{session id: name}``, the session's name itself, or None (the name from the id)
SessionNames = Union[Mapping[str, Any], str, None]

_DIGITS = "零一二三四五六七八九"


def chinese_number(number: int) -> str:
    """1 → 一, 10 → 十, 12 → 十二, 20 → 二十, 99 → 九十九 (larger numbers stay digits)."""
    if not 0 < number < 100:
        return str(number)
    tens, ones = divmod(number, 10)
    if not tens:
        return _DIGITS[ones]
    return "{}十{}".format(_DIGITS[tens] if tens > 1 else "", _DIGITS[ones] if ones else "")


def session_label(session: Any, names: SessionNames = None) -> str:
    """A session as the tables name it: its name in the package (``第一场次``).

    ``names`` is the manifest, a ``{session id: name}`` mapping or the name itself;
    without a name a numeric id reads ``第一场次`` (``1``), any other id ``场次 <id>``.
    """
    sid = "" if session is None else str(session)
    name: Any = None
    if isinstance(names, str):
        name = names
    elif isinstance(names, Mapping):
        if "sessions" in names:
            for item in names.get("sessions") or []:
                if isinstance(item, Mapping) and str(item.get("id")) == sid:
                    name = item.get("name")
                    break
        else:
            name = names.get(sid)
            if isinstance(name, Mapping):  # {id: session definition}
                name = name.get("name")
    if name:
        return str(name)
    if sid.isdigit() and sid.isascii():
        return "第{}场次".format(chinese_number(int(sid)))
    return "场次 {}".format(sid)


def session_names(manifest: Optional[Mapping[str, Any]]) -> Dict[str, str]:
    """``{session id: name}`` of a manifest (``ctx.manifest_view(labels.session_names)``
    reads only the sessions); empty for None."""
    out: Dict[str, str] = {}
    for item in (manifest or {}).get("sessions") or []:
        if isinstance(item, Mapping) and item.get("id") is not None:
            out[str(item["id"])] = str(item.get("name") or "")
    return out


def result_label(room: Optional[str], session: Optional[str], names: SessionNames = None) -> str:
    """How a room's result of a session is named to the administrator: ``考场 X 第一场次``."""
    return "考场 {} {}".format(room, session_label(session, names))


def summary(lines: List[str]) -> str:
    """Up to three lines joined with ``；``, then ``等 N 项``."""
    if len(lines) <= 3:
        return "；".join(lines)
    return "{} 等 {} 项".format("；".join(lines[:3]), len(lines))


#: how ``shown`` writes a time: minute precision
SHOWN_FORMAT = SHOWN


def shown(text: Optional[Union[str, datetime.datetime]]) -> str:
    """A time as people read it (``2026-12-01 17:35``); "" for none (``kd.formats.timeutil.human_time``)."""
    return human_time(text)
