"""Builders for the sync tests: configs with sync targets, stores filled with real
embeddings, and a private sshd on 127.0.0.1 with its own host key and known_hosts."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import tomli_w

from daemon.config import Config, load_config
from daemon.store.lance import Store

EMBEDDER = "all-minilm-l6-v2"
TOPICS = [
    "Refactored the lead scoring function in crm/score.py and fixed the budget weight",
    "Read the LanceDB full-text search docs and tried the simple tokenizer",
    "Debugged a failing pytest in tests/test_score.py about the threshold",
    "Planned the sync guard: refuse empty snapshots, keep five generations",
    "Reviewed the pull request adding SFTP transport with keepalives",
    "Wrote release notes for memoryd 0.1 and tagged the build",
    "Investigated why the tray icon showed memory unavailable after resume",
    "Benchmarked llama.cpp summaries on two cores with OMP_WAIT_POLICY passive",
]


@pytest.fixture(scope="session")
def vectors(models_dir: Path) -> list[list[float]]:
    """Real embeddings of TOPICS by the bundled sentence-transformers model."""
    from models.assets import embedder_path
    from models.sentence_tf import SentenceTransformerBackend

    emb = SentenceTransformerBackend(embedder_path(EMBEDDER), name=EMBEDDER, dimensions=384,
                                     idle_seconds=0)
    out = emb.embed(TOPICS)
    emb.unload()
    return out


def write_config(path: Path, data_dir: Path, models_dir: Path,
                 targets: list[dict[str, Any]] | None = None, port: int = 0,
                 identity: tuple[str, str] | None = None,
                 sync: dict[str, Any] | None = None) -> Config:
    """A daemon's config; each data dir gets its own identity (user `u-<dir name>` on
    device `<dir name>`), as two machines would have, unless `identity` (user, device)."""
    user, device = identity or (f"u-{data_dir.name}", data_dir.name)
    table: dict[str, Any] = {
        "identity": {"user": user, "device": device},
        "data_dir": str(data_dir),
        "collectors": {"files": {"roots": []}, "browser": {"enabled": False},
                       "shell": {"enabled": False}},
        "api": {"port": port}, "models": {"dir": str(models_dir)},
        "pipeline": {"summarize": False},
        "sync": {"targets": targets or [], **(sync or {})},
    }
    path.write_text(tomli_w.dumps(table))
    return load_config(path)


def fill_store(cfg: Config, vectors: list[list[float]], n: int, prefix: str,
               day: int = 0, level: str = "chunk", id_prefix: str = "") -> Store:
    """Write `n` memories straight into the store of `cfg`, with real embeddings, owned
    by its identity."""
    from daemon.owners import identity

    store = Store(cfg.data_path / "store", 384, EMBEDDER, owner=identity(cfg))
    base = datetime(2026, 11, 1, 9, tzinfo=UTC) + timedelta(days=day)
    rows = []
    for i in range(n):
        text = f"{TOPICS[i % len(TOPICS)]} ({prefix} #{i})"
        row: dict[str, Any] = {
            "id": f"{id_prefix or prefix}-{i:05d}", "ts": base + timedelta(minutes=i),
            "ts_end": base + timedelta(minutes=i, seconds=50), "level": level,
            "source": "files", "title": f"{prefix} memory {i}", "text": text,
            "event_ids": [f"{id_prefix or prefix}-ev-{i}"], "model": "test",
            "created": datetime.now(UTC),
            "doc": text, "vector": vectors[i % len(vectors)],
        }
        for f in store.memories.schema:  # whatever columns the table has now
            if f.name not in row:
                row[f.name] = [] if pa.types.is_list(f.type) else (
                    "" if pa.types.is_string(f.type) else None)
        if "open_tasks" in row and i % 4 == 0:
            row["open_tasks"] = [f"follow up on {prefix} item {i}"]
        rows.append(row)
    for i in range(0, len(rows), 500):
        store.upsert_memories(rows[i:i + 500])
    return store


def memory_ids(cfg: Config) -> set[str]:
    store = Store(cfg.data_path / "store", 384, EMBEDDER)
    return set(store.memories.to_arrow().column("id").to_pylist())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Sshd:
    """A real OpenSSH server on 127.0.0.1:port, key-only, with its own host key."""

    dir: Path
    port: int
    client_key: Path
    known_hosts: Path
    root: Path  # the folder the sync target points at
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        # sshd insists on /run/sshd; a private mount namespace gives it one without
        # touching the machine's /run. `exec` keeps one pid for the whole server.
        cmd = ["unshare", "-m", "sh", "-c",
               "mount -t tmpfs -o mode=755 tmpfs /run && mkdir -m 755 /run/sshd && "
               f"exec /usr/sbin/sshd -D -e -f {self.dir / 'sshd_config'}"]
        self.proc = subprocess.Popen(cmd, stdout=open(self.dir / "sshd.log", "ab"),
                                     stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            if self.proc.poll() is not None:
                raise AssertionError((self.dir / "sshd.log").read_text())
            time.sleep(0.05)
        raise AssertionError("sshd did not listen: " + (self.dir / "sshd.log").read_text())

    def kill(self) -> None:
        """SIGKILL the listener and every session it forked (a crash, a dropped tunnel)."""
        import psutil

        if self.proc is not None and self.proc.poll() is None:
            for p in self._tree():
                try:
                    p.kill()
                except psutil.NoSuchProcess:
                    pass  # a session that ended between listing and killing
            self.proc.wait()
        self.proc = None

    def signal(self, sig: int) -> None:
        """Send `sig` to the listener and every session (sessions run in their own
        process groups, so a group signal would miss them)."""
        import psutil

        for p in self._tree():
            try:
                p.send_signal(sig)
            except psutil.NoSuchProcess:
                pass  # a session that ended between listing and signalling

    def _tree(self) -> list[Any]:
        import psutil

        assert self.proc is not None
        try:
            root = psutil.Process(self.proc.pid)
            return [*root.children(recursive=True), root]
        except psutil.NoSuchProcess:
            return []

    def target(self, name: str = "agent-host", **opts: Any) -> dict[str, Any]:
        return {"name": name, "url": f"ssh://root@127.0.0.1:{self.port}{self.root}",
                "identity_file": str(self.client_key),
                "known_hosts_file": str(self.known_hosts), **opts}


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[Sshd]:
    if not shutil.which("sftp") or not Path("/usr/sbin/sshd").exists():
        pytest.skip("openssh-server and openssh-client are needed (tests/apt-packages.txt)")
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("the private sshd needs root and unshare for its own /run/sshd")
    d = tmp_path / "sshd"
    d.mkdir()
    for key in ("hostkey", "client_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / key),
                        "-C", key], check=True)
    shutil.copy(d / "client_key.pub", d / "authorized_keys")
    port = free_port()
    (d / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {d / 'hostkey'}\n"
        f"PidFile {d / 'sshd.pid'}\nAuthorizedKeysFile {d / 'authorized_keys'}\n"
        "PubkeyAuthentication yes\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\nUsePAM no\n"
        "StrictModes no\nSubsystem sftp internal-sftp\nLogLevel VERBOSE\n")
    hostkey = " ".join((d / "hostkey.pub").read_text().split()[:2])
    (d / "known_hosts").write_text(f"[127.0.0.1]:{port} {hostkey}\n")
    root = tmp_path / "remote"
    root.mkdir()
    server = Sshd(d, port, d / "client_key", d / "known_hosts", root)
    server.start()
    yield server
    if server.proc is not None:
        try:
            server.signal(signal.SIGCONT)
        except ProcessLookupError:
            pass
    server.kill()
