"""Exclusions and pause: nothing excluded or paused ever reaches the journal."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from collectors.base import Batch, Event
from collectors.files import FilesCollector
from daemon.config import load_config
from daemon.errors import ConfigError
from daemon.intake.journal import NEW, Journal
from daemon.intake.privacy import Exclusions, PauseState, PrivacyGate, gate_for
from tests.conftest import run_cli


def visit(url: str) -> Event:
    return Event.new(ts=1_763_000_000, source="browser", kind="browser.visit", subject=url)


def command(cmd: str) -> Event:
    return Event.new(ts=1_763_000_000, source="shell", kind="shell.command", subject=cmd)


def test_excluded_domains_commands_and_paths_are_dropped(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.sqlite3")
    ex = Exclusions(paths=(str(tmp_path / "src" / "private"), "*.kdbx"),
                    domains=("bank.example",), commands=(r"^pass\b", r"vault\s+read"))
    gate = PrivacyGate(j, ex, PauseState(tmp_path))
    gate.append(Batch("t", [
        visit("https://bank.example/login"), visit("https://www.bank.example/acct"),
        visit("https://notbank.example/"), command("pass show email"),
        command("vault read secret/db"), command("ls -la"),
    ], cursor="6"))
    root = tmp_path / "src"
    (root / "private").mkdir(parents=True)
    (root / "private" / "diary.txt").write_text("dear diary\n")
    (root / "keys.kdbx").write_bytes(b"\x03\xd9\xa2\x9a")
    (root / "plan.txt").write_text("the plan\n")
    FilesCollector([root]).poll(gate)
    kept = sorted(e.subject for e in j.at_stage(NEW, 100))
    assert kept == sorted(["https://notbank.example/", "ls -la", str(root / "plan.txt")])
    assert gate.dropped == 6
    assert j.cursor("t") == "6"


def test_pause_drops_everything_survives_restart_and_cursors_still_advance(
        tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.sqlite3")
    PauseState(tmp_path).pause(reason="test")
    gate = PrivacyGate(j, Exclusions(), PauseState(tmp_path))  # a "restarted" daemon
    assert gate.append(Batch("t", [command("echo secret plans")], cursor="1")) == 0
    assert j.counts()["total"] == 0 and j.cursor("t") == "1"
    PauseState(tmp_path).resume()
    assert gate.append(Batch("t", [command("echo back")], cursor="2")) == 1


def test_a_timed_pause_ends_by_itself(tmp_path: Path) -> None:
    state = PauseState(tmp_path)
    state.pause(minutes=0.01)
    assert state.paused()
    time.sleep(0.8)
    assert state.paused() is None


def test_invalid_command_pattern_is_a_config_error(tmp_path: Path) -> None:
    p = tmp_path / "c.toml"
    p.write_text('[privacy]\nexclude_commands = ["(unclosed"]\n')
    with pytest.raises(ConfigError, match="not a valid regular expression"):
        gate_for(load_config(p), Journal(tmp_path / "j.sqlite3"))


def test_pause_and_resume_from_the_cli(make_config, tmp_path: Path) -> None:
    root = tmp_path / "src"
    root.mkdir()
    (root / "during-pause.txt").write_text("written while paused\n")
    cfg = make_config([root], pipeline={"summarize": False})
    assert "paused" in run_cli(cfg, "pause").stdout
    out = run_cli(cfg, "ingest", "--once")
    assert "collected 0 new events" in out.stdout
    assert "paused" in run_cli(cfg, "status").stdout
    run_cli(cfg, "resume")
    time.sleep(0.01)
    (root / "after.txt").write_text("written after resuming\n")
    out = run_cli(cfg, "ingest", "--once")
    # the backfill sees both files now: a pause drops live activity, it does not hide
    # files that are still there when collection resumes
    assert "collected 2 new events" in out.stdout


def test_history_older_than_the_horizon_is_not_collected(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.sqlite3")
    gate = PrivacyGate(j, Exclusions(), PauseState(tmp_path), {"browser": 30, "shell": 0})
    now = time.time()
    old = Event.new(ts=now - 40 * 86400, source="browser", kind="browser.visit",
                    subject="https://old.example/")
    recent = Event.new(ts=now - 2 * 86400, source="browser", kind="browser.visit",
                       subject="https://recent.example/")
    ancient_cmd = Event.new(ts=now - 900 * 86400, source="shell", kind="shell.command",
                            subject="make release")  # 0 days: keep everything
    gate.append(Batch("t", [old, recent, ancient_cmd], cursor="3"))
    assert sorted(e.subject for e in j.at_stage(NEW, 10)) == ["https://recent.example/",
                                                              "make release"]
