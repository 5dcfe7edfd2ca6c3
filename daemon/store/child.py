"""The entry point of the worker and reader processes: `python -P -m daemon.store.child FD`.

The daemon starts them with `subprocess` (daemon/store/worker.py), not multiprocessing:
a spawned multiprocessing child costs a third process, multiprocessing's resource tracker
(a whole interpreter, 13 MB, for shared-memory objects memoryd never makes), and re-runs
the daemon's main script in the child. Here the child gets one end of a socket pair as
file descriptor FD, reads what to serve from it (the config, the log level, the target)
and serves calls on it until told to exit or the daemon is gone.
"""

from __future__ import annotations

import socket
import sys
from multiprocessing.connection import Connection


def main(argv: list[str]) -> None:
    sock = socket.socket(fileno=int(argv[0]))
    conn = Connection(sock.detach())
    try:
        cfg, log_level, target = conn.recv()
    except (EOFError, OSError):
        return  # the daemon went away before it said what to serve
    from daemon.store.worker import _serve

    _serve(cfg, conn, log_level, target)


if __name__ == "__main__":
    main(sys.argv[1:])
