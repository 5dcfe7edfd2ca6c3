"""lancedb without its REST namespace client: the store works (tables, vectors, full
text) and the client's API modules are never imported; asked for, the client loads."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

CHECK = textwrap.dedent("""
    import sys, tempfile
    from daemon.store.lancedb_lean import lancedb
    from lancedb.index import FTS
    db = lancedb.connect(tempfile.mkdtemp())
    t = db.create_table("t", data=[{"id": "a", "vector": [0.1, 0.2], "doc": "hello lean world"},
                                   {"id": "b", "vector": [0.9, 0.1], "doc": "other words"}])
    t.create_index("doc", config=FTS(base_tokenizer="simple", stem=False))
    assert t.search([0.1, 0.2]).limit(1).to_list()[0]["id"] == "a"
    assert t.search("lean", query_type="fts").limit(1).to_list()[0]["id"] == "a"
    api = [m for m in sys.modules if m.startswith("lance_namespace_urllib3_client.api")]
    assert api == [], api
    import lance_namespace_urllib3_client as client
    assert client.ApiClient.__name__ == "ApiClient"  # the body loads when asked
    assert any(m.startswith("lance_namespace_urllib3_client.api") for m in sys.modules)
    print("ok")
""")


def test_the_store_never_imports_lancedbs_rest_client() -> None:
    root = Path(__file__).resolve().parents[3]
    out = subprocess.run([sys.executable, "-c", CHECK], cwd=root, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith("ok")
