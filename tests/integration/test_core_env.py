"""The core test environment itself: every part is reachable and the dongle signs."""

import hashlib

from kd.lock.coreport import check_signature
from tests.support.env import make_env
from tests.support.fixtures import closed_after

env = closed_after(make_env)


def test_parts_are_wired(env):
    ctx = env.ctx
    assert ctx.site_code() == "11003" and ctx.platform.probe() and ctx.dongle.attached()
    assert abs((ctx.platform.server_time() - ctx.now()).total_seconds()) < 60
    downloaded = ctx.platform.download_package(env.root)
    lock = downloaded.package.manifest["lock"]
    assert lock["id"] == ctx.dongle.lock_id()


def test_dongle_signs_digests_verifiably(env):
    import base64

    downloaded = env.ctx.platform.download_package(env.root)
    public_key = base64.b64decode(downloaded.package.manifest["lock"]["public_key"])
    digest = hashlib.sha256(b"KDINFO body").digest()
    sig = env.ctx.dongle.sign(digest)
    assert check_signature(public_key, digest, sig)
    assert not check_signature(public_key, hashlib.sha256(b"tampered").digest(), sig)
    assert not check_signature(env.sim.public_key, digest, sig)
