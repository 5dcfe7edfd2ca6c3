"""The corpus test: secrets in the formats people really hold, over all four channels
(shell history written by real bash, zsh and fish; browser history by a real Chromium;
files in a watched tree, secret-named ones among them; events pushed to POST /v1/events),
ingested by a real daemon. Then every byte of the data dir (journal, its WAL, the LanceDB
fragments, logs) is scanned: no secret may be there, and the API's search returns none.

`python -m tests.daemon.intake.test_secret_corpus --code DIR` runs the same corpus
against the memoryd code in DIR (e.g. a worktree of an older commit) and prints how many
secrets it stored, for before/after comparisons.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import tomli_w

from tests.collectors.browser_fixtures import Chromium, PageServer, chromium_binary
from tests.collectors.shell_fixtures import bash_history, fish_history, zsh_history
from tests.daemon.intake.secret_corpus import Case, corpus, rand

ROOT = Path(__file__).resolve().parents[3]

# Files named like secrets: recorded as metadata only, whatever they hold (.pgpass lines
# and .netrc entries have no shape any rule could tell).
SECRET_FILES = {
    ".env": "DATABASE_URL=postgres://app:{s}@db/app\n", ".pgpass": "db:5432:app:app:{s}\n",
    ".netrc": "machine api.example.com login ana password {s}\n",
    "id_ed25519": "-----BEGIN OPENSSH PRIVATE KEY-----\n{s}\n-----END OPENSSH PRIVATE KEY-----\n",
}


@dataclass
class Leak:
    case: str
    channel: str
    where: str


def cases() -> list[Case]:
    out = corpus()
    out += [Case(f"secret-file:{name}", "files", body.format(s=(s := rand(24))), s)
            for name, body in SECRET_FILES.items()]
    return out


def _write_shells(home: Path, shell: list[Case]) -> list[str]:
    third = len(shell) // 3 + 1
    parts = [[c.text for c in shell[i * third:(i + 1) * third]] + ["true"] for i in range(3)]
    # each list ends on a command that succeeds: bash and zsh exit with the last status
    files = [bash_history(home / "bash", parts[0], timestamps=True),
             zsh_history(home / "zsh", parts[1]), fish_history(home / "fish", parts[2])]
    return [str(f) for f in files]


def _visit_url(c: Case) -> str:
    """The case's URL moved onto the loopback page server (other hosts do not resolve)."""
    tail = c.text[c.text.index("example.com") + len("example.com"):]
    return "/alpha.html" + tail[tail.index("?"):] if "?" in tail else "/alpha.html" + \
        tail[tail.index("#"):]


def _config(tmp: Path, root: Path, shells: list[str], history: str, models: Path) -> Path:
    table = {
        "data_dir": str(tmp / "data"),
        "collectors": {"files": {"roots": [str(root)], "settle_seconds": 0.2},
                       "browser": {"history_files": [history], "history_days": 0},
                       "shell": {"history_files": shells, "history_days": 0}},
        "api": {"port": 0}, "models": {"dir": str(models)},
        "pipeline": {"summarize": False},
        "compaction": {"yield_cpu_percent": 0, "yield_on_battery": False},
    }
    path = tmp / "config.toml"
    path.write_text(tomli_w.dumps(table))
    return path


def run_corpus(tmp: Path, models: Path, code: Path = ROOT
               ) -> tuple[list[Case], list[Leak], dict[str, int]]:
    """Collect the corpus through a daemon running `code`; return the cases, the leaks,
    and how many events each source stored (so an empty journal cannot pass)."""
    all_cases = cases()
    by = {ch: [c for c in all_cases if c.channel == ch]
          for ch in ("shell", "browser", "files", "events")}
    home = tmp / "home"
    home.mkdir(parents=True)
    shells = _write_shells(home, by["shell"])
    root = tmp / "src"
    (root / "notes").mkdir(parents=True)
    for c in by["files"]:
        name = c.name.split(":", 1)[1] if c.name.startswith("secret-file:") \
            else f"notes/{c.name}.txt"
        (root / name).write_text(c.text + "\nordinary words about the quarterly plan\n")
    with PageServer() as site:
        udd = tmp / "chromium" / "user-data"
        with Chromium(udd) as browser:
            for c in by["browser"]:
                browser.navigate(site.url(_visit_url(c)), "link")
        history = str(udd / "Default" / "History")
    cfg = _config(tmp, root, shells, history, models)
    env = {**os.environ, "HOME": str(home), "PYTHONPATH": str(code), "HF_HUB_OFFLINE": "1",
           "MEMORYD_HOME": str(home / ".memoryd")}
    log = tmp / "daemon.log"
    proc = subprocess.Popen([sys.executable, "-m", "daemon.cli", "--config", str(cfg), "run"],
                            stdout=open(log, "wb"), stderr=subprocess.STDOUT, env=env,
                            cwd=str(code))
    data = tmp / "data"
    leaks: list[Leak] = []
    try:
        client = _wait_up(proc, data, log)
        auth = {"Authorization": f"Bearer {(data / 'token').read_text().strip()}"}
        events = [{"source": "agent.corpus", "kind": "agent.note", "subject": f"note://{c.name}",
                   "text": f"deploy notes for {c.name}: {c.text}" if i % 2 else "deploy notes",
                   "attrs": {} if i % 2 else {"request": {"headers": c.text}, "argv": [c.text]}}
                  for i, c in enumerate(by["events"])]
        r = client.post("/v1/events", json={"events": events}, headers=auth)
        assert r.status_code == 200, r.text
        _wait_indexed(client, auth, len(all_cases), proc, log)
        for c in all_cases:
            hits = client.get("/v1/memory/search", params={"q": c.secret[:60], "k": 10},
                              headers=auth).json().get("results", [])
            if any(c.secret in json.dumps(h) for h in hits):
                leaks.append(Leak(c.name, c.channel, "API search"))
        client.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
    leaks += _scan(data, all_cases)
    db = sqlite3.connect(data / "journal.sqlite3")
    stored = dict(db.execute("SELECT source, COUNT(*) FROM events GROUP BY source").fetchall())
    db.close()
    return all_cases, leaks, stored


def _wait_up(proc: subprocess.Popen[bytes], data: Path, log: Path) -> httpx.Client:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"daemon exited {proc.returncode}:\n{log.read_text()}")
        try:
            c = httpx.Client(transport=httpx.HTTPTransport(uds=str(data / "memoryd.sock")),
                             base_url="http://localhost", timeout=120)
            if c.get("/health").status_code == 200:
                return c
            c.close()
        except (httpx.TransportError, FileNotFoundError):
            pass
        time.sleep(0.2)
    raise AssertionError(f"daemon never answered /health:\n{log.read_text()}")


def _wait_indexed(client: httpx.Client, auth: dict[str, str], at_least: int,
                  proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline, counts = time.monotonic() + 600, {}
    while time.monotonic() < deadline:
        counts = client.get("/v1/status", headers=auth).json()["journal"]
        if counts["total"] >= at_least and counts["new"] == 0:
            return
        if proc.poll() is not None:
            raise AssertionError(f"daemon exited:\n{log.read_text()}")
        time.sleep(1)
    raise AssertionError(f"the corpus was never all indexed: {counts}\n{log.read_text()[-3000:]}")


def _scan(data: Path, all_cases: list[Case]) -> list[Leak]:
    """Every file under the data dir, byte for byte (UTF-8 and JSON-escaped forms)."""
    blobs = [(str(p.relative_to(data)), p.read_bytes()) for p in sorted(data.rglob("*"))
             if p.is_file() and not p.is_socket()]
    leaks = []
    for c in all_cases:
        forms = {c.secret.encode(), json.dumps(c.secret)[1:-1].encode()}
        where = [name for name, blob in blobs if any(f in blob for f in forms)]
        if where:
            leaks.append(Leak(c.name, c.channel, ", ".join(where[:4])))
    return leaks


@pytest.mark.timeout(600)
@pytest.mark.skipif(chromium_binary() is None, reason="needs chromium (apt-get install chromium)")
def test_no_secret_of_the_corpus_is_stored_or_found(tmp_path: Path, models_dir: Path) -> None:
    all_cases, leaks, stored = run_corpus(tmp_path, models_dir)
    n = {ch: sum(c.channel == ch for c in all_cases)
         for ch in ("shell", "browser", "files", "events")}
    assert len(all_cases) >= 40 and min(n.values()) >= 4
    # every case was collected (the shells add one `true` each), and its context kept
    assert stored.get("shell", 0) >= n["shell"] and stored.get("browser", 0) >= n["browser"]
    assert stored.get("files", 0) >= n["files"] and stored.get("agent.corpus") == n["events"]
    journal = b"".join(p.read_bytes() for p in (tmp_path / "data").glob("journal.sqlite3*"))
    assert b"xclip -selection clipboard" in journal and b"quarterly plan" in journal
    assert not leaks, "\n".join(f"{x.case} ({x.channel}): {x.where}" for x in leaks)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--code", type=Path, default=ROOT, help="memoryd source tree to run")
    ap.add_argument("--models", type=Path, required=True, help="the tests' models dir")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="memoryd-corpus-") as tmp:
        all_cases, leaks, stored = run_corpus(Path(tmp), args.models, args.code.resolve())
    print(json.dumps({"code": str(args.code), "secrets": len(all_cases), "stored": stored,
                      "stored_or_returned": len({x.case for x in leaks}),
                      "leaks": [x.__dict__ for x in leaks]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
