"""Printable pages (门贴座次表, 考点信息表) as self-contained HTML files for the browser.

Every page is UTF-8 HTML with an A4 print stylesheet (``@page { size: A4 }``, one sheet
per ``<section class="page">``); every value from a package or the database is
html-escaped; every time is written as people read it (``kd.core.labels.shown``:
``2026-12-01 17:35``). ``write_print_file(folder, name, html)`` writes ``<folder>/<name>`` (``.part``,
fsync, rename) and returns its absolute path, ``write_page(data_dir, name, html)`` the same in
``DATA/print``; the UI opens it with ``webbrowser``. Every printed sheet (门贴座次表, 考点信息表,
考场情况记录单, 考点数据上报确认单) is written by ``write_print_file``.
"""

import html
import os
from typing import Any, Dict, Iterable, List, Mapping, Sequence

from kd import fileio
from kd.core.labels import shown
from kd.errors import StoreError

PRINT_DIR = "print"

CSS = """
@page { size: A4; margin: 15mm; }
body { font-family: "Microsoft YaHei", "SimSun", sans-serif; color: #000; margin: 0; }
.page { page-break-after: always; break-after: page; padding: 8mm 0; }
.page:last-child { page-break-after: auto; break-after: auto; }
h1 { font-size: 26pt; text-align: center; margin: 0 0 6mm; }
h2 { font-size: 16pt; text-align: center; margin: 0 0 4mm; font-weight: normal; }
.big { font-size: 40pt; text-align: center; letter-spacing: 4pt; margin: 8mm 0; }
table { width: 100%; border-collapse: collapse; font-size: 11pt; }
th, td { border: 1px solid #000; padding: 2mm 3mm; text-align: left; }
th { background: #eee; }
tr { page-break-inside: avoid; }
dl { font-size: 16pt; } dt { font-weight: bold; margin-top: 4mm; } dd { margin-left: 0; font-size: 28pt; }
@media screen { body { background: #ddd; } .page { background: #fff; width: 180mm; margin: 8mm auto;
  padding: 12mm; box-shadow: 0 0 3mm #999; } }
"""


def esc(value: Any) -> str:
    """``value`` as text, html-escaped (quotes too); None is empty."""
    return html.escape("" if value is None else str(value), quote=True)


def document(title: str, pages: Iterable[str]) -> str:
    """A whole HTML document of ``pages`` (each an inner HTML fragment of one sheet)."""
    body = "\n".join('<section class="page">\n{}\n</section>'.format(p) for p in pages)
    return ('<!DOCTYPE html>\n<html lang="zh-CN">\n<head>\n<meta charset="utf-8">\n<title>{}</title>\n'
            "<style>{}</style>\n</head>\n<body>\n{}\n</body>\n</html>\n").format(esc(title), CSS, body)


def door_sheet_html(detail: Dict[str, Any]) -> str:
    """门贴座次表: for each session of a room (``LoadingService.room_detail``), a door
    sticker page (room, session, time, seat range) and a seating chart page."""
    pages: List[str] = []
    for session in detail["sessions"]:
        cands = session["candidates"]
        head = "<h2>{} · {}</h2>".format(esc(detail.get("exam_name")), esc(session["name"]))
        seats = "座位号 {}–{}".format(cands[0]["seat"], cands[-1]["seat"]) if cands else ""
        pages.append(
            "<h1>门贴</h1>{head}<div class=\"big\">{name}<br>{code}</div>"
            "<dl><dt>开考时间</dt><dd>{start}</dd><dt>考试时长</dt><dd>{dur} 分钟</dd>"
            "<dt>考生人数</dt><dd>{n} 人 {seats}</dd></dl>".format(
                head=head, name=esc(detail.get("name")), code=esc(detail["code"]), start=esc(shown(session["start"])),
                dur=esc(session["duration_min"]), n=len(cands), seats=esc(seats)))
        rows = "\n".join(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>".format(
                esc(c["seat"]), esc(c["ticket"]), esc(c["name"]), esc(c.get("subject_name") or c.get("subject")))
            for c in cands)
        pages.append(
            "<h1>座次表</h1>{head}<h2>考场 {code} {name}　开考 {start}</h2>"
            "<table><thead><tr><th>座位号</th><th>准考证号</th><th>姓名</th><th>科目</th></tr></thead>"
            "<tbody>\n{rows}\n</tbody></table>".format(
                head=head, code=esc(detail["code"]), name=esc(detail.get("name")), start=esc(shown(session["start"])),
                rows=rows))
    return document("门贴座次表 {}".format(detail["code"]), pages)


def site_info_html(site_code: str, exam_name: str, address: str, port: int,
                   rooms: Sequence[Mapping[str, Any]]) -> str:
    """考点信息表: one page per room with its room code, registration code, server address and port."""
    pages = []
    for room in rooms:
        pages.append(
            "<h1>考场注册信息</h1><h2>{exam} · 考点 {site}</h2>"
            "<dl><dt>考场代码</dt><dd>{code}</dd><dt>注册码</dt><dd>{reg}</dd>"
            "<dt>考点服务器地址</dt><dd>{addr}</dd><dt>端口</dt><dd>{port}</dd></dl>".format(
                exam=esc(exam_name), site=esc(site_code), code=esc(room["code"]), reg=esc(room["reg_code"]),
                addr=esc(address), port=esc(port)))
    return document("考点信息表({})".format(site_code), pages)


def write_print_file(folder: str, name: str, text: str) -> str:
    """Write the HTML page ``text`` to ``<folder>/<name>`` (the folder made if missing; ``.part``,
    fsync, rename); its absolute path. Raises ``StoreError`` when it cannot be written."""
    path = os.path.abspath(os.path.join(folder, name))
    try:
        os.makedirs(folder, exist_ok=True)
        fileio.write_file_durably(path, text.encode("utf-8"))
    except OSError as e:
        raise StoreError("无法写入打印文件：{}".format(path), "请检查文件夹是否存在、可写且有足够的磁盘空间后重试。",
                         detail=repr(e)) from e
    return path


def write_page(data_dir: str, name: str, text: str) -> str:
    """Write an HTML page to ``DATA/print/<name>``; its absolute path (``write_print_file``)."""
    return write_print_file(os.path.join(data_dir, PRINT_DIR), name, text)
