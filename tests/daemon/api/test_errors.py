"""Errors as the API's contract: only memoryd's own errors (daemon/errors.py) reach the
caller as 4xx/503; any other exception is memoryd's bug, a 500 that says so and names
the log. The app is the real one, in-process; the engine is a fake at its seam (the
store's own behaviour is pinned in tests/daemon/store and tests/daemon/recall)."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from daemon.api.app import create_app
from daemon.config import load_config
from daemon.errors import InvalidRequest, RetryableError
from daemon.intake.journal import Journal
from daemon.service import MemoryService


class Engine:
    """Raises whatever the test puts in `fail` from `search`."""

    fail: BaseException | None = None

    def search(self, query: str, k: int = 10, **filters: Any) -> list[Any]:
        if self.fail is not None:
            raise self.fail
        return []

    def status(self) -> dict[str, Any]:
        return {}


@pytest.fixture
def api(make_config) -> Any:
    cfg = load_config(make_config())
    cfg.data_path.mkdir(parents=True, exist_ok=True)
    engine = Engine()
    service = MemoryService(cfg, Journal(cfg.data_path / "journal.sqlite3"), engine)  # type: ignore[arg-type]
    client = TestClient(create_app(service, "tok"), base_url="http://127.0.0.1",
                        raise_server_exceptions=False,
                        headers={"Authorization": "Bearer tok"})
    with client:
        yield client, engine, cfg


def test_the_callers_mistake_is_a_400_that_says_what_to_send(api) -> None:
    client, engine, _ = api
    r = client.get("/v1/memory/search", params={"q": "   "})
    assert r.status_code == 400
    assert r.json()["error"]["type"] == "invalid_request"
    assert "query is empty" in r.json()["error"]["message"]
    # the engine (in the worker) refusing the request is still the caller's 400
    engine.fail = InvalidRequest("period must be 'day' or 'week'")
    r = client.get("/v1/memory/search", params={"q": "x"})
    assert r.status_code == 400 and "period" in r.json()["error"]["message"]


def test_a_bug_in_memoryd_is_a_500_naming_the_log_not_an_invalid_request(api) -> None:
    client, engine, cfg = api
    engine.fail = ValueError("could not convert string to float: 'abc'")
    r = client.get("/v1/memory/search", params={"q": "x"})
    assert r.status_code == 500
    err = r.json()["error"]
    assert err["type"] == "internal_error"
    assert "bug in memoryd" in err["message"] and "not a problem with the request" in err[
        "message"]
    assert str(cfg.data_path / "memoryd.log") in err["message"]
    assert "journalctl --user -u memoryd" in err["message"]


def test_a_retryable_error_is_a_503(api) -> None:
    client, engine, _ = api
    engine.fail = RetryableError("the model worker process ended during a call")
    r = client.get("/v1/memory/search", params={"q": "x"})
    assert r.status_code == 503 and "try again" in r.json()["error"]["message"]
