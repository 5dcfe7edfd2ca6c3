"""memoryd's one exception tree.

    MemorydError
    ├── RetryableError        try again later: a locked file, a busy store, a dead upstream
    │   ├── DaemonUnavailable the daemon's API did not answer
    │   └── StoreConflict     other daemons kept committing to the store first
    └── PermanentError        retrying will not help until the user changes something
        ├── ConfigError       the config file is wrong
        ├── StoreTooNew       the store's schema is newer than this memoryd
        └── InvalidRequest    the caller's request is wrong (the API's 400); also a
                              ValueError, so parsers and validators may raise it

The API maps only this tree to 4xx/503 (daemon/api/app.py); any other exception is a
bug of memoryd's, answered with a 500 that points at the daemon's log.

The models layer keeps its own small tree (`models.errors.ModelError`), since
`models/` never imports `daemon/`.

Every message says what to do next.
"""

from __future__ import annotations


class MemorydError(Exception):
    retryable = False


class RetryableError(MemorydError):
    retryable = True


class DaemonUnavailable(RetryableError):
    pass


class PermanentError(MemorydError):
    retryable = False


class ConfigError(PermanentError):
    pass


class StoreConflict(RetryableError):
    """Other writers kept committing to the store first; nothing was committed, the work
    stays queued (daemon/store/retry.py)."""


class StoreTooNew(PermanentError):
    """The store was written by a newer memoryd (a higher schema version): this daemon
    reads nothing it cannot understand and writes nothing until it is upgraded."""
class InvalidRequest(PermanentError, ValueError):
    """The caller asked for something malformed or impossible; the message says what to
    send instead."""
