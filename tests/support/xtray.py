"""A minimal X11 system tray (freedesktop System Tray Protocol) for the tray tests under Xvfb.

``XTray()`` connects to ``$DISPLAY`` with python-xlib, owns the ``_NET_SYSTEM_TRAY_S<screen>``
selection (announced with the ``MANAGER`` client message, as a desktop's notification area
does), and on each ``_NET_SYSTEM_TRAY_OPCODE`` ``SYSTEM_TRAY_REQUEST_DOCK`` reparents the
icon window into its own window and maps it. ``docked`` lists the icon windows it took;
``wait_docked(timeout)`` waits for the first one; ``click(window, button)`` sends the icon a
``ButtonPress`` (what a user's click on the tray does); ``close()`` gives the selection up.
"""

import select
import threading
from typing import Any, List

import Xlib.display
import Xlib.protocol.event
import Xlib.X

REQUEST_DOCK = 0


class XTray:
    def __init__(self) -> None:
        self.display = Xlib.display.Display()
        screen = self.display.screen()
        self.root = screen.root
        self.window = screen.root.create_window(0, 0, 96, 32, 0, screen.root_depth,
                                                event_mask=Xlib.X.StructureNotifyMask)
        self.selection = self.display.intern_atom("_NET_SYSTEM_TRAY_S{}".format(self.display.get_default_screen()))
        self.opcode = self.display.intern_atom("_NET_SYSTEM_TRAY_OPCODE")
        self.window.set_selection_owner(self.selection, Xlib.X.CurrentTime)
        self.window.map()
        manager = self.display.intern_atom("MANAGER")
        self.root.send_event(Xlib.protocol.event.ClientMessage(
            window=self.root, client_type=manager,
            data=(32, (Xlib.X.CurrentTime, self.selection, self.window.id, 0, 0))),
            event_mask=Xlib.X.StructureNotifyMask)
        self.display.flush()
        self.docked: List[int] = []
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="xtray", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        fd = self.display.fileno()
        while not self._stop.is_set():
            if not self.display.pending_events():
                select.select([fd], [], [], 0.2)  # wake up for events, or to see the stop flag
                if not self.display.pending_events():
                    continue
            event = self.display.next_event()
            if event.type == Xlib.X.ClientMessage and event.client_type == self.opcode:
                _fmt, data = event.data
                if data[1] == REQUEST_DOCK:
                    self._dock(int(data[2]))

    def _dock(self, window_id: int) -> None:
        icon = self.display.create_resource_object("window", window_id)
        icon.reparent(self.window, 0, 0)
        icon.configure(width=24, height=24)
        icon.map()
        self.display.flush()
        with self._changed:
            self.docked.append(window_id)
            self._changed.notify_all()

    def wait_docked(self, timeout: float) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: bool(self.docked), timeout)

    def click(self, window_id: int, button: int) -> None:
        """A ButtonPress of ``button`` on the icon window (1: left, 3: right)."""
        icon = self.display.create_resource_object("window", window_id)
        event = Xlib.protocol.event.ButtonPress(
            time=Xlib.X.CurrentTime, root=self.root, window=icon, same_screen=1, child=Xlib.X.NONE,
            root_x=40, root_y=40, event_x=4, event_y=4, state=0, detail=button)
        icon.send_event(event, event_mask=Xlib.X.ButtonPressMask)
        self.display.flush()

    def close(self) -> Any:
        self._stop.set()
        self._thread.join(5)
        self.window.destroy()
        self.display.close()
