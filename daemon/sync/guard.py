"""The guard: what may be published to a target or accepted from one.

A snapshot is refused when it is empty, when it has fewer than (1 - max_shrink) times the
memories of the previous good one of the same publisher, or when its files do not match
their checksums. `--force` publishes or accepts it anyway. Refusals are recorded
(state.py) and shown.

Forgetting is not shrinkage: each manifest counts the memories its publisher has forgotten
(`counts.forgotten`, tombstones); those forgotten since the previous snapshot explain as
many missing rows, which the previous count loses before the rules above are applied.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from daemon.errors import PermanentError


class Refused(PermanentError):
    """The guard refused a snapshot; the message says why and how to override."""


def forgotten_since(manifest: dict[str, Any], previous: dict[str, Any] | None) -> int:
    """How many memories the publisher forgot between `previous` and `manifest`."""
    if previous is None:
        return 0
    now = int(manifest.get("counts", {}).get("forgotten", 0))
    before = int(previous.get("counts", {}).get("forgotten", 0))
    return max(0, now - before)


def check(manifest: dict[str, Any], previous: dict[str, Any] | None, max_shrink: float,
          direction: str) -> None:
    """Given a snapshot's manifest and the previous good one of the same publisher (or
    None), raise Refused if the snapshot must not replace it. `direction` is "publish" or
    "accept". Memories forgotten since `previous` are not counted as lost."""
    count = int(manifest["counts"]["memories"])
    gen = manifest.get("generation", "?")
    explained = forgotten_since(manifest, previous)
    before = 0 if previous is None else int(previous.get("counts", {}).get("memories", 0))
    expected = max(0, before - explained)
    if count <= 0 and not (previous is not None and before > 0 and expected == 0):
        raise Refused(f"refusing to {direction} snapshot {gen}: it is empty (0 memories); "
                      "was the store emptied or moved? Use --force if this is intended")
    if previous is None:
        return
    if expected > 0 and count < expected * (1.0 - max_shrink):
        share = 1.0 - count / expected
        why = f" ({explained} of them forgotten)" if explained else ""
        raise Refused(
            f"refusing to {direction} snapshot {gen}: {count} memories where the previous "
            f"good snapshot {previous.get('generation', '?')} had {before}{why} (shrinks by "
            f"{share:.0%}, the limit is {max_shrink:.0%}); use --force if this is intended")


def check_files(manifest: dict[str, Any], checked: dict[str, str]) -> None:
    """Given a manifest and the SHA-256 of each file as read, raise Refused on a mismatch."""
    for f in manifest["files"]:
        got = checked.get(f["name"])
        if got != f["sha256"]:
            raise Refused(f"snapshot {manifest.get('generation', '?')}: {f['name']} does not "
                          f"match its checksum in the manifest (corrupt or incomplete copy); "
                          "the previous generation is kept")


@dataclass(frozen=True)
class Admission:
    """What one inbound snapshot may bring, decided before any row is read: whose rows
    (`allowed`, as user@device), whose rows its tombstones may delete, this daemon's own
    identity, the caps on decompressed bytes, and the ids its publisher forgot."""

    publisher: str
    own: str
    allowed: frozenset[str]
    tombstone_owners: frozenset[str]
    max_segment_bytes: int
    max_row_bytes: int
    forgotten_events: tuple[str, ...] = ()
    forgotten_memories: tuple[str, ...] = ()


def admission(configured: tuple[str, ...], publisher: str, own: str, max_segment_bytes: int,
              max_row_bytes: int, forgotten: dict[str, list[str]] | None = None) -> Admission:
    """Given a target's `owners` list (empty: the default), the publisher's identity as
    its manifest states it and this daemon's own (both user@device), return what its
    snapshot may bring. By default that is the publisher's own rows, and nothing when the
    publisher claims this daemon's user; a list names every owner allowed, and one naming
    another device of our own user (a machine of the same person) lets its tombstones
    delete our rows too."""
    own_user = own.split("@", 1)[0]
    if configured:
        allowed = frozenset(configured)
    elif publisher and publisher.split("@", 1)[0] != own_user:
        allowed = frozenset({publisher})
    else:
        allowed = frozenset()
    same_person = any(o.split("@", 1)[0] == own_user for o in configured)
    forgotten = forgotten or {}
    return Admission(publisher, own, allowed, allowed | ({own} if same_person else set()),
                     max_segment_bytes, max_row_bytes,
                     tuple(forgotten.get("events", ())), tuple(forgotten.get("memories", ())))


def verdict(owner: str, adm: Admission, held: bool) -> str:
    """"accept" a row of `owner`, skip it as "ours" (this daemon's own row that it already
    `held`: a peer never rewrites it), or "refuse" it (the snapshot is then refused whole)."""
    if owner in adm.allowed:
        return "accept"
    if owner == adm.own and held:
        return "ours"
    return "refuse"
