"""incident_report: the cost of the ``incidents`` report check (kd.core.incidentreport) and of the
考场情况记录单 (kd.core.incidentsheet) on a loaded day.

The site of ``monitor_snapshot`` (100 rooms x 40 candidates), session S1 ended (its
``session_ended`` report enqueued), 50 incidents and 20 补时 grants of S1 stored, and an
outbox of 1,000 other reports (a day of ``room_status``). Figures (median ms):

- ``unchanged_ms``: ``report("S1")`` when nothing changed (the content built, hashed, and
  the stored versions read back: what every later incident/补时 event of an ended session costs);
- ``not_ended_ms``: ``on_event`` of an event of a session under way (one read of the session);
- ``new_version_ms``: a change after the end (one incident's note) then ``report``: version n+1
  enqueued (one outbox record written and audited);
- ``sheet_ms``: ``write_sheet`` of the room with the most incidents (HTML built, written atomically).

Prints ``{"bench": "incident_report", ...}``. Target: unchanged_ms ≤ 50, sheet_ms ≤ 100.
"""

import datetime
import tempfile
import time

from _common import emit, median_ms, scratch_context
from monitor_snapshot import ROOMS, SITE, populate

from kd.core import model
from kd.core.extratime import ExtraTimeService
from kd.core.incidentreport import IncidentReporter
from kd.core.incidents import INCIDENTS, Category, IncidentService
from kd.core.monitor import MonitorService
from kd.core.outbox import Outbox
from kd.events import Event
from kd.formats.timeutil import CST, format_time

REPEAT, STORED, GRANTS, OUTBOX = 50, 50, 20, 1000


class Core:  # what incidentsheet reads from the site's Core
    def __init__(self, ctx, incidents, extra_time):  # type: ignore[no-untyped-def]
        self.ctx, self.incidents, self.extra_time = ctx, incidents, extra_time


def main() -> None:
    from kd.core import incidentsheet

    with scratch_context("kd-bench-increport-") as ctx:
        populate(ctx)
        wall = datetime.datetime.now(CST)
        outbox = Outbox(ctx)
        incidents = IncidentService(ctx, MonitorService(ctx, outbox))
        extra = ExtraTimeService(ctx, incidents)
        codes = ["{}{:03d}".format(SITE, i + 1) for i in range(ROOMS)]
        for n in range(STORED):
            incidents.add(room=codes[n % 10], session="S1", category=Category.NETWORK.value, start=wall,
                          end=wall + datetime.timedelta(minutes=n % 7), description="交换机断电 <{}>".format(n),
                          actor="admin")
        for n in range(GRANTS):
            extra.grant(codes[n % 10], "S1", 1, actor="admin", reason="网络中断")
        for _ in range(OUTBOX):
            outbox.enqueue("room_status", {"rooms": [], "totals": {}}, session_id="S1")
        doc = ctx.stores.runtime.get(model.SESSIONS, "S1")
        doc["ended_reported_at"] = format_time(wall)
        ctx.stores.runtime.put(model.SESSIONS, "S1", doc)
        reporter = IncidentReporter(ctx, outbox, incidents, extra)
        first = reporter.report("S1")
        assert first is not None and first["data"]["version"] == 1
        unchanged_ms = median_ms(lambda: reporter.report("S1"), REPEAT)
        under_way = Event("incident.confirmed", {"session_id": "S2"}, 0.0)
        not_ended_ms = median_ms(lambda: reporter.on_event(under_way), REPEAT)
        samples = []
        for n in range(10):
            inc = ctx.stores.runtime.get(INCIDENTS, "1")
            inc["note"] = "改 {}".format(n)
            ctx.stores.runtime.put(INCIDENTS, "1", inc)
            start = time.perf_counter()
            item = reporter.report("S1")
            samples.append((time.perf_counter() - start) * 1000.0)
            assert item is not None and item["data"]["version"] == n + 2
        samples.sort()
        new_version_ms = samples[len(samples) // 2]
        core = Core(ctx, incidents, extra)
        with tempfile.TemporaryDirectory() as out:
            sheet_ms = median_ms(lambda: incidentsheet.write_sheet(core, "S1", codes[0], out), 20)  # type: ignore[arg-type]
    emit(bench="incident_report", unchanged_ms=round(unchanged_ms, 3), not_ended_ms=round(not_ended_ms, 3),
         new_version_ms=round(new_version_ms, 3), sheet_ms=round(sheet_ms, 3), incidents=STORED, grants=GRANTS,
         outbox=OUTBOX, target_ms=50.0)


if __name__ == "__main__":
    main()
