"""The guard in front of every route, against a real daemon on its Unix socket and on TCP:
the token is checked before a byte of the body is read, no body (chunked or with a
length) is read past the route's limit, the Host header is exactly one allowed host, and
JSON nested too deep is a 400, not a crash. A flood of large bodies leaves the daemon's
memory where it was."""

from __future__ import annotations

import select
import socket
import threading
import time
from pathlib import Path
from typing import Any

import psutil

from daemon.api.guard import MAX_JSON_DEPTH, too_deep

CHUNK = b"x" * 65536


def connect(d: Any, over: str) -> socket.socket:
    if over == "unix":
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(str(d.socket))
    else:
        s = socket.create_connection(("127.0.0.1", d.port))
    s.settimeout(30)
    return s


def status_of(s: socket.socket, whole: bool = False) -> tuple[int, bytes]:
    """Read a response's status code and whatever else arrived with it (`whole`: all
    of it, up to the daemon's hang-up)."""
    got = b""
    while whole or b"\r\n\r\n" not in got:
        part = s.recv(65536)
        if not part:
            break
        got += part
    return int(got.split(b" ", 2)[1]), got


def send_chunked(d: Any, over: str, path: str, headers: dict[str, str],
                 total: int, method: str = "POST") -> tuple[int, int, bytes]:
    """Send a chunked body of up to `total` bytes; return (status, bytes the daemon let us
    send before it answered and closed, the response). The daemon is expected to answer
    (and close) long before the body ends."""
    s = connect(d, over)
    head = "".join(f"{k}: {v}\r\n" for k, v in {"Host": "localhost",
                                                "Transfer-Encoding": "chunked",
                                                **headers}.items())
    s.sendall(f"{method} {path} HTTP/1.1\r\n{head}\r\n".encode())
    frame = f"{len(CHUNK):x}\r\n".encode() + CHUNK + b"\r\n"
    sent, pending, answer = 0, b"", b""
    try:
        while b"\r\n\r\n" not in answer:
            if not pending and sent < total:
                pending, sent = frame, sent + len(CHUNK)
            readable, writable, _ = select.select([s], [s] if pending else [], [], 30)
            if not readable and not writable:
                break
            if readable:
                part = s.recv(65536)
                if not part:
                    break
                answer += part
            elif writable:
                pending = pending[s.send(pending):]
    except (BrokenPipeError, ConnectionResetError):
        pass
    s.settimeout(10)
    try:  # the rest of the answer, up to the daemon's hang-up
        while part := s.recv(65536):
            answer += part
    except OSError:
        pass
    s.close()
    code = int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else 0
    return code, sent, answer


def rss(pid: int) -> float:
    return psutil.Process(pid).memory_info().rss / 1e6


def test_no_body_is_read_before_the_token_or_past_the_limit(make_config, start_daemon,
                                                             tmp_path: Path) -> None:
    d = start_daemon(make_config([], pipeline={"summarize": False}))
    token = {"Authorization": f"Bearer {d.token}"}
    for over in ("unix", "tcp"):
        # no token: 401 while the body is still coming; the daemon hangs up on the rest
        code, sent, answer = send_chunked(d, over, "/v1/events", {}, 300 << 20)
        assert code == 401, answer
        assert b'"unauthorized"' in answer and b"connection: close" in answer.lower()
        assert sent < 64 << 20, f"the daemon let {sent >> 20} MB through before answering"
        # a token, and a chunked body past the limit: 413, the rest never read
        code, sent, answer = send_chunked(d, over, "/v1/events", token, 300 << 20)
        assert code == 413 and b"limited to 1000000 bytes" in answer, answer
        assert sent < 64 << 20
        # a sync file PUT keeps its 1 MB limit, chunked too, and nothing is stored
        code, _, answer = send_chunked(d, over, "/v1/sync/files/seg-big.parquet", token,
                                       200 << 20, method="PUT")
        assert code == 413, answer
    with d.unix() as u:
        assert "seg-big.parquet" not in str(u.get("/v1/sync/files", headers=d.auth()).json())
        # a declared length past the limit: refused before the first byte
        r = u.post("/v1/events", content=b"{" * 1_000_001, headers=d.auth())
        assert r.status_code == 413 and r.json()["error"]["type"] == "too_large"
        # within the limit, with a token: the route gets the whole body
        events = [{"source": "editor", "kind": "editor.open", "subject": f"/tmp/{i}.md",
                   "text": "y" * 99_000} for i in range(9)]
        r = u.post("/v1/events", json={"events": events}, headers=d.auth())
        assert r.status_code == 200 and r.json()["received"] == 9, r.text[:300]
        # the public routes take no body at all
        assert u.post("/ui/logout", content=b"z" * 10).status_code == 413
        assert u.post("/ui/logout").status_code == 204


def test_a_flood_of_large_bodies_leaves_the_daemons_memory_alone(make_config, start_daemon,
                                                                 tmp_path: Path) -> None:
    d = start_daemon(make_config([], pipeline={"summarize": False}))
    token = {"Authorization": f"Bearer {d.token}"}
    start = rss(d.proc.pid)
    codes: list[int] = []
    offered = [0]

    def flood(i: int, rounds: int) -> None:
        for j in range(rounds):
            over = "unix" if (i + j) % 2 else "tcp"
            headers = token if j % 2 else {}
            code, _, _ = send_chunked(d, over, "/v1/events", headers, 50 << 20)
            codes.append(code)
            offered[0] += 50 << 20

    def wave(rounds: int) -> float:
        threads = [threading.Thread(target=flood, args=(i, rounds)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
        time.sleep(1.0)
        return rss(d.proc.pid)

    # A first, short wave reaches the working set of 8 connections at a time (the
    # allocator keeps what it once held); the long wave after it must not grow it.
    before = wave(2)
    after = wave(8)
    print(f"flood of {len(codes)} requests ({offered[0] >> 20} MB offered): daemon RSS "
          f"{start:.1f} MB at start, {before:.1f} MB after 16 requests, {after:.1f} MB "
          f"after {len(codes)}")
    assert sorted(set(codes)) == [401, 413], codes
    assert after - before < 8, f"RSS grew from {before:.1f} to {after:.1f} MB"
    with d.unix() as u:  # and it still serves
        assert u.get("/v1/status", headers=d.auth()).status_code == 200


FOREIGN_HOSTS = ("localhost:1@evil.example", "evil.example", "localhost.evil.example",
                 "localhost:", "localhost:80:80", "user@localhost", "127.0.0.1/x",
                 "localhost, evil.example", "127.0.0.2", "::1", "")


def test_a_foreign_or_malformed_host_is_refused(make_config, start_daemon) -> None:
    d = start_daemon(make_config([], pipeline={"summarize": False}))
    for host in FOREIGN_HOSTS:
        s = connect(d, "tcp")
        s.sendall(f"GET /health HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        code, answer = status_of(s, whole=True)
        s.close()
        assert code in (421, 400), (host, answer)  # 400: uvicorn refused it as HTTP
        if code == 421:
            assert b"host_not_allowed" in answer


def test_one_plain_allowed_host_and_only_one(make_config, start_daemon) -> None:
    d = start_daemon(make_config([], pipeline={"summarize": False}))
    for host in ("localhost", "LOCALHOST:7077", "127.0.0.1:1", "[::1]", "[::1]:7077"):
        s = connect(d, "tcp")
        s.sendall(f"GET /health HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        assert status_of(s)[0] == 200, host
        s.close()
    for over in ("tcp", "unix"):
        s = connect(d, over)
        s.sendall(b"GET /health HTTP/1.1\r\nHost: localhost\r\nHost: evil.example\r\n\r\n")
        code, answer = status_of(s, whole=True)
        assert b"host_not_allowed" in answer
        s.close()
        assert code == 421, answer
    s = connect(d, "tcp")
    s.sendall(b"GET /health HTTP/1.0\r\n\r\n")  # no Host at all
    assert status_of(s)[0] == 421
    s.close()


def test_json_nested_too_deep_is_a_400_not_a_crash(make_config, start_daemon) -> None:
    d = start_daemon(make_config([], pipeline={"summarize": False}))
    deep = "[" * 100_000 + "]" * 100_000
    with d.tcp() as t:
        for path in ("/v1/events", "/v1/chat/completions", "/v1/memory/forget", "/mcp"):
            r = t.post(path, content=deep, headers={**d.auth(),
                                                    "Content-Type": "application/json",
                                                    "Accept": "application/json"})
            assert r.status_code == 400, (path, r.status_code, r.text[:300])
            assert f"deeper than {MAX_JSON_DEPTH}" in r.json()["error"]["message"]
        # attrs nested within the limit are an ordinary event
        attrs: Any = {"leaf": 1}
        for _ in range(MAX_JSON_DEPTH - 5):
            attrs = {"a": attrs}
        event = {"source": "editor", "kind": "editor.open", "subject": "/tmp/x", "attrs": attrs}
        r = t.post("/v1/events", json={"events": [event]}, headers=d.auth())
        assert r.status_code == 200, r.text
        assert t.get("/health").status_code == 200
    assert "RecursionError" not in d.log.read_text()


def test_depth_counts_brackets_outside_strings_only() -> None:
    assert not too_deep(b'{"a": "' + b"[" * 500 + b'"}')
    assert not too_deep(b'{"a": "\\"' + b"[" * 500 + b'"}')
    assert too_deep(b"[" * (MAX_JSON_DEPTH + 1) + b"]" * (MAX_JSON_DEPTH + 1))
    assert not too_deep(b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH)
    assert not too_deep(b"[]" * 10_000)
