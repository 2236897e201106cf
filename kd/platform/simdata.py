"""The platform simulator's data folder: its keys, the demo site, and the artefacts it signs.

Layout (made on first use; later runs reuse it, so keys and site stay stable)::

    DIR/config.json     site code, platform password, room file size, publish time
    DIR/platform.key    the platform's Ed25519 seed (hex) -- private, stays here
    DIR/platform.pub    the platform's public key, base64 of the raw 32 bytes, one line:
                        what the app's drill mode trusts (``read_public_key``)
    DIR/dongle.json     the demo dongle registered to the site: lock_id, public_key
                        (base64), seed (hex) for the dongle emulator, site_code (the
                        site it is registered to: what the dongle answers to SITE;
                        added to an older folder's file when it is opened)
    DIR/site.json       the demo site (``kd.platform.demo.make_site``)
    DIR/package.zip     the signed site package (rebuilt when missing)
    DIR/received/       what the simulator received (``kd.platform.simstore``)

Used by the simulator (online) and by ``python -m kd.platform.signer`` (offline files).
"""

import base64
import datetime
import json
import logging
import os
from typing import Any, Dict, Optional

from kd.fileio import write_file_durably
from kd.formats import documents
from kd.formats.package import build_package
from kd.formats.signing import Signer, key_id_of
from kd.formats.timeutil import CST, format_time, parse_time
from kd.platform import demo

log = logging.getLogger(__name__)

DEFAULT_PASSWORD = "kaodian"  # noqa: S105 - the drill platform's documented default
#: how long a sync ticket stays valid after the sync
SYNC_TICKET_LIFETIME = datetime.timedelta(hours=12)
#: a .PTQ may be loaded from a day before the session until an hour after it ends
AUTH_EARLY = datetime.timedelta(days=1)
AUTH_LATE = datetime.timedelta(hours=1)
#: verification data is valid from two hours before the start until the session ends
VERIFY_EARLY = datetime.timedelta(hours=2)


def now_cst() -> datetime.datetime:
    return datetime.datetime.now(CST).replace(microsecond=0)


def read_public_key(path: str) -> bytes:
    """The raw 32-byte public key from a ``platform.pub`` file (base64 or hex, one line)."""
    with open(path, encoding="ascii") as f:
        text = f.read().strip()
    raw = bytes.fromhex(text) if len(text) == 64 else base64.b64decode(text, validate=True)
    if len(raw) != 32:
        raise ValueError("not an Ed25519 public key: " + path)
    return raw


def _write_text(path: str, text: str, private: bool = False) -> None:
    write_file_durably(path, text.encode("utf-8"), 0o600 if private else None)


def _write_json(path: str, obj: Any) -> None:
    _write_text(path, json.dumps(obj, ensure_ascii=False, indent=1, sort_keys=True) + "\n")


def _read_json(path: str) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


class SimData:
    """Keys, site and signing of one simulated platform (one data folder)."""

    def __init__(
        self,
        root: str,
        site_code: str = "11003",
        rooms: int = 30,
        sessions: int = 2,
        candidates: int = 40,
        first_start_in: int = 60,
        duration: int = 90,
        room_kb: int = 1024,
        password: Optional[str] = None,
        gap: int = 60,
    ) -> None:
        self.root = os.path.abspath(root)
        os.makedirs(self.root, exist_ok=True)
        self.received_dir = os.path.join(self.root, "received")
        os.makedirs(self.received_dir, exist_ok=True)
        config_path = os.path.join(self.root, "config.json")
        self.created = not os.path.exists(config_path)
        if self.created:
            signer = Signer.generate()
            dongle = Signer.generate()
            start = now_cst().replace(second=0) + datetime.timedelta(minutes=first_start_in)
            site = demo.make_site(site_code, rooms, sessions, candidates, start, duration, gap)
            _write_text(os.path.join(self.root, "platform.key"), signer.seed.hex() + "\n", private=True)
            _write_json(os.path.join(self.root, "dongle.json"), {
                "lock_id": f"KDLOCK-{site_code}-01",
                "public_key": base64.b64encode(dongle.public_key).decode("ascii"),
                "seed": dongle.seed.hex(),
                "site_code": site_code,
            })
            _write_json(os.path.join(self.root, "site.json"), site)
            _write_json(config_path, {
                "site_code": site_code,
                "password": password or DEFAULT_PASSWORD,
                "room_kb": room_kb,
                "publish_time": format_time(now_cst()),
            })
        elif password:
            config = _read_json(config_path)
            config["password"] = password
            _write_json(config_path, config)
        with open(os.path.join(self.root, "platform.key"), encoding="ascii") as f:
            self.signer = Signer(bytes.fromhex(f.read().strip()))
        _write_text(os.path.join(self.root, "platform.pub"),
                    base64.b64encode(self.signer.public_key).decode("ascii") + "\n")
        self.config: Dict[str, Any] = _read_json(config_path)
        self.site: Dict[str, Any] = _read_json(os.path.join(self.root, "site.json"))
        self.dongle: Dict[str, Any] = _read_json(os.path.join(self.root, "dongle.json"))
        if "site_code" not in self.dongle:  # an older folder: its dongle is registered to its site
            self.dongle["site_code"] = self.config["site_code"]
            _write_json(os.path.join(self.root, "dongle.json"), self.dongle)
        self._package: Optional[bytes] = None

    # -- identity --------------------------------------------------------------------

    @property
    def site_code(self) -> str:
        return self.config["site_code"]

    @property
    def password(self) -> str:
        return self.config["password"]

    @property
    def public_key(self) -> bytes:
        return self.signer.public_key

    @property
    def key_id(self) -> str:
        return key_id_of(self.signer.public_key)

    @property
    def public_key_path(self) -> str:
        return os.path.join(self.root, "platform.pub")

    @property
    def lock_id(self) -> str:
        return self.dongle["lock_id"]

    def session(self, session_id: str) -> Optional[Dict[str, Any]]:
        for session in self.site["sessions"]:
            if session["id"] == session_id:
                return session
        return None

    # -- the package -----------------------------------------------------------------

    def manifest(self) -> Dict[str, Any]:
        manifest = dict(self.site)
        manifest["publish_time"] = self.config["publish_time"]
        manifest["lock"] = {"id": self.dongle["lock_id"], "public_key": self.dongle["public_key"]}
        return manifest

    def package_path(self) -> str:
        return os.path.join(self.root, "package.zip")

    def package_bytes(self) -> bytes:
        """The signed package (built once, then kept in ``package.zip``)."""
        if self._package is None:
            path = self.package_path()
            if not os.path.exists(path):
                size = int(self.config.get("room_kb", 1024)) * 1024
                rooms = {room["code"]: demo.room_file(self.site, room["code"], size) for room in self.site["rooms"]}
                data = build_package(self.signer, self.manifest(), rooms)
                write_file_durably(path, data)
                log.info("built site package %s (%d bytes)", path, len(data))
            with open(path, "rb") as f:
                self._package = f.read()
        return self._package

    def republish(self) -> None:
        """A new package with a new publish time (the same site)."""
        self.config["publish_time"] = format_time(now_cst())
        _write_json(os.path.join(self.root, "config.json"), self.config)
        self._package = None
        try:
            os.remove(self.package_path())
        except FileNotFoundError:
            pass

    def reschedule(self, first_start_in: int) -> None:
        """Move every session so the first starts ``first_start_in`` minutes from now; republish."""
        starts = [parse_time(s["start"], "start") for s in self.site["sessions"]]
        shift = now_cst().replace(second=0) + datetime.timedelta(minutes=first_start_in) - min(starts)
        for session, start in zip(self.site["sessions"], starts):
            session["start"] = format_time(start + shift)
        _write_json(os.path.join(self.root, "site.json"), self.site)
        self.republish()

    # -- small signed documents --------------------------------------------------------

    def authorization(self, session_id: str) -> bytes:
        """考试授权 (.PTQ) of a session; ``KeyError`` for an unknown session."""
        session = self.session(session_id)
        if session is None:
            raise KeyError(session_id)
        start = parse_time(session["start"], "start")
        end = start + datetime.timedelta(minutes=session["duration_min"])
        return documents.build_session_authorization(
            self.signer, site_code=self.site_code, session_id=session_id, session_name=session["name"],
            start=start, duration_min=session["duration_min"], valid_from=start - AUTH_EARLY,
            valid_until=end + AUTH_LATE, issued_at=now_cst())

    def verification_opens(self, session_id: str) -> datetime.datetime:
        """When a session's 授权验证 becomes valid (and downloadable); ``KeyError`` for an unknown session."""
        session = self.session(session_id)
        if session is None:
            raise KeyError(session_id)
        return parse_time(session["start"], "start") - VERIFY_EARLY

    def verification(self, session_id: str) -> bytes:
        """授权验证 data of a session, bound to the site's dongle; ``KeyError`` for an unknown session."""
        session = self.session(session_id)
        if session is None:
            raise KeyError(session_id)
        start = parse_time(session["start"], "start")
        end = start + datetime.timedelta(minutes=session["duration_min"])
        return documents.build_authorization_verification(
            self.signer, site_code=self.site_code, session_id=session_id, lock_id=self.lock_id,
            valid_from=start - VERIFY_EARLY, valid_until=end, issued_at=now_cst())

    def sync_ticket(self, lock_id: str, server_time: Optional[datetime.datetime] = None) -> bytes:
        """The signed sync ticket of ``lock_id`` (the caller checked it is this site's lock)."""
        moment = server_time or now_cst()
        return documents.build_sync_ticket(self.signer, lock_id=lock_id, site_code=self.site_code,
                                           server_time=moment, valid_until=moment + SYNC_TICKET_LIFETIME)

    def receipt(self, session_id: str, room_code: str, file_id: str, sha256: str, size: int) -> bytes:
        return documents.build_upload_receipt(
            self.signer, site_code=self.site_code, session_id=session_id, room_code=room_code,
            file_id=file_id, sha256=sha256, size=size, received_at=now_cst())
