"""`memoryd context`, `memoryd digest` and `memoryd forget`: through the running daemon
when there is one, in-process otherwise (as `memoryd search` does)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from typing import Any, cast

from daemon.config import Config
from daemon.errors import DaemonUnavailable


@contextmanager
def _local_service(cfg: Config) -> Iterator[Any]:
    from daemon.intake.journal import Journal
    from daemon.intake.redact import redact
    from daemon.owners import journal_owner
    from daemon.service import MemoryService
    from daemon.store.engine import Engine
    from daemon.store.query_embed import onnx_query_embedder

    journal = Journal(cfg.data_path / "journal.sqlite3", redact=redact, owner=journal_owner(cfg))
    engine = Engine(cfg)
    engine.query_embed = onnx_query_embedder(cfg) or engine.query_embed  # no torch load
    try:
        yield MemoryService(cfg, journal, cast(Any, engine))
    finally:
        engine.close()
        journal.close()


def _daemon(cfg: Config, method: str, path: str, params: dict[str, Any] | None = None,
            body: dict[str, Any] | None = None) -> Any:
    """Call the daemon over its Unix socket; raise DaemonUnavailable if none runs."""
    from daemon.cli.client import daemon_call

    return daemon_call(cfg, method, path, params, body, timeout=300)


def _time(value: str | None, now: datetime | None = None) -> datetime | None:
    """An ISO 8601 date or time, or an expression such as "yesterday" (its start)."""
    if not value:
        return None
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
        return dt if dt.tzinfo else dt.astimezone(UTC)  # a naive time is the user's local
    except ValueError:
        pass
    from daemon.recall import timeexpr

    found = timeexpr.parse(value, now or datetime.now(UTC), datetime.now().astimezone().tzinfo
                           or UTC)
    if not found.matched or found.text or found.since is None:
        raise ValueError(f"{value!r} is not a time: give 2026-03-04, 2026-03-04T10:00 or an "
                         "expression such as 'yesterday' or 'last monday'")
    return found.since


def cmd_context(cfg: Config, args: argparse.Namespace) -> int:
    query = " ".join(args.query)
    budget = args.budget or cfg.search.context_budget_tokens
    try:
        if args.local:
            raise DaemonUnavailable("--local")
        pack = _daemon(cfg, "GET", "/v1/memory/context",
                       {"query": query, "budget_tokens": budget, **_owner_params(args)})
    except DaemonUnavailable:
        with _local_service(cfg) as service:
            pack = service.context(query, budget, **_owner_params(args))
    if args.json:
        print(json.dumps(pack, ensure_ascii=False))
    else:
        print(pack["markdown"], end="")
    return 0


def cmd_digest(cfg: Config, args: argparse.Namespace) -> int:
    period = "week" if args.week else "day"
    try:
        day = date.fromisoformat(args.date) if args.date else None
    except ValueError:
        raise ValueError(f"--date must be YYYY-MM-DD, got {args.date!r}") from None
    try:
        if args.local:
            raise DaemonUnavailable("--local")
        params = {"period": period, **({"date": day.isoformat()} if day else {}),
                  **_owner_params(args)}
        out = _daemon(cfg, "GET", "/v1/memory/digest", params)
    except DaemonUnavailable:
        with _local_service(cfg) as service:
            out = service.digest(period, day, **_owner_params(args))
    if args.json:
        print(json.dumps(out, ensure_ascii=False))
        return 0
    print(f"# {period} {out['start'][:10]} .. {out['end'][:10]}")
    if out["digest"]:
        print(out["digest"]["text"])
    else:
        print(f"(no {period} digest yet; its {out['children_level']} memories follow)")
    for m in out["children"]:
        print(f"\n## {m['ts'][:16].replace('T', ' ')}  {m['title']}\n{m['text']}")
    return 0


def cmd_forget(cfg: Config, args: argparse.Namespace) -> int:
    since, until = _time(args.since), _time(args.until)
    scope = {"since": since.isoformat() if since else None,
             "until": until.isoformat() if until else None,
             "source": args.source, "query": args.query}
    if not any(scope.values()):
        print("memoryd forget: say what to forget: --since/--until, --source or --query",
              file=sys.stderr)
        return 2
    body = {**{k: v for k, v in scope.items() if v}, "dry_run": not args.yes,
            **_owner_params(args)}
    try:
        if args.local:
            raise DaemonUnavailable("--local")
        out = _daemon(cfg, "POST", "/v1/memory/forget", body=body)
    except DaemonUnavailable:
        with _local_service(cfg) as service:
            out = service.forget(since=since, until=until, source=args.source,
                                 query=args.query, dry_run=not args.yes,
                                 **_owner_params(args))
    what = (f"{out['events']} events, {out['memories']} memories and "
            f"{out['journal']} journal rows")
    if args.yes:
        print(f"forgot {what}")
    else:
        print(f"would forget {what}; run again with --yes to delete them")
    return 0


def _owner_params(args: argparse.Namespace) -> dict[str, str]:
    """--device and --user, when given (daemon/owners.py checks the names)."""
    return {n: v for n in ("device", "user") if (v := getattr(args, n, None))}


def _owner_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", help="only what these devices wrote (comma-separated)")
    p.add_argument("--user", help="only what these users wrote (comma-separated)")


def _clear_errors(handler: Callable[[Config, argparse.Namespace], int]
                  ) -> Callable[[Config, argparse.Namespace], int]:
    """Bad input (a malformed date, a budget too small) is a message and exit 2."""
    def run(cfg: Config, args: argparse.Namespace) -> int:
        try:
            return handler(cfg, args)
        except ValueError as exc:
            print(f"memoryd {args.command}: {exc}", file=sys.stderr)
            return 2
    return run


def add_commands(sub: Any, common: argparse.ArgumentParser
                 ) -> dict[str, Callable[[Config, argparse.Namespace], int]]:
    c = sub.add_parser("context", parents=[common],
                       help="a markdown context pack for an agent, within a token budget")
    c.add_argument("query", nargs="+")
    c.add_argument("--budget", type=int, help="token budget (default [search] "
                   "context_budget_tokens)")
    c.add_argument("--json", action="store_true", help="print the pack with its items as JSON")
    c.add_argument("--local", action="store_true", help="in-process, not via the daemon")
    _owner_flags(c)
    d = sub.add_parser("digest", parents=[common], help="the day (or week) digest")
    d.add_argument("--week", action="store_true", help="the week's digest, not the day's")
    d.add_argument("--date", help="a day in the period, YYYY-MM-DD (default today)")
    d.add_argument("--json", action="store_true")
    d.add_argument("--local", action="store_true", help="in-process, not via the daemon")
    _owner_flags(d)
    f = sub.add_parser("forget", parents=[common],
                       help="delete memories by time, source or text, everywhere")
    f.add_argument("--since", help="from this time (ISO 8601 or e.g. 'yesterday')")
    f.add_argument("--until", help="before this time (ISO 8601 or e.g. 'today')")
    f.add_argument("--source", help="only this source (files, browser, shell…)")
    f.add_argument("--query", help="only what contains this text (case-insensitive)")
    f.add_argument("--yes", action="store_true",
                   help="really delete (without it, only say what would go)")
    f.add_argument("--local", action="store_true", help="in-process, not via the daemon")
    _owner_flags(f)
    return {"context": _clear_errors(cmd_context), "digest": _clear_errors(cmd_digest),
            "forget": _clear_errors(cmd_forget)}
