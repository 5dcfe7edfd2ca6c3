"""Errors of the models layer (kept here so `models/` never imports `daemon/`)."""

from __future__ import annotations


class ModelError(Exception):
    """A model could not be loaded or could not answer."""

    retryable = False


class ModelAssetError(ModelError):
    """A model's files are missing, incomplete or do not match the pinned manifest."""
