"""A ``PlatformClient`` of the test site against a platform simulator (``start_simulator``).

``sim_client(sim, **kw)``: a client of site ``SITE`` at the simulator's URL with its
password, trusting its key; no backoff and short ``(connect, read)`` timeouts unless
``kw`` says otherwise (``trusted``, ``password`` and every ``PlatformClient`` option).
"""

from typing import Any

from kd.formats.signing import TrustedKeys
from kd.platform.client import PlatformClient
from tests.support.env import SITE


def sim_client(sim: Any, **kw: Any) -> PlatformClient:
    kw.setdefault("backoff", 0.0)
    kw.setdefault("timeout", (2.0, 10.0))
    trusted = kw.pop("trusted", None) or TrustedKeys([sim.public_key])
    return PlatformClient(sim.url, SITE, kw.pop("password", sim.password), trusted, **kw)
