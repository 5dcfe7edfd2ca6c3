"""memoryd's one exception tree.

    MemorydError
    ├── RetryableError        try again later: a locked file, a busy store, a dead upstream
    │   └── DaemonUnavailable the daemon's API did not answer
    └── PermanentError        retrying will not help until the user changes something
        └── ConfigError       the config file is wrong

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
