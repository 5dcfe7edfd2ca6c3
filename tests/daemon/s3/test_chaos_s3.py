"""Chaos on one bucket: three full daemons (`memoryd run`, each its own data dir, device,
user and files) on a real SeaweedFS, started at the same instant on a new prefix, again
and again (the creation race of the tables and their first indexes). Then, on one of
those prefixes, each daemon keeps ingesting new files, forgets some, and optimizes and
cleans up the store (every forget purges, `optimize_rows` is small), while the test
SIGKILLs and restarts one daemon and restarts SeaweedFS once.

At the end no daemon exited with an error, every saved file is in the store exactly once
under its owner, nothing forgotten is back, and each daemon's search finds the others'
memories. The conflicts retried per write path (from the daemons' logs) are printed.

The default suite runs the start race 3 times and a short chaos phase (~2 min on a
quiet machine); the full run (`-m slow`) runs it 10 times and a 3-minute chaos phase:
    pytest tests/daemon/s3/test_chaos_s3.py -m slow -s
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import tomli_w

from daemon.config import load_config
from daemon.store.lance import Store, open_store
from tests.daemon.s3.conftest import Weed

EMBEDDER = "all-minilm-l6-v2"
TEAM = (("laptop", "alice"), ("desk", "bob"), ("ci", "carol"))
RETRY_LINE = re.compile(r"store commit conflict on (.+?) \(try")


@dataclass
class Member:
    device: str
    user: str
    root: Path
    data: Path
    config: Path
    logs: list[Path] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None
    saved: dict[str, Path] = field(default_factory=dict)  # word -> file
    forgotten: set[str] = field(default_factory=set)
    uncertain: set[str] = field(default_factory=set)  # a forget that failed half-way

    def start(self) -> None:
        log = self.data.parent / f"{self.user}-{len(self.logs)}.log"
        self.logs.append(log)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "daemon.cli", "--config", str(self.config), "run"],
            stdout=open(log, "wb"), stderr=subprocess.STDOUT)

    def wait_up(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while True:
            assert self.proc is not None and self.proc.poll() is None, self.log_tail()
            try:
                with self.client() as c:
                    if c.get("/health").status_code == 200:
                        return
            except (httpx.TransportError, FileNotFoundError, OSError):
                pass
            assert time.monotonic() < deadline, self.log_tail()
            time.sleep(0.2)

    def client(self) -> httpx.Client:
        token = (self.data / "token").read_text().strip()
        return httpx.Client(transport=httpx.HTTPTransport(uds=str(self.data / "memoryd.sock")),
                            base_url="http://localhost", timeout=120,
                            headers={"Authorization": f"Bearer {token}"})

    def save(self, word: str) -> None:
        path = self.root / f"{word}.md"
        path.write_text(f"Notes of {self.user}: the {word} plan.\n")
        self.saved[word] = path

    def forget(self, word: str) -> None:
        """Forget `word`'s file; one that fails (SeaweedFS is down) may have deleted part
        of what it matched, so its file is left out of the checks."""
        try:
            with self.client() as c:
                r = c.post("/v1/memory/forget", json={"query": word, "device": self.device,
                                                       "user": self.user})
            ok = r.status_code == 200
        except httpx.HTTPError:
            ok = False
        (self.forgotten if ok else self.uncertain).add(word)

    def stop(self) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                return -9
        return int(self.proc.returncode)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def log_tail(self) -> str:
        return self.logs[-1].read_text(errors="replace")[-4000:] if self.logs else ""


def team(tmp: Path, s3: Weed, models_dir: Path, prefix: str) -> list[Member]:
    out = []
    for device, user in TEAM:
        # a short local folder: the daemon's socket path must stay under AF_UNIX's 108
        base = tmp / f"r{prefix.rsplit('-', 1)[-1]}" / user
        root, data = base / "src", base / "data"
        root.mkdir(parents=True)
        config = base / "memoryd.toml"
        config.write_text(tomli_w.dumps({
            "data_dir": str(data),
            "collectors": {"files": {"roots": [str(root)]}, "browser": {"enabled": False},
                           "shell": {"enabled": False}},
            "api": {"port": 0}, "models": {"dir": str(models_dir), "idle_unload_seconds": 3600},
            "identity": {"device": device, "user": user},
            "store": s3.store_section(prefix, refresh_seconds=0, optimize_rows=4,
                                      cleanup_grace_seconds=20, timeout_seconds=3),
            "pipeline": {"summarize": False, "interval_seconds": 1.0},
            "compaction": {"enabled": False}}))
        out.append(Member(device, user, root, data, config))
    return out


def store_of(m: Member) -> Store:
    return open_store(load_config(m.config), 384, EMBEDDER)


def rows(store: Store) -> list[dict[str, Any]]:
    store.events.checkout_latest()
    return list(store.events.to_arrow().select(["id", "subject", "text", "device", "user"])
                .to_pylist())


def wait_stored(members: list[Member], timeout: float) -> list[dict[str, Any]]:
    """Wait until every saved, unforgotten file is in the store; return its rows."""
    store = store_of(members[0])
    deadline = time.monotonic() + timeout
    while True:
        have = {(r["subject"], r["device"], r["user"]) for r in rows(store)}
        missing = [(m.user, w) for m in members for w, p in m.saved.items()
                   if w not in m.forgotten | m.uncertain
                   and (str(p), m.device, m.user) not in have]
        if not missing:
            return rows(store)
        assert time.monotonic() < deadline, (missing, [m.log_tail() for m in members])
        time.sleep(1)


def start_together(members: list[Member]) -> None:
    for m in members:  # Popen returns at once: the three boot side by side
        m.start()
    for m in members:
        m.wait_up()


def conflicts(members: list[Member]) -> Counter[str]:
    out: Counter[str] = Counter()
    for m in members:
        for log in m.logs:
            out.update(RETRY_LINE.findall(log.read_text(errors="replace")))
    return out


def check_store(members: list[Member], found: list[dict[str, Any]]) -> None:
    ids = Counter(r["id"] for r in found)
    assert all(n == 1 for n in ids.values()), [i for i, n in ids.items() if n > 1]
    for m in members:
        for word, path in m.saved.items():
            mine = [r for r in found if r["subject"] == str(path)]
            if word in m.uncertain:
                continue
            if word in m.forgotten:
                assert not mine, (m.user, word, "forgotten but back")
            else:
                assert len(mine) == 1, (m.user, word, mine)
                assert (mine[0]["device"], mine[0]["user"]) == (m.device, m.user)
    every_word = {w for m in members for w in m.forgotten}
    assert not any(w in (r["text"] or "") for r in found for w in every_word)


def search_finds(m: Member, word: str) -> bool:
    with m.client() as c:
        r = c.get("/v1/memory/search", params={"q": word, "k": 5})
    return r.status_code == 200 and any(word in h["text"] for h in r.json()["results"])


def start_races(tmp: Path, s3: Weed, models_dir: Path,
                times: int) -> tuple[list[Member], Counter[str]]:
    """Start three daemons at once on a new prefix `times` times; keep the last team
    running and return it with the conflicts every team retried."""
    retried: Counter[str] = Counter()
    members: list[Member] = []
    for n in range(times):
        members = team(tmp, s3, models_dir, f"chaos-{time.monotonic_ns()}-{n}")
        for m in members:
            m.save(f"boot{n}{m.user}")
        start_together(members)
        check_store(members, wait_stored(members, timeout=300))
        if n < times - 1:
            for m in members:
                assert m.stop() == 0, m.log_tail()
            retried += conflicts(members)
    return members, retried


def chaos(s3: Weed, members: list[Member], seconds: float) -> None:
    """Ingest, forget and clean up on every daemon while one is SIGKILLed and restarted
    and SeaweedFS restarts once."""
    began = time.monotonic()
    victim = members[1]
    killed = weed_restarted = False
    n = 0
    while time.monotonic() - began < seconds:
        n += 1
        for m in members:
            m.save(f"w{n}x{m.user}")
            if n % 4 == 0:
                m.forget(f"w{n - 2}x{m.user}")
        elapsed = time.monotonic() - began
        if not killed and elapsed > seconds * 0.25:
            victim.kill()
            killed = True
            time.sleep(2)
            victim.start()
            victim.wait_up()
        if not weed_restarted and elapsed > seconds * 0.55:
            s3.restart()
            weed_restarted = True
        time.sleep(2)
    assert killed and weed_restarted


def run_chaos(tmp: Path, s3: Weed, models_dir: Path, races: int, seconds: float) -> None:
    members, retried = start_races(tmp, s3, models_dir, races)
    try:
        chaos(s3, members, seconds)
        found = wait_stored(members, timeout=600)
        check_store(members, found)
        for m in members:  # each daemon's search finds the others' memories
            for other in members:
                if other is m:
                    continue
                word = next(w for w in other.saved
                            if w not in other.forgotten | other.uncertain)
                deadline = time.monotonic() + 120
                while not search_finds(m, word):
                    assert time.monotonic() < deadline, (m.user, word, m.log_tail())
                    time.sleep(1)
    finally:
        codes = {m.user: m.stop() for m in members}
    assert codes == {m.user: 0 for m in members}, [m.log_tail() for m in members]
    retried += conflicts(members)
    print(f"\nconflicts retried per write path over {races} start races and "
          f"{seconds:.0f} s of chaos: {dict(retried)}")
    gave_up = sum(log.read_text(errors="replace").count("kept changing under")
                  for m in members for log in m.logs)
    print(f"writes that gave up after all their retries (retried later): {gave_up}")


def test_three_daemons_started_at_once_survive_kills_and_an_s3_restart(
        tmp_path: Path, s3: Weed, models_dir: Path) -> None:
    run_chaos(tmp_path, s3, models_dir, races=3, seconds=40)


@pytest.mark.slow
def test_chaos_full_ten_start_races_and_three_minutes(
        tmp_path: Path, s3: Weed, models_dir: Path) -> None:
    run_chaos(tmp_path, s3, models_dir, races=10, seconds=180)
