"""The `memoryd` command line. Each subcommand is a small function over the service layer."""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
import time
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from daemon.config import Config, config_as_dict, load_config
from daemon.errors import DaemonUnavailable, MemorydError
from daemon.logs import setup_logging
from daemon.store import query_embed  # light: the ONNX export is loaded only when asked

log = logging.getLogger("memoryd")


def cmd_config(cfg: Config, args: argparse.Namespace) -> int:
    import tomli_w

    print(f"# effective config (file: {cfg.source or 'none, defaults only'})")
    print(tomli_w.dumps(config_as_dict(cfg)), end="")
    return 0


def cmd_run(cfg: Config, args: argparse.Namespace) -> int:
    from daemon.runner import run_daemon

    return run_daemon(cfg)


def cmd_ingest(cfg: Config, args: argparse.Namespace) -> int:
    from daemon.cli.progress import progress_printer
    from daemon.intake.collect import build_collectors
    from daemon.intake.journal import Journal
    from daemon.intake.redact import redact
    from daemon.owners import journal_owner
    from daemon.pipeline.budget import CpuBudget
    from daemon.pipeline.steps import Pipeline
    from daemon.store.engine import Engine

    if not args.once:
        print("memoryd ingest needs --once (the daemon, `memoryd run`, ingests continuously)",
              file=sys.stderr)
        return 2
    from daemon.intake.privacy import gate_for

    started = time.monotonic()
    journal = Journal(cfg.data_path / "journal.sqlite3", redact=redact, owner=journal_owner(cfg))
    gate = gate_for(cfg, journal)
    if gate.pause.paused():
        print("collection is paused (memoryd resume); processing what is already journaled",
              file=sys.stderr)
    collected = 0
    for c in build_collectors(cfg):
        try:
            n = c.poll(gate)
        except Exception as exc:  # one broken source must not stop the others
            log.error("collector %s failed: %s", c.name, exc)
            continue
        log.info("collector %s: %d new events", c.name, n)
        collected += n
    engine = Engine(cfg)
    pipeline = Pipeline(cfg, journal, engine)
    pipeline.budget = CpuBudget(0)  # `ingest --once` runs at full speed
    show, done = progress_printer()
    try:
        report = pipeline.drain(show)
    finally:
        done()
    digests: list[str] = []
    if not report.errors:
        try:  # day and week digests of what was just summarized (and of late arrivals)
            digests = pipeline.compact_step()
        except Exception as exc:
            log.error("compaction failed: %s; the next run retries it", exc)
    engine.optimize()
    query_embed.prepare(cfg)  # the searches that follow need no torch
    counts = journal.counts()
    engine.close()
    journal.close()
    print(f"collected {collected} new events, indexed {report.indexed}, summarized "
          f"{report.summarized_events} events into {report.summarized_chunks} memories "
          f"(+{len(digests)} digests) "
          f"in {time.monotonic() - started:.1f} s")
    if report.errors or counts["new"]:
        print(f"incomplete: {counts['new']} events not indexed, "
              f"{counts['indexed']} awaiting a summary: {'; '.join(report.errors)}",
              file=sys.stderr)
        return 3
    return 0


def _search_local(cfg: Config, query: str, k: int, source: str | None,
                  kind: str | None = None, device: str | None = None,
                  user: str | None = None) -> list[dict[str, Any]]:
    from daemon.owners import whose
    from daemon.service import hit_json
    from daemon.store.engine import Engine
    from daemon.store.query_embed import onnx_query_embedder

    o = whose(None, device, user)
    engine = Engine(cfg)
    engine.query_embed = onnx_query_embedder(cfg) or engine.query_embed  # no torch load
    try:
        return [hit_json(h) for h in engine.search(query, k, source=source, kind=kind,
                                                   devices=o.devices, users=o.users)]
    finally:
        engine.close()


def cmd_search(cfg: Config, args: argparse.Namespace) -> int:
    query = " ".join(args.query)
    results: list[dict[str, Any]]
    try:
        from daemon.owners import whose

        whose(None, args.device, args.user)  # a bad name is an error here, not a traceback
    except ValueError as exc:
        print(f"memoryd search: {exc}", file=sys.stderr)
        return 2
    try:
        if args.local:
            raise DaemonUnavailable("--local")
        params: dict[str, Any] = {"q": query, "k": args.k}
        if args.source:
            params["source"] = args.source
        if args.kind:
            params["kind"] = args.kind
        params.update({n: v for n in ("device", "user") if (v := getattr(args, n, None))})
        results = __import__("daemon.cli.client", fromlist=["daemon_get"]).daemon_get(
            cfg, "/v1/memory/search", params)["results"]
    except DaemonUnavailable:
        results = _search_local(cfg, query, args.k, args.source, args.kind,
                                getattr(args, "device", None), getattr(args, "user", None))
    if args.json:
        print(json.dumps({"results": results}, ensure_ascii=False))
        return 0
    if not results:
        print("no memories match")
    for r in results:
        text = " ".join(r["text"].split())
        who = f"  ({r['user']}@{r['device']})" if r.get("device") or r.get("user") else ""
        print(f"{r['ts'][:16].replace('T', ' ')}  [{r['kind']}] {r['title']}{who}\n    "
              f"{text[:200]}{'…' if len(text) > 200 else ''}")
    return 0


def cmd_status(cfg: Config, args: argparse.Namespace) -> int:
    from daemon.cli.client import daemon_get

    try:
        status = daemon_get(cfg, "/v1/status", timeout=30)
        status["daemon"] = "running"
    except DaemonUnavailable as exc:
        from daemon.intake.journal import Journal
        from daemon.owners import journal_owner

        journal = Journal(cfg.data_path / "journal.sqlite3", owner=journal_owner(cfg))
        from daemon.intake.privacy import PauseState

        status = {"daemon": f"not running ({exc})", "data_dir": str(cfg.data_path),
                  "journal": journal.counts(), "collectors": {"cursors": journal.cursors()},
                  "paused": PauseState(cfg.data_path).paused()}
        journal.close()
        if cfg.sync.targets:  # the states last recorded, refusals included
            from daemon.sync.service import SyncService

            sync = SyncService(cfg, None)
            status["sync"] = sync.status()
            sync.close()
    if args.json:
        print(json.dumps(status, indent=2))
        return 0
    j = status["journal"]
    print(f"daemon:   {status['daemon']}")
    if status.get("memory"):
        from daemon.health import verdict

        print(f"memory:   {verdict(status['memory'])}")
    if status.get("paused"):
        paused = status["paused"]
        until = f", until {time.ctime(paused['until'])}" if paused.get("until") else ""
        print(f"paused:   since {time.ctime(paused['since'])}{until}")
    print(f"data dir: {status['data_dir']}")
    print(f"journal:  {j['total']} events ({j['new']} waiting, {j['indexed']} searchable "
          f"awaiting a summary, {j['summarized']} summarized)")
    for stage, st in status.get("pipeline", {}).get("stages", {}).items():
        eta = "done" if not st["backlog"] else (
            "unknown" if st["eta_seconds"] is None else _duration(st["eta_seconds"]))
        print(f"{stage + ':':<9} {st['backlog']} waiting, {st['rate_per_s']:g} events/s, "
              f"ETA {eta}")
    if status.get("engine"):
        from daemon.cli.engine_status import engine_lines

        print("\n".join(engine_lines(status["engine"])))
    for h in status.get("collectors", {}).get("running", []):
        err = f"; last error {h['last_error_at']}: {h['last_error']}" if h["last_error"] else ""
        print(f"collector {h['name']}: last run {h['last_run'] or 'not yet'}, "
              f"{h['last_new']} new then, {h['total_new']} since start{err}")
    if not status.get("collectors", {}).get("running"):
        for name, cur in status.get("collectors", {}).get("cursors", {}).items():
            print(f"collector {name}: last cursor at {cur['updated']}")
    if status.get("sync", {}).get("targets"):
        from daemon.sync.cli import render

        print(render(status["sync"]))
    return 0


def _duration(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h} h {m:02d} min" if h else (f"{m} min {s:02d} s" if m else f"{s} s")


def cmd_models(cfg: Config, args: argparse.Namespace) -> int:
    from models.assets import embedder_path, gguf_path

    started = time.monotonic()
    gguf = gguf_path(cfg.models.summarizer, cfg.models_path)
    print(f"summarizer {cfg.models.summarizer}: {gguf} (verified)")
    folder = embedder_path(cfg.models.embedder)
    print(f"embedder   {cfg.models.embedder}: {folder} (verified)")
    if (cfg.search.resident_reader and cfg.search.query_embedder != "router") \
            or cfg.models.embedder_runtime == "onnx":
        from models import onnx_embed, onnx_prepacked
        from models.assets import manifest
        from models.errors import ModelError

        if cfg.models.embedder in manifest()["embedder"]:  # once, for the reader and worker
            out = onnx_embed.ensure_export(
                folder, onnx_embed.export_dir(cfg.models_path, cfg.models.embedder, folder))
            onnx_embed.ensure_mapped(out)  # its fp32 weights mapped from a file
            try:  # and packed for this CPU (optional: the mapped copy serves without it)
                onnx_prepacked.ensure(folder, out)
            except ModelError as exc:
                log.warning("%s", exc)
            print(f"ONNX embedder (queries and indexing, no torch): {out}")
    log.info("models checked in %.1f s", time.monotonic() - started)
    return 0


def cmd_service(cfg: Config, args: argparse.Namespace) -> int:
    from daemon.desktop import units

    if args.action == "install":
        what = units.install(cfg, start=args.start)
        print(f"memoryd installed as {what}")
        if args.start:
            if not units.wait_healthy(cfg, 60):
                print(f"memoryd did not answer /health within 60 s; see "
                      f"{cfg.data_path / 'memoryd.log'} or `journalctl --user -u memoryd`",
                      file=sys.stderr)
                return 1
            print(f"memoryd is running: socket {cfg.socket_path}, token in {cfg.token_path}")
    elif args.action == "start":
        units.start_background(cfg) if units.manager() == "background" else units.install(cfg, True)
        return 0 if units.wait_healthy(cfg, 60) else 1
    elif args.action == "uninstall":
        print(units.uninstall(cfg))
    else:
        up = units.wait_healthy(cfg, 0.5)
        print(f"manager: {units.manager()}; daemon {'answering' if up else 'not answering'}")
        return 0 if up else 3
    return 0


def cmd_pause(cfg: Config, args: argparse.Namespace) -> int:
    from daemon.intake.privacy import PauseState

    PauseState(cfg.data_path).pause(args.minutes, reason="cli")
    until = f" for {args.minutes:g} minutes" if args.minutes else " until `memoryd resume`"
    print(f"collection paused{until}; nothing is recorded meanwhile")
    return 0


def cmd_resume(cfg: Config, args: argparse.Namespace) -> int:
    from daemon.intake.privacy import PauseState

    PauseState(cfg.data_path).resume()
    print("collection resumed")
    return 0


Handler = Callable[[Config, argparse.Namespace], int]
# The built-in commands; features add theirs when the parser is built (each parsed
# subcommand carries its handler as `args.handler`, so nothing here changes at run time).
COMMANDS: Mapping[str, Handler] = MappingProxyType({
    "config": cmd_config, "run": cmd_run, "ingest": cmd_ingest, "search": cmd_search,
    "status": cmd_status, "models": cmd_models, "service": cmd_service,
    "pause": cmd_pause, "resume": cmd_resume,
})


# Features that bring their own subcommands: each module has
# `add_commands(sub, common) -> dict[name, handler]`. A new feature is one line here.
FEATURE_COMMANDS: tuple[str, ...] = (
    "daemon.routing.cli",
    "daemon.recall.cli",
    "daemon.sync.cli",
    "daemon.desktop.cli",
    "daemon.approvals.cli",
)


def parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", metavar="PATH", default=argparse.SUPPRESS,
                        help="config file (default: the platform config dir, or $MEMORYD_HOME)")
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS)
    p = argparse.ArgumentParser(prog="memoryd", parents=[common],
                                description="A desktop passive-memory daemon with local models.")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("config", parents=[common], help="print the effective config")
    sub.add_parser("run", parents=[common], help="run the daemon in the foreground")
    ing = sub.add_parser("ingest", parents=[common], help="collect and process once, then exit")
    ing.add_argument("--once", action="store_true", help="run every collector once and drain")
    s = sub.add_parser("search", parents=[common], help="search memory")
    s.add_argument("query", nargs="+")
    s.add_argument("-k", type=int, default=10, help="how many results (default 10)")
    s.add_argument("--json", action="store_true", help="print JSON: {results: [...]}")
    s.add_argument("--source", help="only this source (files, browser, shell, memory…)")
    s.add_argument("--kind", help="only this kind (file.modified, shell.command, "
                   "memory.chunk, memory.day…)")
    s.add_argument("--local", action="store_true", help="search in-process, not via the daemon")
    s.add_argument("--device", help="only what these devices wrote (comma-separated)")
    s.add_argument("--user", help="only what these users wrote (comma-separated)")
    st = sub.add_parser("status", parents=[common], help="what the daemon knows and does")
    st.add_argument("--json", action="store_true")
    pa = sub.add_parser("pause", parents=[common],
                        help="stop recording activity (survives restarts)")
    pa.add_argument("--minutes", type=float, help="resume by itself after this long")
    sub.add_parser("resume", parents=[common], help="record activity again")
    sub.add_parser("models", parents=[common],
                   help="assemble and verify the configured models (install.sh runs this)")
    sv = sub.add_parser("service", parents=[common], help="run memoryd as a service")
    sv.add_argument("action", choices=["install", "uninstall", "start", "status"])
    sv.add_argument("--start", action="store_true", help="with install: start it now")
    handlers = dict(COMMANDS)
    for module in FEATURE_COMMANDS:
        handlers.update(importlib.import_module(module).add_commands(sub, common))
    for name, handler in handlers.items():
        sub.choices[name].set_defaults(handler=handler)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    quiet = args.command in ("search", "status", "config")
    setup_logging(logging.DEBUG if getattr(args, "verbose", False)
                  else logging.WARNING if quiet else logging.INFO)
    try:
        cfg = load_config(getattr(args, "config", None))
        handler: Handler = args.handler
        return handler(cfg, args)
    except MemorydError as exc:
        print(f"memoryd: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
