"""Files whose names say they hold secrets are recorded as metadata only: the files
collector never reads them, the privacy gate strips any pushed event naming one, and
`[privacy] secret_files` changes the list."""

from __future__ import annotations

import fnmatch
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collectors.base import Batch, Event
from collectors.files import FileRules, FilesCollector, read_file_event
from collectors.secretfiles import SecretFiles
from daemon.config import SECRET_FILES, Config, PrivacyConfig
from daemon.intake.journal import Journal
from daemon.intake.privacy import gate_for
from daemon.intake.redact import redact

SECRET = "Zq8hunter2LemurCactus77"


@pytest.mark.parametrize("name", [
    ".env", ".env.production", "prod.env", "server.pem", "tls.key", "id_rsa", "id_ed25519",
    "id_ecdsa.pub", ".netrc", ".pgpass", ".npmrc", ".pypirc", "credentials", "kubeconfig",
    "cert.p12", "cert.pfx", "vault.kdbx", "gcp-service-account.json", ".git-credentials",
])
def test_a_secret_named_file_is_never_read(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_text(f"anything at all {SECRET}\n")
    ev = read_file_event(path, FileRules(secret_files=SECRET_FILES), root=tmp_path)
    assert ev is not None and ev.text == "" and ev.attrs["secret_file"] is True
    assert "unreadable" not in ev.attrs and ev.attrs["size"] > 0


def test_kubeconfig_and_service_accounts_are_told_by_path_or_content(tmp_path: Path) -> None:
    kube = tmp_path / ".kube" / "config"
    kube.parent.mkdir()
    kube.write_text("apiVersion: v1\nkind: Config\nusers:\n- name: a\n  user:\n"
                    f"    token: {SECRET}\n")
    sa = tmp_path / "prod-deployer.json"  # a service-account key under an ordinary name
    sa.write_text(json.dumps({"type": "service_account", "private_key_id": SECRET}))
    plain = tmp_path / "notes.md"
    plain.write_text("the quarterly plan\n")
    rules = FileRules(secret_files=SECRET_FILES)
    for p in (kube, sa):
        ev = read_file_event(p, rules)
        assert ev is not None and ev.text == "" and ev.attrs["secret_file"] is True, p
    ev = read_file_event(plain, rules)
    assert ev is not None and ev.text == "the quarterly plan\n" and "secret_file" not in ev.attrs


def test_the_collector_backfill_records_secret_files_as_metadata(tmp_path: Path) -> None:
    root = tmp_path / "src"
    root.mkdir()
    (root / ".env").write_text(f"STRIPE_KEY={SECRET}\n")
    (root / "app.py").write_text("print('hello')\n")
    journal = Journal(tmp_path / "j.sqlite3", redact=redact)
    FilesCollector([root], FileRules(secret_files=SECRET_FILES)).poll(journal)
    events = {Path(e.subject).name: e for e in journal.at_stage(0, 10)}
    assert events[".env"].text == "" and events[".env"].attrs["secret_file"] is True
    assert events["app.py"].text == "print('hello')\n"
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("j.sqlite3*"))
    assert SECRET.encode() not in raw


def _gate(tmp_path: Path, **privacy: object):
    journal = Journal(tmp_path / "j.sqlite3", redact=redact)
    cfg = Config(data_dir=str(tmp_path / "data"),
                 privacy=PrivacyConfig(**privacy))  # type: ignore[arg-type]
    return journal, gate_for(cfg, journal)


def test_the_gate_strips_a_pushed_event_that_names_a_secret_file(tmp_path: Path) -> None:
    journal, gate = _gate(tmp_path)
    events = [Event.new(ts=1_764_000_000, source="editor", kind="editor.open",
                        subject="/home/ana/.ssh/id_ed25519", text=f"key body {SECRET}",
                        attrs={"size": 400, "preview": SECRET}),
              Event.new(ts=1_764_000_001, source="editor", kind="editor.open",
                        subject="/home/ana/src/app.py", text="print('hello')")]
    gate.append(Batch("editor", events))
    got = {Path(e.subject).name: e for e in journal.at_stage(0, 10)}
    assert got["id_ed25519"].text == "" and got["id_ed25519"].attrs == {"size": 400,
                                                                        "secret_file": True}
    assert got["app.py"].text == "print('hello')"


def test_secret_files_setting_replaces_the_list(tmp_path: Path) -> None:
    journal, gate = _gate(tmp_path, secret_files=("*.vault",))
    events = [Event.new(ts=1_764_000_000 + i, source="editor", kind="editor.open",
                        subject=f"/home/ana/{name}", text="plain words")
              for i, name in enumerate(["team.vault", ".env"])]
    gate.append(Batch("editor", events))
    got = {Path(e.subject).name: e.text for e in journal.at_stage(0, 10)}
    assert got == {"team.vault": "", ".env": "plain words"}
    _, off = _gate(tmp_path / "off", secret_files=())
    assert off.secret_files is None


def test_config_key_is_read_from_toml(tmp_path: Path) -> None:
    from daemon.config import load_config

    path = tmp_path / "config.toml"
    path.write_text('[privacy]\nsecret_files = ["*.vault", ".env*"]\n')
    assert load_config(path).privacy.secret_files == ("*.vault", ".env*")
    assert ".env" in load_config(None).privacy.secret_files


_NAME_PARTS = ["id_rsa", ".env", ".pem", "x", "service-account", ".json", "/", ".kube", "config",
               "credentials", "kubeconfig", "a", "c", ".", "-sa-key.json", "foo", ".h", "é"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(_NAME_PARTS), min_size=1, max_size=6),
       st.sampled_from([SECRET_FILES, ("a?c", "x[ab]y", "*.[ch]", "*foo*.json", "*/a/*"),
                        ("*",), ()]))
def test_secret_file_names_match_as_their_globs_say(parts: list[str],
                                                    globs: tuple[str, ...]) -> None:
    """SecretFiles looks names up as strings where it can; it answers as fnmatch does (a
    glob without "/" against the name, one with "/" against the whole path)."""
    path = "".join(parts)
    name = path.rsplit("/", 1)[-1]
    expected = any(fnmatch.fnmatchcase(path if "/" in g else name, g) for g in globs)
    assert SecretFiles(globs).by_name(path) is expected
