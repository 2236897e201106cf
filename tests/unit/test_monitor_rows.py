"""考场管理's rows (issue 14): a room that ended its session and went away is no alarm; a
room lost mid-exam (or never connected) stays red; times read as ``labels.shown``."""

from kd.core.livesnapshots import MonitorRow, MonitorSnapshot, report_view
from kd.core.monitor import COLUMNS
from kd.core.states import RoomSessionState, StartKind


def row(room, connected, started, ended, reported=False):
    state = (RoomSessionState.RECOVERED if reported else RoomSessionState.ENDED if ended
             else RoomSessionState.STARTED if started else RoomSessionState.PLANNED)
    return MonitorRow(room=room, ip="127.0.0.2", data_imported=True, authorized=True, verified=True,
                      started=started, ended=ended, reported=reported, connected=connected, candidates=3,
                      logged_in=0, in_exam=0, started_at=None, ended_at=None,
                      start=StartKind.PERMITTED if started else None, unpermitted=False, unpermitted_at=None,
                      last_seen_s=30.0, state=state)


def snapshot(*rows):
    return MonitorSnapshot(session={"id": "1", "name": "第一场次", "start": "2026-12-01T17:35:00+08:00"},
                           sessions=({"id": "1", "name": "第一场次"},), columns=COLUMNS, rows=rows,
                           totals={"rooms": len(rows)}, status_report=None)


def test_finished_rooms_are_not_painted_red():
    from kd.views.monitor import format_rows  # noqa: PLC0415 - imports ttkbootstrap, no window

    snap = snapshot(row("A", False, True, True, reported=True),  # ended, reported, proctor gone
                    row("B", False, True, True),                 # ended, gone
                    row("C", False, True, False),                # lost mid-exam
                    row("D", False, False, False),               # never connected
                    row("E", True, True, False))                 # answering
    rows, _total = format_rows(snap)
    tags = {r["room"]: r.get("_tags") for r in rows}
    assert tags == {"A": ("done",), "B": ("done",), "C": ("off",), "D": ("off",), "E": None}
    assert [r.lost for r in snap.rows] == [False, False, True, True, False]


def test_times_read_as_people_read_them():
    from kd.views.monitor import show_time  # noqa: PLC0415

    assert show_time("2026-12-01T17:35:00+08:00") == "2026-12-01 17:35"
    sent = report_view({"state": "sent", "sent_at": "2026-12-01T09:30:12+00:00"})
    assert sent["label"] == "成功 2026-12-01 17:30"
