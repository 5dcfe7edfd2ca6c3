"""Errors of the models layer (kept here so `models/` never imports `daemon/`)."""

from __future__ import annotations


class ModelError(Exception):
    """A model could not be loaded or could not answer."""

    retryable = False


class ModelAssetError(ModelError):
    """A model's files are missing, incomplete or do not match the pinned manifest."""


class UpstreamError(ModelError):
    """A model backend failed one call. `kind` names the failure class (timeout, connect,
    rate_limited, server_error, bad_request, bad_response, truncated); `retryable` says
    whether another model (or a later try) may succeed where this one failed."""

    def __init__(self, kind: str, message: str, *, status: int | None = None,
                 retryable: bool = True, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.status = status
        self.retryable = retryable
        self.retry_after = retry_after
