"""The control server: the running instance's end of the control channel (docs/control-protocol.md).

``ControlServer(data_dir, execute).start()`` listens on 127.0.0.1, on a port the OS
chooses, and writes it with a new secret to ``DATA/control.json`` (``kd.control.endpoint``).
An accept thread takes connections; each gets its own thread (at most
``max_connections`` at a time: one more is answered ``refused`` ``E_BUSY`` and closed)
that runs the exchange:

1. the server sends ``hello`` (a fresh nonce);
2. the command line must send its ``run`` request (argv, working directory, whether its
   stdin is a terminal, and an HMAC of both nonces under the secret) within
   ``handshake_s``; a wrong proof, version or shape is answered ``refused`` and closed;
3. the server answers ``accepted`` with its own HMAC (so the command line knows it talks
   to the instance that wrote ``control.json`` before it types a password into it) and
   calls ``execute(argv, cwd)`` in this thread, with this thread's ``sys.stdout`` /
   ``sys.stderr`` / ``sys.stdin`` routed to the command line (``kd.control.streams``):
   output goes out as ``out`` frames, a read of stdin or a password prompt is an
   ``input`` frame the command line answers with a ``line``;
4. the server sends ``exit`` with the code ``execute`` returned and closes; when
   ``execute`` raised a ``UserError``, ``exit`` carries its exit code and its cause,
   remedy and detail, which the command line raises again (``main.py`` then logs and
   prints it as for a command run there); any other exception is logged here and the
   command line is told 内部错误 with the log's path (exit 1).

``execute`` is ``kd.cli.run_in_site`` over the instance's own site (``kd.site`` wires
it): the same handlers as a command line that opened the folder, the same password check
(``kd.cli.authorize``, the login's back-off, in this process that owns the settings
store), the same audit entries. Nothing an unauthenticated peer sends is executed or
audited; refusals are logged at most once a minute with their count.

Bounds: a request frame of at most ``framing.REQUEST_MAX``; ``handshake_s`` to deliver
the request; ``input_s`` to answer a prompt (then stdin reads as ended); ``send_s`` for
the command line to take an output frame (then its output is dropped and the command
runs to its end). ``close(deadline_s)`` stops accepting, removes ``control.json``,
ends every wait for input (it reads as the end of stdin) and joins the connection
threads within the deadline; a command still running then is logged.
"""

import hashlib
import hmac
import io
import logging
import os
import secrets
import socket
import threading
import time
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Set

import kd
from kd.control import endpoint, framing, streams
from kd.errors import UserError

log = logging.getLogger(__name__)

VERSION = 1
#: error codes of a ``refused`` frame
E_VERSION, E_AUTH, E_FRAME, E_BUSY, E_TIMEOUT, E_CLOSING = (
    "E_VERSION", "E_AUTH", "E_FRAME", "E_BUSY", "E_TIMEOUT", "E_CLOSING")
#: the argv of one request: at most this many items of at most ARG_MAX characters
ARGS_MAX, ARG_MAX = 256, 4096
#: output is sent in frames of at most this many characters
CHUNK_CHARS = 16 * 1024
#: refusals are logged at most once per this many seconds
REFUSAL_LOG_S = 60.0

Execute = Callable[[List[str], str], int]

_running: Set["ControlServer"] = set()
_running_lock = threading.Lock()


def proof(secret: bytes, side: str, server_nonce: str, client_nonce: str) -> str:
    """HMAC-SHA256 (hex) by which ``side`` ("client" or "server") shows it knows the secret."""
    message = "kd-control/{} {} {} {}".format(VERSION, side, server_nonce, client_nonce).encode("ascii")
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


class _Refused(Exception):
    def __init__(self, code: str, message: str, detail: str = "") -> None:
        super().__init__(detail or message)
        self.code, self.message, self.detail = code, message, detail


class Limits(NamedTuple):
    """The server's bounds (module docstring): connections at a time and three waits, in seconds."""

    max_connections: int = 8
    handshake_s: float = 10.0
    input_s: float = 600.0
    send_s: float = 30.0


DEFAULTS = Limits()


class Console:
    """The command line's terminal as the handler thread sees it: ``stdin``, ``stdout``, ``stderr``."""

    def __init__(self, conn: socket.socket, stdin_tty: bool, cancelled: Callable[[], bool], limits: Limits) -> None:
        self._conn = conn
        self._cancelled = cancelled
        self._limits = limits
        self._lock = threading.Lock()
        self._pending: List[List[str]] = []
        self._pending_chars = 0
        self.broken = False
        #: a prompt went unanswered (``input_s``, or the server is closing): stdin reads as ended from now on
        self.input_ended = False
        self.stdout = _Out(self, "stdout")
        self.stderr = _Out(self, "stderr")
        self.stdin = _In(self, "stdin", stdin_tty)

    def send(self, obj: Dict[str, Any]) -> None:
        """One frame to the command line; a command line that went away makes the rest go nowhere."""
        if self.broken:
            return
        try:
            framing.send(self._conn, obj, self._limits.send_s)
        except OSError as e:
            log.warning("control: the command line stopped reading (%s); its output is dropped", e)
            self.broken = True

    def write(self, stream: str, text: str) -> None:
        with self._lock:
            if self._pending and self._pending[-1][0] == stream:
                self._pending[-1][1] += text
            else:
                self._pending.append([stream, text])
            self._pending_chars += len(text)
            if self._pending_chars >= CHUNK_CHARS:
                self._flush()

    def flush(self) -> None:
        with self._lock:
            self._flush()

    def _flush(self) -> None:
        pending, self._pending, self._pending_chars = self._pending, [], 0
        for stream, text in pending:
            for i in range(0, len(text), CHUNK_CHARS):
                self.send({"type": "out", "stream": stream, "text": text[i:i + CHUNK_CHARS]})

    def ask(self, secret: bool, prompt: str) -> Optional[str]:
        """Ask the command line for one line (``secret``: typed without echo); None at the end of its input."""
        self.flush()
        if self.broken or self.input_ended or self._cancelled():
            return None
        self.send({"type": "input", "secret": secret, "prompt": prompt})
        try:
            reply = framing.recv(self._conn, framing.REQUEST_MAX, deadline=time.monotonic() + self._limits.input_s,
                                 cancelled=self._cancelled)
        except framing.FrameTimeout as e:  # not answered in time, or closing: stdin has ended
            log.warning("control: no input from the command line (%s)", e)
            self.input_ended = True
            return None
        except (OSError, framing.FrameError) as e:
            log.warning("control: no input from the command line (%s)", e)
            self.broken = True
            return None
        if reply is None or reply.get("type") != "line" or not isinstance(reply.get("text"), (str, type(None))):
            log.warning("control: expected a line from the command line, got %r", reply)
            self.broken = True
            return None
        text: Optional[str] = reply.get("text")
        return text


class _Stream:
    """What ``sys.stdin``, ``sys.stdout`` and ``sys.stderr`` of a command run for a command line share."""

    encoding = "utf-8"
    errors = "strict"
    closed = False

    def __init__(self, console: Console, name: str, tty: bool = False) -> None:
        self._console = console
        self._name = name
        self._tty = tty

    def isatty(self) -> bool:
        return self._tty

    def fileno(self) -> int:
        raise io.UnsupportedOperation("the command line's stream has no file descriptor here")


class _Out(_Stream):
    """``sys.stdout`` / ``sys.stderr`` of a command run for a command line."""

    def writable(self) -> bool:
        return True

    def write(self, s: str) -> int:
        self._console.write(self._name, str(s))
        return len(s)

    def flush(self) -> None:
        self._console.flush()


class _In(_Stream):
    """``sys.stdin`` of a command run for a command line: each read asks the command line for a line."""

    def readable(self) -> bool:
        return True

    def readline(self, size: Optional[int] = -1) -> str:  # noqa: ARG002 - a whole line is asked for
        text = self._console.ask(False, "")
        return text or ""

    def ask_secret(self, prompt: str) -> str:
        """``getpass.getpass(prompt)`` on the command line's terminal; ``EOFError`` at the end of its input."""
        text = self._console.ask(True, prompt)
        if text is None:
            raise EOFError("no input from the command line")
        return text


class ControlServer:
    """The control channel of one running instance (module docstring)."""

    def __init__(self, data_dir: str, execute: Execute, *, max_connections: int = DEFAULTS.max_connections,
                 handshake_s: float = DEFAULTS.handshake_s, input_s: float = DEFAULTS.input_s,
                 send_s: float = DEFAULTS.send_s) -> None:
        self.data_dir = data_dir
        self._execute = execute
        self.limits = Limits(max_connections, handshake_s, input_s, send_s)
        self._secret = endpoint.new_secret()
        self._sock: Optional[socket.socket] = None
        self._port = 0
        self._closing = threading.Event()
        self._lock = threading.Lock()
        self._active: Dict[threading.Thread, socket.socket] = {}
        self._accept_thread: Optional[threading.Thread] = None
        self._count = 0
        self._refusals = 0
        self._refusal_logged = 0.0

    # -- life ----------------------------------------------------------------------------------
    def start(self) -> "ControlServer":
        """Listen, write ``control.json``, start the accept thread. Raises ``OSError``."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            if hasattr(socket, "SO_EXCLUSIVEADDRUSE"):  # Windows: no other socket may bind this port
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_EXCLUSIVEADDRUSE, 1)
            sock.bind((endpoint.HOST, 0))
            sock.listen(16)
            self._port = sock.getsockname()[1]
            endpoint.write(self.data_dir, self._port, self._secret)
        except BaseException:
            sock.close()
            raise
        self._sock = sock
        with _running_lock:
            _running.add(self)
        self._accept_thread = threading.Thread(target=self._accept_loop, name="control-accept", daemon=True)
        self._accept_thread.start()
        log.info("control channel on %s:%d (%s)", endpoint.HOST, self._port, endpoint.path_of(self.data_dir))
        return self

    def port(self) -> int:
        return self._port

    def close(self, deadline_s: float = 5.0) -> None:
        """Stop (module docstring); idempotent."""
        if self._closing.is_set():
            return
        self._closing.set()
        end = time.monotonic() + max(0.0, deadline_s)
        endpoint.remove(self.data_dir, self._secret)
        try:  # wake the accept thread
            socket.create_connection((endpoint.HOST, self._port), timeout=1.0).close()
        except OSError:
            pass
        if self._accept_thread is not None:
            self._accept_thread.join(max(0.0, end - time.monotonic()))
        if self._sock is not None:
            self._sock.close()
        with self._lock:
            threads = list(self._active)
        for thread in threads:
            thread.join(max(0.0, end - time.monotonic()))
            if thread.is_alive():
                log.warning("control: command thread %s still running at close", thread.name)
        with _running_lock:
            _running.discard(self)
            last = not _running
        if last:
            streams.uninstall()
        log.info("control channel closed")

    # -- connections ---------------------------------------------------------------------------
    def _accept_loop(self) -> None:
        assert self._sock is not None
        while not self._closing.is_set():
            try:
                conn, _addr = self._sock.accept()
            except OSError:
                if self._closing.is_set():
                    break
                log.exception("control: accept failed")
                self._closing.wait(0.5)  # a persistent accept error must not spin
                continue
            if self._closing.is_set():  # close()'s own wake-up, or a late comer
                conn.close()
                break
            with self._lock:
                busy = len(self._active) >= self.limits.max_connections
                if not busy:
                    self._count += 1
                    thread = threading.Thread(target=self._serve, args=(conn,), daemon=True,
                                              name="control-{}".format(self._count))
                    self._active[thread] = conn
            if busy:
                self._refuse(conn, E_BUSY, "考点管理系统正在执行其他命令（同时最多 {} 个）。".format(
                    self.limits.max_connections))
                continue
            thread.start()

    def _refuse(self, conn: socket.socket, code: str, message: str, detail: str = "") -> None:
        try:
            framing.send(conn, {"type": "refused", "code": code, "message": message}, 1.0)
        except OSError:
            pass
        finally:
            conn.close()
        now = time.monotonic()
        self._refusals += 1
        if now - self._refusal_logged >= REFUSAL_LOG_S:
            log.warning("control: refused %d connection(s) (last: %s %s)", self._refusals, code, detail or message)
            self._refusals, self._refusal_logged = 0, now

    def _serve(self, conn: socket.socket) -> None:
        try:
            try:
                request = self._handshake(conn)
            except _Refused as e:
                self._refuse(conn, e.code, e.message, e.detail)
                return
            except (OSError, framing.FrameError) as e:
                self._refuse(conn, E_FRAME, "请求无效。", str(e))
                return
            self._run(conn, request)
        except Exception:
            log.exception("control: connection failed")
        finally:
            conn.close()
            with self._lock:
                self._active.pop(threading.current_thread(), None)

    def _handshake(self, conn: socket.socket) -> Dict[str, Any]:
        nonce = secrets.token_hex(16)
        framing.send(conn, {"type": "hello", "kd": "control", "v": VERSION, "nonce": nonce}, self.limits.send_s)
        try:
            request = framing.recv(conn, framing.REQUEST_MAX, deadline=time.monotonic() + self.limits.handshake_s,
                                   cancelled=self._closing.is_set)
        except framing.FrameTimeout:
            if self._closing.is_set():
                raise _Refused(E_CLOSING, "考点管理系统正在关闭。") from None
            raise _Refused(E_TIMEOUT, "未在时限内收到请求。") from None
        if request is None:
            raise _Refused(E_FRAME, "请求无效。", "closed before the request")
        if request.get("v") != VERSION:
            raise _Refused(E_VERSION, "命令行与运行中的考点管理系统的控制协议版本不同（{} / {}）。".format(
                request.get("v"), VERSION), "version {!r}".format(request.get("v")))
        argv, cwd, client_nonce = request.get("argv"), request.get("cwd"), request.get("nonce")
        if (request.get("type") != "run" or not isinstance(argv, list) or len(argv) > ARGS_MAX
                or not all(isinstance(a, str) and len(a) <= ARG_MAX for a in argv)
                or not isinstance(cwd, str) or not isinstance(request.get("stdin_tty"), bool)
                or not isinstance(client_nonce, str) or not 16 <= len(client_nonce) <= 64
                or not isinstance(request.get("proof"), str)):
            raise _Refused(E_FRAME, "请求无效。", "bad run request")
        expected = proof(self._secret, "client", nonce, client_nonce)
        if not hmac.compare_digest(expected, str(request["proof"])):
            raise _Refused(E_AUTH, "控制通道认证失败。", "wrong proof")
        framing.send(conn, {"type": "accepted", "proof": proof(self._secret, "server", nonce, client_nonce),
                            "kd_version": kd.__version__}, self.limits.send_s)
        return request

    def _run(self, conn: socket.socket, request: Dict[str, Any]) -> None:
        argv: List[str] = list(request["argv"])
        console = Console(conn, bool(request["stdin_tty"]), self._closing.is_set, self.limits)
        log.info("control: a command from a command line (pid %s, %s)", request.get("pid"), request.get("client"))
        end: Dict[str, Any] = {"type": "exit", "code": 1}
        with streams.routed(console.stdin, console.stdout, console.stderr):
            try:
                end["code"] = int(self._execute(argv, str(request["cwd"])))
            except UserError as e:  # the command line reports it as main.py does (message, exit code)
                log.warning("control: user error: %s (%s)", e.message, e.detail)
                end.update(code=e.exit_code, error={"cause": e.cause, "remedy": e.remedy, "detail": e.detail})
            except Exception:
                log.exception("control: internal error")
                console.write("stderr", "内部错误，详见日志：{}\n".format(
                    os.path.join(self.data_dir, "logs", "kaodian.log")))
        console.flush()
        console.send(end)
        code = end["code"]
        log.info("control: the command ended with exit code %d", code)
