"""Several replicas of one model (a llama.cpp or vLLM server on each of several hosts)
behind one backend, with the same async seam as `OpenAIBackend`.

Each request goes to the least busy replica that is up (fewest calls in flight here),
ties broken by a moving average of its latency, then by how much it has served; while
every replica that is up has `concurrency` calls in flight, the request waits here for a
slot (so a survivor is not handed its dead peer's share at once). A replica
that fails a call (connect error, timeout, 5xx, 429, garbage) is dropped and the call is
tried on the next replica, so the router sees a failure only when every replica failed.
A request the upstream refuses as malformed (4xx) is not retried: every replica would
refuse it. A dropped replica comes back when its health probe (`probe`, run by the
router's background probes) answers again, and not before a 429's Retry-After has passed.
When every replica is down, a request still tries them all: that is how a pool without
background probes finds its way back.

A stream is moved to another replica only until its first event: after that the client
holds part of one replica's answer, and a failure ends the stream (and drops the replica).
`timeout_seconds` applies to each replica attempt; the pool's own profile allows one per
replica, so the router's first-chunk wait leaves room to try them all.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

import aiohttp

from models.base import Profile, RouterBackend
from models.errors import UpstreamError
from models.openai_http import OpenAIBackend

log = logging.getLogger(__name__)
T = TypeVar("T")
LATENCY_ALPHA = 0.3  # weight of the newest call in a replica's latency average


@dataclass
class Replica:
    endpoint: str
    backend: OpenAIBackend
    up: bool = True
    in_flight: int = 0
    latency_ms: float | None = None  # moving average: whole call, or first event of a stream
    served: int = 0
    failed: int = 0
    last_error: str = ""
    down_since: float | None = None  # wall-clock time it was dropped
    hold_until: float = 0.0  # monotonic: no re-admission before (a 429's Retry-After)

    def state(self) -> dict[str, Any]:
        return {"endpoint": self.endpoint, "state": "up" if self.up else "down",
                "in_flight": self.in_flight,
                "latency_ms": None if self.latency_ms is None else round(self.latency_ms, 1),
                "served": self.served, "failed": self.failed, "last_error": self.last_error,
                "down_since": self.down_since}


def _label(endpoint: str) -> str:
    parts = urlsplit(endpoint)
    return parts.netloc or endpoint


class ReplicaPool(RouterBackend):
    """One model served by several OpenAI-compatible endpoints."""

    capabilities = OpenAIBackend.capabilities

    def __init__(self, profile: Profile, endpoints: list[str], model: str, *,
                 client: Callable[[], aiohttp.ClientSession], api_key: str = "") -> None:
        if not endpoints:
            raise ValueError("a replica pool needs at least one endpoint")
        n = len(endpoints)
        # The router sees the pool: room for every replica's calls and every replica's timeout.
        self.profile = dataclasses.replace(profile, concurrency=profile.concurrency * n,
                                           timeout_seconds=profile.timeout_seconds * n)
        self.model = model
        self.cap = max(1, profile.concurrency)  # calls at once per replica
        self._waiters: list[asyncio.Future[None]] = []
        self.replicas = [
            Replica(ep.rstrip("/"), OpenAIBackend(
                dataclasses.replace(profile, name=f"{profile.name} replica {_label(ep)}"),
                ep, model, client=client, api_key=api_key))
            for ep in endpoints]

    # ---- choice and bookkeeping -----------------------------------------------------
    def choose(self, exclude: Collection[int] = ()) -> int | None:
        """Return the index of the replica the next call should go to, or None when every
        replica has been tried. Up replicas first; when none is up, the down ones."""
        fresh = [i for i in range(len(self.replicas)) if i not in exclude]
        pool = [i for i in fresh if self.replicas[i].up] or fresh
        if not pool:
            return None

        def load(i: int) -> tuple[int, float, int]:
            r = self.replicas[i]
            return r.in_flight, r.latency_ms or 0.0, r.served

        return min(pool, key=load)

    async def _acquire(self, tried: set[int]) -> int | None:
        """Take a call slot on the best replica not tried yet (waiting while every one that
        is up is at its cap, so calls queue here, not inside one replica where the wait would
        count against its timeout); None when every replica has been tried."""
        while (i := self.choose(tried)) is not None:
            r = self.replicas[i]
            if r.in_flight < self.cap or not r.up:  # a down replica is only a last resort
                r.in_flight += 1
                tried.add(i)
                return i
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
        return None

    def _release(self, r: Replica) -> None:
        r.in_flight -= 1
        self._wake()

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for w in waiters:
            if not w.done():
                w.set_result(None)

    def _ok(self, r: Replica, started: float) -> None:
        ms = (time.perf_counter() - started) * 1000
        r.latency_ms = ms if r.latency_ms is None else (
            LATENCY_ALPHA * ms + (1 - LATENCY_ALPHA) * r.latency_ms)
        r.served += 1
        if not r.up:  # a last-resort try on a down replica worked
            self._admit(r, "it answered a request")
        log.debug("%s: served by %s in %.0f ms", self.profile.name, r.endpoint, ms)

    def _drop(self, r: Replica, err: UpstreamError) -> None:
        r.failed += 1
        r.last_error = f"{err.kind}: {err}"[:300]
        if err.kind == "rate_limited" and err.retry_after:
            r.hold_until = time.monotonic() + err.retry_after
        if r.up:
            r.up = False
            r.down_since = time.time()
            up = sum(x.up for x in self.replicas)
            log.warning("%s: dropping replica %s (%s); %d of %d replicas left",
                        self.profile.name, r.endpoint, r.last_error, up, len(self.replicas))

    def _admit(self, r: Replica, why: str) -> None:
        r.up, r.down_since = True, None
        self._wake()
        log.info("%s: replica %s is back (%s)", self.profile.name, r.endpoint, why)

    def _all_failed(self, errors: list[tuple[Replica, UpstreamError]]) -> UpstreamError:
        last = errors[-1][1]
        detail = "; ".join(f"{r.endpoint}: {e.kind} ({e})" for r, e in errors)
        return UpstreamError(last.kind, f"every replica of {self.profile.name} failed: {detail}",
                             status=last.status, retry_after=last.retry_after)

    def describe(self) -> dict[str, Any]:
        return {"replicas": self.status()}  # per replica: up/down, load, served

    def status(self) -> list[dict[str, Any]]:
        """Each replica's state: up or down, calls in flight, latency, served and failed."""
        return [r.state() for r in self.replicas]

    # ---- the backend seam -----------------------------------------------------------
    async def chat(self, body: dict[str, Any]) -> tuple[bytes, dict[str, Any]]:
        """Given an OpenAI chat request, return the answer of the first replica that gives
        one. Raise UpstreamError when every replica failed, or at once when the request
        itself is refused (not retryable)."""
        return await self._first_answer(lambda backend: backend.chat(body))

    async def stream(self, body: dict[str, Any]) -> AsyncIterator[bytes]:
        """Yield one replica's SSE events; move to another replica only before the first."""
        tried: set[int] = set()
        errors: list[tuple[Replica, UpstreamError]] = []
        while (i := await self._acquire(tried)) is not None:
            r = self.replicas[i]
            started = time.perf_counter()
            events = r.backend.stream(body).__aiter__()
            try:
                try:
                    first = await events.__anext__()
                except StopAsyncIteration:  # cannot happen (stream raises "truncated")
                    return
                except UpstreamError as exc:
                    if not exc.retryable:
                        raise
                    self._drop(r, exc)
                    errors.append((r, exc))
                    continue
                self._ok(r, started)
                yield first
                try:
                    async for event in events:
                        yield event
                except UpstreamError as exc:  # mid-answer: too late to move it
                    self._drop(r, exc)
                    raise
                return
            finally:
                self._release(r)
                await events.aclose()  # type: ignore[attr-defined]
        raise self._all_failed(errors)

    async def embed(self, texts: list[str]) -> list[list[float]]:
        return await self._first_answer(lambda backend: backend.embed(texts))

    async def _first_answer(self, call: Callable[[OpenAIBackend], Awaitable[T]]) -> T:
        """Run `call` on the best replica; on a retryable failure drop that replica and
        run it on the next one, until one answers or every replica has failed."""
        tried: set[int] = set()
        errors: list[tuple[Replica, UpstreamError]] = []
        while (i := await self._acquire(tried)) is not None:
            r = self.replicas[i]
            started = time.perf_counter()
            try:
                out = await call(r.backend)
            except UpstreamError as exc:
                if not exc.retryable:
                    raise
                self._drop(r, exc)
                errors.append((r, exc))
                continue
            finally:
                self._release(r)
            self._ok(r, started)
            return out
        raise self._all_failed(errors)

    async def probe(self) -> bool:
        """Probe the dropped replicas and re-admit those that answer; True when any
        replica is up afterwards.

        Replicas in service are judged by their calls, not probed: a llama.cpp server busy
        with a long answer can be slow to answer its `/models`."""
        down = [r for r in self.replicas
                if not r.up and time.monotonic() >= r.hold_until]
        answers = await asyncio.gather(*(r.backend.probe() for r in down))
        for r, ok in zip(down, answers, strict=True):
            if ok:
                self._admit(r, "its health probe answers")
        return any(r.up for r in self.replicas)
