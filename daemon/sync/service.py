"""Push, pull and status: the sync service the CLI, the API and the monitor share.

A push exports the store, builds a snapshot, asks the guard, keeps a local copy (the
local generations, and what a resumed push sends), then publishes it. A pull reads the
target's newest generation, asks the guard, checks every checksum and merges by id.
Each sync is recorded as pending before it starts and cleared when it ends, so one cut
by an outage or a restart resumes (monitor.py) with the same generation.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

from daemon.config import Config, SyncTarget
from daemon.errors import ConfigError, PermanentError
from daemon.sync import snapshot as snap_mod
from daemon.sync.dir import DirTransport
from daemon.sync.guard import Refused, check, check_files
from daemon.sync.snapshot import (
    Snapshot,
    build,
    fetch_segments,
    publish,
    read_latest,
    read_manifest,
)
from daemon.sync.state import SyncState
from daemon.sync.transport import Transport, TransportError, open_transport, sha256

log = logging.getLogger(__name__)
SPOOL = "inbound"  # the pseudo-target for what peers push to this daemon over HTTP


class Exchanger(Protocol):
    def export_memories(self, context_rows: int = 30) -> dict[str, Any]: ...

    def import_memories(self, segments: list[bytes]) -> dict[str, Any]: ...


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class SyncService:
    def __init__(self, cfg: Config, engine: Exchanger | None,
                 state: SyncState | None = None, part_bytes: int = snap_mod.PART_BYTES) -> None:
        self.cfg = cfg
        self.engine = engine
        self.state = state or SyncState(cfg.data_path / "sync.sqlite3")
        self.part_bytes = part_bytes
        self.targets: dict[str, SyncTarget] = {}
        for t in cfg.sync.targets:
            if not t.name or not t.url:
                raise ConfigError("every [[sync.targets]] needs a name and a url")
            if t.name in self.targets or t.name == SPOOL:
                raise ConfigError(f"sync target name {t.name!r} is used twice or reserved")
            if not 0.0 <= t.max_shrink <= 1.0:
                raise ConfigError(f"sync target {t.name!r}: max_shrink must be between 0 and 1")
            self.targets[t.name] = t
        self.host = socket.gethostname()
        self.monitor: Any = None  # set by the daemon; adds next-probe times to status
        self._locks: dict[str, threading.Lock] = {}
        self._transports: dict[str, Transport] = {}

    # -- plumbing ----------------------------------------------------------------------

    def pick(self, name: str | None) -> list[SyncTarget]:
        if name is None:
            if not self.targets:
                raise ConfigError("no sync targets: add a [[sync.targets]] table with name "
                                  "and url to the config")
            return list(self.targets.values())
        if name not in self.targets:
            raise ConfigError(f"no sync target named {name!r}; configured: "
                              f"{', '.join(self.targets) or 'none'}")
        return [self.targets[name]]

    def transport(self, t: SyncTarget) -> Transport:
        if t.name not in self._transports:
            self._transports[t.name] = open_transport(t)
        return self._transports[t.name]

    def _lock(self, name: str) -> threading.Lock:
        return self._locks.setdefault(name, threading.Lock())

    def local(self, t: SyncTarget, op: str) -> DirTransport:
        """The local generations of what was pushed to / pulled from target `t`."""
        path = self.cfg.data_path / "sync" / op / t.name
        path.mkdir(parents=True, exist_ok=True)
        return DirTransport(path=path)

    def _engine(self) -> Exchanger:
        if self.engine is None:
            raise PermanentError("this sync service has no store attached")
        return self.engine

    # -- push --------------------------------------------------------------------------

    def push(self, name: str | None = None, force: bool = False) -> list[dict[str, Any]]:
        """Push to one target or all; return one outcome per target, never raising for a
        single target's failure (its outcome says `refused` or `error`)."""
        return [self._outcome(t, "push", lambda t=t: self.push_target(t, force))
                for t in self.pick(name)]

    def pull(self, name: str | None = None, force: bool = False) -> list[dict[str, Any]]:
        return [self._outcome(t, "pull", lambda t=t: self.pull_target(t, force))
                for t in self.pick(name)]

    @staticmethod
    def _outcome(t: SyncTarget, op: str, fn: Any) -> dict[str, Any]:
        try:
            return {"target": t.name, "op": op, "ok": True, **fn()}
        except Refused as exc:
            return {"target": t.name, "op": op, "ok": False, "refused": str(exc)}
        except TransportError as exc:
            return {"target": t.name, "op": op, "ok": False, "error": str(exc), "pending": True}
        except PermanentError as exc:
            return {"target": t.name, "op": op, "ok": False, "error": str(exc), "pending": False}

    def push_target(self, t: SyncTarget, force: bool = False) -> dict[str, Any]:
        """Publish a snapshot to `t`. Raise Refused if the guard says no (nothing is sent),
        TransportError if the target fails mid-way (the push stays pending, resumable)."""
        with self._lock(t.name):
            self.state.add_pending(t.name, "push", force)
            pend = next(p for p in self.state.pending(t.name) if p["op"] == "push")
            force = force or pend["force"]
            transport = self.transport(t)
            try:
                transport.probe()  # before exporting anything: a clear reason if it is down
                snap = self._load_local(t, pend["generation"]) if pend["generation"] else None
                resumed = snap is not None
                if snap is None:
                    snap = build(self._engine().export_memories(self.cfg.sync.context_memories),
                                 self.host, self.part_bytes)
                    if not force:
                        self._guard(t, "push", snap.manifest, self._previous_push(t, transport))
                    publish(self.local(t, "push"), snap, t.keep)
                    self.state.set_pending_generation(t.name, "push", snap.generation)
                counts = publish(transport, snap, t.keep)
                after = getattr(transport, "after_push", None)
                peer = after(force) if after is not None else None
            except Refused as exc:
                self.state.refuse(t.name, "push", str(exc))
                log.warning("sync %s: %s", t.name, exc)
                self.state.done(t.name, "push")
                raise
            except (TransportError, OSError) as exc:
                self._failed(t, "push", exc)
                raise TransportError(f"push to {t.name} failed: {exc}; it stays pending and "
                                     "resumes when the target answers") from exc
            except PermanentError as exc:
                self.state.done(t.name, "push")
                self.state.record_error(t.name, str(exc))
                raise
            summary = {"generation": snap.generation,
                       "memories": snap.manifest["counts"]["memories"], "at": _now(),
                       "sent": counts["sent"], "skipped": counts["skipped"],
                       "resumed": resumed, "forced": force}
            if peer is not None:
                summary["peer"] = peer
            self.state.record_good(t.name, "push", summary)
            self.state.done(t.name, "push")
            log.info("sync %s: published %s (%d memories, %d files sent, %d already there)",
                     t.name, snap.generation, summary["memories"], counts["sent"],
                     counts["skipped"])
            return summary

    def _failed(self, t: SyncTarget, op: str, exc: Exception) -> None:
        self.state.pending_failed(t.name, op, str(exc))
        self.state.record_error(t.name, str(exc))
        log.warning("sync %s: %s failed: %s (pending; retried when the target answers)",
                    t.name, op, exc)

    def _guard(self, t: SyncTarget, op: str, manifest: dict[str, Any],
               previous: dict[str, Any] | None) -> None:
        check(manifest, previous, t.max_shrink, "publish" if op == "push" else "accept")

    def _previous_push(self, t: SyncTarget, transport: Transport) -> dict[str, Any] | None:
        """The snapshot a new one would replace: the target's newest readable generation,
        else the last one this machine published there."""
        for where in (transport, self.local(t, "push")):
            try:
                gen = read_latest(where)
                if gen is not None:
                    return read_manifest(where, gen)
            except Refused as exc:  # a corrupt remote manifest: compare with our own copy
                log.warning("sync %s: %s", t.name, exc)
        return None

    def _load_local(self, t: SyncTarget, gen: str) -> Snapshot | None:
        """The snapshot a cut push was sending, from the local copy; None if it is gone."""
        local = self.local(t, "push")
        try:
            manifest = read_manifest(local, gen)
            files = {f["name"]: local.get(f["name"]) for f in manifest["files"]}
            check_files(manifest, {n: sha256(b) for n, b in files.items()})
            return Snapshot(gen, manifest, files)
        except (Refused, FileNotFoundError, TransportError) as exc:
            log.info("sync %s: cannot resume %s (%s); exporting anew", t.name, gen, exc)
            return None

    # -- pull --------------------------------------------------------------------------

    def pull_target(self, t: SyncTarget, force: bool = False) -> dict[str, Any]:
        """Merge the newest snapshot at `t` into the store by id. Raise Refused if the guard
        says no (nothing is merged), TransportError if the target fails (pending)."""
        with self._lock(t.name):
            self.state.add_pending(t.name, "pull", force)
            transport = self.transport(t)
            try:
                transport.probe()
                before = getattr(transport, "before_pull", None)
                if before is not None:
                    before()
                gen = read_latest(transport)
                if gen is None:
                    self.state.done(t.name, "pull")
                    return {"generation": None, "merged": 0,
                            "note": f"{t.name} holds no snapshot yet"}
                manifest = read_manifest(transport, gen)
                if manifest["embedder"] != self.cfg.models.embedder:
                    raise Refused(f"snapshot {gen} was embedded with {manifest['embedder']!r}, "
                                  f"this store with {self.cfg.models.embedder!r}; set the same "
                                  "[models] embedder on both machines")
                last = self.state.target(t.name)["last_pull"]
                previous = ({"generation": last["generation"],
                             "counts": {"memories": last["memories"]}} if last else None)
                if not force:
                    self._guard(t, "pull", manifest, previous)
                local = self.local(t, "pull")
                have = set() if force else (self._known_segments(local)
                                            | self._known_segments(self.local(t, "push")))
                segments = fetch_segments(transport, manifest, have)
                merged = self._engine().import_memories(list(segments.values()))
                self._keep_pulled(local, manifest, segments, t.keep)
            except Refused as exc:
                self.state.refuse(t.name, "pull", str(exc))
                log.warning("sync %s: %s", t.name, exc)
                self.state.done(t.name, "pull")
                raise
            except (TransportError, OSError) as exc:
                self._failed(t, "pull", exc)
                raise TransportError(f"pull from {t.name} failed: {exc}; it stays pending and "
                                     "resumes when the target answers") from exc
            except PermanentError as exc:
                self.state.done(t.name, "pull")
                self.state.record_error(t.name, str(exc))
                raise
            summary = {"generation": gen, "memories": manifest["counts"]["memories"],
                       "host": manifest.get("host"), "at": _now(), "forced": force,
                       "segments": len(manifest["segments"]), "fetched": len(segments),
                       **merged}
            self.state.record_good(t.name, "pull", summary)
            self.state.done(t.name, "pull")
            log.info("sync %s: merged %s from %s (%s new of %s)", t.name, gen,
                     manifest.get("host"), merged.get("inserted"), merged.get("received"))
            return summary

    @staticmethod
    def _known_segments(local: DirTransport) -> set[str]:
        """Segments of the newest snapshot kept in `local` (what we last merged from the
        target, or last published there from our own store): a pull fetches only the
        others. `--force` fetches and merges everything again."""
        names = set(local.list())
        try:
            gen = read_latest(local)
            if gen is None:
                return set()
            segs = read_manifest(local, gen)["segments"]
        except (Refused, FileNotFoundError):
            return set()
        return {s["sha256"] for s in segs if all(p in names for p in s["parts"])}

    def _keep_pulled(self, local: DirTransport, manifest: dict[str, Any],
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
        local.put(snap_mod.LATEST, f"{snap.generation}\n".encode())
        snap_mod.prune(local, keep, snap.generation)

    # -- the spool: this daemon as an HTTP peer ------------------------------------------

    def spool_target(self) -> SyncTarget:
        path: Path = self.cfg.data_path / "sync" / "spool"
        path.mkdir(parents=True, exist_ok=True)
        return replace(SyncTarget(), name=SPOOL, url=f"dir://{path}")

    def spool(self) -> DirTransport:
        return DirTransport(path=Path(self.spool_target().url[len("dir://"):]))

    def export_to_spool(self, force: bool = False) -> dict[str, Any]:
        """Publish this daemon's own memory into its spool, for a peer about to pull."""
        return self.push_target(self.spool_target(), force)

    def import_from_spool(self, force: bool = False) -> dict[str, Any]:
        """Merge what a peer just pushed into the spool (the guard checks it here too)."""
        return self.pull_target(self.spool_target(), force)

    # -- status ------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        counts = self.state.refusal_counts()
        out = []
        for t in self.targets.values():
            s = self.state.target(t.name)
            row = {
                "name": t.name, "url": t.url, "state": s["state"], "reason": s["reason"],
                "since": _iso(s["since"]), "last_probe": _iso(s["last_probe"]),
                "failures": s["failures"],
                "last_good": {"push": s["last_push"], "pull": s["last_pull"]},
                "last_refusal": self.state.last_refusal(t.name),
                "refusals": counts.get(t.name, 0), "last_error": s["last_error"],
                "pending": self.state.pending(t.name),
            }
            if self.monitor is not None:
                row["next_probe_in"] = self.monitor.next_probe_in(t.name)
            out.append(row)
        return {"targets": out, "refusals": sum(counts.values()),
                "inbound": {"last_good": self.state.target(SPOOL)["last_pull"],
                            "last_refusal": self.state.last_refusal(SPOOL),
                            "refusals": counts.get(SPOOL, 0)}}

    def close(self) -> None:
        self.state.close()


def _iso(ts: float | None) -> str | None:
    return None if ts is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))
