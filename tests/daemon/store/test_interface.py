"""The engine's interface is described once (daemon/store/interface.py): the in-process
Engine implements exactly it, and the worker forwards exactly it, by name."""

from __future__ import annotations

import inspect

import pytest

from daemon.config import load_config
from daemon.store.engine import Engine
from daemon.store.interface import ENGINE_METHODS, MemoryEngine
from daemon.store.worker import WorkerEngine


def test_the_engine_implements_every_method_of_the_protocol_with_its_signature() -> None:
    public = {n for n, v in vars(Engine).items() if callable(v) and not n.startswith("_")}
    assert public - {"close"} == ENGINE_METHODS
    for name in ENGINE_METHODS:
        want = inspect.signature(getattr(MemoryEngine, name))
        got = inspect.signature(getattr(Engine, name))
        assert got == want, f"Engine.{name}{got} differs from the protocol's {want}"


def test_the_worker_forwards_the_protocol_and_nothing_else(make_config) -> None:
    w = WorkerEngine(load_config(make_config()), idle_seconds=60)
    try:
        assert callable(w.search) and callable(w.prune_events)
        assert w.search.args == ("search",)  # type: ignore[attr-defined]
        with pytest.raises(AttributeError, match="not a method of"):
            w.store  # noqa: B018  the store stays in the worker
        with pytest.raises(AttributeError):
            w._serve_anything  # noqa: B018
        assert not w.alive  # looking methods up starts no process
    finally:
        w.close()


def test_the_worker_child_refuses_a_name_outside_the_protocol(make_config) -> None:
    w = WorkerEngine(load_config(make_config()), idle_seconds=60)
    try:
        with pytest.raises(AttributeError, match="no method 'close'"):
            w.call("close")  # would unload the child's models under other callers
        assert w.alive  # the worker refused the call and serves on
    finally:
        w.close()
