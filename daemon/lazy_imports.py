"""Packages registered now and loaded only when something asks them for a name.

Some libraries memoryd uses import a package at their top for a path memoryd never takes:
lancedb imports the generated REST client of `lance_namespace` (its API modules were
3.6 s of the worker's cold start and ~19 MB of the reader), detect-secrets imports
`requests` for the functions that verify a found secret against its service over the
network (memoryd never calls them: they would send the user's secrets away; ~5 MB of the
daemon). `defer(name)` registers such a package without running its `__init__`: its
submodules still import as usual (through the package's `__path__`), and the package
body runs, once, the first time anything asks the package for a name it does not have
yet. Whoever needs the package gets it whole, a little later.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
import threading
from types import ModuleType
from typing import Any

log = logging.getLogger(__name__)
_lock = threading.Lock()


def defer(name: str) -> bool:
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
