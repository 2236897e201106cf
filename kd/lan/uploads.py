"""The partial result uploads of the LAN server: part files, who holds them, their lifecycle.

``UploadStore(folder, recovery=..., damage=..., publish=...)`` keeps every result package a
proctor is uploading as one part file ``<folder>/<room>.<session>.<sha256>.part`` (names
built only from validated codes and a hex digest; files named otherwise are left alone),
written unbuffered so its size is the offset the server reports. The store serves the
three upload requests of docs/lan-protocol.md for a connection, the *owner* (any hashable
object; the server passes its connection): ``begin`` (``upload_begin``), ``chunk``
(``upload_chunk``), ``commit`` (``upload_commit``), and ``release`` when the connection
ends. Its errors are ``kd.lan.replies.Reply`` (the wire codes of the doc's table).

Each owner's upload is an ``kd.lan.upload_state.Upload`` whose lifecycle (OPEN → COMPLETE
→ COMMITTED | REFUSED, or RELEASED) is the table there. Crash-resume: the part file is the
only state that outlives the process; a restarted server finds it at the next ``begin``
and answers its size as ``offset`` (``open()`` sweeps the abandoned ones first).

Take-over: a ``begin`` of the same file by another owner takes the part over; the previous
owner's upload is RELEASED (its next chunk or commit answers ``E_STATE``). A ``begin`` of
another ``sha256`` for the same room and session removes the previous part. Every chunk,
``begin`` and failed commit touches the file's modification time; ``sweep()`` removes parts
untouched for ``part_max_age`` that no owner holds.

Commit: what ``recovery.receive`` raises decides the part file's fate. A refusal of the
content (``IntegrityError``, ``ResultConflict``, ``FormatError``, another ``UserError``)
removes it; a storage failure (``SpoolError``, ``StoreError``, ``OSError``) and
``NotLoaded`` keep it (``E_STORAGE`` carries ``offset`` and ``retry_after``).

Collaborators (injected, so the store is tested without sockets): ``recovery``
(``receive``, ``recovered``), ``damage(sha256, size)`` (why the spool's copy is not intact,
or None), ``publish(event, **fields)``, ``clock`` (``time()`` for ages, ``monotonic()`` for
the event rate), ``disk_free(folder)``. Events: ``lan.upload`` (room, session, offset,
size; at most one per second per upload), ``lan.committed`` (room, session, sha256, size),
``lan.commit_failed`` (room, session, sha256, code, cause, kept), ``lan.part_removed``
(room, session, sha256, bytes, reason ``"abandoned"``).
"""

import logging
import os
import shutil
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

from kd.core.loading import NotLoaded
from kd.errors import FormatError, IntegrityError, ResultConflict, SpoolError, StoreError, UserError
from kd.lan.replies import CODE, SHA, Reply, bad
from kd.lan.upload_state import LIVE, Upload, UploadEvent, UploadState

log = logging.getLogger(__name__)

PART_SUFFIX = ".part"
ACTOR = "proctor"
#: free disk space an upload needs beyond twice the bytes still to come
DISK_RESERVE = 64 * 1024 * 1024
STORAGE_MESSAGE = "考点机暂时无法保存上报的结果包（磁盘已满或数据目录不可写），已收到的数据仍保留在考点机上。"
STORAGE_REMEDY = "监考机稍后会自动重试，无需重新传送；如反复出现，请联系考点管理员检查考点机的磁盘空间和数据目录。"
TAKEN_OVER = ("结果上报已在另一连接上继续。", "请重新发送 upload_begin。")


class Clock:
    """The real clocks: ``time()`` (file ages) and ``monotonic()`` (the event rate)."""

    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()


class UploadStore:
    """Part files and their owners (see the module docstring). Thread-safe: one lock per part file."""

    def __init__(self, folder: str, *, recovery: Any, damage: Callable[[str, int], Optional[str]],
                 publish: Callable[..., Any], clock: Optional[Clock] = None,
                 disk_free: Optional[Callable[[str], int]] = None, retry_after: float = 10,
                 part_max_age: float = 24 * 3600.0) -> None:
        self.folder = folder
        self.recovery = recovery
        self.damage = damage
        self.publish = publish
        self.clock = clock or Clock()
        self.disk_free = disk_free or (lambda path: shutil.disk_usage(path).free)
        self.retry_after = retry_after
        self.part_max_age = part_max_age
        self._lock = threading.Lock()
        self._held: Dict[object, Upload] = {}  # owner -> its upload
        self._owners: Dict[str, object] = {}  # part path -> the owner holding it
        # one lock per part path, never removed: a thread may be waiting on it, and a fresh
        # lock for the same path would let two threads in (one small entry per file)
        self._part_locks: Dict[str, threading.Lock] = {}

    def open(self) -> "UploadStore":
        """Create the folder and sweep abandoned parts (at the server's start)."""
        os.makedirs(self.folder, exist_ok=True)
        self.sweep()
        return self

    def part_path(self, room: str, session: str, sha: str) -> str:
        return os.path.join(self.folder, "{}.{}.{}{}".format(room, session, sha, PART_SUFFIX))

    def upload_of(self, owner: object) -> Optional[Upload]:
        """The upload ``owner`` holds (None: none)."""
        with self._lock:
            return self._held.get(owner)

    def _part_lock(self, path: str) -> threading.Lock:
        with self._lock:
            lock = self._part_locks.get(path)
            if lock is None:
                lock = self._part_locks[path] = threading.Lock()
            return lock

    # -- upload_begin -------------------------------------------------------------------
    def begin(self, owner: object, room: str, session: str, sha: str, size: int) -> Dict[str, Any]:
        """Start or resume ``owner``'s upload of this file; the reply fields (``offset``, ``committed``).

        ``room`` and ``session`` are valid codes, ``sha`` 64 lower-case hex digits (the
        caller checked). Raises ``Reply`` ``E_STORAGE`` when the part cannot be opened or
        the disk has no room for the rest.
        """
        self.release(owner)
        path = self.part_path(room, session, sha)
        self._discard_other_parts(room, session, path)
        with self._part_lock(path):  # a commit of this file on another connection finishes first
            self._take_over(owner, path)
            if self._recorded(room, session, sha, size) is not None:
                return self._begin_committed(owner, room, session, sha, size, path)
            upload = Upload(room, session, sha, size, path)
            try:
                upload.file = open(path, "ab", buffering=0)  # noqa: SIM115 - kept open across chunks
                upload.offset = os.fstat(upload.file.fileno()).st_size
                if upload.offset > size:
                    upload.file.truncate(0)
                    upload.offset = 0
                os.utime(path)  # begun again: not abandoned (see sweep)
                free = self.disk_free(self.folder)
            except OSError as e:
                upload.close()
                self._release_owner(owner, path)
                log.error("cannot open partial upload %s: %r", path, e)
                raise self._storage_error(_size_of(path)) from e
            if free < 2 * (size - upload.offset) + DISK_RESERVE:
                upload.close()
                self._release_owner(owner, path)
                log.error("not enough disk space for the upload of %s/%s (%d bytes free, %d to come)",
                          room, session, free, size - upload.offset)
                raise Reply("E_STORAGE", "考点机磁盘空间不足，暂不能接收结果包。",
                            "监考机稍后会自动重试；请联系考点管理员清理考点机磁盘。", offset=upload.offset,
                            retry_after=self.retry_after)
            if upload.offset == size:
                upload.advance(UploadEvent.FULL)
            with self._lock:
                self._held[owner] = upload
        log.info("upload %s/%s %s: %d of %d bytes already here", room, session, sha[:12], upload.offset, size)
        return {"offset": upload.offset}

    def _take_over(self, owner: object, path: str) -> None:
        """``owner`` now holds the part ``path``; another owner's upload of it is released (lock held)."""
        with self._lock:
            previous = self._owners.get(path)
            self._owners[path] = owner
            lost = self._held.pop(previous, None) if previous is not None and previous != owner else None
        if lost is not None:
            lost.let_go()

    def _release_owner(self, owner: object, path: str) -> None:
        with self._lock:
            if self._owners.get(path) == owner:
                del self._owners[path]

    def _begin_committed(self, owner: object, room: str, session: str, sha: str, size: int,
                         path: str) -> Dict[str, Any]:
        """``begin`` of a file already recorded: nothing to send; the caller holds the part's lock."""
        self._release_owner(owner, path)
        if os.path.exists(path):  # the server stopped between recording and removing it
            log.info("removing partial upload %s: its result is already recorded", os.path.basename(path))
            _remove(path)
        upload = Upload(room, session, sha, size, path, state=UploadState.COMMITTED)
        upload.offset = size
        with self._lock:
            self._held[owner] = upload
        log.info("upload %s/%s %s: already received and recorded (a lost commit reply)", room, session, sha[:12])
        return {"offset": size, "committed": True}

    def _recorded(self, room: str, session: str, sha: str, size: int) -> Optional[Dict[str, Any]]:
        """The result recorded for ``room``/``session`` if it is this file and the spool holds it intact.

        A damaged spool file (``damage``: re-hashed, a rare path) is not "committed": the
        proctor sends the bytes again and ``Spool.put`` replaces the damaged file.
        """
        for doc in self.recovery.recovered():
            res = doc.get("result") or {}
            if doc.get("room") == room and doc.get("session") == session:
                if res.get("sha256") == sha and res.get("size") == size and self.damage(sha, size) is None:
                    return dict(res, room=room, session=session, duplicate=True)
                return None
        return None

    def _discard_other_parts(self, room: str, session: str, keep: str) -> None:
        """Remove the parts of ``room``/``session`` other than ``keep`` (a new package was begun)."""
        prefix = "{}.{}.".format(room, session)
        try:
            names = os.listdir(self.folder)
        except OSError:
            return
        for name in names:
            path = os.path.join(self.folder, name)
            if name.startswith(prefix) and name.endswith(PART_SUFFIX) and path != keep:
                rest = name[len(prefix):-len(PART_SUFFIX)]
                if SHA.match(rest):
                    with self._part_lock(path):
                        with self._lock:
                            owner = self._owners.pop(path, None)
                            lost = self._held.pop(owner, None) if owner is not None else None
                        if lost is not None:
                            lost.let_go()
                        log.info("discarding partial upload %s (a new package was begun)", name)
                        _remove(path)

    # -- upload_chunk -------------------------------------------------------------------
    def _current(self, owner: object, committed: bool = False) -> Upload:
        upload = self.upload_of(owner)
        if upload is not None and upload.state is UploadState.COMMITTED:
            if committed:
                return upload
            raise Reply("E_STATE", "该结果包考点机已完整接收并记录，无需再传送。", "请发送 upload_commit。")
        if upload is None or upload.state not in LIVE:
            raise Reply("E_STATE", "没有进行中的结果上报。", "请先发送 upload_begin。")
        return upload

    def _still_held(self, owner: object, upload: Upload) -> None:
        """Raise ``E_STATE`` when another owner took ``upload`` over meanwhile (part lock held)."""
        with self._lock:
            if self._held.get(owner) is not upload or upload.state not in LIVE:
                raise Reply("E_STATE", *TAKEN_OVER)

    def chunk(self, owner: object, offset: int, body: bytes) -> int:
        """Write ``body`` at ``offset`` of ``owner``'s upload; the bytes now held.

        Raises ``Reply``: ``E_STATE`` (no upload, already recorded, taken over),
        ``E_OFFSET`` (not where the part ends), ``E_ARG`` (empty, past the size),
        ``E_STORAGE`` (the write failed; ``offset`` = the bytes on disk).
        """
        upload = self._current(owner)
        if not body:
            raise bad("upload_chunk 没有数据")
        with self._part_lock(upload.path):
            self._still_held(owner, upload)
            if offset != upload.offset:
                raise Reply("E_OFFSET", "数据块位置不符：考点机已有 {} 字节。".format(upload.offset),
                            "请从考点机给出的位置继续上报。", offset=upload.offset)
            if offset + len(body) > upload.size:
                raise bad("数据超出声明的大小 {}".format(upload.size))
            try:
                _write_all(upload.file, body)
                upload.offset += len(body)
            except OSError as e:
                upload.offset = _size_of(upload.path)
                upload.held()
                log.error("cannot write partial upload %s: %r", upload.path, e)
                raise self._storage_error(upload.offset) from e
            upload.held()
        now = self.clock.monotonic()
        if now - upload.last_event >= 1.0 or upload.offset == upload.size:
            upload.last_event = now
            self.publish("lan.upload", room=upload.room, session=upload.session, offset=upload.offset,
                         size=upload.size)
        return upload.offset

    # -- upload_commit ------------------------------------------------------------------
    def commit(self, owner: object) -> Dict[str, Any]:
        """Hand ``owner``'s complete upload to ``recovery.receive``; the reply fields (with ``result``).

        The reply only after ``receive`` returned: the file is durable in the spool and
        recorded. Raises ``Reply`` (``E_STATE``, ``E_OFFSET``, ``E_INTEGRITY``,
        ``E_CONFLICT``, ``E_STORAGE``, ``E_REFUSED``); a bug in ``receive`` propagates
        (the part is kept).
        """
        upload = self._current(owner, committed=True)
        if upload.state is UploadState.COMMITTED:
            return self._commit_again(owner, upload)
        with self._part_lock(upload.path):
            self._still_held(owner, upload)
            if upload.state is not UploadState.COMPLETE:
                raise Reply("E_OFFSET", "结果包尚未传完：考点机已有 {} / {} 字节。".format(upload.offset, upload.size),
                            "请从考点机给出的位置继续上报。", offset=upload.offset)
            result = self._receive(owner, upload)
        log.info("result of room %s session %s received over the LAN (%s, %d bytes)", upload.room,
                 upload.session, upload.sha256[:12], upload.size)
        self.publish("lan.committed", room=upload.room, session=upload.session, sha256=upload.sha256,
                     size=upload.size)
        return {"room": upload.room, "session": upload.session, "sha256": upload.sha256, "size": upload.size,
                "result": result}

    def _receive(self, owner: object, upload: Upload) -> Dict[str, Any]:
        """``recovery.receive`` of the part; its outcome decides the part's fate (part lock held)."""
        upload.close()
        what = "{}/{} {}".format(upload.room, upload.session, upload.sha256[:12])
        try:
            with open(upload.path, "rb") as f:
                result: Dict[str, Any] = self.recovery.receive(upload.room, upload.session, f, upload.sha256,
                                                               upload.size, "lan", ACTOR)
        # refusals of the content: the part file goes
        except IntegrityError as e:
            self._finish(owner, upload, UploadEvent.REFUSED)
            log.warning("upload %s refused: %s", what, e.cause)
            raise self._failed(upload, Reply("E_INTEGRITY", e.cause, "请重新上报结果包（从头开始）。", offset=0),
                               e.cause, False) from None
        except ResultConflict as e:
            self._finish(owner, upload, UploadEvent.REFUSED)
            raise self._failed(upload, Reply("E_CONFLICT", e.cause, e.remedy), e.cause, False) from None
        # the site server's storage failed: keep every byte, the proctor commits again later
        except (SpoolError, StoreError) as e:
            log.error("upload %s kept for a retry: the commit could not be stored: %s (%s)", what, e.cause,
                      e.detail)
            raise self._failed(upload, self._storage_error(self._keep(upload)), e.cause, True) from None
        except OSError as e:
            log.error("upload %s kept for a retry: the commit could not be stored: %r", what, e)
            raise self._failed(upload, self._storage_error(self._keep(upload)), repr(e), True) from e
        except NotLoaded as e:  # the site's package is not loaded (a state, not the content)
            self._keep(upload)
            raise self._failed(upload, Reply("E_REFUSED", e.cause, e.remedy), e.cause, True) from None
        except (FormatError, UserError) as e:  # not a result of this site, room and session
            self._finish(owner, upload, UploadEvent.REFUSED)
            log.warning("upload %s refused: %s", what, e.cause)
            raise self._failed(upload, Reply("E_REFUSED", e.cause, e.remedy), e.cause, False) from None
        except Exception as e:
            self._keep(upload)  # a bug: answered E_INTERNAL and logged by the server; the bytes stay
            self.publish("lan.commit_failed", room=upload.room, session=upload.session, sha256=upload.sha256,
                         code="E_INTERNAL", cause=repr(e), kept=True)
            raise
        self._finish(owner, upload, UploadEvent.RECORDED)
        return result

    def _failed(self, upload: Upload, reply: Reply, cause: str, kept: bool) -> Reply:
        """Publish ``lan.commit_failed`` (for the site's screens) and return ``reply`` to raise."""
        self.publish("lan.commit_failed", room=upload.room, session=upload.session, sha256=upload.sha256,
                     code=reply.code, cause=cause, kept=kept)
        return reply

    def _commit_again(self, owner: object, upload: Upload) -> Dict[str, Any]:
        """``commit`` after a ``begin`` that answered ``committed``: the recorded result."""
        with self._lock:
            self._held.pop(owner, None)
        result = self._recorded(upload.room, upload.session, upload.sha256, upload.size)
        if result is None:  # the record went away in between (e.g. the site was initialised)
            raise Reply("E_STATE", "考点机上已没有该结果包的记录。", "请重新发送 upload_begin，从头上报。")
        log.info("upload %s/%s %s committed again: already recorded", upload.room, upload.session,
                 upload.sha256[:12])
        return {"room": upload.room, "session": upload.session, "sha256": upload.sha256, "size": upload.size,
                "result": result}

    def _keep(self, upload: Upload) -> int:
        """A commit failed but the part stays: reopen it for the retry; the bytes held (part lock held)."""
        try:
            upload.file = open(upload.path, "ab", buffering=0)  # noqa: SIM115
            upload.offset = os.fstat(upload.file.fileno()).st_size
            os.utime(upload.path)
            upload.held()
        except OSError:
            log.exception("cannot reopen %s", upload.path)
            upload.close()
            upload.offset = _size_of(upload.path)
            upload.advance(UploadEvent.RELEASE)  # the owner still holds it until it begins again or goes
        return upload.offset

    def _finish(self, owner: object, upload: Upload, event: UploadEvent) -> None:
        """The part file is done with (recorded, or refused for good): remove it (part lock held)."""
        upload.close()
        _remove(upload.path)
        upload.advance(event)
        with self._lock:
            self._held.pop(owner, None)
        self._release_owner(owner, upload.path)

    # -- the end of a connection --------------------------------------------------------
    def release(self, owner: object) -> None:
        """``owner`` (a connection that ends or begins anew) lets go of its upload; the part stays."""
        upload = self.upload_of(owner)
        if upload is None:
            return
        with self._part_lock(upload.path):
            with self._lock:
                self._held.pop(owner, None)
                if self._owners.get(upload.path) == owner:
                    del self._owners[upload.path]
            upload.let_go()

    # -- abandoned partial uploads ------------------------------------------------------
    def sweep(self, now: Optional[float] = None) -> List[str]:
        """Remove partial uploads untouched for ``part_max_age`` that no owner holds; their names.

        "Touched" is the file's modification time: every chunk written, every ``begin``
        and every failed commit of the file sets it. A part whose lock is taken (a commit
        in progress) is skipped, never waited for: this runs in the accept thread. ``now``
        is a ``time.time()`` value (default: ``clock.time()``).
        """
        now = self.clock.time() if now is None else now
        removed: List[str] = []
        try:
            names = sorted(os.listdir(self.folder))
        except OSError as e:
            log.warning("cannot list partial uploads in %s: %r", self.folder, e)
            return removed
        for name in names:
            parts = parse_part(name)
            if parts is None:
                continue
            path = os.path.join(self.folder, name)
            lock = self._part_lock(path)
            if not lock.acquire(blocking=False):
                continue
            size = None
            try:
                with self._lock:
                    held = path in self._owners
                st = os.stat(path)
                age = now - st.st_mtime
                if not held and age >= self.part_max_age:
                    log.warning("removing abandoned partial upload %s (%d bytes, untouched for %.1f h)", name,
                                st.st_size, age / 3600.0)
                    os.remove(path)
                    size = st.st_size
            except OSError as e:
                log.warning("cannot sweep partial upload %s: %r", name, e)
            finally:
                lock.release()
            if size is not None:
                removed.append(name)
                self.publish("lan.part_removed", room=parts[0], session=parts[1], sha256=parts[2],
                             bytes=size, reason="abandoned")
        return removed

    def partial_uploads(self) -> List[Dict[str, Any]]:
        """The partial uploads kept between connections: room, session, sha256, bytes."""
        out: List[Dict[str, Any]] = []
        try:
            names = sorted(os.listdir(self.folder))
        except OSError:
            return out
        for name in names:
            parts = parse_part(name)
            if parts is not None:
                out.append({"room": parts[0], "session": parts[1], "sha256": parts[2],
                            "bytes": _size_of(os.path.join(self.folder, name))})
        return out

    def _storage_error(self, offset: int) -> Reply:
        return Reply("E_STORAGE", STORAGE_MESSAGE, STORAGE_REMEDY, offset=offset, retry_after=self.retry_after)


def parse_part(name: str) -> Optional[Tuple[str, str, str]]:
    """(room, session, sha256) of a part file name ``<room>.<session>.<sha256>.part``, else None."""
    if not name.endswith(PART_SUFFIX):
        return None
    parts = name[:-len(PART_SUFFIX)].split(".")
    if len(parts) != 3 or not CODE.match(parts[0]) or not CODE.match(parts[1]) or not SHA.match(parts[2]):
        return None
    return parts[0], parts[1], parts[2]


def _write_all(f: Any, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = f.write(view)
        if n is None or n <= 0:
            raise OSError("short write")
        view = view[n:]


def _size_of(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass
    except OSError:
        log.exception("cannot remove %s", path)
