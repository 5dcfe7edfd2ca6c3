"""The status page the daemon serves at /ui, and the one-time login that opens it.

The page is one self-contained HTML file (daemon/statuspage.html: inline CSS, inline
JS, charts drawn as inline SVG; no CDN, no external asset, and a Content-Security-Policy
that forbids loading any). It reads the same /v1 routes as every other client, so a
section whose route is missing or failing says "not available yet" instead of breaking
the page.

Routes:
  GET  /ui                 the page (a session cookie or the bearer token)
  POST /v1/ui/login-code   a one-time login code for `memoryd open` (admin)
  GET  /ui/login?code=…    swap the code for a session cookie, redirect to /ui
  POST /ui/logout          end the session
  GET  /v1/ui/sources      what is collected, and from where (admin)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from daemon.api.sessions import COOKIE, SESSION_TTL
from daemon.service import MemoryService
from daemon.sync.transport import masked_url

PAGE = Path(__file__).with_name("statuspage.html")
CSP = ("default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
       "img-src data:; connect-src 'self'; form-action 'self'; base-uri 'none'; "
       "frame-ancestors 'none'")
NO_STORE = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer",
            "X-Content-Type-Options": "nosniff"}


def sources(service: MemoryService) -> dict[str, Any]:
    """Given the service, return each collector: whether it is on and where it reads."""
    c = service.cfg.collectors
    out = [
        {"name": "files", "enabled": c.files.enabled, "where": list(c.files.roots),
         "exclude": list(c.files.exclude)},
        {"name": "browser", "enabled": c.browser.enabled,
         "where": list(c.browser.history_files) or ["the browsers' own history files "
                                                    "(found automatically)"]},
        {"name": "shell", "enabled": c.shell.enabled,
         "where": list(c.shell.history_files) or ["the shells' own history files "
                                                  "(found automatically)"]},
    ]
    p = service.cfg.privacy
    sync = getattr(service.cfg, "sync", None)
    targets = [{"name": t.name, "url": masked_url(t.url)} for t in getattr(sync, "targets", ())]
    return {"collectors": out, "excluded": {"paths": list(p.exclude_paths),
                                            "domains": list(p.exclude_domains),
                                            "commands": list(p.exclude_commands)},
            "sync_targets": targets, "data_dir": str(service.cfg.data_path)}


def router(service: MemoryService, require: Any) -> APIRouter:
    api = APIRouter()

    @api.get("/ui", dependencies=[require("admin")], include_in_schema=False)
    def page() -> HTMLResponse:
        return HTMLResponse(PAGE.read_text(),
                            headers={**NO_STORE, "Content-Security-Policy": CSP})

    @api.post("/v1/ui/login-code", dependencies=[require("admin")])
    def login_code() -> dict[str, Any]:
        code = service.sessions.new_login_code()
        return {"path": f"/ui/login?code={code}", "expires_in": 60}

    @api.get("/ui/login", include_in_schema=False)
    def login(code: str = Query("", max_length=200)) -> Response:
        session = service.sessions.redeem(code)
        if session is None:
            return HTMLResponse(
                "<!doctype html><title>memoryd</title><p>This login link is used or expired. "
                "Run <code>memoryd open</code> again.</p>", status_code=401, headers=NO_STORE)
        resp = RedirectResponse("/ui", status_code=303, headers=NO_STORE)
        resp.set_cookie(COOKIE, session, max_age=int(SESSION_TTL), path="/", httponly=True,
                        samesite="strict")
        return resp

    @api.post("/ui/logout", include_in_schema=False)
    def logout(request: Request) -> Response:
        service.sessions.end(request.cookies.get(COOKIE))
        resp = Response(status_code=204, headers=NO_STORE)
        resp.delete_cookie(COOKIE, path="/")
        return resp

    @api.get("/v1/ui/sources", dependencies=[require("admin")])
    def where() -> dict[str, Any]:
        return sources(service)

    return api
