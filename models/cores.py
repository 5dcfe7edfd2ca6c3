"""Turns on the machine's cores inside one process: a model's completion goes first, the
indexing embedder takes the cores between completions.

llama.cpp slows many-fold when its threads share the cores with another computation (its
threads wait on each other), so the worker never runs a completion and an embedding batch
at once. An embedding batch is short (a few tens of milliseconds to a second): a
completion waits at most for the one running, then every batch waits until no completion
runs or waits. That lets the indexing embedder use every core while no model writes.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class Cores:
    """Who computes now: completions (any number, each backend serializes its own calls)
    or one embedding batch."""

    def __init__(self) -> None:
        self._cv = threading.Condition()
        self._completions = 0  # running or waiting: a waiting one holds back new batches
        self._embedding = False

    @property
    def completing(self) -> bool:
        return self._completions > 0

    @contextmanager
    def completion(self) -> Iterator[None]:
        with self._cv:
            self._completions += 1
            while self._embedding:
                self._cv.wait()
        try:
            yield
        finally:
            with self._cv:
                self._completions -= 1
                self._cv.notify_all()

    @contextmanager
    def embedding(self) -> Iterator[None]:
        with self._cv:
            while self._completions or self._embedding:
                self._cv.wait()
            self._embedding = True
        try:
            yield
        finally:
            with self._cv:
                self._embedding = False
                self._cv.notify_all()


CORES = Cores()  # this process's; the worker's completions and indexing batches meet here
