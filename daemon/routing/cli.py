"""`memoryd token …`, `memoryd report` and `memoryd mcp`."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from daemon.config import Config


def add_commands(sub: Any, common: argparse.ArgumentParser) -> dict[str, Any]:
    from daemon.api.app import SCOPES

    t = sub.add_parser("token", parents=[common], help="make, list and revoke scoped API tokens")
    ts = t.add_subparsers(dest="token_command", required=True)
    c = ts.add_parser(
        "create", parents=[common], help="make a token (its secret is shown once)",
        description="Make a scoped API token. Whose memories it reads: --users and --devices "
        "(comma-separated names, or '*' for anyone). Without --users it reads only this "
        "daemon's own user's memories ([identity] user, from every device): private by "
        "default on a store a team shares. admin and sync tokens read the whole store and "
        "take no --users/--devices.")
    c.add_argument("--scope", action="append", required=True, choices=SCOPES,
                   help="what the token may do; repeat for several")
    c.add_argument("--name", default="", help="a name to find it by (default: its id)")
    c.add_argument("--users", help="whose memories it reads: alice,bob or '*' (default: "
                   "this daemon's [identity] user only)")
    c.add_argument("--devices", help="from which devices: laptop,desk or '*' (default: any)")
    c.add_argument("--json", action="store_true")
    ls = ts.add_parser("list", parents=[common], help="list tokens (never their secrets)")
    ls.add_argument("--json", action="store_true")
    rv = ts.add_parser("revoke", parents=[common], help="revoke a token by id or name")
    rv.add_argument("which")
    r = sub.add_parser("report", parents=[common],
                       help="which models do which tasks: tokens, cost, latency, failures")
    r.add_argument("--json", action="store_true")
    r.add_argument("--since-hours", type=float, default=0.0, help="only the last N hours")
    sub.add_parser("mcp", parents=[common],
                   help="serve memory tools over MCP on stdio (talks to the running daemon)")
    return {"token": cmd_token, "report": cmd_report, "mcp": cmd_mcp}


def cmd_token(cfg: Config, args: argparse.Namespace) -> int:
    from daemon.api.scoped_tokens import TokenStore

    store = TokenStore(cfg.data_path / "tokens.json")
    if args.token_command == "create":
        from daemon.owners import identity

        try:
            row, secret = store.create(args.scope, args.name, users=args.users,
                                       devices=args.devices, own_user=identity(cfg)[1])
        except ValueError as exc:
            print(f"memoryd token create: {exc}", file=sys.stderr)
            return 2
        if args.json:
            print(json.dumps({**row, "token": secret}))
        else:
            print(f"token {row['name']} (id {row['id']}), scopes {', '.join(row['scopes'])}, "
                  f"reads users {','.join(row['users'])} on devices {','.join(row['devices'])}:")
            print(secret)
            print("(shown once: memoryd keeps only its hash)", file=sys.stderr)
        return 0
    if args.token_command == "list":
        rows = store.list()
        if args.json:
            print(json.dumps(rows))
        for row in rows if not args.json else []:
            whose = (f"users {','.join(row.get('users') or ['(own)'])} devices "
                     f"{','.join(row.get('devices') or ['*'])}  ")
            print(f"{row['id']}  {row['name']:<20} {','.join(row['scopes']):<40} {whose}"
                  f"{time.strftime('%Y-%m-%d %H:%M', time.localtime(row['created']))}")
        if not rows and not args.json:
            print("no scoped tokens (the admin token is in " f"{cfg.token_path})")
        return 0
    if not store.revoke(args.which):
        print(f"memoryd: no token with id or name {args.which!r}", file=sys.stderr)
        return 1
    print(f"revoked {args.which}")
    return 0


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.6f}".rstrip("0").rstrip(".") if abs(v) < 1 else f"{v:,.1f}"
    return "-" if v is None else str(v)


def _table(title: str, rows: list[dict[str, Any]], cols: list[str]) -> list[str]:
    out = [f"\n{title}"]
    if not rows:
        return [*out, "  (none yet)"]
    cells = [[_fmt(r.get(c)) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    out.append("  " + "  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)))
    out += ["  " + "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True))
            for row in cells]
    return out


def cmd_report(cfg: Config, args: argparse.Namespace) -> int:
    from daemon.routing.telemetry import summary

    since = time.time() - args.since_hours * 3600 if args.since_hours else 0.0
    s = summary(cfg.data_path / "telemetry.sqlite3", since)
    if args.json:
        print(json.dumps(s, indent=2))
        return 0
    lines = [f"memoryd report: {s['attempts']} model attempts recorded"
             + (f" in the last {args.since_hours:g} h" if args.since_hours else "")]
    lines += _table("Tasks by tokens", s["tasks_by_tokens"],
                    ["task", "tokens", "tokens_in", "tokens_out", "attempts", "cost_usd"])
    lines += _table("Models", s["models"],
                    ["model", "privacy", "attempts", "failure_rate", "cost_usd",
                     "avg_latency_ms", "avg_ttft_ms"])
    lines += _table("Fallbacks that recovered", s["fallback_recoveries"],
                    ["failed_model", "failure", "recovered_by", "times"])
    lines += _table("Overqualified (a cheaper model succeeds at the same task)",
                    s["overqualified"], ["task", "model", "cheaper_model", "saving_usd"])
    lines += _table("Tasks that could move local", s["could_move_local"],
                    ["task", "remote_attempts", "remote_cost_usd", "local_model",
                     "local_success_rate"])
    lines += _table("Tool calling (answers to requests with tools; malformed = broken calls "
                    "caught and retried)", s.get("tool_calls") or [],
                    ["model", "answers", "malformed", "malformed_rate", "repaired", "faults"])
    lines += _table("Broken tool calls repaired by a fallback", s.get("tool_call_repairs") or [],
                    ["failed_model", "fault", "repaired_by", "times"])
    print("\n".join(lines))
    return 0


def cmd_mcp(cfg: Config, args: argparse.Namespace) -> int:
    from daemon.recall.mcp import DaemonTools, build_server

    build_server(DaemonTools(cfg)).run("stdio")
    return 0
