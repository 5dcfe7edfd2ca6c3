"""Chroma's side of `search_vs_chroma.py`: runs in Chroma's own venv (bench/.venvs/chroma).

Only numpy and chromadb are imported here, never memoryd. It reads one JSON command a
line on stdin and answers one JSON line on its real stdout (anything Chroma prints goes
to stderr). Times are taken in here around the Chroma call alone, so the pipe to the
parent costs nothing in the figures.

  {"op": "build", "path": P, "data": D, "deadline_s": S}  -> {"rows", "build_s", "complete"}
  {"op": "vector", "v": [...], "k": 10}                     -> {"ms", "ids"}
  {"op": "contains", "term": T, "k": 10}                    -> {"ms", "ids"}
  {"op": "vector_contains", "v": [...], "term": T, "k": 10} -> {"ms", "ids"}
  {"op": "rss"}                                             -> {"rss_mb"}
  {"op": "quit"}
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

os.environ["ANONYMIZED_TELEMETRY"] = "False"  # nothing leaves the machine

import chromadb  # noqa: E402
import numpy as np  # noqa: E402
from chromadb.config import Settings  # noqa: E402

OUT = os.fdopen(os.dup(1), "w")
os.dup2(2, 1)  # Chroma's own prints must not corrupt the protocol


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def build(cmd: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    client = chromadb.PersistentClient(path=cmd["path"],
                                       settings=Settings(anonymized_telemetry=False))
    col = client.create_collection("memories", metadata={"hnsw:space": "cosine"})
    data = Path(cmd["data"])
    vecs = np.load(data / "vectors.npy", mmap_mode="r")
    docs = [json.loads(line) for line in (data / "docs.jsonl").open()]
    batch = min(client.get_max_batch_size(), 5000)
    deadline = cmd.get("deadline_s") or float("inf")
    started = time.perf_counter()
    done = 0
    while done < len(docs) and time.perf_counter() - started < deadline:
        part = docs[done:done + batch]
        col.add(ids=[d["id"] for d in part], embeddings=np.asarray(vecs[done:done + len(part)]),
                documents=[d["doc"] for d in part],
                metadatas=[{"project": d["project"], "source": d["source"], "ts": d["ts"]}
                           for d in part])
        done += len(part)
    built = time.perf_counter() - started
    return col, {"rows": col.count(), "build_s": round(built, 1),
                 "complete": done == len(docs), "rss_mb": round(rss_mb(), 1),
                 "maxrss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                 "chromadb": chromadb.__version__}


def search(col: Any, cmd: dict[str, Any]) -> dict[str, Any]:
    """Run one timed search; return its time (ms) and the ids found."""
    op, k = cmd["op"], cmd["k"]
    t = time.perf_counter()
    if op == "vector":
        ids = col.query(query_embeddings=[cmd["v"]], n_results=k)["ids"][0]
    elif op == "contains":
        ids = col.get(where_document={"$contains": cmd["term"]}, limit=k,
                      include=["documents", "metadatas"])["ids"]
    else:  # vector_contains
        ids = col.query(query_embeddings=[cmd["v"]], n_results=k,
                        where_document={"$contains": cmd["term"]})["ids"][0]
    return {"ms": (time.perf_counter() - t) * 1000, "ids": ids}


def main() -> None:
    col: Any = None
    for line in sys.stdin:
        cmd = json.loads(line)
        op = cmd["op"]
        if op == "quit":
            break
        if op == "build":
            col, reply = build(cmd)
        elif op in ("vector", "contains", "vector_contains"):
            reply = search(col, cmd)
        elif op == "rss":
            reply = {"rss_mb": round(rss_mb(), 1)}
        else:
            reply = {"error": f"unknown op {op}"}
        OUT.write(json.dumps(reply) + "\n")
        OUT.flush()


if __name__ == "__main__":
    main()
