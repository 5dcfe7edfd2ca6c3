"""The arrows point down: every import in daemon/, collectors/ and models/ (function-local
ones included, since they are arrows too) is read from the source, and an import that
points the wrong way fails with its module:line.

The layers, from the bottom:
    collectors/ models/                 know nothing of daemon/ (models/ not even collectors/)
    daemon.config config_tables errors logs owners backoff sqlite_migrations lazy_imports
                                        the base
    daemon.intake                       journal, collection, privacy: the base and collectors/
    pipeline store recall routing approvals sync   the features; their cores never reach up
                                        into the edges (api, cli, desktop); only a feature's
                                        own edge modules (api.py, cli.py, mcp.py) may
    daemon.api daemon.cli daemon.desktop daemon.runner   the edges
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("daemon", "collectors", "models")
BASE = {"daemon.config", "daemon.config_tables", "daemon.errors", "daemon.logs",
        "daemon.owners", "daemon.backoff", "daemon.sqlite_migrations", "daemon.lazy_imports"}
FEATURES = ("daemon.pipeline", "daemon.store", "daemon.recall", "daemon.routing",
            "daemon.approvals", "daemon.sync")
EDGES = ("daemon.api", "daemon.cli", "daemon.desktop", "daemon.runner")
# A feature's own edge: the HTTP routes, the CLI commands, the MCP tools of that feature.
EDGE_MODULES = ("api", "cli", "mcp")


@dataclass(frozen=True)
class Arrow:
    source: str  # the importing module, e.g. daemon.store.lance
    line: int
    target: str  # the imported module, e.g. daemon.api.app

    def __str__(self) -> str:
        path = self.source.replace(".", "/")
        return f"{path}.py:{self.line}: {self.source} imports {self.target}"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@functools.cache
def arrows() -> tuple[Arrow, ...]:
    """Every import of a first-party module, from every module of the three packages."""
    return tuple(_walk())


def _walk() -> Iterator[Arrow]:
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            source = _module_name(path)
            here = source.split(".") if path.name == "__init__.py" else source.split(".")[:-1]
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                targets: list[str] = []
                if isinstance(node, ast.Import):
                    targets = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom):
                    base = here[: len(here) - node.level + 1] if node.level else []
                    module = ".".join(base + ([node.module] if node.module else []))
                    # `from daemon.sync import dir` imports the module daemon.sync.dir
                    targets = [f"{module}.{a.name}" if _is_module(f"{module}.{a.name}")
                               else module for a in node.names]
                for target in targets:
                    if target.split(".")[0] in PACKAGES:
                        yield Arrow(source, node.lineno, target)


def _is_module(name: str) -> bool:
    path = ROOT.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _in(module: str, *packages: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def _wrong_way(a: Arrow) -> str | None:
    """Given an import, say which rule it breaks, or None."""
    if _in(a.source, "collectors", "models") and _in(a.target, "daemon"):
        return "collectors/ and models/ never import daemon/"
    if _in(a.source, "models") and _in(a.target, "collectors"):
        return "models/ never imports collectors/"
    if _in(a.source, *BASE) and not _in(a.target, *BASE):
        return "the base (config, errors, logs, owners, ...) imports only itself"
    if _in(a.source, "daemon.intake") and _in(a.target, "daemon") and not _in(
            a.target, "daemon.intake", *BASE):
        return "daemon.intake imports only the base (and collectors/)"
    if _in(a.source, "daemon.intake", "daemon.pipeline", "daemon.store") and _in(
            a.target, *EDGES):
        return "intake, pipeline and store never import api, cli, desktop or runner"
    is_edge_module = a.source.rsplit(".", 1)[-1] in EDGE_MODULES
    if _in(a.source, *FEATURES) and not is_edge_module and _in(a.target, *EDGES):
        return "a feature's core never imports api, cli, desktop or runner (its api/cli/mcp may)"
    if _in(a.target, "daemon.desktop") and not _in(a.source, "daemon.desktop", "daemon.cli",
                                                    "daemon.runner"):
        return "only the CLI and the runner import daemon.desktop"
    if _in(a.target, "daemon.runner") and not _in(a.source, "daemon.runner", "daemon.cli"):
        return "only the CLI imports daemon.runner"
    return None


def test_every_import_points_down() -> None:
    found = list(arrows())
    assert len(found) > 300  # the walk really reads the code (a broken walk finds nothing)
    wrong = [f"{a}  ({rule})" for a in found if (rule := _wrong_way(a))]
    assert not wrong, "imports that point the wrong way:\n" + "\n".join(wrong)


def test_the_walk_sees_function_local_and_relative_imports() -> None:
    found = {(a.source, a.target) for a in arrows()}
    # daemon/desktop/units.py imports the socket client inside a function
    assert ("daemon.desktop.units", "daemon.cli.client") in found


def test_a_wrong_way_arrow_is_named() -> None:
    assert _wrong_way(Arrow("daemon.store.lance", 3, "daemon.api.app"))
    assert _wrong_way(Arrow("collectors.files", 3, "daemon.config"))
    assert _wrong_way(Arrow("daemon.recall.search", 3, "daemon.cli.client"))
    assert _wrong_way(Arrow("daemon.recall.cli", 3, "daemon.cli.client")) is None
    assert str(Arrow("daemon.store.lance", 3, "daemon.api.app")).startswith(
        "daemon/store/lance.py:3: ")


def test_package_init_files_hold_no_code() -> None:
    """Importing a package costs nothing (the daemon's lazy imports rely on it): an
    `__init__.py` is empty or holds only a docstring (daemon/sync/'s map of its modules)."""
    busy = []
    for init in sorted(ROOT.glob("daemon/**/__init__.py")):
        body = ast.parse(init.read_text()).body
        if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
            body = body[1:]
        if body:
            busy.append(f"{init.relative_to(ROOT)}:{body[0].lineno}")
    assert not busy, f"package __init__.py files with code in them: {busy}"
