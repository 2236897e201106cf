"""考前 step 2 考场注册 (screens.md §3.2, §3.2.2): rooms, registration codes, proctor IPs.

The table is the manual's: 考场代码 | 注册码 | 注册IP | 封场检测 | 备注 | 操作; the 操作 cell
holds 撤销注册 (left half; asks for confirmation, then ``core.registration.revoke``) and
查看考场 (right half; the room's detail as in 导入考务). The buttons below the table do
the same for the selected room. The footer counts 已注册考场N个, 未注册考场M个 and has
导出考点信息 (choose a folder → ``core.registration.export_site_info``, with the LAN
service's address and port from ``core.status``) and 恢复注册 (a KDINFO file → ``core.registration.restore_preview``
in a worker; a 确定/取消 question shows the file's export time and the rooms that lose,
change or regain their registration, connected rooms marked 当前已连接; only 确定 calls
``core.registration.restore`` with the preview's confirmation, which the core refuses if
the registrations changed meanwhile).
The table refreshes live when a proctor registers, imports its room data, or a
registration is revoked or restored.
"""

from typing import Any, Dict, Optional, Sequence

from kd.core import names as n
from kd.core.labels import mark
from kd.core.snapshots import RegistrationRow, RegistrationSnapshot
from kd.core.states import RegistrationState
from kd.views.dialogs import KDINFO_TYPES
from kd.views.step_common import actor
from kd.views.step_load import RoomDetail, room_detail
from kd.views.table_page import TablePage

OPERATIONS = "撤销注册 | 查看考场"
COLUMNS = [("code", "考场代码", 110), ("reg_code", "注册码", 100), ("ip", "注册IP", 120), ("seal", "封场检测", 80),
           ("note", "备注", 200), ("ops", "操作", 150)]
NOTE = ("说明：导出考点信息（考场代码和注册码）交给各考场，监考机用考场代码和注册码注册；"
        "全部考场注册后请再导出一次，用于重装后“恢复注册”。")


class RegisterPage(TablePage):
    title = "考场注册"
    events = frozenset({n.ROOM_REGISTERED, n.ROOM_DATA_IMPORTED, n.REGISTRATION_REVOKED, n.REGISTRATION_RESTORED,
                        n.PACKAGE_LOADED, n.SYSTEM_INITIALIZED, n.SYSTEM_RESTORED, n.SYSTEM_CONVERTED_TO_FORMAL})

    service = "registration"
    columns = COLUMNS
    note = NOTE

    # -- build ---------------------------------------------------------------------------
    def _build_body(self) -> None:
        super()._build_body()
        self.table.tree.bind("<ButtonRelease-1>", self._on_click, add="+")

    def _build_footer(self) -> None:
        self.revoke_button, self.view_button = self.buttons(
            self.bar(6), left=[("撤销注册", "danger-outline", self._on_revoke),
                               ("查看考场", "secondary-outline", self._on_view)])
        self.counts, (self.export_button, self.restore_button) = self.text_bar(
            8, right=[("导出考点信息", "primary", self._on_export), ("恢复注册", "secondary", self._on_restore)])

    # -- snapshot / render ---------------------------------------------------------------
    def rows_of(self, snap: RegistrationSnapshot) -> Sequence[RegistrationRow]:
        return snap.rooms

    def row(self, room: RegistrationRow) -> Dict[str, Any]:
        registered = room.state != RegistrationState.UNREGISTERED
        note = room.note
        if not note and room.state == RegistrationState.REGISTERED:  # its room data not imported yet
            note = "监考机尚未导入考场数据"
        return {"code": room.code, "reg_code": room.reg_code, "ip": room.ip or "",
                "seal": mark(room.state == RegistrationState.DATA_IMPORTED) if registered else "",
                "note": note, "ops": OPERATIONS if registered else "查看考场", "registered": registered}

    def render_rest(self, snap: RegistrationSnapshot) -> None:
        self.counts.configure(text="已注册考场{}个，未注册考场{}个".format(snap.registered, snap.unregistered))

    # -- actions -------------------------------------------------------------------------
    def _selected(self) -> Optional[Dict[str, Any]]:
        row = self.table.selected()
        if row is None:
            self.shell.notify("请先在表格中选择一个考场。", kind="warning")
        return row

    def _on_click(self, event: Any) -> None:
        tree = self.table.tree
        iid = tree.identify_row(event.y)
        column = tree.identify_column(event.x)
        if not iid or not iid.startswith("r") or column != "#{}".format(len(COLUMNS)):
            return
        tree.selection_set(iid)
        box = tree.bbox(iid, column)
        left = bool(box) and event.x < box[0] + box[2] // 2
        row = self.table.selected()
        if left and row is not None and row["registered"]:
            self._on_revoke()
        else:
            self._on_view()

    def _on_revoke(self) -> None:
        row = self._selected()
        if row is None:
            return
        code = row["code"]
        if not row["registered"]:
            self.shell.notify("考场 {} 尚未注册。".format(code), kind="warning")
            return
        if not self.shell.dialogs.confirm("撤销注册", "确认撤销考场 {} 的注册吗？".format(code),
                                          "撤销后该考场的监考机（{}）需要重新注册。".format(row["ip"])):
            return
        who = actor(self.shell)

        def done(_doc: Any) -> None:
            self.shell.notify("已撤销考场 {} 的注册。".format(code))
            self.shell.refresh_steps()

        self.run(lambda: self.core.registration.revoke(code, who), done, button=self.revoke_button)

    def _on_view(self) -> None:
        row = self._selected()
        if row is None:
            return
        code = row["code"]
        self.run(lambda: room_detail(self.core, code), self._show_detail)

    def _show_detail(self, detail: Dict[str, Any]) -> None:
        self.detail_window = RoomDetail(self, detail, on_door=self._open_door)

    def _open_door(self, code: str) -> None:
        self.run(lambda: self.core.loading.print_door_sheet(code), self.shell.open_url)

    def _on_export(self) -> None:
        folder = self.shell.dialogs.choose_dir("导出考点信息：选择保存的文件夹（如 U 盘）")
        if not folder:
            return
        who = actor(self.shell)

        def export() -> Dict[str, str]:
            lan = self.core.status.snapshot()
            if lan.lan_port is not None:  # the address and port the proctors connect to
                return self.core.registration.export_site_info(folder, who, lan.lan_address, lan.lan_port)
            return self.core.registration.export_site_info(folder, who)

        def done(paths: Dict[str, str]) -> None:
            self.shell.notify("考点信息已导出：{}".format(paths["kdinfo"]))
            self.shell.open_url(paths["html"])

        self.run(export, done, button=self.export_button)

    def _on_restore(self) -> None:
        """恢复注册: choose the KDINFO, see what it changes (the core's preview), 确定 applies it."""
        path = self.shell.dialogs.open_file("恢复注册：选择考点信息备份文件", KDINFO_TYPES)
        if not path:
            return
        self.run(lambda: self.core.registration.restore_preview(path), lambda p: self._confirm_restore(path, p),
                 button=self.restore_button)

    def _confirm_restore(self, path: str, preview: Dict[str, Any]) -> None:
        at_risk = preview.get("at_risk") or []
        if at_risk:
            text = "恢复注册将使 {} 个当前已连接的考场失去或改变注册，确定恢复吗？".format(len(at_risk))
        else:
            text = "确定用此文件恢复注册吗？"
        detail = "{}\n\n文件：{}".format("\n".join(preview["lines"]), preview["file"])
        if not self.shell.dialogs.confirm("恢复注册", text, detail):
            return
        who, token = actor(self.shell), preview["confirm"]

        def done(snap: Dict[str, Any]) -> None:
            self.shell.notify("注册信息已恢复：已注册考场{}个。".format(snap.get("registered", 0)))
            self.shell.refresh_steps()

        self.run(lambda: self.core.registration.restore(path, who, confirm=token), done, button=self.restore_button)
