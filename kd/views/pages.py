"""Which screen lives where: the left navigation, the 5 steps of 考前, and their modules.

The shell (main window) builds the navigation from this table and imports each page
lazily (``load(spec)``), so a screen is one module and adding one is one line here.
Each entry: (navigation group, label, "module:Class"). The ✓/✗ of the steps are the
core's (``core.steps.marks()``, kd/core/steps.py), keyed by these labels.
"""

import importlib
from typing import Any, List, Tuple

Entry = Tuple[str, str, str]

#: 考前 → 考务管理: the 5-step header 导入考务 → 考场注册 → 考试授权 → 封场检测 → 授权验证
STEPS: List[Entry] = [
    ("考前", "导入考务", "kd.views.step_load:LoadPage"),
    ("考前", "考场注册", "kd.views.step_register:RegisterPage"),
    ("考前", "考试授权", "kd.views.step_authorize:AuthorizePage"),
    ("考前", "封场检测", "kd.views.step_seal:SealPage"),
    ("考前", "授权验证", "kd.views.step_verify:VerifyPage"),
]

#: the left navigation: (group, entry label, page)
NAVIGATION: List[Entry] = [
    ("考前", "考务管理", "kd.views.step_load:LoadPage"),
    ("考中", "考场管理", "kd.views.monitor:MonitorPage"),
    ("考中", "时间线", "kd.views.timeline:TimelinePage"),
    ("考中", "考场情况", "kd.views.incidents:IncidentsPage"),
    ("考后", "数据回收", "kd.views.recovery:RecoveryPage"),
]


def load(spec: str) -> Any:
    """The class named by ``"module:Class"``."""
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)
