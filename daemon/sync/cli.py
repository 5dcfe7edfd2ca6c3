"""`memoryd sync push|pull|status`: through the running daemon when there is one (the
store lives in its worker), in-process otherwise.

Exit codes: 0 done; 4 the guard refused (the reason is printed); 3 a target could not be
reached (the sync stays pending and resumes when it answers); 1 anything else.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from daemon.config import Config
from daemon.errors import DaemonUnavailable

EXIT_REFUSED = 4
EXIT_UNREACHABLE = 3


def add_commands(sub: Any, common: argparse.ArgumentParser) -> dict[str, Any]:
    p = sub.add_parser("sync", parents=[common],
                       help="publish memory to sync targets and merge theirs")
    ops = p.add_subparsers(dest="sync_op", required=True)
    for op, text in (("push", "publish a snapshot of memory to the targets"),
                     ("pull", "merge the targets' newest snapshots into memory")):
        o = ops.add_parser(op, parents=[common], help=text)
        o.add_argument("--target", metavar="NAME", help="only this target (default: all)")
        o.add_argument("--force", action="store_true",
                       help="publish/accept even what the guard refuses (empty, shrunken)")
        o.add_argument("--json", action="store_true")
    st = ops.add_parser("status", parents=[common], help="each target's state and last sync")
    st.add_argument("--json", action="store_true")
    return {"sync": cmd_sync}


def _daemon(cfg: Config, method: str, path: str, params: dict[str, Any]) -> Any:
    from daemon.cli.client import daemon_call  # not at the top: `memoryd run` imports this module

    # a 503 means the target is down, not the daemon: never sync beside it in this process
    return daemon_call(cfg, method, path, params, timeout=3600, busy_is_unavailable=False)


def _local(cfg: Config, with_engine: bool) -> Any:
    from daemon.sync.service import SyncService

    engine = None
    if with_engine:
        from daemon.store.engine import Engine

        engine = Engine(cfg)
    return SyncService(cfg, engine), engine


def cmd_sync(cfg: Config, args: argparse.Namespace) -> int:
    if args.sync_op == "status":
        return _status(cfg, args)
    params = {"force": "true" if args.force else "false"}
    if args.target:
        params["target"] = args.target
    try:
        results = _daemon(cfg, "POST", f"/v1/sync/{args.sync_op}", params)["results"]
    except DaemonUnavailable:
        service, engine = _local(cfg, True)
        try:
            results = getattr(service, args.sync_op)(args.target, args.force)
        finally:
            service.close()
            engine.close()
    if args.json:
        print(json.dumps({"results": results}, indent=2))
    code = 0
    for r in results:
        if r["ok"]:
            if not args.json:
                print(_describe(r))
        elif "refused" in r:
            print(f"memoryd: sync {r['op']} {r['target']}: {r['refused']}", file=sys.stderr)
            code = max(code, EXIT_REFUSED)
        else:
            print(f"memoryd: sync {r['op']} {r['target']}: {r['error']}", file=sys.stderr)
            code = max(code, EXIT_UNREACHABLE if r.get("pending") else 1)
    return code


def _describe(r: dict[str, Any]) -> str:
    if r.get("generation") is None:
        return f"{r['target']}: {r.get('note', 'nothing to do')}"
    if r["op"] == "push":
        how = " (resumed)" if r.get("resumed") else ""
        return (f"{r['target']}: published {r['generation']} with {r['memories']} memories"
                f"{how}: {r['sent']} files sent, {r['skipped']} already there")
    who = ", ".join(p for p in r.get("publishers") or () if p) or r.get("host")
    extra = "".join(f", {r[k]} {what}" for k, what in (
        ("ours", "of ours already here"), ("forgot", "forgotten there and here"))
        if r.get(k))
    return (f"{r['target']}: merged {r['generation']} from {who}: "
            f"{r.get('inserted')} new of {r.get('received')}{extra}, "
            f"{r.get('total')} memories now")


def _status(cfg: Config, args: argparse.Namespace) -> int:
    try:
        status = _daemon(cfg, "GET", "/v1/sync/status", {})
        status["daemon"] = "running"
    except DaemonUnavailable:
        service, _ = _local(cfg, False)
        status = service.status()
        status["daemon"] = "not running (states are as last recorded)"
        service.close()
    if args.json:
        print(json.dumps(status, indent=2))
        return 0
    print(render(status))
    return 0


def render(status: dict[str, Any]) -> str:
    """Human lines for `memoryd sync status` and `memoryd status`."""
    lines = []
    for t in status.get("targets", []):
        lines.append(f"sync {t['name']}: {t['state']} since {t['since'] or '-'} ({t['reason']})")
        good = t["last_good"]
        if good.get("push"):
            lines.append(f"    last push {good['push']['at']}: {good['push']['generation']} "
                         f"({good['push']['memories']} memories)")
        if good.get("pull"):
            lines.append(f"    last pull {good['pull']['at']}: {good['pull']['generation']} "
                         f"({good['pull']['memories']} memories)")
        if t.get("last_refusal"):
            r = t["last_refusal"]
            lines.append(f"    refused {t['refusals']}x{_refused_rows(t)}, last {r['at']} "
                         f"({r['op']}): {r['reason']}")
        for p in t.get("pending", []):
            lines.append(f"    pending {p['op']} since {p['created']}, {p['attempts']} attempts"
                         + (f": {p['last_error']}" if p["last_error"] else ""))
    inbound = status.get("inbound") or {}
    if inbound.get("last_refusal"):
        r = inbound["last_refusal"]
        lines.append(f"sync inbound (what peers push here): refused {inbound['refusals']}x"
                     f"{_refused_rows(inbound)}, last {r['at']}: {r['reason']}")
    if not lines:
        lines.append("sync: no targets configured ([[sync.targets]] in the config)")
    return "\n".join(lines)


def _refused_rows(entry: dict[str, Any]) -> str:
    """", N rows of owners not allowed" when a refusal counted such rows, else ""."""
    n = entry.get("refused_rows")
    return f", {n} rows of owners not allowed" if n else ""
