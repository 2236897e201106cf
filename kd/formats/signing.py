"""Ed25519 signed JSON documents: the trust primitive of every platform artefact.

Wire format (UTF-8 JSON, one object)::

    {
      "format": "kd-signed/1",
      "kind":   "<document kind, e.g. session_authorization>",
      "key_id": "<16 hex chars: first 8 bytes of SHA-256 of the raw 32-byte public key>",
      "body":   "<the document: canonical JSON text, as a string>",
      "sig":    "<base64 of the 64-byte Ed25519 signature>"
    }

The signature covers ``b"kaodian-signed-v1\\0" + kind + b"\\0" + body`` (UTF-8), so a
signature made for one kind can never be replayed as another. ``body`` is kept as the
exact signed text; it is parsed only after the signature verified. Canonical JSON:
``json.dumps(obj, ensure_ascii=False, sort_keys=True, separators=(",", ":"))``.

Keys: the platform holds signing keys; the app holds ``TrustedKeys`` (key id → public
key), configured or, in drill mode, the drill platform's. An unknown key id is refused.
"""

import base64
import binascii
import hashlib
import json
from typing import Any, Dict, Iterable, Mapping, Tuple

import nacl.exceptions
import nacl.signing

from kd.errors import FormatError

FORMAT = "kd-signed/1"
DOMAIN = b"kaodian-signed-v1\0"
MAX_DOCUMENT_BYTES = 1024 * 1024


def canonical_json(obj: Any) -> str:
    """The one JSON text of ``obj`` that is signed and hashed."""
    return json.dumps(obj, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def key_id_of(public_key: bytes) -> str:
    """16 hex chars naming a raw 32-byte Ed25519 public key."""
    return hashlib.sha256(public_key).hexdigest()[:16]


def signed_message(kind: str, body: str) -> bytes:
    return DOMAIN + kind.encode("utf-8") + b"\0" + body.encode("utf-8")


class Signer:
    """A platform-side signing key (simulator, signer CLI, tests)."""

    def __init__(self, seed: bytes) -> None:
        self._key = nacl.signing.SigningKey(seed)
        self.public_key = bytes(self._key.verify_key)
        self.key_id = key_id_of(self.public_key)

    @classmethod
    def generate(cls) -> "Signer":
        return cls(bytes(nacl.signing.SigningKey.generate()))

    @property
    def seed(self) -> bytes:
        return bytes(self._key)

    def sign_raw(self, message: bytes) -> bytes:
        return self._key.sign(message).signature

    def sign_document(self, kind: str, body: Mapping[str, Any]) -> bytes:
        """The signed envelope of ``body`` as UTF-8 JSON bytes."""
        text = canonical_json(body)
        envelope = {
            "format": FORMAT,
            "kind": kind,
            "key_id": self.key_id,
            "body": text,
            "sig": base64.b64encode(self.sign_raw(signed_message(kind, text))).decode("ascii"),
        }
        return json.dumps(envelope, ensure_ascii=False, indent=1).encode("utf-8")


def verify_raw(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """True when ``signature`` is a valid Ed25519 signature of ``message``."""
    try:
        nacl.signing.VerifyKey(public_key).verify(message, signature)
        return True
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, TypeError, ValueError):
        return False


class TrustedKeys:
    """The public keys the app trusts, by key id."""

    def __init__(self, public_keys: Iterable[bytes] = ()) -> None:
        self._keys: Dict[str, bytes] = {}
        for key in public_keys:
            self.add(key)

    def add(self, public_key: bytes) -> str:
        if len(public_key) != 32:
            raise ValueError("an Ed25519 public key has 32 bytes")
        kid = key_id_of(public_key)
        self._keys[kid] = bytes(public_key)
        return kid

    def get(self, key_id: str) -> bytes:
        return self._keys[key_id]

    def __contains__(self, key_id: object) -> bool:
        return key_id in self._keys

    def __len__(self) -> int:
        return len(self._keys)

    def key_ids(self) -> Tuple[str, ...]:
        return tuple(sorted(self._keys))


def _refuse(what: str, detail: str) -> FormatError:
    return FormatError(
        f"{what}无效：{detail}",
        "请确认文件来自监控平台且未被修改；如问题持续，请重新从监控平台下载或联系技术服务单位。",
        detail=detail,
    )


def verify_document(data: bytes, kind: str, trusted: TrustedKeys, what: str = "文件") -> Dict[str, Any]:
    """Verify a signed envelope of ``kind`` and return its body as a dict.

    ``what`` names the artefact in the user's words (e.g. "考试授权文件"). Raises
    ``FormatError`` for anything but a well-formed envelope of the expected kind,
    signed by a trusted key; the body is parsed only after the signature verified.
    """
    if len(data) > MAX_DOCUMENT_BYTES:
        raise _refuse(what, f"文件过大（{len(data)} 字节）")
    try:
        envelope = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise _refuse(what, "不是有效的签名文件（无法解析）") from None
    if not isinstance(envelope, dict) or envelope.get("format") != FORMAT:
        raise _refuse(what, "不是有效的签名文件（格式标识不符）")
    fields: Dict[str, str] = {}
    for key in ("kind", "key_id", "body", "sig"):
        value = envelope.get(key)
        if not isinstance(value, str):
            raise _refuse(what, "签名文件缺少字段")
        fields[key] = value
    if fields["kind"] != kind:
        raise _refuse(what, "文件类型不符（应为 {}，实为 {}）".format(kind, fields["kind"]))
    if fields["key_id"] not in trusted:
        raise _refuse(what, "签名密钥不受信任（{}）".format(fields["key_id"]))
    try:
        sig = base64.b64decode(fields["sig"].encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise _refuse(what, "签名编码错误") from None
    if not verify_raw(trusted.get(fields["key_id"]), signed_message(kind, fields["body"]), sig):
        raise _refuse(what, "签名校验失败，文件可能被篡改")
    try:
        body = json.loads(fields["body"])
    except ValueError:
        raise _refuse(what, "内容无法解析") from None
    if not isinstance(body, dict):
        raise _refuse(what, "内容不是对象")
    return body
