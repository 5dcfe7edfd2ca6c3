"""What is wrong with memory right now, in words: one reason code and one sentence for
every way memory can be unavailable or degraded.

Parts of the daemon that see a failure as it happens (the scheduled jobs, the pipeline,
the worker) `report` it here and `clear` it when the part works again; `assess` adds
what can be probed at status time (the store's disk full or read-only, the engine not
answering, sync targets down or refused) and says whether memory is `available`.

`available` is false when new activity is not being remembered or memory cannot be read
(the codes in BLOCKING); every other problem leaves it true and is listed as degraded.
"""

from __future__ import annotations

import errno
import os
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

MIN_FREE_BYTES = 1 << 20  # less than this free on the store's disk: it is full

# code -> whether it makes memory unavailable
BLOCKING = {"store_full": True, "store_read_only": True, "store_unwritable": True,
            "store_unreadable": True, "embedder_failed": True, "indexing_failed": True,
            "worker_crash_loop": True, "summarizer_failed": False, "collector_failed": False,
            "sync_target_down": False, "sync_refused": False}


# What a reader without the admin scope is told: no paths, collectors or target names
PUBLIC = {
    "store_full": "the disk holding memory is full; new activity is not being remembered",
    "store_read_only": "the disk holding memory is read-only; new activity is not being "
                       "remembered",
    "store_unwritable": "memory's files cannot be written; new activity is not being "
                        "remembered",
    "store_unreadable": "memory cannot be read right now",
    "embedder_failed": "the embedder cannot be used; new activity is not searchable yet",
    "indexing_failed": "indexing new activity fails; it is not searchable yet",
    "worker_crash_loop": "the model worker keeps crashing; memory is not indexed reliably",
    "summarizer_failed": "the summarizer is failing; new activity is searchable but not "
                         "summarized",
    "collector_failed": "a collector is failing; some activity is not being remembered",
    "sync_target_down": "a sync target is down; memory is not being published there",
    "sync_refused": "a sync with a target was refused by the guard",
}


@dataclass(frozen=True)
class Problem:
    code: str  # one of BLOCKING's keys
    message: str  # a sentence a user reads: what is wrong and what it means
    since: str  # UTC ISO time it was first seen
    subject: str = ""  # which collector or sync target, when it is one of several

    def json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v or k != "subject"}


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


class Conditions:
    """Problems reported by the parts that saw them; thread-safe. A problem reported
    again keeps its first `since` and takes the newest message."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._now: dict[tuple[str, str], Problem] = {}

    def report(self, code: str, message: str, subject: str = "") -> None:
        with self._lock:
            old = self._now.get((code, subject))
            since = old.since if old else _iso(time.time())
            self._now[(code, subject)] = Problem(code, message, since, subject)

    def clear(self, *codes: str, subject: str = "") -> None:
        with self._lock:
            for code in codes:
                self._now.pop((code, subject), None)

    def active(self) -> list[Problem]:
        with self._lock:
            return list(self._now.values())


def store_error(exc: BaseException) -> tuple[str, str] | None:
    """(code, sentence) when `exc` says memory's disk cannot take a write, else None.
    Errors that crossed the worker pipe may have lost their type: their text is read
    (the store's and the journal's own words, then the OS's)."""
    no = getattr(exc, "errno", None)
    text = str(exc)
    low = text.lower()
    if no == errno.ENOSPC or any(w in low for w in ("disk is full", "no space left",
                                                     "os error 28", "disk quota")):
        return "store_full", (f"the disk holding memory is full; new activity waits in the "
                              f"journal and is not searchable until space is freed ({text})")
    if no == errno.EROFS or any(w in low for w in ("read-only", "readonly", "os error 30")):
        return "store_read_only", ("the disk holding memory is read-only; new activity is "
                                   f"not being remembered ({text})")
    if no in (errno.EACCES, errno.EPERM) or "permission denied" in low:
        return "store_unwritable", ("memory's files cannot be written; check the data "
                                    f"directory's permissions ({text})")
    return None


def probe_disk(path: Path) -> list[Problem]:
    """The store's disk full or mounted read-only (checked, not waited for)."""
    while not path.exists() and path != path.parent:
        path = path.parent
    now = _iso(time.time())
    try:
        st = os.statvfs(path)
    except OSError as exc:
        return [Problem("store_unreadable", f"memory's folder {path} cannot be read: {exc}",
                        now)]
    if st.f_flag & os.ST_RDONLY:
        return [Problem("store_read_only", f"the disk holding memory ({path}) is mounted "
                        "read-only; new activity is not being remembered", now)]
    if not os.access(path, os.W_OK):
        return [Problem("store_unwritable", f"memory's folder {path} is not writable by "
                        "this user; new activity is not being remembered", now)]
    free = st.f_bavail * st.f_frsize
    if free < MIN_FREE_BYTES:
        return [Problem("store_full", f"the disk holding memory ({path}) is full "
                        f"({free} bytes free); new activity is not being remembered until "
                        "space is freed", now)]
    return []


def sync_problems(sync: dict[str, Any]) -> list[Problem]:
    """Sync targets down, or whose last push or pull the guard refused since the last
    good one."""
    out = []
    for t in sync.get("targets", []):
        name = t.get("name", "?")
        if t.get("state") == "down":
            out.append(Problem("sync_target_down", f"sync target {name} is down: "
                               f"{t.get('reason')}; memory is not being published there",
                               t.get("since") or _iso(time.time()), name))
        refusal = t.get("last_refusal")
        good = ((t.get("last_good") or {}).get(refusal["op"]) or {}) if refusal else {}
        # the same ISO format on both sides: a later refusal sorts after the last good one
        if refusal and str(refusal.get("at") or "") > str(good.get("at") or ""):
            out.append(Problem("sync_refused", f"the last {refusal['op']} with {name} was "
                               f"refused: {refusal.get('reason')}", str(refusal.get("at")),
                               name))
    return out


def collector_problems(running: list[dict[str, Any]]) -> list[Problem]:
    return [Problem("collector_failed", f"the {c['name']} collector is failing: "
                    f"{c.get('last_error')}; its activity is not being remembered",
                    str(c.get("failing_since")), str(c["name"]))
            for c in running if c.get("failing_since")]


def assess(problems: list[Problem], public: bool = False) -> dict[str, Any]:
    """The `memory` block of /v1/status: `available` and `degraded` (the problems,
    blocking ones first, one per code and subject). `public`: for a reader without the
    admin scope, one per code, in PUBLIC's words (no paths or names)."""
    seen: dict[tuple[str, str], Problem] = {}
    for p in problems:
        if public:
            p = Problem(p.code, PUBLIC.get(p.code, p.code), p.since)
        seen.setdefault((p.code, p.subject), p)
    ordered = sorted(seen.values(), key=lambda p: (not BLOCKING.get(p.code, False), p.code))
    return {"available": not any(BLOCKING.get(p.code, False) for p in ordered),
            "degraded": [p.json() for p in ordered]}


def one_line(memory: dict[str, Any]) -> str:
    """The problems as one line (the tray's tooltip, MCP's status note); '' when none."""
    return "; ".join(p["message"] for p in memory.get("degraded") or [])


def verdict(memory: dict[str, Any]) -> str:
    """"working", "degraded: <why>" or "UNAVAILABLE: <why>" (`memoryd status`, MCP)."""
    why = one_line(memory)
    if memory.get("available") is False:
        return f"UNAVAILABLE: {why or 'no reason given'}"
    return f"degraded: {why}" if why else "working"
