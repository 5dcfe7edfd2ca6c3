"""/v1/approvals: the requests waiting for the user, and the user's answers (admin).

  GET  /v1/approvals?status=pending|approved|denied|timed_out|abandoned|all&limit=N
  GET  /v1/approvals/{id}
  POST /v1/approvals/{id}/approve   {"reason": "...", "via": "cli|status page|tray|api"}
  POST /v1/approvals/{id}/deny      {"reason": "...", "via": ...}

An unknown id is a 404, an approval already decided (or timed out) a 409 saying by whom.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from daemon.api.envelope import error_json
from daemon.approvals.queue import STATUSES, AlreadyDecided, UnknownApproval, for_service
from daemon.service import MemoryService

VIAS = ("cli", "status page", "tray", "api")


class Answer(BaseModel):
    reason: str = Field("", max_length=500, description="why (recorded with the decision)")
    via: str = Field("api", description="where the user answered: " + ", ".join(VIAS))


def router(service: MemoryService, require: Any) -> APIRouter:
    api = APIRouter()
    approvals = for_service(service)

    def fail(status: int, kind: str, message: str) -> JSONResponse:
        return error_json(status, kind, message)

    @api.get("/v1/approvals", dependencies=[require("admin")])
    def listing(status: str = Query("pending", pattern="^(" + "|".join((*STATUSES, "all"))
                                    + ")$"),
                limit: int = Query(100, ge=1, le=1000)) -> dict[str, Any]:
        return {"approvals": approvals.list(status, limit),
                "pending": approvals.pending_count(),
                "timeout_seconds": service.cfg.approvals.timeout_seconds}

    @api.get("/v1/approvals/{aid}", dependencies=[require("admin")], response_model=None)
    def one(aid: str) -> dict[str, Any] | JSONResponse:
        try:
            return approvals.get(aid)
        except UnknownApproval as exc:
            return fail(404, "not_found", str(exc.args[0]))

    def decide(aid: str, approve: bool, answer: Answer | None) -> dict[str, Any] | JSONResponse:
        answer = answer or Answer(reason="", via="api")
        if answer.via not in VIAS:
            return fail(400, "invalid_request", f"via must be one of {', '.join(VIAS)}")
        try:
            return approvals.decide(aid, approve, answer.via, answer.reason)
        except UnknownApproval as exc:
            return fail(404, "not_found", str(exc.args[0]))
        except AlreadyDecided as exc:
            return fail(409, "already_decided", str(exc))

    @api.post("/v1/approvals/{aid}/approve", dependencies=[require("admin")],
              response_model=None)
    def approve(aid: str, answer: Answer | None = None) -> dict[str, Any] | JSONResponse:
        return decide(aid, True, answer)

    @api.post("/v1/approvals/{aid}/deny", dependencies=[require("admin")],
              response_model=None)
    def deny(aid: str, answer: Answer | None = None) -> dict[str, Any] | JSONResponse:
        return decide(aid, False, answer)

    return api
