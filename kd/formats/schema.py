"""Field checks shared by the artefact loaders: each returns the value or raises FormatError.

A ``Check`` knows the artefact's name in the user's words (``what``, e.g. "考场数据包")
and a remedy; every refusal names the field ("字段“sessions[1].start”...") so a support
call can find the bad value. Codes used in file names (site, room, session ids) are
restricted to ``[0-9A-Za-z_-]`` and may not be a reserved Windows device name (``CON``,
``NUL``, ``COM1``...), so they are safe as Windows file names.
"""

import base64
import binascii
import datetime
import re
from typing import Any, Dict, Iterator, List, Set, Tuple

from kd.errors import FormatError
from kd.formats.safezip import RESERVED_NAMES
from kd.formats.timeutil import read_time, shown_time

CODE_RE = re.compile(r"[0-9A-Za-z_-]{1,32}", re.ASCII)
SHA256_RE = re.compile(r"[0-9a-f]{64}", re.ASCII)
CONTROL_RE = re.compile(r"[\x00-\x1f]")
MAX_TEXT_CHARS = 200


class Check:
    """Typed field access on untrusted JSON, refusing with a ``FormatError``."""

    def __init__(self, what: str, remedy: str, prefix: str = "") -> None:
        self.what = what
        self.remedy = remedy
        self.prefix = prefix

    def refuse(self, detail: str) -> FormatError:
        return FormatError("{}{}".format(self.prefix or (self.what + "无效："), detail), self.remedy, detail=detail)

    def field_error(self, field: str, why: str) -> FormatError:
        return self.refuse(f"字段“{field}”{why}")

    def obj(self, value: Any, field: str) -> Dict[str, Any]:
        if not isinstance(value, dict):
            raise self.field_error(field, "应为对象")
        return value

    def lst(self, value: Any, field: str, max_items: int, min_items: int = 0) -> List[Any]:
        if not isinstance(value, list):
            raise self.field_error(field, "应为列表")
        if not min_items <= len(value) <= max_items:
            raise self.field_error(field, f"条目数应在 {min_items} 到 {max_items} 之间（实为 {len(value)}）")
        return value

    def keyed(self, value: Any, field: str, max_items: int, min_items: int = 0, key: str = "code",
              fold: bool = False) -> Iterator[Tuple[str, Dict[str, Any], str]]:
        """A list of objects each naming a unique code in ``key``: yields (the entry's field, entry, code).

        Each entry is checked as it is reached (object, code, not a repeat; ``fold``: not a
        repeat ignoring case), so the caller's own checks of an entry come before the next's.
        """
        seen: Set[str] = set()
        for i, entry in enumerate(self.lst(value, field, max_items, min_items)):
            at = f"{field}[{i}]"
            self.obj(entry, at)
            code = self.code(entry.get(key), f"{at}.{key}")
            if (code.casefold() if fold else code) in seen:
                raise self.field_error(f"{at}.{key}", f"重复（{code}）")
            seen.add(code.casefold() if fold else code)
            yield at, entry, code

    def text(self, value: Any, field: str, max_chars: int = MAX_TEXT_CHARS, allow_empty: bool = False) -> str:
        if not isinstance(value, str):
            raise self.field_error(field, "应为文本")
        if not value.strip() and not allow_empty:
            raise self.field_error(field, "不能为空")
        if len(value) > max_chars:
            raise self.field_error(field, f"过长（上限 {max_chars} 个字符）")
        if CONTROL_RE.search(value):
            raise self.field_error(field, "含控制字符")
        return value

    def code(self, value: Any, field: str) -> str:
        if not isinstance(value, str) or not CODE_RE.fullmatch(value):
            raise self.field_error(field, f"应为 1 到 32 位字母、数字、下划线或连字符（实为 {_shown(value)}）")
        if value.upper() in RESERVED_NAMES:
            raise self.field_error(field, f"不能是 Windows 保留名（{value}）")
        return value

    def integer(self, value: Any, field: str, low: int, high: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.field_error(field, "应为整数")
        if not low <= value <= high:
            raise self.field_error(field, f"应在 {low} 到 {high} 之间（实为 {value}）")
        return value

    def sha256(self, value: Any, field: str) -> str:
        if not isinstance(value, str) or not SHA256_RE.fullmatch(value):
            raise self.field_error(field, "应为 64 位小写十六进制 SHA-256")
        return value

    def b64key(self, value: Any, field: str, length: int = 32) -> bytes:
        try:
            raw = base64.b64decode(value.encode("ascii"), validate=True) if isinstance(value, str) else None
        except (binascii.Error, ValueError, UnicodeEncodeError):
            raw = None
        if raw is None or len(raw) != length:
            raise self.field_error(field, f"应为 {length} 字节密钥的 base64 编码")
        return raw

    def time(self, value: Any, field: str) -> datetime.datetime:
        """ISO 8601 with offset (``kd/formats/timeutil.py``)."""
        try:
            return read_time(value)
        except ValueError as e:
            raise self.field_error(field, f"的时间{e}（{shown_time(value)}）") from None


def _shown(value: Any, limit: int = 40) -> str:
    text = repr(value) if not isinstance(value, str) else value
    return text if len(text) <= limit else text[:limit - 3] + "..."
