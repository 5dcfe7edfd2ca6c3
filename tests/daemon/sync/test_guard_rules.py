"""The guard's pure rules: forgetting explains missing rows; whose rows a snapshot may
bring; which rows are refused."""

from __future__ import annotations

from typing import Any

import pytest

from daemon.sync.guard import Refused, admission, check, verdict


def manifest(memories: int, forgotten: int = 0, gen: str = "g2") -> dict[str, Any]:
    return {"generation": gen, "counts": {"memories": memories, "forgotten": forgotten}}


def test_rows_removed_by_tombstones_are_explained_not_lost() -> None:
    before = manifest(100, forgotten=3, gen="g1")
    check(manifest(10, forgotten=93), before, 0.5, "publish")  # 90 forgotten: fine
    check(manifest(0, forgotten=103), before, 0.5, "publish")  # all forgotten: fine
    with pytest.raises(Refused, match=r"had 100 \(40 of them forgotten\) \(shrinks by 80%"):
        check(manifest(12, forgotten=43), before, 0.5, "publish")  # 60 to 12: 48 unexplained
    with pytest.raises(Refused, match="empty"):
        check(manifest(0, forgotten=53), before, 0.5, "publish")  # half of it vanished
    with pytest.raises(Refused, match="empty"):
        check(manifest(0), None, 0.5, "accept")
    with pytest.raises(Refused, match="shrinks by 90%"):  # no tombstones: as before
        check(manifest(10, forgotten=3), before, 0.5, "publish")


def test_a_snapshot_may_bring_its_publisher_by_default_never_our_own_user() -> None:
    adm = admission((), "bob@laptop", "alice@desk", 1, 1)
    assert adm.allowed == {"bob@laptop"} and adm.tombstone_owners == {"bob@laptop"}
    assert verdict("bob@laptop", adm, held=False) == "accept"
    assert verdict("eve@x", adm, held=False) == "refuse"
    assert verdict("alice@desk", adm, held=False) == "refuse"  # planted as ours
    assert verdict("alice@desk", adm, held=True) == "ours"  # ours, come back: skipped
    assert verdict("alice@phone", adm, held=False) == "refuse"
    # a publisher claiming our own user brings nothing unless listed
    assert admission((), "alice@phone", "alice@desk", 1, 1).allowed == frozenset()


def test_a_listed_owner_is_allowed_and_our_own_other_device_trusts_its_forgets() -> None:
    adm = admission(("alice@phone", "bob@laptop"), "alice@phone", "alice@desk", 1, 1)
    assert verdict("bob@laptop", adm, held=False) == "accept"
    assert verdict("alice@phone", adm, held=False) == "accept"
    assert "alice@desk" in adm.tombstone_owners  # a machine of the same person
    other = admission(("bob@laptop",), "bob@laptop", "alice@desk", 1, 1)
    assert "alice@desk" not in other.tombstone_owners
    restore = admission(("alice@desk",), "bob@laptop", "alice@desk", 1, 1)
    assert verdict("alice@desk", restore, held=False) == "accept"  # restore from a backup
