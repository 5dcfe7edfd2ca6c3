"""Re-score retrieval on a store the eval kit already built, without re-ingesting.

`../shared/eval/run.py SET --keep DIR` ingests through the real collectors (~25 min on
the shared 2-core box); this asks the same questions in one process against DIR's data
and prints recall@K the way run.py scores it, so a change to search is measured in a
minute. Ranking only: the summaries are those of the build.

Run:  /root/.local/share/memoryd/venv/bin/python bench/eval_kept.py DIR SET_DIR [--k 5] [-v]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_HUB_DISABLE_PROGRESS_BARS="1",
                  TRANSFORMERS_VERBOSITY="error", TOKENIZERS_PARALLELISM="false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("dir", help="a run.py --keep directory (holds memoryd.toml and data/)")
    ap.add_argument("set_dir")
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("-v", action="store_true", help="show the top k of each miss")
    ap.add_argument("--eval-kit", default=str(Path(__file__).resolve().parents[2] / "shared"
                                             / "eval"))
    a = ap.parse_args()
    sys.path.insert(0, a.eval_kit)
    import run as kit  # the kit's own question loader and scorer

    from daemon.config import load_config
    from daemon.store.engine import Engine
    from daemon.service import hit_json

    os.environ["HOME"] = str(Path(a.dir) / "home")  # as run.py runs memoryd
    engine = Engine(load_config(Path(a.dir) / "memoryd.toml"))
    questions = kit.load_questions(a.set_dir)
    hits = 0
    for q in questions:
        results = [hit_json(h) for h in engine.search(q["question"], a.k)]
        missing = kit.score(results, q["expect"], a.k)
        hits += not missing
        print(f"{'hit ' if not missing else 'miss'}  {q['id']}  {q['question']}"
              + (f"  -- missing: {missing}" if missing else ""))
        if missing and a.v:
            for r in results:
                print(f"      [{r['kind']}] {r['title'][:70]} | {r['text'][:120]!r}")
    engine.close()
    print(f"recall@{a.k} = {int(hits / len(questions) * 100) / 100:.2f} "
          f"({hits}/{len(questions)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
