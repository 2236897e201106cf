"""Fixtures shared by the unit tests.

- ``pair``: a connected pair of real sockets (``socket.socketpair()``), closed after the test.
- ``platform``: a platform signing key (``Signer.generate()``), one per test module;
  ``trusted``: the ``TrustedKeys`` holding its public key. A module that needs a fresh key
  per test defines its own ``platform``.
"""

import socket

import pytest

from kd.formats.signing import Signer, TrustedKeys


@pytest.fixture
def pair():
    a, b = socket.socketpair()
    yield a, b
    a.close()
    b.close()


@pytest.fixture(scope="module")
def platform():
    return Signer.generate()


@pytest.fixture(scope="module")
def trusted(platform):
    return TrustedKeys([platform.public_key])
