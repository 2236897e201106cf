"""数据上报 (manual §5.2): back up to external storage first, then the upload tool.

``UploadDialog(parent, shell)`` is the manual's two-step window: 第一步 备份到外部存储
(``core.upload.backup_preview`` and the completeness proof's checks,
``core.upload.proofs.preview``, in a worker first: when rooms and sessions are not
recovered yet or their files here are damaged, or a proof check fails — a ticket missing
from a result, an incident not decided —, a 确定/取消 question names them (room, ticket,
what to do), the proof's lines stay listed under the buttons, and 取消 backs up nothing;
then choose a folder on the USB drive → ``core.upload.backup_external``
in a worker, an indeterminate progress bar, then "备份完成!"), and 第二步 上报, enabled only when the
core says the external backup covers every recovered file (``snapshot()["can_upload"]``,
so after step 1 succeeded). 第二步 opens ``UploadTool``.

``UploadTool(parent, shell)``: one block per session — 考场数 | 已回收 | 文件大小 | 已上报 |
上报状态 (全部未上报 / N个未上报 / 全部已上报) — with its own progress bar and the buttons
上报 and 续报 (resume after a cut: the same ``core.upload.upload(session)`` call, the
platform keeps what it got). ``upload``'s progress callback runs in the worker: it is a
progress sink of the shell's loop (``loop.progress``), which hands the dicts to the tool
on the Tk thread, in order with the upload's result, and not after the tool is closed.
Rooms still not recovered are named above the table and after an upload (the result's
warnings). Each block's proof line shows the session's 考点数据完整性证明 once the receipts
are in (the upload builds it, ``kd.core.proofflow``): ``上报完成 ✓`` with the proof's
SHA-256 only when it verifies, else the failing check (``<id>: <message>``), or why it
could not be built; its 打印确认单 opens the session's 考点数据上报确认单 in the browser
(``core.upload.proofs.sheet`` in a worker, like the door sheet). 上报 stays enabled for a
session whose proof fails, to build it again once the cause is dealt with.
"""

import logging
import tkinter as tk
from typing import Any, Callable, Dict, List, Optional

import ttkbootstrap as ttk

from kd.core.labels import session_label
from kd.core.proofflow import proof_line
from kd.errors import UserError
from kd.views.dialogs import center_on, modal

log = logging.getLogger(__name__)

OK_COLOUR, BAD_COLOUR = "#2e7d32", "#c0392b"
INTRO = ("根据考务要求，上报前，需先将当前考试结果数据备份到外部存储设备上，然后再进行上报。\n"
         "请接入外部存储设备（U盘、移动硬盘）后，点【第一步】。")
BACKUP_DONE = "备份完成!"
#: proof-check lines listed under 第一步's buttons (the rest counted)
CHECK_LINES = 8


def _previews(upload: Any) -> Dict[str, Any]:
    """第一步's look ahead (a worker): the backup's preview and the proof's checks."""
    preview = dict(upload.backup_preview())
    flow = getattr(upload, "proofs", None)
    preview["proof"] = flow.preview() if flow is not None else {"ok": True, "sessions": [], "lines": []}
    return preview


def _actor(shell: Any) -> str:
    return getattr(shell, "user", None) or "admin"


def _not_recovered_text(pairs: List[Dict[str, Any]]) -> str:
    if not pairs:
        return ""
    names = "、".join("{}（{}）".format(p["room"], session_label(p["session"], p.get("session_name")))
                     for p in pairs[:8])
    return "还有{}个考场未回收文件：{}{}".format(len(pairs), names, "等" if len(pairs) > 8 else "")


class _Worker:
    """Run core calls from a window through the shell's loop; a UserError becomes a dialog."""

    def __init__(self, window: tk.Misc, shell: Any) -> None:
        self.window = window
        self.shell = shell

    def submit(self, fn: Callable[[], Any], on_done: Callable[[Any], None],
               on_error: Optional[Callable[[BaseException], None]] = None) -> None:
        def done(value: Any) -> None:
            if self.window.winfo_exists():
                on_done(value)

        def failed(exc: BaseException) -> None:
            if on_error is not None and self.window.winfo_exists():
                on_error(exc)
                return
            if isinstance(exc, UserError):
                self.shell.dialogs.error(exc)
                return
            raise exc

        self.shell.loop.submit(fn, done, failed)


class UploadDialog(tk.Toplevel):
    """数据上报: 第一步 备份到外部存储 → 第二步 上报."""

    def __init__(self, parent: tk.Misc, shell: Any) -> None:
        super().__init__(parent)
        self.shell = shell
        self.worker = _Worker(self, shell)
        self.tool: Optional[UploadTool] = None
        self.last: Optional[Dict[str, Any]] = None
        self.title("数据上报")
        self.resizable(False, False)
        self._build()
        self.bind("<Escape>", lambda e: self.destroy())
        center_on(self, parent)
        modal(self, parent)  # as the manual's: the main window waits until it is closed
        self.refresh()

    def _build(self) -> None:
        frame = ttk.Frame(self, padding=16)
        frame.pack(fill="both", expand=True)
        ttk.Label(frame, text=INTRO, justify="left", wraplength=520).grid(row=0, column=0, columnspan=3, sticky="w")
        ttk.Label(frame, text="第一步").grid(row=1, column=0, pady=(14, 2))
        ttk.Label(frame, text="第二步").grid(row=1, column=2, pady=(14, 2))
        self.step1 = ttk.Button(frame, text="备份到外部存储", width=16, command=self._on_backup)
        self.step1.grid(row=2, column=0, padx=4)
        ttk.Label(frame, text="→").grid(row=2, column=1, padx=12)
        self.step2 = ttk.Button(frame, text="上报", width=16, state="disabled", command=self._on_step2)
        self.step2.grid(row=2, column=2, padx=4)
        self.progress = ttk.Progressbar(frame, mode="determinate", length=520, value=0)
        self.progress.grid(row=3, column=0, columnspan=3, sticky="ew", pady=(14, 4))
        self.status = ttk.Label(frame, text="", justify="left", wraplength=520)
        self.status.grid(row=4, column=0, columnspan=3, sticky="w")
        #: the completeness proof's checks that fail before the upload (room, ticket, what to do)
        self.checks = ttk.Label(frame, text="", justify="left", wraplength=520, foreground=BAD_COLOUR)
        self.checks.grid(row=5, column=0, columnspan=3, sticky="w", pady=(6, 0))
        self.close_button = ttk.Button(frame, text="关闭", width=8, command=self.destroy)
        self.close_button.grid(row=6, column=2, sticky="e", pady=(12, 0))

    # -- reacting --------------------------------------------------------------------------
    def refresh(self) -> None:
        self.worker.submit(self.shell.core.upload.snapshot, self.render)

    def _on_backup(self) -> None:
        """第一步: what the backup would leave out first (a worker), asked when incomplete, then the folder."""
        self.step1.configure(state="disabled")
        self.status.configure(text="正在检查已回收的结果包和考点数据完整性…", foreground="")
        upload = self.shell.core.upload
        self.worker.submit(lambda: _previews(upload), self._previewed, self._preview_failed)

    def _preview_failed(self, exc: BaseException) -> None:
        self.step1.configure(state="normal")
        self.status.configure(text="")
        if not isinstance(exc, UserError):
            raise exc
        self.shell.dialogs.error(exc)

    def _previewed(self, preview: Dict[str, Any]) -> None:
        self.step1.configure(state="normal")
        self.status.configure(text="")
        proof = preview.get("proof") or {"ok": True, "lines": []}
        self.show_checks(proof)
        if not preview["complete"] or not proof["ok"]:
            lines = list(preview["lines"])
            if not proof["ok"]:
                lines += ["", "考点数据完整性检查未通过的项目："] + list(proof["lines"])
            if not preview["complete"]:
                missing = len(preview["not_recovered"]) + len(preview["damaged"])
                text = "有 {} 个考场场次的考试结果不在本次备份中，确定继续备份吗？".format(missing)
            else:
                text = "考点数据完整性检查有 {} 项未通过（考场、准考证号和处理办法见详情），确定继续备份吗？".format(
                    sum(len(s["failures"]) for s in proof.get("sessions") or []))
            if not self.shell.dialogs.confirm("备份到外部存储", text, "\n".join(lines)):
                return
        self._choose_and_back_up()

    def show_checks(self, proof: Dict[str, Any]) -> None:
        """List the proof checks that fail now under the buttons (empty when they all hold)."""
        lines = list(proof.get("lines") or [])
        if not lines:
            self.checks.configure(text="")
            return
        shown = lines[:CHECK_LINES]
        more = "\n……另有 {} 项".format(len(lines) - CHECK_LINES) if len(lines) > CHECK_LINES else ""
        self.checks.configure(text="考点数据完整性检查：\n" + "\n".join(shown) + more)

    def _choose_and_back_up(self) -> None:
        folder = self.shell.dialogs.choose_dir("第一步：选择外部存储（U盘、移动硬盘）上的文件夹")
        if not folder:
            return
        upload, actor = self.shell.core.upload, _actor(self.shell)
        self.step1.configure(state="disabled")
        self.step2.configure(state="disabled")
        self.status.configure(text="正在备份到 {} …".format(folder), foreground="")
        self.progress.configure(mode="indeterminate")
        self.progress.start(20)
        self.worker.submit(lambda: upload.backup_external(folder, actor), self._backed_up, self._backup_failed)

    def _backed_up(self, result: Dict[str, Any]) -> None:
        self.progress.stop()
        self.progress.configure(mode="determinate", value=100)
        self.step1.configure(state="normal")
        self.status.configure(text="{}\n已备份 {} 个结果包到 {}".format(BACKUP_DONE, len(result["files"]),
                                                                 result["folder"]), foreground=OK_COLOUR)
        self.shell.notify(BACKUP_DONE)
        if result.get("warnings"):  # damaged results left out, a drill's same volume, a fixed disk
            self.shell.dialogs.warning("备份到外部存储", "备份已完成，请注意以下提示。", "\n".join(result["warnings"]))
        self.refresh()

    def _backup_failed(self, exc: BaseException) -> None:
        self.progress.stop()
        self.progress.configure(mode="determinate", value=0)
        self.step1.configure(state="normal")
        if not isinstance(exc, UserError):
            raise exc
        self.status.configure(text="备份未完成：{}".format(exc.cause), foreground=BAD_COLOUR)
        self.shell.dialogs.error(exc)
        self.refresh()

    def _on_step2(self) -> None:
        if self.tool is not None and self.tool.winfo_exists():
            self.tool.lift()
            self.tool.refresh()
            return
        self.tool = UploadTool(self, self.shell)

    # -- rendering -------------------------------------------------------------------------
    def render(self, snap: Dict[str, Any]) -> None:
        self.last = snap
        self.step2.configure(state="normal" if snap.get("can_upload") else "disabled")
        if snap.get("damaged"):  # the backup left them out: their files on this PC are damaged
            self.status.configure(text="{} 的结果包在本机已损坏，未能备份。\n{}".format(
                "、".join(d["label"] for d in snap["damaged"]), snap.get("damaged_remedy", "")), foreground=BAD_COLOUR)
        elif snap.get("not_backed_up") and snap.get("external"):
            self.status.configure(text="备份完成后又回收了 {} 个结果包，请重新执行第一步。".format(
                len(snap["not_backed_up"])), foreground=BAD_COLOUR)


class UploadTool(tk.Toplevel):
    """The upload tool: per session counts, a progress bar, 上报 and 续报."""

    HEADINGS = ["场次", "考场数", "已回收", "文件大小", "已上报", "上报状态"]

    def __init__(self, parent: tk.Misc, shell: Any) -> None:
        super().__init__(parent)
        self.shell = shell
        self.worker = _Worker(self, shell)
        self.title("上报工具")
        self.last: Optional[Dict[str, Any]] = None
        self.busy: Optional[str] = None
        self.interrupted: set = set()
        self.blocks: Dict[str, Dict[str, Any]] = {}
        self._order: List[str] = []
        self._progress = shell.loop.progress(self._show_progress, owner=self)
        self.frame = ttk.Frame(self, padding=12)
        self.frame.pack(fill="both", expand=True)
        self.warning = ttk.Label(self.frame, text="", foreground=BAD_COLOUR, wraplength=640, justify="left")
        self.warning.pack(anchor="w")
        self.rows = ttk.Frame(self.frame)
        self.rows.pack(fill="both", expand=True, pady=(6, 0))
        self.close_button = ttk.Button(self.frame, text="关闭", width=8, command=self.destroy)
        self.close_button.pack(anchor="e", pady=(10, 0))
        self.bind("<Escape>", lambda e: self.destroy())
        # centred on the main window, as the 数据上报 dialog it opens from; modal over it
        center_on(self, shell.root)
        modal(self, parent)
        self.refresh()

    # -- blocks ----------------------------------------------------------------------------
    def _block(self, sid: str) -> Dict[str, Any]:
        block = self.blocks.get(sid)
        if block is not None:
            return block
        box = ttk.Labelframe(self.rows, text=session_label(sid), padding=8)
        box.pack(fill="x", pady=4)
        labels = {}
        for col, key in enumerate(("rooms", "recovered", "size_text", "uploaded", "status")):
            labels[key] = ttk.Label(box, text="")
            labels[key].grid(row=0, column=col, sticky="w", padx=(0, 14))
        upload = ttk.Button(box, text="上报", width=6, command=lambda: self.upload(sid))
        upload.grid(row=0, column=5, padx=(8, 0))
        resume = ttk.Button(box, text="续报", width=6, command=lambda: self.upload(sid, resume=True))
        resume.grid(row=0, column=6, padx=(6, 0))
        bar = ttk.Progressbar(box, mode="determinate", maximum=100, length=420)
        bar.grid(row=1, column=0, columnspan=5, sticky="ew", pady=(6, 0))
        message = ttk.Label(box, text="", wraplength=620, justify="left")
        message.grid(row=2, column=0, columnspan=7, sticky="w", pady=(4, 0))
        proof = ttk.Label(box, text="", wraplength=520, justify="left")
        proof.grid(row=3, column=0, columnspan=5, sticky="w", pady=(4, 0))
        sheet = ttk.Button(box, text="打印确认单", width=10, state="disabled", command=lambda: self.print_sheet(sid))
        sheet.grid(row=3, column=5, columnspan=2, sticky="e", pady=(4, 0))
        block = {"box": box, "labels": labels, "upload": upload, "resume": resume, "bar": bar, "message": message,
                 "proof": proof, "sheet": sheet, "row": {}}
        self.blocks[sid] = block
        return block

    def cells(self) -> List[List[str]]:
        """What the tool shows per session, as text: 场次 考场数 已回收 文件大小 已上报 上报状态."""
        out = []
        for sid in self._order:
            row = self.blocks[sid]["row"]
            out.append([row.get("session_name", sid), str(row.get("rooms", "")), str(row.get("recovered", "")),
                        row.get("size_text", ""), str(row.get("uploaded", "")), row.get("status", "")])
        return out

    def proof_text(self, sid: str) -> str:
        """The session's proof line as the block shows it."""
        return str(self.blocks[sid]["proof"].cget("text"))

    # -- reacting --------------------------------------------------------------------------
    def refresh(self) -> None:
        self.worker.submit(self.shell.core.upload.snapshot, self.render)

    def print_sheet(self, sid: str) -> None:
        """打印确认单: the session's 考点数据上报确认单 written in a worker, then opened in the browser."""
        flow = self.shell.core.upload.proofs
        self.worker.submit(lambda: flow.sheet(sid), self.shell.open_url)

    def upload(self, session_id: str, resume: bool = False) -> None:
        """上报 (or 续报) one session in a worker; its progress comes through the loop's sink."""
        if self.busy is not None:
            return
        self.busy = session_id
        block = self.blocks[session_id]
        block["bar"].configure(value=0)
        block["message"].configure(text="正在{}…".format("续报" if resume else "上报"), foreground="")
        self._enable()
        upload, actor, sink = self.shell.core.upload, _actor(self.shell), self._progress
        self.worker.submit(lambda: upload.upload(session_id, actor, progress=sink),
                           lambda result: self._uploaded(session_id, result),
                           lambda exc: self._failed(session_id, exc))

    def _show_progress(self, items: List[Dict[str, Any]]) -> None:
        """The progress reports since the last ones (Tk thread): the latest per session shown."""
        latest = {item["session"]: item for item in items}
        for sid, item in latest.items():
            block = self.blocks.get(sid)
            if block is None:
                continue
            count = max(1, int(item.get("count") or 1))
            size = max(1, int(item.get("size") or 1))
            done = (int(item.get("index") or 0) + min(1.0, int(item.get("sent") or 0) / size)) / count
            block["bar"].configure(value=round(done * 100, 1))
            text = "正在上报考场 {}（{}/{}）".format(item.get("room"), item["index"] + 1, count)
            block["message"].configure(text=text)

    def _uploaded(self, sid: str, result: Dict[str, Any]) -> None:
        self.busy = None
        self.interrupted.discard(sid)
        block = self.blocks[sid]
        block["bar"].configure(value=100)
        text = "文件上报完成，已上报 {} 个结果包".format(len(result.get("uploaded") or []))
        if result.get("already"):
            text += "（{} 个此前已上报）".format(result["already"])
        pending = result.get("not_recovered") or []
        if pending:
            text += "，还有{}个考场未回收文件!".format(len(pending))
        block["message"].configure(text=text, foreground=BAD_COLOUR if pending else OK_COLOUR)
        proof = next((p for p in result.get("proofs") or [] if p.get("session") == sid), None)
        if proof is not None:
            self._show_proof(block, proof)
        if result.get("warnings"):
            self.shell.dialogs.warning("上报", "文件上报完成，但有考场尚未回收。", "\n".join(result["warnings"]))
        row = self.blocks[sid].get("row") or {}
        self.shell.notify("{}上报完成".format(session_label(sid, row.get("session_name"))))
        self.refresh()

    def _failed(self, sid: str, exc: BaseException) -> None:
        self.busy = None
        if not isinstance(exc, UserError):
            self.refresh()
            raise exc
        self.interrupted.add(sid)
        text = "上报中断：{} 已上报的部分会保留，请点击“续报”继续。".format(exc.cause)
        self.blocks[sid]["message"].configure(text=text, foreground=BAD_COLOUR)
        self.shell.dialogs.error(exc)
        self.refresh()

    # -- rendering -------------------------------------------------------------------------
    def render(self, snap: Dict[str, Any]) -> None:
        self.last = snap
        order = []
        for row in snap.get("sessions") or []:
            sid = row["session"]
            order.append(sid)
            block = self._block(sid)
            block["row"] = row
            block["box"].configure(text=session_label(sid, row.get("session_name")))
            labels = block["labels"]
            labels["rooms"].configure(text="考场数：{}".format(row["rooms"]))
            labels["recovered"].configure(text="已回收：{}".format(row["recovered"]))
            labels["size_text"].configure(text="文件大小：{}".format(row["size_text"]))
            labels["uploaded"].configure(text="已上报：{}".format(row["uploaded"]))
            labels["status"].configure(text="上报状态：{}".format(row["status"]))
            if self.busy != sid and row["recovered"] and row["uploaded"] >= row["recovered"]:
                block["bar"].configure(value=100)
            self._show_proof(block, row.get("proof"))
        first = not self._order
        self._order = order
        self.warning.configure(text=_not_recovered_text(snap.get("not_recovered") or []))
        self._enable()
        if first and order:  # its blocks make it taller and wider: centred again at its full size
            center_on(self, self.shell.root)

    @staticmethod
    def _show_proof(block: Dict[str, Any], proof: Optional[Dict[str, Any]]) -> None:
        text, ok = proof_line(proof)
        block["proof"].configure(text=text, foreground=OK_COLOUR if ok else BAD_COLOUR)
        block["sheet"].configure(state="normal" if proof and proof.get("path") else "disabled")

    def _enable(self) -> None:
        for sid, block in self.blocks.items():
            row = block["row"]
            left = row.get("recovered", 0) > row.get("uploaded", 0)
            proof = row.get("proof")
            again = bool(proof) and not proof.get("ok")  # build the proof again once its cause is dealt with
            idle = self.busy is None
            block["upload"].configure(state="normal" if idle and (left or again) else "disabled")
            resumable = sid in self.interrupted or 0 < row.get("uploaded", 0) < row.get("recovered", 0)
            block["resume"].configure(state="normal" if idle and left and resumable else "disabled")
