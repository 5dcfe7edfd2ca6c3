"""The guard: what may be published to a target or accepted from one.

A snapshot is refused when it is empty, when it has fewer than (1 - max_shrink) times the
memories of the previous good one, or when its files do not match their checksums.
`--force` publishes or accepts it anyway. Refusals are recorded (state.py) and shown.
"""

from __future__ import annotations

from typing import Any

from daemon.errors import PermanentError


class Refused(PermanentError):
    """The guard refused a snapshot; the message says why and how to override."""


def check(manifest: dict[str, Any], previous: dict[str, Any] | None, max_shrink: float,
          direction: str) -> None:
    """Given a snapshot's manifest and the previous good one (or None), raise Refused if
    the snapshot must not replace it. `direction` is "publish" or "accept"."""
    count = int(manifest["counts"]["memories"])
    gen = manifest.get("generation", "?")
    if count <= 0:
        raise Refused(f"refusing to {direction} snapshot {gen}: it is empty (0 memories); "
                      "was the store emptied or moved? Use --force if this is intended")
    if previous is None:
        return
    before = int(previous.get("counts", {}).get("memories", 0))
    if before > 0 and count < before * (1.0 - max_shrink):
        share = 1.0 - count / before
        raise Refused(
            f"refusing to {direction} snapshot {gen}: {count} memories where the previous "
            f"good snapshot {previous.get('generation', '?')} had {before} (shrinks by "
            f"{share:.0%}, the limit is {max_shrink:.0%}); use --force if this is intended")


def check_files(manifest: dict[str, Any], checked: dict[str, str]) -> None:
    """Given a manifest and the SHA-256 of each file as read, raise Refused on a mismatch."""
    for f in manifest["files"]:
        got = checked.get(f["name"])
        if got != f["sha256"]:
            raise Refused(f"snapshot {manifest.get('generation', '?')}: {f['name']} does not "
                          f"match its checksum in the manifest (corrupt or incomplete copy); "
                          "the previous generation is kept")
