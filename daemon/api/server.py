"""Serve the API on the Unix socket (0600) and on 127.0.0.1, and nowhere else."""

from __future__ import annotations

import logging
import os
import signal
import socket
from pathlib import Path
from typing import Any

from daemon.errors import ConfigError

log = logging.getLogger(__name__)


def bind_unix(path: Path) -> socket.socket:
    if path.exists():
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(path))
        except OSError:
            path.unlink()  # a stale socket from a daemon that did not stop cleanly
        else:
            probe.close()
            raise ConfigError(f"another memoryd is already serving {path}; stop it first "
                              "(memoryd status tells which)")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        sock.bind(str(path))
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
    sock.listen(128)
    return sock


def bind_tcp(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on 127.0.0.1:{port} ({exc.strerror}); another "
                          "program uses it: set [api] port to a free one") from None
    sock.listen(128)
    return sock


def serve(app: Any, sockets: list[socket.socket], on_exit: Any = None) -> None:
    """Run uvicorn on the given sockets until SIGINT/SIGTERM; `on_exit()` runs as the
    signal arrives (requests waiting for approval answer then, instead of holding up
    the shutdown)."""
    import uvicorn

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            super().handle_exit(sig, frame)
            if on_exit is not None:
                on_exit()

    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off",
                            timeout_keep_alive=30, server_header=False)
    server = Server(config)
    # uvicorn re-raises the signal it caught once it has shut down; with SIGTERM's default
    # action that would kill the process before the daemon's own clean-up runs.
    signal.signal(signal.SIGTERM, lambda *_: None)
    server.run(sockets=sockets)
