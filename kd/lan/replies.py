"""Error replies of the KDLAN server and the checks of request fields (docs/lan-protocol.md §4, §5).

``Reply(code, message, remedy, **extra)`` is raised by the handlers (``kd.lan.handlers``)
and the upload store (``kd.lan.uploads``) and answered by the server's read loop as one
error frame::

    {"type": "error", "seq": <the request's>, "code": "E_...", "message": "<Chinese cause>",
     "remedy": "<Chinese remedy>", <extra fields: offset, retry_after...>}

The field checks (``text``, ``code``, ``integer``, ``sha256``) raise ``E_ARG`` replies
that name the field. ``CODE`` and ``SHA`` are also the rules for the parts of a partial
upload's file name (``<room>.<session>.<sha256>.part``): codes and a hex digest only,
never a client-chosen path.
"""

import math
import re
from typing import Any, Dict, Union

CODE = re.compile(r"^[0-9A-Za-z_-]{1,32}$")
SHA = re.compile(r"^[0-9a-fA-F]{64}$")
MAX_TEXT = 64
REMEDY_RETRY = "请稍后重试；如反复出现，请联系考点管理员。"


class Reply(Exception):
    """An error reply: ``code`` and Chinese message/remedy, extra fields (offset...)."""

    def __init__(self, code: str, message: str, remedy: str = "", **extra: Any) -> None:
        super().__init__(code)
        self.code = code
        self.message = message
        self.remedy = remedy
        self.extra = extra


def seconds(value: float) -> Union[int, float]:
    """A number of seconds for the wire (``heartbeat_s``, ``retry_after``): an integer when it is
    whole (``5``, never ``5.0``; docs/lan-protocol.md §1 "Numbers"), else the fraction."""
    value = float(value)
    return int(value) if value.is_integer() else value


def seconds_until(moment_s: float) -> int:
    """A ``retry_after`` for something that ends ``moment_s`` seconds from now: whole seconds,
    rounded up, at least 1."""
    return max(1, int(math.ceil(moment_s)))


def bad(message: str) -> Reply:
    """An ``E_ARG`` reply: the request is not valid (``message`` says how)."""
    return Reply("E_ARG", "监考机发送的请求无效：{}".format(message), "请升级监考机软件或联系技术服务。")


def text(header: Dict[str, Any], name: str, limit: int = MAX_TEXT) -> str:
    """Field ``name``: a text of 1..``limit`` characters."""
    value = header.get(name)
    if not isinstance(value, str) or not value or len(value) > limit:
        raise bad("字段 {} 应为 1-{} 个字符的文本".format(name, limit))
    return value


def code(header: Dict[str, Any], name: str) -> str:
    """Field ``name``: a code (1-32 of ``0-9 A-Z a-z _ -``)."""
    value = text(header, name, 32)
    if not CODE.match(value):
        raise bad("字段 {} 不是有效的代码".format(name))
    return value


def integer(header: Dict[str, Any], name: str, low: int, high: int) -> int:
    """Field ``name``: an integer (not a boolean) in ``low..high``."""
    value = header.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise bad("字段 {} 应为 {}..{} 的整数".format(name, low, high))
    return value


def sha256(header: Dict[str, Any], name: str = "sha256") -> str:
    """Field ``name``: a SHA-256 as 64 hex digits; returned in lower case."""
    value = header.get(name)
    if not isinstance(value, str) or not SHA.match(value):
        raise bad("字段 {} 应为 64 位十六进制 SHA-256".format(name))
    return value.lower()
