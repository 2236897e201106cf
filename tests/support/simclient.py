"""A ``PlatformClient`` of the test site against a platform simulator (``start_simulator``).

``sim_client(sim, **kw)``: a client of site ``SITE`` at the simulator's URL with its
password, trusting its key; no backoff and short ``(connect, read)`` timeouts unless
``kw`` says otherwise (``trusted``, ``password`` and every ``PlatformClient`` option).

``sim_session(sim, timeout)``: a plain ``requests.Session`` logged in to the simulator as
site ``SITE`` (``POST /api/v1/login``; its bearer token in every request), for the tests
of the wire itself; the caller closes it.

``simulator_fixtures(timeout, **sizes)``: the two fixtures of those tests, ``(sim, http)``: a
simulator of ``sizes`` (``start_simulator`` keywords) in ``tmp_path/sim``, shut down after the
test, and a ``sim_session`` on it, closed after. A module binds them to those names::

    sim, http = simulator_fixtures((2.0, 10.0), rooms=2, sessions=1, candidates=3, room_kb=8)
"""

from typing import Any, Iterator, Tuple

import pytest
import requests

from kd.formats.signing import TrustedKeys
from kd.platform.client import PlatformClient
from kd.platform.simulator import start_simulator
from tests.support.env import SITE
from tests.support.fixtures import closed_after


def sim_client(sim: Any, **kw: Any) -> PlatformClient:
    kw.setdefault("backoff", 0.0)
    kw.setdefault("timeout", (2.0, 10.0))
    trusted = kw.pop("trusted", None) or TrustedKeys([sim.public_key])
    return PlatformClient(sim.url, SITE, kw.pop("password", sim.password), trusted, **kw)


def sim_session(sim: Any, timeout: Any) -> requests.Session:
    s = requests.Session()
    r = s.post(sim.url + "/api/v1/login", json={"site_code": SITE, "password": sim.password}, timeout=timeout)
    assert r.status_code == 200, r.text
    s.headers["Authorization"] = "Bearer " + r.json()["token"]
    return s


def simulator_fixtures(timeout: Any, **sizes: Any) -> Tuple[Any, Any]:
    """``(sim, http)`` fixtures: a simulator of ``sizes`` and a logged-in ``requests.Session`` on it."""
    sim = closed_after(lambda tmp_path: start_simulator(str(tmp_path / "sim"), **sizes), close="shutdown")

    @pytest.fixture
    def http(sim: Any) -> Iterator[requests.Session]:
        s = sim_session(sim, timeout)
        yield s
        s.close()

    return sim, http
