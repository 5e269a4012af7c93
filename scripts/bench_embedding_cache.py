"""What a process pays to reach the CPU policy's cached vectors: the .npz that earlier versions
loaded whole (the baseline) against the SQLite store (citeagent.policies.embedding_store), which
looks up only the texts a process needs. Prints JSON: seconds and peak RSS of each, and ratios.

    python scripts/bench_embedding_cache.py [--vectors 200000] [--lookups 300]

Each side runs in its own process, so each peak RSS is its own. The vectors are random (the cost
does not depend on their values); the texts are of sentence length.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

DIM = 384

CHILD = r"""
import json, sys, time
import numpy as np

from citeagent.train.common import peak_rss_mb as hwm_mb

mode, path, n, k = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
wanted = [f"sentence number {i} of a page of documentation, long enough to be a sentence" for i in range(0, n, n // k)][:k]
base = hwm_mb()
t = time.perf_counter()
if mode == "npz":
    with np.load(path, allow_pickle=True) as z:
        cache = dict(zip(z["texts"].tolist(), z["vectors"]))
    got = {w: cache[w] for w in wanted}
else:
    from citeagent.policies.embedding_store import EmbeddingStore
    got = EmbeddingStore(path, 384).get_many(wanted)
seconds = time.perf_counter() - t
assert len(got) == len(wanted)
print(json.dumps({"seconds": seconds, "rss_added_mb": hwm_mb() - base}))
"""


def run(mode: str, path: Path, n: int, k: int) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, mode, str(path), str(n), str(k)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--vectors", type=int, default=200_000)
    p.add_argument("--lookups", type=int, default=300)
    a = p.parse_args()
    from citeagent.policies.embedding_store import EmbeddingStore

    texts = [f"sentence number {i} of a page of documentation, long enough to be a sentence" for i in range(a.vectors)]
    vecs = np.random.default_rng(0).standard_normal((a.vectors, DIM)).astype(np.float32)
    with tempfile.TemporaryDirectory() as d:
        npz, db = Path(d) / "cache.npz", Path(d) / "cache.sqlite"
        t = time.perf_counter()
        np.savez(npz, texts=np.array(texts, dtype=object), vectors=vecs)
        t_npz = time.perf_counter() - t
        t = time.perf_counter()
        store = EmbeddingStore(db, DIM)
        for lo in range(0, a.vectors, 50_000):
            store.put_many(dict(zip(texts[lo: lo + 50_000], vecs[lo: lo + 50_000])))
        store.close()
        t_db = time.perf_counter() - t
        old, new = run("npz", npz, a.vectors, a.lookups), run("sqlite", db, a.vectors, a.lookups)
        result = {
            "vectors": a.vectors, "lookups": a.lookups,
            "file_mb": {"npz": round(npz.stat().st_size / 2**20, 1), "sqlite": round(db.stat().st_size / 2**20, 1)},
            "write_all_seconds": {"npz": round(t_npz, 2), "sqlite": round(t_db, 2)},
            "npz_load_whole": {k: round(v, 3) for k, v in old.items()},
            "sqlite_lookup": {k: round(v, 3) for k, v in new.items()},
            "speedup": round(old["seconds"] / max(new["seconds"], 1e-9), 1),
            "rss_ratio_sqlite_over_npz": round(new["rss_added_mb"] / max(old["rss_added_mb"], 1e-9), 3),
        }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
