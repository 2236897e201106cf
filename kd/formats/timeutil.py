"""Timestamps of the artefacts: ISO 8601 text with an explicit UTC offset.

Every time in a platform artefact is text like ``2026-06-13T09:00:00+08:00``: exactly
``YYYY-MM-DDTHH:MM:SS[.fff|.ffffff](+HH:MM|-HH:MM|Z)``, nothing looser (so Python 3.8
and later read the same texts). A time without an offset is refused: the site PC's time
zone must never change the meaning of a signed document. ``now`` values passed to the
loaders must be timezone-aware ``datetime`` objects.
"""

import datetime
import re
from typing import Any, Optional, Union

from kd.errors import FormatError

#: China Standard Time, the zone the platform writes its times in
CST = datetime.timezone(datetime.timedelta(hours=8))

_ISO = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{3}|\.\d{6})?([+-]\d{2}:\d{2}|Z)", re.ASCII)
_REMEDY = "请重新从监控平台下载该文件；如问题持续，请联系技术服务单位。"


def format_time(moment: datetime.datetime) -> str:
    """``moment`` (timezone-aware) as ISO 8601 text with offset, seconds precision."""
    require_aware(moment, "time")
    return moment.replace(microsecond=0).isoformat()


#: how a person reads a time, in the UI, printed sheets, CLI text and messages
SHOWN = "%Y-%m-%d %H:%M"


def human_time(text: Optional[Union[str, datetime.datetime]]) -> str:
    """A time as people read it (``2026-12-01 17:35``); "" for none.

    ``text`` is ISO 8601 text (``2026-12-01T17:35:00+08:00``, the records' and artefacts'
    form) or a datetime. A time with an offset is shown in the site's zone (China
    Standard Time, UTC+08:00) whatever the PC's zone; a time without one as it is. Text
    that is no time is returned unchanged.
    """
    if text is None or text == "":
        return ""
    moment: Optional[datetime.datetime] = None
    if isinstance(text, datetime.datetime):
        moment = text
    else:
        value = str(text).strip()
        if value.endswith("Z"):
            value = value[:-1] + "+00:00"
        try:
            moment = datetime.datetime.fromisoformat(value)
        except ValueError:
            return str(text)
    if moment.tzinfo is not None and moment.utcoffset() is not None:
        moment = moment.astimezone(CST)
    return moment.strftime(SHOWN)


def require_aware(moment: Any, name: str = "now") -> datetime.datetime:
    """``moment`` itself when it is a timezone-aware datetime; ``ValueError`` otherwise.

    A programming error (not user input), hence ``ValueError`` and not ``FormatError``.
    """
    if not isinstance(moment, datetime.datetime) or moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, got {moment!r}")
    return moment


def read_time(text: Any) -> datetime.datetime:
    """Parse ISO 8601 text with offset; ``ValueError`` saying why (in Chinese) otherwise."""
    if not isinstance(text, str) or not _ISO.fullmatch(text):
        if isinstance(text, str) and _ISO.fullmatch(text + "Z"):
            raise ValueError("缺少时区")
        raise ValueError("格式错误")
    value = text[:-1] + "+00:00" if text.endswith("Z") else text
    try:
        return datetime.datetime.fromisoformat(value)
    except ValueError:
        raise ValueError("不是有效的日期时间") from None


def parse_time(text: Any, field: str = "时间", what: str = "文件") -> datetime.datetime:
    """``read_time`` that refuses with a ``FormatError`` naming ``field`` of ``what``."""
    try:
        return read_time(text)
    except ValueError as e:
        raise FormatError(
            f"{what}无效：字段“{field}”的时间{e}（{shown_time(text)}）",
            _REMEDY,
            detail=f"bad time in {field!r}: {shown_time(text)}",
        ) from None


def shown_time(text: Any) -> str:
    shown = repr(text)
    return shown if len(shown) <= 60 else shown[:57] + "..."
