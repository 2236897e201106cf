"""The command line's end of the control channel: run one command in the running instance.

``run_remote(data_dir, argv)`` reads ``DATA/control.json``, connects to 127.0.0.1 on its
port, proves it knows the secret and checks that the server does too (the HMACs of
docs/control-protocol.md §3), sends ``argv`` with this process' working directory, then
plays the instance's frames on this terminal: ``out`` is written to this process'
stdout or stderr, ``input`` is read here (``getpass`` for a secret, a line of stdin
otherwise) and sent back, ``exit`` ends it with the command's exit code, which
``run_remote`` returns, or, when the command ended with a ``UserError`` there, raises
``RemoteUserError`` (a ``UserError`` with the same cause, remedy, detail and exit code),
which ``main.py`` reports as it reports one raised here.

Raises ``ChannelUnavailable`` when there is no usable channel: no or an unusable
``control.json``, nothing listening, the handshake failing or the server's proof wrong.
It is raised only before the command was accepted, so nothing ran and no input was
read: the caller may fall back to the data folder. ``InstanceRunningError`` (exit 3)
when the instance refuses because it is busy or speaks another protocol version. A
connection lost after the command was accepted is told on stderr and returns 1 (the
command may or may not have run).
"""

import getpass
import logging
import os
import secrets
import socket
import sys
import time
from typing import Any, Dict, List, Optional

import kd
from kd.control import endpoint, framing
from kd.control.server import E_BUSY, E_VERSION, VERSION, proof
from kd.errors import InstanceRunningError, UserError

log = logging.getLogger(__name__)

LOST = ("与运行中的考点管理系统的连接中断，命令可能已执行，也可能没有执行。\n"
        "请用 status、audit 等命令查看结果后再决定是否重新执行。")


class ChannelUnavailable(Exception):
    """No usable control channel; nothing was run and no input was read."""


class RemoteUserError(UserError):
    """The ``UserError`` a command ended with in the running instance, raised again here."""

    def __init__(self, cause: str, remedy: str, detail: Optional[str], exit_code: int) -> None:
        super().__init__(cause, remedy, detail=detail)
        self.exit_code = exit_code


def _expect(sock: socket.socket, deadline: float) -> Dict[str, Any]:
    try:
        frame = framing.recv(sock, framing.REPLY_MAX, deadline=deadline)
    except (OSError, framing.FrameError) as e:
        raise ChannelUnavailable("handshake: {}".format(e)) from None
    if frame is None:
        raise ChannelUnavailable("handshake: the server closed the connection")
    if frame["type"] == "refused":
        code, message = frame.get("code"), str(frame.get("message") or "")
        if code in (E_BUSY, E_VERSION):
            raise InstanceRunningError(message, "请稍后重试，或在运行中的考点管理系统中操作。"
                                       if code != E_VERSION else "请使用与运行中的考点管理系统相同版本的程序。")
        raise ChannelUnavailable("refused: {} {}".format(code, message))
    return frame


def _handshake(sock: socket.socket, found: endpoint.Endpoint, argv: List[str], cwd: str, stdin_tty: bool,
               hello_s: float) -> None:
    deadline = time.monotonic() + hello_s
    hello = _expect(sock, deadline)
    server_nonce = hello.get("nonce")
    if hello["type"] != "hello" or hello.get("kd") != "control" or not isinstance(server_nonce, str):
        raise ChannelUnavailable("not a kaodian control server: {!r}".format(hello.get("type")))
    client_nonce = secrets.token_hex(16)
    try:
        framing.send(sock, {"type": "run", "v": VERSION, "nonce": client_nonce,
                            "proof": proof(found.secret, "client", server_nonce, client_nonce),
                            "argv": list(argv), "cwd": cwd, "stdin_tty": stdin_tty, "pid": os.getpid(),
                            "client": "kaodian " + kd.__version__}, hello_s)
    except OSError as e:
        raise ChannelUnavailable("sending the request: {}".format(e)) from None
    accepted = _expect(sock, deadline)
    expected = proof(found.secret, "server", server_nonce, client_nonce)
    if accepted["type"] != "accepted" or accepted.get("proof") != expected:
        raise ChannelUnavailable("the server did not prove it holds this run's secret")


def run_remote(data_dir: str, argv: List[str], *, cwd: Optional[str] = None, connect_s: float = 5.0,
               hello_s: float = 10.0) -> int:
    """Run ``argv`` (main.py's arguments) in the instance holding ``data_dir``; its exit code (module docstring)."""
    found = endpoint.read(data_dir)
    if found is None:
        raise ChannelUnavailable("no usable {}".format(endpoint.path_of(data_dir)))
    try:
        sock = socket.create_connection((found.host, found.port), timeout=connect_s)
    except OSError as e:
        raise ChannelUnavailable("connecting to {}:{}: {}".format(found.host, found.port, e)) from None
    try:
        stdin = sys.stdin
        _handshake(sock, found, argv, cwd or os.getcwd(), bool(stdin is not None and stdin.isatty()), hello_s)
        log.info("control: running the command in the instance holding %s (pid %s)", data_dir, found.pid)
        return _play(sock)
    finally:
        sock.close()


def _write(stream_name: str, text: str) -> None:
    stream = sys.stdout if stream_name == "stdout" else sys.stderr
    if stream is not None:
        stream.write(text)
        stream.flush()


def _answer(frame: Dict[str, Any]) -> Optional[str]:
    """What this terminal answers to an ``input`` frame (None: the end of input)."""
    prompt = str(frame.get("prompt") or "")
    if frame.get("secret"):
        try:
            return getpass.getpass(prompt)
        except EOFError:
            return None
    if prompt:
        _write("stdout", prompt)
    line = sys.stdin.readline() if sys.stdin is not None else ""
    return line or None


def _play(sock: socket.socket) -> int:
    """After ``accepted``: the instance's frames on this terminal until ``exit``."""
    while True:
        try:
            frame = framing.recv(sock, framing.REPLY_MAX)
        except (OSError, framing.FrameError) as e:
            log.warning("control: connection lost: %s", e)
            frame = None
        if frame is None:
            _write("stderr", LOST + "\n")
            return 1
        kind = frame["type"]
        if kind == "out" and frame.get("stream") in ("stdout", "stderr") and isinstance(frame.get("text"), str):
            _write(frame["stream"], frame["text"])
        elif kind == "input":
            text = _answer(frame)
            try:
                framing.send(sock, {"type": "line", "text": text}, 30.0)
            except OSError as e:
                log.warning("control: could not send the input: %s", e)
        elif kind == "exit" and isinstance(frame.get("code"), int):
            error = frame.get("error")
            if isinstance(error, dict):
                detail = error.get("detail")
                raise RemoteUserError(str(error.get("cause") or ""), str(error.get("remedy") or ""),
                                      None if detail is None else str(detail), int(frame["code"]))
            return int(frame["code"])
        else:
            log.warning("control: unexpected frame %r", kind)
            _write("stderr", LOST + "\n")
            return 1
