"""Fixtures shared by the daemon tests."""

from tests.daemon.upstream_fixtures import upstreams  # noqa: F401 (a fixture pytest finds here)
