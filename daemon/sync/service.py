"""Push, pull and status: the sync service the CLI, the API and the monitor share.

A push exports the store, builds a snapshot, asks the guard, keeps a local copy (the
local generations, and what a resumed push sends), then publishes it under this daemon's
own tag; a push carrying new tombstones drops this publisher's older generations (they
hold what was forgotten). A pull reads every other publisher's newest generation at the
target and, for each, asks the guard, checks every checksum, hands the worker an
Admission (owners, caps, tombstones) that checks the snapshot whole, and only then merges
by id; the tombstones it applied are kept in the journal. Each sync is recorded as
pending before it starts and cleared when it ends, so one cut by an outage or a restart
resumes (monitor.py) with the same generation. Files a crashed put left aside are swept
at the start of each sync.
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
from daemon.owners import check_name, identity
from daemon.sync import snapshot as snap_mod
from daemon.sync.dir import DirTransport
from daemon.sync.guard import Refused, check, check_files
from daemon.sync.merge import forgets, pull_one, pull_summary
from daemon.sync.snapshot import (
    Snapshot,
    build,
    heads,
    publish,
    read_latest,
    read_manifest,
    tag_of,
)
from daemon.sync.state import SyncState
from daemon.sync.transport import (
    Transport,
    TransportError,
    masked_url,
    open_transport,
    sha256,
)

log = logging.getLogger(__name__)
SPOOL = "inbound"  # the pseudo-target for what peers push to this daemon over HTTP


class Exchanger(Protocol):
    def export_memories(self, context_rows: int = 30) -> dict[str, Any]: ...

    def import_memories(self, segments: list[bytes], adm: Any = None) -> dict[str, Any]: ...


def _check_owners(t: SyncTarget) -> None:
    for o in t.owners:
        user, _, device = o.partition("@")
        try:
            check_name("user", user), check_name("device", device)
        except ValueError as exc:
            raise ConfigError(f"sync target {t.name!r}: owners entry {o!r} must be "
                              f"user@device ({exc})") from None


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class SyncService:
    def __init__(self, cfg: Config, engine: Exchanger | None,
                 state: SyncState | None = None, part_bytes: int = snap_mod.PART_BYTES,
                 journal: Any = None) -> None:
        self.cfg = cfg
        self.engine = engine
        self.journal = journal  # where applied tombstones are kept (None: opened per pull)
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
            _check_owners(t)
            self.targets[t.name] = t
        self.host = socket.gethostname()
        device, user = identity(cfg)
        self.publisher = f"{user}@{device}"  # who this daemon's snapshots say they are from
        self.tag = tag_of(self.publisher)
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
                self.sweep(t, transport)
                snap = self._load_local(t, pend["generation"]) if pend["generation"] else None
                resumed = snap is not None
                previous = self._previous_push(t, transport)
                if snap is None:
                    snap = build(self._engine().export_memories(self.cfg.sync.context_memories),
                                 self.publisher, self.host, self.part_bytes)
                    if not force:
                        self._guard(t, "push", snap.manifest, previous)
                    keep = 1 if forgets(snap.manifest, previous) else t.keep
                    publish(self.local(t, "push"), snap, keep)
                    self.state.set_pending_generation(t.name, "push", snap.generation)
                # what was forgotten since the previous generation must leave the older ones
                keep = 1 if forgets(snap.manifest, previous) else t.keep
                counts = publish(transport, snap, keep)
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
        """The snapshot a new one would replace: this publisher's newest readable
        generation at the target, else the last one this machine published there."""
        for where in (transport, self.local(t, "push")):
            try:
                gen = read_latest(where, self.tag)
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
        """Merge every other publisher's newest snapshot at `t` into the store by id.
        Raise Refused if the guard or the admission refuses one (nothing of that one is
        merged; the others are), TransportError if the target fails (pending)."""
        with self._lock(t.name):
            self.state.add_pending(t.name, "pull", force)
            transport = self.transport(t)
            last = self.state.target(t.name)["last_pull"] or {}
            hosts: dict[str, Any] = dict(last.get("hosts") or {})
            results: list[dict[str, Any]] = []
            refusals: list[str] = []
            try:
                transport.probe()
                self.sweep(t, transport)
                before = getattr(transport, "before_pull", None)
                if before is not None:
                    before()
                found = heads(transport)
                found.pop(self.tag, None)  # our own snapshot: nothing to merge
                for tag, gen in sorted(found.items()):
                    try:
                        if isinstance(gen, Refused):
                            raise gen
                        one = pull_one(self, t, transport, gen, force, hosts.get(tag))
                    except Refused as exc:
                        self.state.refuse(t.name, "pull", str(exc), getattr(exc, "rows", 0))
                        log.warning("sync %s: %s", t.name, exc)
                        refusals.append(str(exc))
                        continue
                    hosts[tag] = one
                    results.append(one)
            except Refused as exc:
                self.state.refuse(t.name, "pull", str(exc), getattr(exc, "rows", 0))
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
            self.state.done(t.name, "pull")
            if not results and not refusals:
                return {"generation": None, "merged": 0,
                        "note": f"{t.name} holds no snapshot of another publisher yet"}
            summary = pull_summary(results, hosts, force)
            if results:
                self.state.record_good(t.name, "pull", summary)
            if refusals:
                raise Refused("; ".join(refusals))
            return summary

    def sweep(self, t: SyncTarget | None, transport: Transport | None) -> list[str]:
        """Remove files crashed puts left aside at the target and in this target's local
        copies (the spool too, where t is None); return what went."""
        places: list[Any] = [transport] if transport is not None else []
        if t is not None:
            places += [self.local(t, "push"), self.local(t, "pull")]
        else:
            places.append(self.spool())
        gone: list[str] = []
        for where in places:
            fn = getattr(where, "sweep", None)
            if fn is None:
                continue
            try:
                removed = fn()
            except (TransportError, OSError, FileNotFoundError) as exc:
                log.debug("sweep of %s: %s", getattr(where, "url", where), exc)
                continue
            if removed:
                log.info("removed %d orphaned files at %s: %s", len(removed),
                         getattr(where, "url", where), ", ".join(removed[:5]))
            gone += removed
        return gone

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
        rows = self.state.refused_rows()
        out = []
        for t in self.targets.values():
            s = self.state.target(t.name)
            row = {
                "name": t.name, "url": masked_url(t.url), "state": s["state"],
                "reason": s["reason"],
                "since": _iso(s["since"]), "last_probe": _iso(s["last_probe"]),
                "failures": s["failures"],
                "last_good": {"push": s["last_push"], "pull": s["last_pull"]},
                "last_refusal": self.state.last_refusal(t.name),
                "refusals": counts.get(t.name, 0), "refused_rows": rows.get(t.name, 0),
                "last_error": s["last_error"], "owners": list(t.owners) or ["(publisher)"],
                "pending": self.state.pending(t.name),
            }
            if self.monitor is not None:
                row["next_probe_in"] = self.monitor.next_probe_in(t.name)
            out.append(row)
        return {"targets": out, "refusals": sum(counts.values()),
                "inbound": {"last_good": self.state.target(SPOOL)["last_pull"],
                            "last_refusal": self.state.last_refusal(SPOOL),
                            "refusals": counts.get(SPOOL, 0),
                            "refused_rows": rows.get(SPOOL, 0)},
                "identity": self.publisher}

    def close(self) -> None:
        self.state.close()


def _iso(ts: float | None) -> str | None:
    return None if ts is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))
