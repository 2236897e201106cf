"""A ``PlatformClient`` of the test site against a platform simulator (``start_simulator``).

``sim_client(sim, **kw)``: a client of site ``SITE`` at the simulator's URL with its
password, trusting its key; no backoff and short ``(connect, read)`` timeouts unless
``kw`` says otherwise (``trusted``, ``password`` and every ``PlatformClient`` option).

``sim_session(sim, timeout)``: a plain ``requests.Session`` logged in to the simulator as
site ``SITE`` (``POST /api/v1/login``; its bearer token in every request), for the tests
of the wire itself; the caller closes it.
"""

from typing import Any

import requests

from kd.formats.signing import TrustedKeys
from kd.platform.client import PlatformClient
from tests.support.env import SITE


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
