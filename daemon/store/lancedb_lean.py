"""`import lancedb` without the REST namespace client it never uses here.

lancedb imports `lance_namespace`, which re-exports model classes of the generated REST
client `lance_namespace_urllib3_client`; importing any part of that package runs its
`__init__`, which imports every one of its API modules. Those modules are most of what
`import lancedb` costs: 3.6 of 5.2 s in the worker's cold start and ~19 MB in the resident
reader (bench/README.md). memoryd opens tables on local disk or object storage, never
through a REST namespace.

The client package is registered with its body deferred (daemon/lazy_imports.py): the
`models` subpackage lancedb needs is imported as usual (through the package's `__path__`),
and the package body, with its API modules, runs only if something asks the package for
a name it does not have yet. memoryd imports lancedb from here only
(`from daemon.store.lancedb_lean import lancedb`), so the deferral always comes first.
"""

from __future__ import annotations

from daemon.lazy_imports import defer

REST_CLIENT = "lance_namespace_urllib3_client"

defer(REST_CLIENT)
import lancedb  # noqa: E402  (memoryd's one import of it: `from ...lancedb_lean import lancedb`)

__all__ = ["REST_CLIENT", "lancedb"]
