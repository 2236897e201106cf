"""What the main window says in words: the notice an event deserves and the window's title.

- ``notice_for(name, data)``: (text, kind) of the short notification a hub event deserves
  (registered, data imported, results received, report sent / failing, dongle pulled), or
  None; the shell shows it in the top bar or the notice line.
- ``title_text(snap)``: ``<exam name> 考点管理系统 【<site>】`` plus ``(当前是模考)``.
"""

from typing import Any, Dict, Optional, Tuple

from kd.core import model
from kd.core import names as n
from kd.core.labels import result_label
from kd.views import branding


def notice_for(name: str, data: Dict[str, Any]) -> Optional[Tuple[str, str]]:
    """(text, kind) of the short notification an event deserves, or None."""
    room = data.get("room") or data.get("room_code") or ""
    if name == n.ROOM_REGISTERED:
        return "考场 {} 已注册{}".format(room, "（重新注册）" if data.get("again") else ""), "info"
    if name == n.ROOM_DATA_IMPORTED:
        return "考场 {} 已导入考场数据".format(room), "info"
    if name == n.RESULTS_RECEIVED:
        return "收到{}的考试结果".format(result_label(room, data.get("session", ""))), "success"
    if name == n.RESULTS_UPLOADED:
        return "考后上报成功", "success"
    if name == n.RESULTS_UPLOAD_INTERRUPTED:
        return "考后上报中断，请稍后续报", "warning"
    if name == n.OUTBOX_SENT:
        return "状态报告已发送", "info"
    if name in (n.OUTBOX_DEFERRED, n.OUTBOX_FAILED):
        return "状态报告发送失败，{}：{}".format("将自动重试" if name == n.OUTBOX_DEFERRED else "已停止重试",
                                         str(data.get("error", ""))[:60]), "warning"
    if name == n.LOCK_DETACHED:
        return "机考锁已拔出", "danger"
    return None


def title_text(snap: Dict[str, Any]) -> str:
    """``<exam name> 考点管理系统 【<site>】`` plus ``(当前是模考)`` in mock mode."""
    parts = []
    if snap.get("exam_name"):
        parts.append(str(snap["exam_name"]) + " ")
    parts.append(branding.PRODUCT)
    if snap.get("site_code"):
        parts.append(" 【{}】".format(snap["site_code"]))
    if snap.get("mode") == model.MOCK:
        parts.append("(当前是模考)")
    return "".join(parts)
