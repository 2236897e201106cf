"""Fixed texts of the window frame: product name, the footer's format, tray title.

The footer (``footer_text``) is ``系统版本: V<kd.__version__>`` and, when known, ``技术服务单位: …``
and ``服务电话: …`` — from ``core.status.contact()`` (``settings/site`` ``service_unit`` /
``service_phone``, else the loaded package's optional ``service`` object, docs/formats.md
§2.2.1); a part nobody configured is left out, never a placeholder.
"""

PRODUCT = "考点管理系统"
#: between the footer's parts
FOOTER_SEPARATOR = " · "
#: the LAN port the status bar shows when no LAN service runs
DEFAULT_PORT = 9190
#: how long a notification stays (ms)
NOTIFY_MS = 5000


def footer_text(version: str, unit: str = "", phone: str = "") -> str:
    """``系统版本: V0.1.0 · 技术服务单位: … · 服务电话: …``, without the parts that are empty."""
    parts = ["系统版本: V{}".format(version.lstrip("vV"))]
    if unit:
        parts.append("技术服务单位: {}".format(unit))
    if phone:
        parts.append("服务电话: {}".format(phone))
    return FOOTER_SEPARATOR.join(parts)
