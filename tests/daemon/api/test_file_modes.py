"""Everything the daemon writes is the user's alone, whatever umask it was started with:
a real daemon started under umask 022 ingests a file and pushed events and publishes a
snapshot to a folder target; every file under its data dir and the target is 0600 and
every folder 0700."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path


def loose(top: Path) -> list[str]:
    """The paths under `top` (itself included) that group or others may use."""
    bad = []
    for path in [top, *top.rglob("*")]:
        mode = stat.S_IMODE(path.lstat().st_mode)
        want = 0o700 if path.is_dir() else 0o600
        if path.is_symlink() or mode & 0o077 or (path.is_dir() and mode != want):
            bad.append(f"{oct(mode)} {path.relative_to(top.parent)}")
    return bad


def test_files_and_folders_are_private_under_a_loose_umask(make_config, start_daemon,
                                                           tmp_path: Path) -> None:
    root = tmp_path / "src"
    root.mkdir()
    share = tmp_path / "share"
    share.mkdir(mode=0o700)
    config = make_config([root], pipeline={"summarize": False},
                         sync={"targets": [{"name": "share", "url": f"dir://{share}"}]})
    old = os.umask(0o022)
    try:
        d = start_daemon(config)
    finally:
        os.umask(old)
    umask = next(line.split()[1] for line in Path(f"/proc/{d.proc.pid}/status").read_text()
                 .splitlines() if line.startswith("Umask:"))
    assert umask == "0077"
    (root / "kestrel.md").write_text("The kestrel dashboard ships Thursday.\n")
    with d.unix() as u:
        event = {"source": "editor", "kind": "editor.open", "subject": "/tmp/plan.md",
                 "title": "plan", "text": "the osprey plan"}
        assert u.post("/v1/events", json={"events": [event]},
                      headers=d.auth()).status_code == 200
        deadline = time.monotonic() + 300
        found = False
        while time.monotonic() < deadline and not found:
            r = u.get("/v1/memory/search", params={"q": "kestrel dashboard"}, headers=d.auth())
            found = r.status_code == 200 and any("kestrel" in h["text"]
                                                 for h in r.json()["results"])
            time.sleep(0.5)
        assert found, d.log.read_text()[-3000:]
        r = u.post("/v1/sync/push", params={"target": "share", "force": "true"},
                   headers=d.auth())
        assert r.status_code == 200 and r.json()["results"][0]["ok"], r.text[:500]
    assert any(share.iterdir()) and (d.data_dir / "journal.sqlite3").exists()
    assert list(d.data_dir.rglob("*.lance")) or list(d.data_dir.rglob("*.manifest"))
    assert loose(d.data_dir) == []
    assert loose(share) == []
