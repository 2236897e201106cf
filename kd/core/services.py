"""``Core``: one instance of every chapter service over one ``Context``.

Services keep in-memory state (registration rate limits, live heartbeats, the outbox
sender), so a running app must use one of each: the UI, the LAN server and the CLI all
go through the same ``Core``. ``start()`` / ``stop()`` run the core's own threads (the
outbox sender); the monitor's ``tick()`` is driven by ``kd.app``.

    考前/考务管理   loading (导入考务), registration (考场注册), authorization (考试授权),
                    seal (封场检测), verification (授权验证)
    考中/考场管理   monitor (考场监控 + automatic reports)
    考后/数据回收   recovery (数据回收), upload (考后上报)
    更多            accounts (登录, 参数设置, 修改密码), system (备份, 恢复, 初始化, 模考转正考)
"""

from kd.core.accounts import AccountService
from kd.core.authorization import AuthorizationService
from kd.core.context import Context
from kd.core.loading import LoadingService
from kd.core.monitor import MonitorService
from kd.core.outbox import Outbox
from kd.core.recovery import RecoveryService
from kd.core.registration import RegistrationService
from kd.core.seal import SealCheckService
from kd.core.system import SystemService
from kd.core.upload import UploadService
from kd.core.verification import VerificationService


class Core:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.outbox = Outbox(ctx)
        self.accounts = AccountService(ctx)
        self.system = SystemService(ctx)
        self.loading = LoadingService(ctx)
        self.registration = RegistrationService(ctx)
        self.authorization = AuthorizationService(ctx)
        self.seal = SealCheckService(ctx, self.outbox)
        self.verification = VerificationService(ctx)
        self.monitor = MonitorService(ctx, self.outbox)
        self.recovery = RecoveryService(ctx, self.outbox)
        self.upload = UploadService(ctx, self.outbox)
        # a revoked room is disconnected at once, not after its missed heartbeats
        ctx.hub.on("registration_revoked", lambda event: self.monitor.forget(event.data["room"]))

    def start(self) -> "Core":
        self.outbox.start()
        return self

    def stop(self) -> None:
        self.outbox.stop()
