"""Sync outage: how long the monitor takes to notice a dead or frozen SSH target, and
to recover (probe up, pending push delivered) after it returns.

A real OpenSSH server on 127.0.0.1 (own host key, known_hosts and client key in a temp
dir, /run/sshd in a private mount namespace; needs root and openssh-server), a real
LanceDB store of 200 memories (random unit vectors: the transport is what is measured),
and `daemon.sync.monitor.Monitor` ticking as the daemon's scheduler job does
(every min(1 s, interval)). Each trial: sshd is SIGKILLed (or SIGSTOPped, a frozen
peer) while up; a push is queued during the outage; after `--outage` seconds sshd is
restarted (or continued). Writes bench/results/sync_outage.json.

    python bench/sync_outage.py [--interval 1] [--max-backoff 4] [--timeout 3] [--trials 3]
"""

from __future__ import annotations

import argparse
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import tomli_w

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, Contention, machine, write_result  # noqa: E402

sys.path.insert(0, str(ROOT))
from daemon.config import load_config  # noqa: E402
from daemon.sync.monitor import Monitor  # noqa: E402
from daemon.sync.service import SyncService  # noqa: E402


class Sshd:
    def __init__(self, d: Path) -> None:
        self.d = d
        for key in ("hostkey", "client_key"):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / key)],
                           check=True)
        shutil.copy(d / "client_key.pub", d / "authorized_keys")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        (d / "sshd_config").write_text(
            f"Port {self.port}\nListenAddress 127.0.0.1\nHostKey {d / 'hostkey'}\n"
            f"PidFile {d / 'sshd.pid'}\nAuthorizedKeysFile {d / 'authorized_keys'}\n"
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n"
            "PermitRootLogin prohibit-password\nStrictModes no\nSubsystem sftp internal-sftp\n")
        hostkey = " ".join((d / "hostkey.pub").read_text().split()[:2])
        (d / "known_hosts").write_text(f"[127.0.0.1]:{self.port} {hostkey}\n")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["unshare", "-m", "sh", "-c", "mount -t tmpfs -o mode=755 tmpfs /run && "
             f"mkdir -m 755 /run/sshd && exec /usr/sbin/sshd -D -e -f {self.d / 'sshd_config'}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        for _ in range(200):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise RuntimeError("sshd did not start")

    def kill(self) -> None:
        """SIGKILL the listener and its sessions (they run in sessions of their own)."""
        if self.proc is not None:
            self.signal(signal.SIGCONT)
            self.signal(signal.SIGKILL)
            self.proc.wait()
            self.proc = None

    def signal(self, sig: int) -> None:
        import psutil

        assert self.proc is not None
        try:
            root = psutil.Process(self.proc.pid)
            procs = [*root.children(recursive=True), root]
        except psutil.NoSuchProcess:
            return
        for p in procs:
            try:
                p.send_signal(sig)
            except psutil.NoSuchProcess:
                pass


def fill(cfg: Any, n: int) -> None:
    import numpy as np
    import pyarrow as pa

    from daemon.store.lance import Store

    store = Store(cfg.data_path / "store", 384, cfg.models.embedder)
    rng = np.random.default_rng(7)
    base = datetime(2026, 11, 1, tzinfo=UTC)
    rows = []
    for i in range(n):
        v = rng.normal(size=384)
        row: dict[str, Any] = {"id": f"m{i}", "ts": base + timedelta(minutes=i),
                               "ts_end": base + timedelta(minutes=i), "level": "chunk",
                               "source": "files", "title": f"memory {i}", "text": f"text {i}",
                               "event_ids": [], "model": "bench", "created": datetime.now(UTC),
                               "doc": f"text {i}", "vector": (v / np.linalg.norm(v)).tolist()}
        for f in store.memories.schema:
            if f.name not in row:
                row[f.name] = [] if pa.types.is_list(f.type) else (
                    "" if pa.types.is_string(f.type) else None)
        rows.append(row)
    store.upsert_memories(rows)


def wait(pred: Any, limit: float = 120) -> float:
    t0 = time.monotonic()
    while not pred():
        if time.monotonic() - t0 > limit:
            raise RuntimeError("timed out")
        time.sleep(0.02)
    return time.monotonic() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--interval", type=float, default=1.0)
    ap.add_argument("--max-backoff", type=float, default=4.0)
    ap.add_argument("--timeout", type=float, default=3.0)
    ap.add_argument("--outage", type=float, default=6.0)
    ap.add_argument("--trials", type=int, default=3)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="memoryd-bench-sync-"))
    sshd = Sshd(tmp)
    sshd.start()
    (tmp / "remote").mkdir()
    target = {"name": "agent-host", "url": f"ssh://root@127.0.0.1:{sshd.port}{tmp / 'remote'}",
              "identity_file": str(tmp / "client_key"), "known_hosts_file": str(tmp / "known_hosts"),
              "interval_seconds": args.interval, "max_backoff_seconds": args.max_backoff,
              "timeout_seconds": args.timeout}
    (tmp / "config.toml").write_text(tomli_w.dumps({"data_dir": str(tmp / "data"),
                                                   "sync": {"targets": [target]}}))
    cfg = load_config(tmp / "config.toml")
    fill(cfg, 200)
    from daemon.store.engine import Engine

    svc = SyncService(cfg, Engine(cfg))
    monitor = Monitor(svc)
    t = cfg.sync.targets[0]
    stop = threading.Event()
    tick = min(1.0, args.interval)

    def run() -> None:
        while not stop.is_set():
            monitor.tick()
            stop.wait(tick)

    state = lambda: svc.state.target(t.name)["state"]  # noqa: E731
    svc.push_target(t)
    threading.Thread(target=run, daemon=True).start()
    wait(lambda: state() == "up")
    rows: list[dict[str, Any]] = []
    with Contention() as busy:
        for kind in ("kill", "freeze"):
            for _ in range(args.trials):
                time.sleep(args.interval * 1.5)
                if kind == "kill":
                    sshd.kill()
                else:
                    sshd.signal(signal.SIGSTOP)
                detect = wait(lambda: state() == "down")
                svc.state.add_pending(t.name, "push")  # a push asked for during the outage
                time.sleep(max(0.0, args.outage - detect))
                if kind == "kill":
                    sshd.start()
                else:
                    sshd.signal(signal.SIGCONT)
                up = wait(lambda: state() != "down")
                delivered = up + wait(lambda: not svc.state.pending(t.name))
                rows.append({"fault": kind, "detect_s": round(detect, 2),
                             "recover_up_s": round(up, 2), "pending_delivered_s": round(delivered, 2)})
                print(rows[-1], flush=True)
    stop.set()
    sshd.kill()
    summary = {}
    for kind in ("kill", "freeze"):
        sel = [r for r in rows if r["fault"] == kind]
        summary[kind] = {k: round(statistics.median(r[k] for r in sel), 2)
                         for k in ("detect_s", "recover_up_s", "pending_delivered_s")}
    print(f"\nprobe interval {args.interval} s, backoff cap {args.max_backoff} s, timeout "
          f"{args.timeout} s, outage {args.outage} s; medians of {args.trials}:")
    for kind, s in summary.items():
        print(f"  {kind:6}: detected in {s['detect_s']} s, up again {s['recover_up_s']} s after "
              f"the server returned, pending push delivered after {s['pending_delivered_s']} s")
    print(busy.line())
    write_result("sync_outage", {"machine": machine(), "params": vars(args), "trials": rows,
                                 "median": summary, "contention": busy.summary()})
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
