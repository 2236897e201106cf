"""Reading untrusted zip files without trusting them: caps, names, streamed hashes.

``SafeZip`` opens zip bytes or a zip file and refuses, before any member is read:

- a source larger than ``Caps.max_source_bytes``;
- no end-of-central-directory record (not a zip, truncated), multi-disk archives, an
  entry count above ``Caps.max_members`` or a central directory above
  ``Caps.max_central_dir_bytes`` (read from the end record itself, so a zip with 100,000
  members is refused without parsing 100,000 entries);
- unsafe names: empty, absolute (``/x``), ``..`` or ``.`` parts, empty parts (``a//b``),
  drive letters or colons (``C:x``), backslashes, control characters, a trailing dot or
  space in a part, reserved Windows device names (``CON``, ``PRN``, ``AUX``, ``NUL``,
  ``COM1``-``COM9``, ``LPT1``-``LPT9``, with any extension), names longer than 200
  characters, duplicates (also case-insensitively: Windows folders ignore case);
- directory entries, encrypted entries, compression methods other than stored (0) and
  deflated (8);
- a member whose declared size exceeds ``Caps.max_member_bytes``, a declared total above
  ``Caps.max_total_bytes``, or a declared compression ratio above ``Caps.max_ratio`` for
  any member larger than ``Caps.ratio_floor_bytes`` (zip bombs).

Header sizes are only used to refuse early: ``read_member``/``stream_member`` never
read more than the size the caller expects (from a signed list) plus one byte, so a
header that lies about its size cannot make us inflate more. Nothing here writes files;
``extractall`` is never used (``zip_bytes`` builds the artefacts' zips in memory, for
the platform and proctor sides and tests). Every refusal is a ``FormatError`` made by the caller's
``refuse`` function (so the message names the artefact in the user's words).
"""

import hashlib
import io
import os
import struct
import zipfile
import zlib
from typing import BinaryIO, Callable, Dict, Iterable, List, NamedTuple, Optional, Tuple, Union

from kd.errors import FormatError

CHUNK = 1024 * 1024

_EOCD = struct.Struct("<4s4H2LH")  # signature, disk, cd disk, entries here, entries, cd size, cd offset, comment len
_EOCD_SIG = b"PK\x05\x06"
_ZIP64_LOCATOR = struct.Struct("<4sLQL")
_ZIP64_LOCATOR_SIG = b"PK\x06\x07"
_ZIP64_EOCD = struct.Struct("<4sQ2H2L4Q")
_ZIP64_EOCD_SIG = b"PK\x06\x06"

RESERVED_NAMES = frozenset(
    ["CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"]
    + [f"COM{i}" for i in range(10)]
    + [f"LPT{i}" for i in range(10)]
    + ["COM\u00b9", "COM\u00b2", "COM\u00b3", "LPT\u00b9", "LPT\u00b2", "LPT\u00b3"]
)
_BAD_CHARS = frozenset('<>:"|?*\\')
MAX_NAME_CHARS = 200

Refuse = Callable[[str], FormatError]


class Caps(NamedTuple):
    """Limits of one kind of zip (see docs/formats.md for the values of each artefact)."""

    max_source_bytes: int
    max_members: int
    max_central_dir_bytes: int
    max_member_bytes: int
    max_total_bytes: int
    max_ratio: int = 100
    ratio_floor_bytes: int = 64 * 1024


def zip_bytes(members: Iterable[Tuple[str, bytes, int]], date_time: Tuple[int, ...]) -> bytes:
    """A zip of (name, data, compression method) members in this order, each stamped
    ``date_time`` (no earlier than 1980, zip's epoch) with mode 0644."""
    stamp = max((date_time[0], date_time[1], date_time[2], date_time[3], date_time[4], date_time[5]),
                (1980, 1, 1, 0, 0, 0))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        for name, data, method in members:
            info = zipfile.ZipInfo(name, date_time=stamp)
            info.compress_type = method
            info.external_attr = 0o644 << 16
            zf.writestr(info, data)
    return out.getvalue()


def name_problem(name: str) -> Optional[str]:
    """Why ``name`` is not a safe relative member name (Chinese), or None when it is."""
    if not name:
        return "成员名为空"
    if len(name) > MAX_NAME_CHARS:
        return "成员名过长"
    if "\\" in name:
        return f"成员名含反斜杠（{name}）"
    if name.startswith("/"):
        return f"成员名为绝对路径（{name}）"
    if len(name) >= 2 and name[1] == ":" or ":" in name:
        return f"成员名含盘符或冒号（{name}）"
    if any(ord(c) < 32 or c == "\x7f" for c in name):
        return "成员名含控制字符"
    for part in name.split("/"):
        if part in ("", ".", ".."):
            return f"成员名含非法路径段（{name}）"
        if part[-1] in ". ":
            return f"成员名以点或空格结尾（{name}）"
        if any(c in _BAD_CHARS for c in part):
            return f"成员名含非法字符（{name}）"
        stem = part.split(".", 1)[0].rstrip(" ").upper()
        if stem in RESERVED_NAMES:
            return f"成员名为 Windows 保留名（{name}）"
    return None


class SafeZip:
    """An opened, pre-checked zip. Use as a context manager or call ``close()``."""

    def __init__(self, source: Union[bytes, bytearray, memoryview, str, "os.PathLike[str]"],
                 caps: Caps, refuse: Refuse) -> None:
        self.caps = caps
        self._refuse = refuse
        self._fp: Optional[BinaryIO] = None
        self._zip: Optional[zipfile.ZipFile] = None
        try:
            self._open(source)
        except BaseException:
            self.close()
            raise

    # -- opening -------------------------------------------------------------------
    def _open(self, source: Union[bytes, bytearray, memoryview, str, "os.PathLike[str]"]) -> None:
        if isinstance(source, (bytes, bytearray, memoryview)):
            size = len(source)
            if size > self.caps.max_source_bytes:
                raise self._refuse(f"文件过大（{size} 字节，上限 {self.caps.max_source_bytes} 字节）")
            self._fp = io.BytesIO(bytes(source))
        else:
            try:
                fp = open(source, "rb")  # noqa: SIM115 - closed by close()
            except OSError as e:
                raise FormatError(
                    f"无法读取文件：{os.fspath(source)}",
                    "请确认文件存在且未被其他程序占用，然后重试。",
                    detail=str(e),
                ) from None
            self._fp = fp
            size = os.fstat(fp.fileno()).st_size
            if size > self.caps.max_source_bytes:
                raise self._refuse(f"文件过大（{size} 字节，上限 {self.caps.max_source_bytes} 字节）")
        self._check_end_record(size)
        try:
            self._zip = zipfile.ZipFile(self._fp)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError, struct.error) as e:
            raise self._refuse(f"不是有效的 zip 文件（{e}）") from None
        self._check_entries()

    def _check_end_record(self, size: int) -> None:
        """Count and size of the central directory, from the end record, before parsing it."""
        assert self._fp is not None
        if size < _EOCD.size:
            raise self._refuse("不是有效的 zip 文件（文件过短或不完整）")
        tail_len = min(size, _EOCD.size + 65535)
        self._fp.seek(size - tail_len)
        tail = self._fp.read(tail_len)
        pos = tail.rfind(_EOCD_SIG)
        while pos >= 0:
            record = tail[pos:pos + _EOCD.size]
            if len(record) == _EOCD.size:
                fields = _EOCD.unpack(record)
                if pos + _EOCD.size + fields[7] == len(tail):
                    break
            pos = tail.rfind(_EOCD_SIG, 0, pos)
        if pos < 0:
            raise self._refuse("不是有效的 zip 文件（找不到目录结尾，文件可能不完整）")
        _sig, disk, cd_disk, here, entries, cd_size, cd_offset, _clen = _EOCD.unpack(tail[pos:pos + _EOCD.size])
        eocd_at = size - tail_len + pos
        if 0xFFFF in (disk, cd_disk, here, entries) or 0xFFFFFFFF in (cd_size, cd_offset):
            disk, cd_disk, here, entries, cd_size, cd_offset = self._zip64_end_record(eocd_at)
        if disk != 0 or cd_disk != 0 or here != entries:
            raise self._refuse("不支持分卷 zip 文件")
        if entries > self.caps.max_members:
            raise self._refuse(f"成员数过多（{entries} 个，上限 {self.caps.max_members} 个）")
        if cd_size > self.caps.max_central_dir_bytes:
            raise self._refuse(f"zip 目录过大（{cd_size} 字节，上限 {self.caps.max_central_dir_bytes} 字节）")
        if cd_offset + cd_size > eocd_at:
            raise self._refuse("不是有效的 zip 文件（目录位置越界，文件可能不完整）")

    def _zip64_end_record(self, eocd_at: int) -> Tuple[int, int, int, int, int, int]:
        assert self._fp is not None
        if eocd_at < _ZIP64_LOCATOR.size:
            raise self._refuse("不是有效的 zip 文件（zip64 结构不完整）")
        self._fp.seek(eocd_at - _ZIP64_LOCATOR.size)
        sig, _disk, end_offset, _disks = _ZIP64_LOCATOR.unpack(self._fp.read(_ZIP64_LOCATOR.size))
        if sig != _ZIP64_LOCATOR_SIG or end_offset > eocd_at - _ZIP64_LOCATOR.size - _ZIP64_EOCD.size:
            raise self._refuse("不是有效的 zip 文件（zip64 结构不完整）")
        self._fp.seek(end_offset)
        record = self._fp.read(_ZIP64_EOCD.size)
        if len(record) != _ZIP64_EOCD.size:
            raise self._refuse("不是有效的 zip 文件（zip64 结构不完整）")
        sig, _rsize, _made, _need, disk, cd_disk, here, entries, cd_size, cd_offset = _ZIP64_EOCD.unpack(record)
        if sig != _ZIP64_EOCD_SIG:
            raise self._refuse("不是有效的 zip 文件（zip64 结构不完整）")
        return disk, cd_disk, here, entries, cd_size, cd_offset

    def _check_entries(self) -> None:
        assert self._zip is not None
        caps = self.caps
        infos = self._zip.infolist()
        if len(infos) > caps.max_members:
            raise self._refuse(f"成员数过多（{len(infos)} 个，上限 {caps.max_members} 个）")
        seen = set()  # type: set
        total = 0
        self.infos: Dict[str, zipfile.ZipInfo] = {}
        for info in infos:
            name = info.orig_filename
            problem = name_problem(name)
            if problem:
                raise self._refuse(problem)
            folded = name.casefold()
            if folded in seen:
                raise self._refuse(f"成员名重复（{name}）")
            seen.add(folded)
            if info.is_dir() or name.endswith("/"):
                raise self._refuse(f"含有目录项（{name}）")
            if info.flag_bits & 0x1:
                raise self._refuse(f"成员已加密（{name}）")
            if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                raise self._refuse(f"成员使用了不支持的压缩方式（{name}）")
            if info.file_size > caps.max_member_bytes:
                raise self._refuse(f"成员过大（{name}，{info.file_size} 字节，上限 {caps.max_member_bytes} 字节）")
            if info.compress_type == zipfile.ZIP_STORED and info.compress_size != info.file_size:
                raise self._refuse(f"成员大小信息不一致（{name}）")
            if info.file_size > caps.ratio_floor_bytes and info.file_size > caps.max_ratio * max(info.compress_size, 1):
                raise self._refuse(f"成员压缩比异常（{name}，疑似压缩炸弹）")
            total += info.file_size
            if total > caps.max_total_bytes:
                raise self._refuse(f"解压后总大小超过上限（{caps.max_total_bytes} 字节）")
            self.infos[name] = info

    # -- reading ---------------------------------------------------------------------
    def names(self) -> List[str]:
        """Member names in central-directory order."""
        return list(self.infos)

    def stream_member(self, name: str, expected_size: int, expected_sha256: Optional[str] = None,
                      sink: Optional[Callable[[bytes], object]] = None) -> Tuple[int, str]:
        """Read member ``name`` once, passing each chunk to ``sink``; return (size, sha256 hex).

        Reads at most ``expected_size + 1`` bytes; refuses a size or (when given) hash
        that differs from the expected one, and any zip-level error (CRC, bad data).
        """
        assert self._zip is not None
        info = self.infos.get(name)
        if info is None:
            raise self._refuse(f"缺少成员 {name}")
        if info.file_size != expected_size:
            raise self._refuse(f"成员 {name} 大小不符（应为 {expected_size} 字节，实为 {info.file_size} 字节）")
        digest = hashlib.sha256()
        got = 0
        try:
            with self._zip.open(info) as member:
                while True:
                    chunk = member.read(min(CHUNK, expected_size + 1 - got))
                    if not chunk:
                        break
                    got += len(chunk)
                    if got > expected_size:
                        raise self._refuse(f"成员 {name} 实际大小超过声明的 {expected_size} 字节")
                    digest.update(chunk)
                    if sink is not None:
                        sink(chunk)
                    if got == expected_size:
                        # one more read proves the end (and lets zipfile check the CRC)
                        if member.read(1):
                            raise self._refuse(f"成员 {name} 实际大小超过声明的 {expected_size} 字节")
                        break
        except FormatError:
            raise
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, NotImplementedError,
                RuntimeError, struct.error) as e:
            raise self._refuse(f"成员 {name} 无法读取（{e}）") from None
        if got != expected_size:
            raise self._refuse(f"成员 {name} 大小不符（应为 {expected_size} 字节，实为 {got} 字节）")
        hexdigest = digest.hexdigest()
        if expected_sha256 is not None and hexdigest != expected_sha256:
            raise self._refuse(f"成员 {name} 的 SHA-256 不符，文件可能被篡改或损坏")
        return got, hexdigest

    def read_member(self, name: str, max_bytes: int) -> bytes:
        """The bytes of a member not yet covered by a signed size (e.g. the manifest)."""
        info = self.infos.get(name)
        if info is None:
            raise self._refuse(f"缺少成员 {name}")
        if info.file_size > max_bytes:
            raise self._refuse(f"成员 {name} 过大（{info.file_size} 字节，上限 {max_bytes} 字节）")
        parts: List[bytes] = []
        self.stream_member(name, info.file_size, None, parts.append)
        return b"".join(parts)

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()
            self._zip = None
        if self._fp is not None:
            self._fp.close()
            self._fp = None

    def __enter__(self) -> "SafeZip":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
