"""The control server and client (kd.control) in one process, over real loopback sockets.

The executed command is a small function here (the real one, ``kd.cli.run_in_site``, is
exercised through real ``main.py`` processes in test_control.py). What is checked: the
output, input and exit code cross; a ``UserError`` arrives as one with its exit code; a
peer without the secret is refused and nothing runs; a server that cannot prove the
secret gets no input; the bounds (busy, handshake deadline, oversized frame); close()
ends a wait for input, removes control.json and leaves no thread behind.
"""

import io
import json
import os
import socket
import sys
import threading

import pytest

from kd.control import endpoint, framing
from kd.control.client import ChannelUnavailable, RemoteUserError, run_remote
from kd.control.server import ControlServer, proof
from kd.control.streams import Router
from kd.errors import InstanceRunningError, UserError


class Recorder:
    """The executed command: records its calls, runs ``body`` (default: echo a line)."""

    def __init__(self, body=None):
        self.calls = []
        self.done = threading.Event()
        self.body = body

    def __call__(self, argv, cwd):
        self.calls.append((list(argv), cwd))
        try:
            if self.body is not None:
                return self.body(argv)
            print("收到 " + " ".join(argv))
            print("警告", file=sys.stderr)
            line = sys.stdin.readline()
            print("读到 {!r}，终端 {}".format(line, sys.stdin.isatty()))
            return 7
        finally:
            self.done.set()


@pytest.fixture
def served(tmp_path):
    servers = []

    def start(execute, **options):
        server = ControlServer(str(tmp_path), execute, **options).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()
    assert not [t.name for t in threading.enumerate() if t.name.startswith("control-") and t.is_alive()]


def handshake(data_dir, argv=("status",), secret=None, stdin_tty=False):
    """A raw client: connect, prove (with ``secret``, default the file's), return the socket and the answer."""
    found = endpoint.read(data_dir)
    sock = socket.create_connection(("127.0.0.1", found.port), timeout=30)
    hello = framing.recv(sock, framing.REPLY_MAX)
    assert hello["type"] == "hello" and hello["kd"] == "control" and hello["v"] == 1
    nonce = "ab" * 16
    framing.send(sock, {"type": "run", "v": 1, "nonce": nonce, "argv": list(argv), "cwd": "/",
                        "stdin_tty": stdin_tty,
                        "proof": proof(secret or found.secret, "client", hello["nonce"], nonce)})
    answer = framing.recv(sock, framing.REPLY_MAX)
    if answer["type"] == "accepted":
        assert answer["proof"] == proof(found.secret, "server", hello["nonce"], nonce)
    return sock, answer


def test_output_input_and_exit_code_cross(served, tmp_path, capsys, monkeypatch):
    recorder = Recorder()
    served(recorder)
    info = json.loads((tmp_path / "control.json").read_text())
    assert info["host"] == "127.0.0.1" and info["pid"] == os.getpid() and len(info["secret"]) == 64
    if os.name != "nt":
        assert (tmp_path / "control.json").stat().st_mode & 0o777 == 0o600
    monkeypatch.setattr(sys, "stdin", io.StringIO("第一行\n第二行\n"))
    rc = run_remote(str(tmp_path), ["--data-dir", "x", "revoke", "11003001"], cwd="/somewhere")
    out, err = capsys.readouterr()
    assert rc == 7
    assert out == "收到 --data-dir x revoke 11003001\n读到 '第一行\\n'，终端 False\n" and err == "警告\n"
    assert recorder.calls == [(["--data-dir", "x", "revoke", "11003001"], "/somewhere")]
    assert sys.stdin.readline() == "第二行\n"  # only the line the command asked for was read


def test_a_user_error_arrives_as_one(served, tmp_path):
    class Refused(UserError):
        exit_code = 4

    def body(argv):
        print("之前的输出")
        raise Refused("原因。", "办法。", detail="细节")

    served(Recorder(body))
    with pytest.raises(RemoteUserError) as info:
        run_remote(str(tmp_path), ["verify"])
    assert info.value.exit_code == 4 and info.value.message == "原因。\n办法。" and info.value.detail == "细节"


def test_an_internal_error_is_exit_1_naming_the_log(served, tmp_path, capsys):
    served(Recorder(lambda argv: 1 / 0))
    assert run_remote(str(tmp_path), ["status"]) == 1
    assert capsys.readouterr().err == "内部错误，详见日志：{}\n".format(os.path.join(str(tmp_path), "logs",
                                                                                   "kaodian.log"))


def test_without_the_secret_nothing_runs(served, tmp_path):
    recorder = Recorder()
    served(recorder)
    sock, answer = handshake(str(tmp_path), secret=b"\x00" * 32)
    try:
        assert answer == {"type": "refused", "code": "E_AUTH", "message": "控制通道认证失败。"}
        assert framing.recv(sock, framing.REPLY_MAX) is None  # closed
    finally:
        sock.close()
    assert recorder.calls == []


def test_a_server_that_cannot_prove_the_secret_gets_no_input(tmp_path, monkeypatch):
    """A stale control.json whose port another program took: the command line stops before any input."""
    listener = socket.create_server(("127.0.0.1", 0))
    endpoint.write(str(tmp_path), listener.getsockname()[1], endpoint.new_secret())
    got = {}

    def impostor():
        conn, _ = listener.accept()
        with conn:
            framing.send(conn, {"type": "hello", "kd": "control", "v": 1, "nonce": "cd" * 16})
            got["run"] = framing.recv(conn, framing.REQUEST_MAX)
            framing.send(conn, {"type": "accepted", "proof": "00" * 32})
            framing.send(conn, {"type": "input", "secret": True, "prompt": "账号 admin 的密码："})
            try:
                got["after"] = framing.recv(conn, framing.REQUEST_MAX)
            except OSError:  # reset: the command line closed with the prompt unread
                got["after"] = None

    thread = threading.Thread(target=impostor)
    thread.start()
    stdin = io.StringIO("exam-day-2026\n")
    monkeypatch.setattr(sys, "stdin", stdin)
    with pytest.raises(ChannelUnavailable, match="prove"):
        run_remote(str(tmp_path), ["revoke", "11003001", "--password-stdin"])
    thread.join(30)
    listener.close()
    assert got["run"]["argv"] == ["revoke", "11003001", "--password-stdin"] and got["after"] is None
    assert stdin.tell() == 0


def test_nothing_listening_is_no_channel(tmp_path):
    with pytest.raises(ChannelUnavailable):
        run_remote(str(tmp_path), ["status"])  # no control.json
    sock = socket.create_server(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    endpoint.write(str(tmp_path), port, endpoint.new_secret())
    with pytest.raises(ChannelUnavailable, match="connecting"):
        run_remote(str(tmp_path), ["status"])
    (tmp_path / "control.json").write_text('{"format": "kd-control", "version": 1, "host": "10.0.0.1"}')
    with pytest.raises(ChannelUnavailable, match="no usable"):
        run_remote(str(tmp_path), ["status"])


def test_busy_handshake_deadline_and_oversized_request(served, tmp_path):
    recorder = Recorder()
    served(recorder, max_connections=1, handshake_s=0.5)
    found = endpoint.read(str(tmp_path))
    first = socket.create_connection(("127.0.0.1", found.port), timeout=30)
    try:
        assert framing.recv(first, framing.REPLY_MAX)["type"] == "hello"  # it holds the only slot
        with pytest.raises(InstanceRunningError) as info:
            run_remote(str(tmp_path), ["status"])
        assert info.value.exit_code == 3 and "同时最多 1 个" in info.value.message
        # it never sends its request: refused once its time is up, and closed
        assert framing.recv(first, framing.REPLY_MAX)["code"] == "E_TIMEOUT"
        assert framing.recv(first, framing.REPLY_MAX) is None
    finally:
        first.close()
    big = socket.create_connection(("127.0.0.1", found.port), timeout=30)
    try:
        while True:  # the slot is free once the first connection's thread ended
            hello = framing.recv(big, framing.REPLY_MAX)
            if hello["type"] == "hello":
                break
            big.close()
            big = socket.create_connection(("127.0.0.1", found.port), timeout=30)
        big.sendall(framing.PREFIX.pack(framing.REQUEST_MAX + 1))
        assert framing.recv(big, framing.REPLY_MAX)["code"] == "E_FRAME"
    finally:
        big.close()
    assert recorder.calls == []


def test_close_ends_a_wait_for_input_and_removes_the_file(served, tmp_path):
    lines = []

    def body(argv):
        lines.append(sys.stdin.readline())
        return 0

    recorder = Recorder(body)
    server = served(recorder)
    sock, answer = handshake(str(tmp_path))
    try:
        assert answer["type"] == "accepted"
        assert framing.recv(sock, framing.REPLY_MAX) == {"type": "input", "secret": False, "prompt": ""}
        server.close(deadline_s=30)  # the command line never answers
        assert recorder.done.is_set() and lines == [""]  # the wait ended as the end of stdin
        assert framing.recv(sock, framing.REPLY_MAX) == {"type": "exit", "code": 0}
    finally:
        sock.close()
    assert not (tmp_path / "control.json").exists()
    assert not isinstance(sys.stdout, Router) and not isinstance(sys.stdin, Router)  # the last server put them back
