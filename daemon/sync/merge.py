"""One publisher's generation, checked and merged (pull), and what a sync keeps on this
machine: the pulled generations, the tombstones it applied.

A pull asks the guard, fetches what it does not hold yet (checking sizes and
checksums), hands the worker an Admission (owners, caps, tombstones) that checks the
snapshot whole before a row is merged, keeps the tombstones applied in the journal, and
keeps the generation locally (only the newest one when it forgets something, so no
older local copy holds what is now forgotten).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from daemon.config import Config, SyncTarget
from daemon.sync import snapshot as snap_mod
from daemon.sync.dir import DirTransport
from daemon.sync.guard import Refused, admission
from daemon.sync.snapshot import (
    Snapshot,
    fetch_segments,
    fetch_tombstones,
    read_latest,
    read_manifest,
)
from daemon.sync.transport import Transport

log = logging.getLogger(__name__)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def pull_one(svc: Any, t: SyncTarget, transport: Transport, gen: str, force: bool,
              last: dict[str, Any] | None) -> dict[str, Any]:
    """Check and merge one publisher's generation `gen`; return its summary."""
    manifest = read_manifest(transport, gen)
    if manifest["embedder"] != svc.cfg.models.embedder:
        raise Refused(f"snapshot {gen} was embedded with {manifest['embedder']!r}, "
                      f"this store with {svc.cfg.models.embedder!r}; set the same "
                      "[models] embedder on both machines")
    previous = ({"generation": last["generation"],
                 "tombstones": {"sha256": last.get("tombstones")},
                 "counts": {"memories": last["memories"],
                            "forgotten": last.get("forgotten", 0)}} if last else None)
    if not force:
        svc._guard(t, "pull", manifest, previous)
    caps = svc.cfg.sync
    local = svc.local(t, "pull")
    tag = snap_mod.gen_tag(gen)
    have = set() if force else (known_segments(local, tag)
                                | known_segments(svc.local(t, "push"), svc.tag))
    segments = fetch_segments(transport, manifest, have, caps.max_segment_bytes)
    # tombstones already applied at the last pull are in our journal by now
    tombs = (fetch_tombstones(transport, manifest, caps.max_segment_bytes)
             if force or previous is None or forgets(manifest, previous) else None)
    adm = admission(t.owners, str(manifest.get("publisher") or ""), svc.publisher,
                    caps.max_segment_bytes, caps.max_row_bytes, tombs)
    merged = svc._engine().import_memories(list(segments.values()), adm)
    kept = merged.pop("tombstones", None) or {}
    keep_tombstones(svc.cfg, svc.journal, kept)
    keep_pulled(local, manifest, segments, 1 if forgets(manifest, previous) else t.keep)
    log.info("sync %s: merged %s from %s (%s new of %s, %s forgotten there)", t.name, gen,
             manifest.get("publisher") or manifest.get("host"), merged.get("inserted"),
             merged.get("received"), merged.get("forgot"))
    return {"generation": gen, "memories": manifest["counts"]["memories"],
            "forgotten": int(manifest["counts"].get("forgotten", 0)),
            "tombstones": (manifest.get("tombstones") or {}).get("sha256"),
            "host": manifest.get("host"), "publisher": manifest.get("publisher"),
            "at": _now(), "forced": force, "segments": len(manifest["segments"]),
            "fetched": len(segments), **merged}


def keep_tombstones(cfg: Config, own: Any, kept: dict[str, list[str]]) -> None:
    """Keep a peer's applied tombstones in the journal: those rows never come back,
    and our own snapshots carry them on to the next peer."""
    events, memories = kept.get("events") or [], kept.get("memories") or []
    if not (events or memories):
        return
    journal = own
    if journal is None:
        from daemon.intake.journal import Journal
        from daemon.owners import journal_owner

        journal = Journal(cfg.data_path / "journal.sqlite3", owner=journal_owner(cfg))
    try:
        journal.forget(events, memory_ids=memories)
    finally:
        if journal is not own:
            journal.close()


def known_segments(local: DirTransport, tag: str | None) -> set[str]:
    """Segments of the newest snapshot kept in `local` (what we last merged from the
    target, or last published there from our own store): a pull fetches only the
    others. `--force` fetches and merges everything again."""
    names = set(local.list())
    try:
        gen = read_latest(local, tag)
        if gen is None:
            return set()
        segs = read_manifest(local, gen)["segments"]
    except (Refused, FileNotFoundError):
        return set()
    return {s["sha256"] for s in segs if all(p in names for p in s["parts"])}


def keep_pulled(local: DirTransport, manifest: dict[str, Any],
                 segments: dict[str, bytes], keep: int) -> None:
    """Keep an accepted snapshot locally (the last `keep` generations)."""
    sizes = {f["name"]: f["bytes"] for f in manifest["files"]}
    for seg in manifest["segments"]:
        data = segments.get(seg["sha256"])
        if data is None:
            continue  # already here from an earlier pull
        offset = 0
        for part in seg["parts"]:
            local.put(part, data[offset:offset + sizes[part]])
            offset += sizes[part]
    snap = Snapshot(manifest["generation"], manifest, {})
    local.put(snap.manifest_name, snap.manifest_bytes())
    tag = snap_mod.gen_tag(snap.generation)
    local.put(f"{snap_mod.LATEST}.{tag}" if tag else snap_mod.LATEST,
              f"{snap.generation}\n".encode())
    snap_mod.prune(local, keep, snap.generation)


def pull_summary(results: list[dict[str, Any]], hosts: dict[str, Any],
                  force: bool) -> dict[str, Any]:
    """One pull's outcome: the newest merged generation's fields, the sums over every
    publisher merged, and each publisher's last good pull (the guard's `previous`)."""
    newest = max(results, key=lambda r: r["generation"]) if results else {}
    out = {**newest, "at": _now(), "forced": force, "hosts": hosts,
           "publishers": [r.get("publisher") for r in results]}
    for key in ("received", "inserted", "fetched", "segments", "forgot", "ours"):
        out[key] = sum(int(r.get(key) or 0) for r in results)
    if results:
        out["total"] = results[-1].get("total")
        out["memories"] = sum(int(r.get("memories") or 0) for r in results)
    return out


def forgets(manifest: dict[str, Any], previous: dict[str, Any] | None) -> bool:
    """True when `manifest` carries tombstones `previous` (the same publisher's) did not:
    its older generations still hold rows that are now forgotten."""
    tomb = manifest.get("tombstones") or {}
    if not (tomb.get("events") or tomb.get("memories")) or previous is None:
        return False
    return bool((previous.get("tombstones") or {}).get("sha256") != tomb.get("sha256"))
