"""`memoryd approvals`, `memoryd approve ID`, `memoryd deny ID`: answer waiting requests.

Requests wait inside the running daemon, so these talk to it over the Unix socket.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from daemon.config import Config


def add_commands(sub: Any, common: argparse.ArgumentParser) -> dict[str, Any]:
    ls = sub.add_parser("approvals", parents=[common],
                        help="requests waiting for your approval (and past decisions)")
    ls.add_argument("--all", action="store_true", help="past decisions too, newest first")
    ls.add_argument("--limit", type=int, default=50)
    ls.add_argument("--json", action="store_true")
    for name, text in (("approve", "let a waiting request go ahead"),
                       ("deny", "refuse a waiting request (its caller gets a 403)")):
        p = sub.add_parser(name, parents=[common], help=text)
        p.add_argument("id", help="the approval id `memoryd approvals` shows")
        p.add_argument("--reason", default="", help="why (recorded with the decision)")
        p.add_argument("--json", action="store_true")
    return {"approvals": cmd_approvals, "approve": cmd_decide, "deny": cmd_decide}


def _call(cfg: Config, method: str, path: str, **kw: Any) -> Any:
    from daemon.cli.client import daemon_call  # not at the top: `memoryd run` imports this module

    return daemon_call(cfg, method, path, kw.get("params"), kw.get("json"), timeout=30,
                       missing="requests wait for approval inside a running daemon "
                               "(memoryd service start)", busy_is_unavailable=False)


def _line(a: dict[str, Any], now: float) -> str:
    what = a.get("what") or {}
    why = "; ".join(r["detail"] for r in a.get("reasons") or [])
    if a["status"] == "pending":
        state = f"pending, {max(0.0, a['expires'] - now):.0f} s left"
    else:
        by = f" by {a['decided_by']}" if a.get("decided_by") else ""
        reason = f" ({a['decision_reason']})" if a.get("decision_reason") else ""
        state = f"{a['status']}{by}{reason}"
    models = ", ".join(a.get("models") or []) or "?"
    ts = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(a["created"]))
    return (f"{a['id']}  {ts}  {state}\n    task {a['task']} -> {models}; asked by "
            f"{a.get('requested_by') or '?'}\n    why: {why}\n"
            f"    prompt: {what.get('preview') or ''}")


def cmd_approvals(cfg: Config, args: argparse.Namespace) -> int:
    out = _call(cfg, "GET", "/v1/approvals",
                params={"status": "all" if args.all else "pending", "limit": args.limit})
    if args.json:
        print(json.dumps(out, ensure_ascii=False))
        return 0
    rows = out["approvals"]
    if not rows:
        print("no requests are waiting for approval" if not args.all
              else "no approvals recorded yet")
        return 0
    now = time.time()
    for a in rows:
        print(_line(a, now))
    if not args.all:
        print("answer with `memoryd approve ID` or `memoryd deny ID [--reason ...]`")
    return 0


def cmd_decide(cfg: Config, args: argparse.Namespace) -> int:
    row = _call(cfg, "POST", f"/v1/approvals/{args.id}/{args.command}",
                json={"reason": args.reason, "via": "cli"})
    if args.json:
        print(json.dumps(row, ensure_ascii=False))
    else:
        print(f"{row['id']} {row['status']}: task {row['task']} -> "
              f"{', '.join(row.get('models') or [])}")
    return 0
