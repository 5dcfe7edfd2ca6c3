"""The one shape of every error the API answers with:

    {"error": {"type": "<kind>", "message": "<what went wrong and what to do>"}}

Routes, the ASGI guard, the MCP endpoint and the OpenAI-style routes all build it here,
so a client parses one envelope whichever layer refused it.
"""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse


def error_body(kind: str, message: str, **detail: Any) -> dict[str, Any]:
    """Given an error's kind and message (and extra fields of the error, like OpenAI's
    `code`), return the JSON body."""
    return {"error": {"type": kind, "message": message, **detail}}


def error_json(status: int, kind: str, message: str, *, headers: dict[str, str] | None = None,
               close: bool = False, extra: dict[str, Any] | None = None,
               **detail: Any) -> JSONResponse:
    """The error response. `close` ends the connection after it (the request's body was
    not read, and is not going to be); `extra` adds top-level fields beside `error`."""
    body = error_body(kind, message, **detail)
    if extra:
        body.update(extra)
    out = dict(headers or {})
    if close:
        out["Connection"] = "close"
    return JSONResponse(body, status_code=status, headers=out)
