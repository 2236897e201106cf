"""The exam dongle's error family: every case a ``kd.errors.LockError`` (exit code 4).

Each class carries a Chinese cause and remedy fit for a dialog; ``detail`` (for the log)
names the port and the technical reason. Callers tell cases apart by class:

- ``LockNotFound``: no dongle found, or the port cannot be opened.
- ``LockDisconnected``: the dongle was unplugged (or the link broke) during use.
- ``LockTimeout``: the dongle did not answer in time.
- ``LockProtocolError``: the device is not a dongle, speaks another protocol version, or
  sent a malformed reply; also a request the host refuses to put on the wire.
- ``LockRefused``: the dongle answered ``ERR code text`` (``.code``, ``.text``).
- ``WrongLockError``: a dongle answered, but it is not the expected one (wrong id, or a
  challenge answer that does not verify against the expected public key).
"""

from typing import Optional

from kd.errors import LockError

_REPLUG = "请拔下机考锁，重新插入本机 USB 接口后再试；如问题持续，请换一个 USB 接口或联系技术服务单位。"


class LockDriverError(LockError):
    """Base of the dongle driver's errors: a cause or remedy not given is the class's own."""

    #: the dialog text of the case when the raiser gives none (cause, remedy)
    default_cause = ""
    default_remedy = ""

    def __init__(self, cause: str = "", remedy: str = "", *, detail: Optional[str] = None) -> None:
        super().__init__(cause or self.default_cause, remedy or self.default_remedy, detail=detail)


class LockNotFound(LockDriverError):
    """No dongle answered: none plugged in, or its port cannot be opened."""

    default_cause = "未检测到机考锁。"
    default_remedy = ("请把本考点注册的机考锁插入本机 USB 接口，等待几秒后再试；"
                      "如已插入，请换一个 USB 接口，或检查机考锁驱动是否已安装。")


class LockDisconnected(LockDriverError):
    """The dongle went away (unplugged) or its link broke."""

    default_cause = "机考锁已拔出或连接中断。"
    default_remedy = "请把机考锁重新插入本机 USB 接口，系统会自动重新连接。"


class LockTimeout(LockDriverError):
    """The dongle did not answer within the timeout."""

    default_cause = "机考锁没有应答。"
    default_remedy = _REPLUG


class LockProtocolError(LockDriverError):
    """Malformed traffic, or a device that does not speak the dongle protocol."""

    default_cause = "连接的设备不是机考锁，或机考锁版本与本系统不兼容。"
    default_remedy = "请确认插入的是本考点注册的机考锁；如问题持续，请联系技术服务单位。"


class LockRefused(LockDriverError):
    """The dongle answered ``ERR code text``."""

    default_remedy = _REPLUG

    def __init__(
        self, code: str, text: str, cause: str = "", remedy: str = "", *, detail: Optional[str] = None
    ) -> None:
        self.code = code
        self.text = text
        super().__init__(
            cause or "机考锁拒绝了该操作（{}：{}）。".format(code, text),
            remedy,
            detail=detail or "ERR {} {}".format(code, text),
        )


class WrongLockError(LockDriverError):
    """A dongle answered, but it is not the one the site package names."""
