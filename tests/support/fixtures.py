"""One definition of the tests' commonest fixture: make a part for the test, close it after.

``closed_after(make, close="close")`` returns a function-scoped pytest fixture that calls
``make(tmp_path)``, yields what it made and, after the test, calls its ``close`` method
(``"shutdown"`` for the platform simulator, ``"stop"`` for the dongle emulator). A module
states its fixture in one line, under the name the tests ask for::

    site = closed_after(LanSite)
    env = closed_after(lambda tmp_path: make_env(tmp_path, rooms=2, sessions=1))

pytest takes a fixture's name from the module attribute it is bound to.
"""

from typing import Any, Callable, Iterator

import pytest


def closed_after(make: Callable[[Any], Any], close: str = "close") -> Any:
    """A fixture yielding ``make(tmp_path)``; its ``close`` method runs after the test."""

    @pytest.fixture
    def fixture(tmp_path: Any) -> Iterator[Any]:
        part = make(tmp_path)
        yield part
        getattr(part, close)()

    return fixture
