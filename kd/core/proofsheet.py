"""考点数据上报确认单: the completeness proof of a session printed for the site's paper file (issue 16).

``sheet_html(doc, verdict, trusted)`` renders one proof document (``kd.formats.proof``,
docs/formats.md "考点数据完整性证明") as an A4 page set in the house style of
``kd.core.printing`` (UTF-8 HTML, ``@page { size: A4 }``, every value html-escaped,
times as people read them):

- the head: exam, site code, session, when the proof was made, the package's publish time,
  the verdict (证明有效 ✓, or 未通过 and the first failing check) and the proof's SHA-256
  (``kd.formats.proof.digest`` of its body, hex: what ``main.py proof verify`` checks);
- one row per room: 考场 | 应考 | 参考 | 缺考 | 结果包 (SHA-256 prefix, ``size_text``) | 外部备份
  (✓ / ✗) | 上报回执 (the receipt's file id and time, from the platform-signed receipt) |
  考场情况 (records, how many decided) | 补时 (minutes), and a totals row;
- the checks: every failing check (check id, room, ticket, what to do), or how many passed;
- signature lines: 考点主考, 技术人员, 监控平台接收人, each with 日期.

``write_sheet(data_dir, doc, verdict, trusted) -> path`` writes
``DATA/print/考点数据上报确认单(<site>-<session>).html`` (``printing.write_page``: atomic);
the upload tool's 打印确认单 and ``main.py proof sheet`` open or print that path.
"""

import logging
from typing import Any, Dict, List, Mapping, Optional

from kd.core.labels import shown
from kd.core.printing import document, esc, write_page, write_print_file
from kd.errors import FormatError
from kd.formats import proof as proof_format
from kd.formats.documents import KIND_RECEIPT
from kd.formats.package import KIND as PACKAGE_KIND
from kd.formats.signing import TrustedKeys, verify_document

log = logging.getLogger(__name__)

TITLE = "考点数据上报确认单"

CSS_EXTRA = """
<style>
.sheet h1 { font-size: 20pt; margin-bottom: 3mm; }
.sheet table { font-size: 9pt; margin-bottom: 4mm; }
.sheet td, .sheet th { padding: 1mm 1.5mm; }
.sheet th { white-space: nowrap; }
.head td { font-size: 10pt; }
.mono { font-family: Consolas, "Courier New", monospace; font-size: 8.5pt; word-break: break-all; }
.ok { color: #1b5e20; font-weight: bold; } .bad { color: #b71c1c; font-weight: bold; }
.num { text-align: right; } .nw { white-space: nowrap; }
.sign { margin-top: 8mm; font-size: 12pt; } .sign div { margin: 6mm 0; }
tfoot td { font-weight: bold; background: #f4f4f4; }
</style>
"""


def file_name(site_code: str, session_id: str) -> str:
    """``考点数据上报确认单(<site>-<session>).html``."""
    return "{}({}-{}).html".format(TITLE, site_code, session_id)


def _signed_body(raw: Any, kind: str, trusted: TrustedKeys) -> Dict[str, Any]:
    """The body of a signed envelope the proof carries (for display), {} when it does not verify."""
    if not isinstance(raw, str):
        return {}
    try:
        return verify_document(raw.encode("utf-8"), kind, trusted)
    except FormatError as e:
        log.info("确认单: a %s the proof carries does not verify: %s", kind, e.cause)
        return {}


def proof_sha256(doc: Mapping[str, Any]) -> str:
    """The proof's SHA-256 as the sheet prints it: of its body's canonical bytes (``proof.digest``)."""
    return proof_format.digest(doc["body"]).hex()


def room_rows(body: Mapping[str, Any], trusted: TrustedKeys) -> List[Dict[str, Any]]:
    """Per room of the proof (by code): what the sheet's table shows, as plain values."""
    expected: Dict[str, int] = {}
    for entry in body.get("roster") or []:
        expected[entry["room"]] = expected.get(entry["room"], 0) + 1
    rows = []
    for room in sorted(body.get("rooms") or [], key=lambda r: r["code"]):
        attendance = room.get("attendance") or []
        receipt = room.get("receipt") or {}
        signed = _signed_body(receipt.get("document"), KIND_RECEIPT, trusted) if receipt else {}
        incidents = room.get("incidents") or []
        result: Optional[Dict[str, Any]] = room.get("result") or None
        backup: Optional[Dict[str, Any]] = room.get("backup") or None
        rows.append({
            "code": room["code"], "expected": expected.get(room["code"], 0),
            "present": sum(1 for a in attendance if a.get("status") == proof_format.PRESENT),
            "absent": sum(1 for a in attendance if a.get("status") == proof_format.ABSENT),
            "sha256": result.get("sha256") if result else None, "size": result.get("size") if result else None,
            "backup_ok": bool(backup and backup.get("valid") is True and result
                              and (backup.get("sha256"), backup.get("size")) == (result.get("sha256"),
                                                                                 result.get("size"))),
            "receipt": signed.get("file_id") or receipt.get("file_id"),
            "received_at": signed.get("received_at") or receipt.get("received_at"),
            "receipt_ok": bool(signed) and result is not None and (signed.get("sha256"), signed.get("size")) == (
                result.get("sha256"), result.get("size")),
            "incidents": len(incidents),
            "decided": sum(1 for i in incidents if i.get("state") in proof_format.DECIDED),
            "extra_min": sum(int(g.get("minutes") or 0) for g in room.get("extra_time") or []
                             if isinstance(g, dict)),
        })
    for code in sorted(set(expected) - {r["code"] for r in rows}):  # a room of the roster the proof lacks
        rows.append({"code": code, "expected": expected[code], "present": 0, "absent": 0, "sha256": None,
                     "size": None, "backup_ok": False, "receipt": None, "received_at": None, "receipt_ok": False,
                     "incidents": 0, "decided": 0, "extra_min": 0})
    return rows


def size_text(size: Any) -> str:
    """A result package's size as the sheet prints it: ``812 字节``, ``21.2 KB``, ``3.4 MB`` (1 KB = 1024 字节)."""
    try:
        n = int(size)
    except (TypeError, ValueError):
        return str(size)
    if n < 1024:
        return "{} 字节".format(n)
    if n < 1024 * 1024:
        return "{:.1f} KB".format(n / 1024)
    return "{:.1f} MB".format(n / (1024 * 1024))


def _mark(ok: bool) -> str:
    return '<span class="ok">✓</span>' if ok else '<span class="bad">✗</span>'


def sheet_html(doc: Mapping[str, Any], verdict: Any, trusted: TrustedKeys) -> str:
    """The 确认单 of one proof document (see the module docstring); ``verdict``: its
    ``kd.formats.proof.Verdict`` (what the site's own verification found)."""
    body = doc["body"]
    package = body.get("package") or {}
    manifest = _signed_body(package.get("manifest"), PACKAGE_KIND, trusted)
    rows = room_rows(body, trusted)
    ok = bool(getattr(verdict, "ok", False))
    first = verdict.first.text() if getattr(verdict, "first", None) is not None else ""
    conclusion = ('<span class="ok">证明有效 ✓</span>　签名与全部检查均通过' if ok else
                  '<span class="bad">未通过 ✗</span>　{}'.format(esc(first)))
    head = (
        '<table class="head"><tbody>'
        "<tr><th>考试名称</th><td>{exam}</td><th>考点代码</th><td>{site}</td></tr>"
        "<tr><th>场次</th><td>{session}</td><th>证明生成时间</th><td>{created}</td></tr>"
        "<tr><th>考场数据包发布时间</th><td>{published}</td>"
        "<th>考场 / 考生</th><td>{rooms} 个考场 / {people} 名考生</td></tr>"
        "<tr><th>审计日志</th><td colspan=\"3\" class=\"mono\">第 {seq} 条 · {audit}</td></tr>"
        "<tr><th>证明 SHA-256</th><td colspan=\"3\" class=\"mono\">{sha}</td></tr>"
        "<tr><th>结论</th><td colspan=\"3\">{conclusion}</td></tr>"
        "</tbody></table>").format(
        exam=esc(manifest.get("exam_name")), site=esc(body.get("site_code")),
        session=esc("{}（{}）".format(body.get("session_name") or "", body.get("session_id"))),
        created=esc(shown(body.get("created_at"))), published=esc(shown(package.get("publish_time"))),
        rooms=len(rows), people=len(body.get("roster") or []), seq=esc((body.get("audit") or {}).get("seq")),
        audit=esc((body.get("audit") or {}).get("head")), sha=esc(proof_sha256(doc)), conclusion=conclusion)
    lines = []
    for r in rows:
        result = "—" if not r["sha256"] else '<span class="mono">{}…</span> {}'.format(
            esc(str(r["sha256"])[:16]), esc(size_text(r["size"])))
        receipt = "—" if not r["receipt"] else '{} <span class="mono">{}</span><br>{}'.format(
            _mark(r["receipt_ok"]), esc(r["receipt"]), esc(shown(r["received_at"])))
        incidents = "—" if not r["incidents"] else "{} 条（已处理 {}）".format(r["incidents"], r["decided"])
        lines.append(
            "<tr><td>{code}</td><td class=\"num\">{exp}</td><td class=\"num\">{pre}</td><td class=\"num\">{abs}</td>"
            "<td class=\"nw\">{result}</td><td>{backup}</td><td>{receipt}</td><td>{inc}</td>"
            "<td class=\"num\">{extra}</td></tr>".format(
                code=esc(r["code"]), exp=r["expected"], pre=r["present"], abs=r["absent"], result=result,
                backup=_mark(r["backup_ok"]) if r["sha256"] else "—", receipt=receipt, inc=incidents,
                extra="{} 分钟".format(r["extra_min"]) if r["extra_min"] else "—"))
    totals = ("<tfoot><tr><td>合计</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>"
              "<td class=\"nw\">{} 个结果包</td><td class=\"nw\">{} 个已备份</td><td class=\"nw\">{} 个回执</td>"
              "<td class=\"nw\">{} 条</td><td class=\"num nw\">{}</td>"
              "</tr></tfoot>").format(
        sum(r["expected"] for r in rows), sum(r["present"] for r in rows), sum(r["absent"] for r in rows),
        sum(1 for r in rows if r["sha256"]), sum(1 for r in rows if r["backup_ok"]),
        sum(1 for r in rows if r["receipt_ok"]), sum(r["incidents"] for r in rows),
        "{} 分钟".format(sum(r["extra_min"] for r in rows)) if any(r["extra_min"] for r in rows) else "—")
    table = ("<table><thead><tr><th>考场</th><th>应考</th><th>参考</th><th>缺考</th><th>结果包（SHA-256，大小）</th>"
             "<th>外部备份</th><th>上报回执</th><th>考场情况</th><th>补时</th></tr></thead><tbody>\n{}\n</tbody>{}"
             "</table>").format("\n".join(lines), totals)
    failures = list(getattr(verdict, "failures", ()) or ())
    checks = body.get("checks") or []
    if failures:
        items = "\n".join("<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>".format(
            esc(c.id), esc(c.room or ""), esc(c.ticket or ""), esc(c.message)) for c in failures)
        check_part = ("<h2>未通过的检查（{} 项）</h2><table><thead><tr><th>检查</th><th>考场</th><th>准考证号</th>"
                      "<th>说明与处理办法</th></tr></thead><tbody>\n{}\n</tbody></table>").format(len(failures), items)
    else:
        check_part = ("<h2>检查</h2><p>全部 {} 项检查通过：名单中每名考生恰好一次（参考或缺考），"
                      "每个考场的结果包已备份到外部存储、已收到监控平台的上报回执且校验值一致，"
                      "考场情况记录均已确认或驳回。</p>").format(len(checks))
    sign = ('<div class="sign"><div>考点主考（签字）：____________________　日期：______________</div>'
            "<div>技术人员（签字）：____________________　日期：______________</div>"
            "<div>监控平台接收人（签字）：________________　日期：______________</div></div>"
            "<p>本确认单依据{}（文件 {}）生成；可用“main.py proof verify 文件”核对证明，"
            "核对时 SHA-256 应与上方一致。</p>").format(
        proof_format.WHAT, esc(proof_format.file_name(str(body.get("site_code")), str(body.get("session_id")))))
    page = '<div class="sheet">{css}<h1>{title}</h1>{head}{table}{checks}{sign}</div>'.format(
        css=CSS_EXTRA, title=TITLE, head=head, table=table, checks=check_part, sign=sign)
    return document("{}({}-{})".format(TITLE, body.get("site_code"), body.get("session_id")), [page])


def write_sheet(data_dir: str, doc: Mapping[str, Any], verdict: Any, trusted: TrustedKeys,
                folder: Optional[str] = None) -> str:
    """Write the 确认单 of ``doc`` to ``DATA/print/`` (or into ``folder``); its path."""
    body = doc["body"]
    name = file_name(str(body.get("site_code")), str(body.get("session_id")))
    html = sheet_html(doc, verdict, trusted)
    if folder is None:
        return write_page(data_dir, name, html)
    return write_print_file(folder, name, html)
