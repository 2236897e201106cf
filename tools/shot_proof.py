"""docs/screenshots/33_upload_proof.png (and 1024/), 34_proof_sheet.png: the completeness proof (issue 16).

Run by tools/screenshots.py after its walks (``python3 tools/shot_proof.py SIZE X OUT``): a
real loaded site (platform simulator, dongle emulator) whose rooms' results are all in but
one room of 第二场次; 第一步 backs up to a folder on another volume, then the upload tool
uploads both sessions through its own buttons. The picture: 第一场次 上报完成 ✓ with the
proof's SHA-256, 第二场次 with the failing check naming the room not recovered. Then
(1366x768 run only) the 考点数据上报确认单 of 第一场次, as 打印确认单 writes it, rendered by
``wkhtmltoimage`` (skipped with a note when it is not installed) into 34_proof_sheet.png.
The window, site and camera: tools/scene.py.
"""
import os
import shutil
import subprocess

from PIL import Image
from scene import Scene
from screenshots import save

from tests.integration.live_helpers import loaded_env
from tests.support.external import external_folder, remove_external
from tests.support.results import deliver, pairs, result_package
from tests.support.ui import pump_until

scene = Scene(lambda work: loaded_env(work, rooms=8, sessions=2, candidates=6))
core, root, work, scripted = scene.core, scene.root, scene.work, scene.dialogs
every = pairs(scene.env.ctx)
missing = [p for p in every if p[1] == "2"][-1]
for room, session in every:
    if (room, session) != missing:
        deliver(core.recovery, room, session, result_package(scene.env.ctx, room, session, absent=1))
usb = external_folder(work)  # another volume than the data folder, as 第一步 wants
shell = scene.open_shell()
shell.show("数据回收")
page = shell.current
page.upload_button.invoke()
dialog = pump_until(root, lambda: page.upload_dialog, what="the upload dialog")
pump_until(root, lambda: dialog.last is not None, what="its snapshot")
scripted.plan("confirm", True).plan("choose_dir", usb)  # a room is not recovered: asked first
dialog.step1.invoke()
pump_until(root, lambda: str(dialog.step2.cget("state")) == "normal", timeout=60, what="step 2")
dialog.step2.invoke()
tool = pump_until(root, lambda: dialog.tool is not None and len(dialog.tool.cells()) == 2 and dialog.tool,
                  what="the upload tool")
for sid in ("1", "2"):
    tool.upload(sid)
    pump_until(root, lambda s=sid: tool.busy is None and tool.proof_text(s), timeout=60, what="upload " + sid)
pump_until(root, lambda: tool.cells()[1][5] == "1个未上报", what="the table")
root.update()
scene.shoot("33_upload_proof")
if scene.size == "1366x768":
    sheet = core.upload.proofs.sheet("1")
    tool_path = shutil.which("wkhtmltoimage")
    if tool_path is None:
        print("wkhtmltoimage not installed: 34_proof_sheet not taken", flush=True)
    else:
        raw = os.path.join(str(work), "sheet.png")
        subprocess.check_call([tool_path, "--quiet", "--width", "900", "--enable-local-file-access", sheet, raw])
        path = os.path.join(scene.out, "34_proof_sheet.png")
        save(Image.open(raw), path)
        print(path, flush=True)
scene.close()
remove_external(usb)
