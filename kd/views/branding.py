"""Fixed texts of the window frame: product name, footer (版本, 技术服务单位, phone), tray title.

One place to change them; the footer shows ``kd.__version__`` as 系统版本.
"""

PRODUCT = "考点管理系统"
#: 技术服务单位 and its phone, shown in the footer (placeholders until the service contract names them)
SERVICE_UNIT = "技术服务单位：考点系统技术服务中心"
SERVICE_PHONE = "服务电话：400-000-0000"
#: the LAN port the status bar shows when no LAN service runs
DEFAULT_PORT = 9190
#: how long a notification stays (ms)
NOTIFY_MS = 5000
