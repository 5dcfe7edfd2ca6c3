"""`import lancedb` without the REST namespace client it never uses here.

lancedb imports `lance_namespace`, which re-exports model classes of the generated REST
client `lance_namespace_urllib3_client`; importing any part of that package runs its
`__init__`, which imports every one of its API modules. Those modules are most of what
`import lancedb` costs: 3.6 of 5.2 s in the worker's cold start and ~19 MB in the resident
reader (bench/README.md). memoryd opens tables on local disk or object storage, never
through a REST namespace.

`defer_rest_client()` registers the client package without running its `__init__`: the
`models` subpackage lancedb needs is imported as usual (through the package's `__path__`),
and the package body, with its API modules, runs only if something asks the package for
a name it does not have yet. memoryd imports lancedb from here only
(`from daemon.store.lancedb_lean import lancedb`), so the deferral always comes first.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
import threading
from types import ModuleType
from typing import Any

log = logging.getLogger(__name__)

REST_CLIENT = "lance_namespace_urllib3_client"
_lock = threading.Lock()


def defer_rest_client(name: str = REST_CLIENT) -> bool:
    """Register package `name` with its body deferred; False if it is imported already
    or not installed (then nothing changes)."""
    with _lock:
        if name in sys.modules:
            return False
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None or spec.submodule_search_locations is None:
            return False
        module = importlib.util.module_from_spec(spec)
        loaded = threading.Lock()

        def load_body(attr: str) -> Any:
            """The package's own `__init__`, run once, the first time a name it defines
            is asked for; then that name."""
            if attr.startswith("__"):
                raise AttributeError(attr)
            with loaded:
                if module.__dict__.pop("__getattr__", None) is not None:
                    log.debug("loading %s in full (asked for %s)", name, attr)
                    spec.loader.exec_module(module)  # type: ignore[union-attr]
            return ModuleType.__getattribute__(module, attr)

        module.__getattr__ = load_body  # type: ignore[method-assign]
        sys.modules[name] = module
        return True


defer_rest_client()
import lancedb  # noqa: E402  (memoryd's one import of it: `from ...lancedb_lean import lancedb`)

__all__ = ["defer_rest_client", "lancedb"]
