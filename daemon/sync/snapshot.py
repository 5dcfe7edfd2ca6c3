"""Snapshot generations: what one publish writes, in a flat folder at the target.

    seg-<sha>.parquet.0000 …   one UTC day of the `memories` table (every column, vectors
                               included), named by its content: a day that did not change
                               since the last snapshot is already there and is not sent
    <gen>.context.md           an agent-readable digest of recent memory and open tasks
    <gen>.manifest.json        format, host, counts, time range, embedder, the segments
                               and the SHA-256 of every file
    context.md                 the newest context, for agents that read a file
    LATEST                     the newest complete generation's name

Each manifest is a whole view of memory; only the segments new since the previous
snapshot travel. Files are put in that order, each atomically, so LATEST only ever names
a generation whose every file is in place; a transfer cut half-way leaves the previous
one current, and a retry skips what is already there. Parts are cut to fit one request.
"""

from __future__ import annotations

import json
import logging
import re
import socket
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from daemon.sync.guard import Refused, check_files
from daemon.sync.transport import Transport, sha256

log = logging.getLogger(__name__)
FORMAT = 1
PART_BYTES = 512 * 1024  # under the API's default 1 MB request limit, for HTTP peers
LATEST = "LATEST"
CONTEXT = "context.md"
GEN = re.compile(r"^(g\d{8}T\d{6}\d*Z-[0-9a-f]{8})\.")
SEG = re.compile(r"^(seg-[0-9a-f]{32})\.parquet\.\d{4}$")


@dataclass(frozen=True)
class Snapshot:
    generation: str
    manifest: dict[str, Any]
    files: dict[str, bytes]  # data parts and the context, not the manifest

    @property
    def manifest_name(self) -> str:
        return f"{self.generation}.manifest.json"

    def manifest_bytes(self) -> bytes:
        return json.dumps(self.manifest, indent=1, sort_keys=True).encode()


def build(export: dict[str, Any], host: str | None = None,
          part_bytes: int = PART_BYTES) -> Snapshot:
    """Given an engine export (exchange.export_memories), return the snapshot to publish."""
    now = datetime.now(UTC)
    host = host or socket.gethostname()
    files: dict[str, bytes] = {}
    segments = []
    for seg in export["segments"]:
        data: bytes = seg["data"]
        digest = sha256(data)
        names = []
        for i in range(0, max(len(data), 1), part_bytes):
            name = f"seg-{digest[:32]}.parquet.{i // part_bytes:04d}"
            files[name] = data[i:i + part_bytes]
            names.append(name)
        segments.append({"key": seg["key"], "rows": seg["rows"], "bytes": len(data),
                         "sha256": digest, "parts": names})
    everything = sha256("".join(s["sha256"] for s in segments).encode())
    gen = f"g{now:%Y%m%dT%H%M%S%f}Z-{everything[:8]}"
    files[f"{gen}.context.md"] = context_markdown(export, host, now)
    manifest = {
        "format": FORMAT, "generation": gen, "host": host,
        "created": now.isoformat().replace("+00:00", "Z"),
        "embedder": export["embedder"], "dims": export["dims"],
        "counts": {"memories": export["rows"], "levels": export["levels"]},
        "time_range": {"from": export["ts_min"], "to": export["ts_max"]},
        "columns": export["columns"], "segments": segments,
        "files": [{"name": n, "bytes": len(b), "sha256": sha256(b)} for n, b in files.items()],
    }
    return Snapshot(gen, manifest, files)


def context_markdown(export: dict[str, Any], host: str, now: datetime) -> bytes:
    lines = [f"# memoryd context from {host}", "",
             f"Published {now:%Y-%m-%d %H:%M} UTC: {export['rows']} memories "
             f"({', '.join(f'{n} {k}' for k, n in sorted(export['levels'].items()))}), "
             f"from {export['ts_min'] or '-'} to {export['ts_max'] or '-'}.", ""]
    tasks: list[str] = []
    for r in export["recent"]:
        for t in r.get("open_tasks") or ():
            if t and t not in tasks:
                tasks.append(t)
    if tasks:
        lines += ["## Open tasks", ""] + [f"- {t}" for t in tasks] + [""]
    for heading, rows in (
            ("## Digests", [r for r in export["recent"] if r.get("level") in ("day", "week")]),
            ("## Recent memory", [r for r in export["recent"]
                                  if r.get("level") not in ("day", "week")])):
        if not rows:
            continue
        lines += [heading, ""]
        for r in rows:
            text = " ".join(str(r.get("text") or "").split())
            lines.append(f"- **{str(r.get('ts') or '')[:16].replace('T', ' ')}** "
                         f"[{r.get('level')}] {r.get('title') or ''}: {text}")
        lines.append("")
    return ("\n".join(lines) + "\n").encode()


def publish(transport: Transport, snap: Snapshot, keep: int) -> dict[str, int]:
    """Put a snapshot's files, skipping those already there (a resumed publish), then the
    manifest, context.md and LATEST; prune generations beyond `keep`. Return counts."""
    present = set(transport.list())
    sent = skipped = 0
    for name, data in snap.files.items():
        if name in present:  # put is atomic: a present name is a complete, verified file
            skipped += 1
            continue
        transport.put(name, data)
        sent += 1
    transport.put(snap.manifest_name, snap.manifest_bytes())
    transport.put(CONTEXT, snap.files[f"{snap.generation}.context.md"])
    transport.put(LATEST, f"{snap.generation}\n".encode())
    prune(transport, keep, snap.generation)
    return {"sent": sent, "skipped": skipped}


def generations(names: list[str]) -> list[str]:
    """The generation names present, oldest first (complete or not)."""
    return sorted({m.group(1) for n in names if (m := GEN.match(n))})


def prune(transport: Transport, keep: int, current: str) -> None:
    """Delete generations beyond the newest `keep` complete ones (never `current` or a
    newer one), and the segments no kept manifest names."""
    names = transport.list()
    complete = [g for g in generations(names) if f"{g}.manifest.json" in names]
    kept = set(complete[-max(keep, 1):]) | {current}
    old = [n for n in names
           if (m := GEN.match(n)) and m.group(1) not in kept and m.group(1) < current]
    referenced: set[str] = set()
    try:
        for g in kept:
            if f"{g}.manifest.json" in names:
                referenced.update(f["name"] for f in read_manifest(transport, g)["files"])
    except (Refused, FileNotFoundError) as exc:  # cannot tell what is in use: keep all
        log.warning("not pruning segments at %s: %s", transport.url, exc)
    else:
        old += [n for n in names if SEG.match(n) and n not in referenced]
    many = getattr(transport, "delete_many", None)  # one round trip where the transport can
    if many is not None:
        many(old)
    else:
        for n in old:
            transport.delete(n)


def read_latest(transport: Transport) -> str | None:
    """The generation LATEST names, or None when the target holds no snapshot yet."""
    try:
        gen = transport.get(LATEST).decode("utf-8", "replace").strip()
    except FileNotFoundError:
        return None
    if not GEN.match(gen + "."):
        raise Refused(f"LATEST at {transport.url} is corrupt ({gen[:40]!r}); the generations "
                      "themselves are intact: push again, or pull with --force")
    return gen


def read_manifest(transport: Transport, gen: str) -> dict[str, Any]:
    """The manifest of `gen`; raise Refused if it is missing or unreadable."""
    try:
        raw = transport.get(f"{gen}.manifest.json")
    except FileNotFoundError:
        raise Refused(f"the manifest of {gen} is missing at {transport.url}") from None
    try:
        manifest = json.loads(raw)
        if manifest["format"] != FORMAT:
            raise Refused(f"snapshot {gen} has format {manifest['format']}, this memoryd "
                          f"reads {FORMAT}; upgrade memoryd on this machine")
        int(manifest["counts"]["memories"])
        for f in manifest["files"]:
            str(f["name"]), str(f["sha256"])
        for seg in manifest["segments"]:
            str(seg["sha256"]), [str(p) for p in seg["parts"]]
        str(manifest["embedder"])
        return dict(manifest)
    except Refused:
        raise
    except (ValueError, KeyError, TypeError) as exc:
        raise Refused(f"the manifest of {gen} at {transport.url} is corrupt ({type(exc).__name__}:"
                      f" {exc}); nothing was merged") from None


def fetch_segments(transport: Transport, manifest: dict[str, Any],
                   have: Collection[str] = ()) -> dict[str, bytes]:
    """Fetch and check the segments of a snapshot, except those whose SHA-256 is in `have`;
    return {sha256: parquet bytes}. Raise Refused if a file is missing or damaged."""
    want = [s for s in manifest["segments"] if s["sha256"] not in have]
    names = {p for s in want for p in s["parts"]}
    parts: dict[str, bytes] = {}
    for name in sorted(names):
        try:
            parts[name] = transport.get(name)
        except FileNotFoundError:
            raise Refused(f"snapshot {manifest['generation']}: {name} is missing at "
                          f"{transport.url}") from None
    check_files({**manifest, "files": [f for f in manifest["files"] if f["name"] in names]},
                {n: sha256(b) for n, b in parts.items()})
    out = {}
    for s in want:
        data = b"".join(parts[p] for p in s["parts"])
        if sha256(data) != s["sha256"]:
            raise Refused(f"snapshot {manifest['generation']}: segment {s['key']} does not "
                          "match its checksum")
        out[s["sha256"]] = data
    return out
