"""Snapshot generations: what one publish writes, in a flat folder at the target.

Several hosts may publish to one folder: each names its files with its tag (8 hex digits
of the SHA-256 of its identity, user@device), keeps and prunes only its own, and a pull
reads every other host's newest generation.

    seg-<sha>-<tag>.parquet.0000 …  one UTC day of the `memories` table (every column,
                               vectors included), named by its content: a day that did
                               not change since the last snapshot is not sent again
    tomb-<sha>-<tag>.json.0000 …    the ids the publisher forgot (ids only, no content)
    <gen>.context.md           an agent-readable digest of recent memory and open tasks
    <gen>.manifest.json        format, publisher, counts, time range, embedder, the
                               segments, the tombstones and the SHA-256 of every file
    LATEST.<tag>               the host's newest complete generation's name
    LATEST, context.md         the newest of any host (for agents and older memoryd)

Each manifest is a whole view of the publisher's memory; only the segments new since its
previous snapshot travel. Files are put in that order, each atomically, so LATEST.<tag>
only ever names a generation whose every file is in place; a transfer cut half-way
leaves the previous one current, and a retry skips what is already there. Parts are cut
to fit one request. Generation names are `g<UTC time>Z-<content hash>-<tag>`; names
without a tag come from memoryd before several publishers (read, never pruned).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import socket
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from daemon.sync.guard import Refused, check_files
from daemon.sync.transport import Transport, check_name, sha256

log = logging.getLogger(__name__)
FORMAT = 1
PART_BYTES = 512 * 1024  # under the API's default 1 MB request limit, for HTTP peers
LATEST = "LATEST"
CONTEXT = "context.md"
GEN = re.compile(r"^(g\d{8}T\d{6}\d*Z-[0-9a-f]{8}(?:-([0-9a-f]{8}))?)\.")
DATA = re.compile(r"^(?:seg|tomb)-[0-9a-f]{32}(?:-([0-9a-f]{8}))?\.(?:parquet|json)\.\d{4}$")
HEAD = re.compile(r"^LATEST\.([0-9a-f]{8})$")


def tag_of(publisher: str) -> str:
    """The short name a publisher's files carry at a target."""
    return hashlib.sha256(publisher.encode()).hexdigest()[:8]


def gen_tag(gen: str) -> str | None:
    """The publisher tag in a generation's name (None: an untagged, older one)."""
    m = GEN.match(gen + ".")
    return m.group(2) if m else None


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


def _parts(files: dict[str, bytes], stem: str, data: bytes, part_bytes: int) -> list[str]:
    names = []
    for i in range(0, max(len(data), 1), part_bytes):
        name = f"{stem}.{i // part_bytes:04d}"
        files[name] = data[i:i + part_bytes]
        names.append(name)
    return names


def build(export: dict[str, Any], publisher: str, host: str | None = None,
          part_bytes: int = PART_BYTES) -> Snapshot:
    """Given an engine export (exchange.export_memories) and the publisher's identity
    (user@device), return the snapshot to publish."""
    now = datetime.now(UTC)
    host = host or socket.gethostname()
    tag = tag_of(publisher)
    files: dict[str, bytes] = {}
    segments = []
    for seg in export["segments"]:
        data: bytes = seg["data"]
        digest = sha256(data)
        names = _parts(files, f"seg-{digest[:32]}-{tag}.parquet", data, part_bytes)
        segments.append({"key": seg["key"], "rows": seg["rows"], "bytes": len(data),
                         "sha256": digest, "parts": names})
    forgotten = export.get("forgotten") or {"events": [], "memories": []}
    tomb = json.dumps({"events": sorted(forgotten["events"]),
                       "memories": sorted(forgotten["memories"])}).encode()
    tomb_sha = sha256(tomb)
    tombstones = {"events": len(forgotten["events"]), "memories": len(forgotten["memories"]),
                  "sha256": tomb_sha, "bytes": len(tomb),
                  "parts": _parts(files, f"tomb-{tomb_sha[:32]}-{tag}.json", tomb, part_bytes)}
    everything = sha256("".join([s["sha256"] for s in segments] + [tomb_sha]).encode())
    gen = f"g{now:%Y%m%dT%H%M%S%f}Z-{everything[:8]}-{tag}"
    files[f"{gen}.context.md"] = context_markdown(export, host, now)
    manifest = {
        "format": FORMAT, "generation": gen, "host": host, "publisher": publisher,
        "created": now.isoformat().replace("+00:00", "Z"),
        "embedder": export["embedder"], "dims": export["dims"],
        "counts": {"memories": export["rows"], "levels": export["levels"],
                   "forgotten": len(forgotten["memories"])},
        "time_range": {"from": export["ts_min"], "to": export["ts_max"]},
        "columns": export["columns"], "segments": segments, "tombstones": tombstones,
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
    manifest, context.md and LATEST; prune this publisher's generations beyond `keep`.
    Return counts."""
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
    tag = gen_tag(snap.generation)
    if tag is not None:
        transport.put(f"{LATEST}.{tag}", f"{snap.generation}\n".encode())
    transport.put(LATEST, f"{snap.generation}\n".encode())
    prune(transport, keep, snap.generation)
    return {"sent": sent, "skipped": skipped}


def generations(names: list[str], tag: str | None = None) -> list[str]:
    """The generation names present (of publisher `tag`, or all), oldest first."""
    return sorted({m.group(1) for n in names
                   if (m := GEN.match(n)) and (tag is None or m.group(2) == tag)})


def prune(transport: Transport, keep: int, current: str) -> None:
    """Delete the generations of `current`'s publisher beyond its newest `keep` complete
    ones (never `current` or a newer one), and that publisher's files no kept manifest
    names. Other publishers' files are theirs to prune."""
    tag = gen_tag(current)
    if tag is None:
        return
    names = transport.list()
    complete = [g for g in generations(names, tag) if f"{g}.manifest.json" in names]
    kept = set(complete[-max(keep, 1):]) | {current}
    old = [n for n in names if (m := GEN.match(n)) and m.group(2) == tag
           and m.group(1) not in kept and m.group(1) < current]
    referenced: set[str] = set()
    try:
        for g in kept:
            if f"{g}.manifest.json" in names:
                referenced.update(f["name"] for f in read_manifest(transport, g)["files"])
    except (Refused, FileNotFoundError) as exc:  # cannot tell what is in use: keep all
        log.warning("not pruning data files at %s: %s", transport.url, exc)
    else:
        old += [n for n in names
                if (m := DATA.match(n)) and m.group(1) == tag and n not in referenced]
    many = getattr(transport, "delete_many", None)  # one round trip where the transport can
    if many is not None:
        many(old)
    else:
        for n in old:
            transport.delete(n)


def read_latest(transport: Transport, tag: str | None = None) -> str | None:
    """The generation LATEST.<tag> (or the plain LATEST) names, or None when there is
    none; raise Refused if it is corrupt."""
    name = f"{LATEST}.{tag}" if tag else LATEST
    try:
        gen = transport.get(name).decode("utf-8", "replace").strip()
    except FileNotFoundError:
        return None
    if not GEN.match(gen + ".") or (tag and gen_tag(gen) != tag):
        raise Refused(f"{name} at {transport.url} is corrupt ({gen[:40]!r}); the generations "
                      "themselves are intact: push again, or pull with --force")
    return gen


def heads(transport: Transport, names: list[str] | None = None) -> dict[str, str | Refused]:
    """Every publisher's newest generation at the target: {tag: generation}, or the
    Refused saying why its LATEST.<tag> cannot be read (one host's damage does not stop
    the others' pulls). A target written only by older memoryd gives {"": LATEST}."""
    names = transport.list() if names is None else names
    tags = [m.group(1) for n in names if (m := HEAD.match(n))]
    if not tags:
        tags = [""] if LATEST in names else []
    out: dict[str, str | Refused] = {}
    for tag in tags:
        try:
            gen = read_latest(transport, tag or None)
        except Refused as exc:
            out[tag] = exc
            continue
        if gen is not None:
            out[tag] = gen
    return out


def read_manifest(transport: Transport, gen: str) -> dict[str, Any]:
    """The manifest of `gen`; raise Refused if it is missing, unreadable or names files
    that are not plain names."""
    try:
        raw = transport.get(f"{gen}.manifest.json")
    except FileNotFoundError:
        raise Refused(f"the manifest of {gen} is missing at {transport.url}") from None
    try:
        manifest = json.loads(raw)
        if manifest["format"] != FORMAT:
            raise Refused(f"snapshot {gen} has format {manifest['format']}, this memoryd "
                          f"reads {FORMAT}; upgrade memoryd on this machine")
        if manifest["generation"] != gen:
            raise ValueError(f"it says it is {manifest['generation']!r}")
        int(manifest["counts"]["memories"]), int(manifest["counts"].get("forgotten", 0))
        for f in manifest["files"]:
            check_name(str(f["name"])), str(f["sha256"]), int(f["bytes"])
        for seg in manifest["segments"]:
            str(seg["sha256"]), int(seg["bytes"]), int(seg["rows"])
            [check_name(str(p)) for p in seg["parts"]]
        tomb = manifest.get("tombstones")
        if tomb is not None:
            str(tomb["sha256"]), [check_name(str(p)) for p in tomb["parts"]]
        str(manifest["embedder"]), str(manifest.get("publisher", ""))
        return dict(manifest)
    except Refused:
        raise
    except (ValueError, KeyError, TypeError) as exc:
        raise Refused(f"the manifest of {gen} at {transport.url} is corrupt ({type(exc).__name__}:"
                      f" {exc}); nothing was merged") from None


def _fetch(transport: Transport, manifest: dict[str, Any], names: set[str]) -> dict[str, bytes]:
    """Get `names` and check each against the manifest's size and SHA-256."""
    declared = {f["name"]: f for f in manifest["files"]}
    parts: dict[str, bytes] = {}
    for name in sorted(names):
        if name not in declared:
            raise Refused(f"snapshot {manifest['generation']}: {name} is not in its manifest's "
                          "file list; nothing was merged")
        try:
            parts[name] = transport.get(name)
        except FileNotFoundError:
            raise Refused(f"snapshot {manifest['generation']}: {name} is missing at "
                          f"{transport.url}") from None
        if len(parts[name]) != int(declared[name]["bytes"]):
            raise Refused(f"snapshot {manifest['generation']}: {name} has {len(parts[name])} "
                          f"bytes, its manifest says {declared[name]['bytes']}; nothing was merged")
    check_files({**manifest, "files": [declared[n] for n in names]},
                {n: sha256(b) for n, b in parts.items()})
    return parts


def fetch_segments(transport: Transport, manifest: dict[str, Any],
                   have: Collection[str] = (), max_bytes: int = 0) -> dict[str, bytes]:
    """Fetch and check the segments of a snapshot, except those whose SHA-256 is in `have`;
    return {sha256: parquet bytes}. Raise Refused if a file is missing or damaged, or a
    segment is larger than `max_bytes` already compressed (0: no limit)."""
    want = [s for s in manifest["segments"] if s["sha256"] not in have]
    for s in want:
        if max_bytes and int(s["bytes"]) > max_bytes:
            raise Refused(f"snapshot {manifest['generation']}: segment {s['key']} has "
                          f"{s['bytes']} bytes, more than [sync] max_segment_bytes "
                          f"({max_bytes}); nothing was merged")
    parts = _fetch(transport, manifest, {p for s in want for p in s["parts"]})
    out = {}
    for s in want:
        data = b"".join(parts[p] for p in s["parts"])
        if sha256(data) != s["sha256"]:
            raise Refused(f"snapshot {manifest['generation']}: segment {s['key']} does not "
                          "match its checksum")
        out[s["sha256"]] = data
    return out


def fetch_tombstones(transport: Transport, manifest: dict[str, Any],
                     max_bytes: int = 0) -> dict[str, list[str]]:
    """The ids the publisher forgot: {"events": [...], "memories": [...]} (empty for a
    snapshot from before tombstones travelled). Raise Refused if they are damaged."""
    tomb = manifest.get("tombstones")
    if not tomb:
        return {"events": [], "memories": []}
    if max_bytes and int(tomb.get("bytes", 0)) > max_bytes:
        raise Refused(f"snapshot {manifest['generation']}: its tombstones are larger than "
                      f"[sync] max_segment_bytes ({max_bytes}); nothing was merged")
    parts = _fetch(transport, manifest, set(tomb["parts"]))
    data = b"".join(parts[p] for p in tomb["parts"])
    if sha256(data) != tomb["sha256"]:
        raise Refused(f"snapshot {manifest['generation']}: its tombstones do not match "
                      "their checksum")
    try:
        ids = json.loads(data)
        return {k: [str(i) for i in ids[k]] for k in ("events", "memories")}
    except (ValueError, KeyError, TypeError) as exc:
        raise Refused(f"snapshot {manifest['generation']}: its tombstones are not readable "
                      f"({exc}); nothing was merged") from None
