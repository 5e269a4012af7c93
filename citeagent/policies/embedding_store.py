"""The CPU policy's sentence vectors on disk, in SQLite, looked up by text.

Training re-reads the same sentences for every roll-in, sample and iteration, and `ask` reads the
same documentation pages again and again, so the vectors are kept between processes. Kept in one
.npz file they had to be loaded whole by every process: after a few weeks of runs that was 466k
vectors, 0.7 GB on disk and 1 GB of memory for one `ask`. SQLite looks up only the texts a process
needs, takes writes from several processes at once, and is in the standard library.

It is only a cache: an unreadable file is reported once and the policy runs without it.
"""
from __future__ import annotations

import hashlib
import sqlite3
import sys
import threading
import time
from pathlib import Path
from typing import Iterable

import numpy as np

_CHUNK = 500  # texts per SELECT: under SQLite's limit on bound variables


def text_key(text: str) -> bytes:
    """16 bytes that stand for a text: its vector's primary key."""
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


class EmbeddingStore:
    def __init__(self, path: str | Path, dim: int):
        self.path, self.dim = Path(path), dim
        self._lock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, timeout=60, check_same_thread=False, isolation_level=None)
        try:
            self._setup()
        except sqlite3.DatabaseError:
            self.db.close()
            raise

    def _setup(self, attempts: int = 50) -> None:
        # Two processes creating the file at once can find it locked while the other switches it to
        # WAL; SQLite's busy timeout does not cover that step, so it is retried here.
        for attempt in range(attempts):
            try:
                # A vector is 1.5 KB: pages of 16 KB hold ten (4 KB pages would waste a third of the
                # file). Only a new file takes the page size; it has to come before WAL mode.
                self.db.execute("PRAGMA page_size=16384")
                self.db.execute("PRAGMA journal_mode=WAL")  # readers never wait for a writer
                self.db.execute("PRAGMA synchronous=NORMAL")  # a crash may lose the last vectors: a cache can
                self.db.execute("CREATE TABLE IF NOT EXISTS vectors (key BLOB PRIMARY KEY, vec BLOB NOT NULL)")
                return
            except sqlite3.OperationalError as e:
                if "locked" not in str(e) or attempt == attempts - 1:
                    raise
                time.sleep(0.1)

    def get_many(self, texts: Iterable[str]) -> dict[str, np.ndarray]:
        """The stored vectors of those texts that have one."""
        texts = list(dict.fromkeys(texts))
        out: dict[str, np.ndarray] = {}
        with self._lock:
            for lo in range(0, len(texts), _CHUNK):
                chunk = texts[lo: lo + _CHUNK]
                by_key = {text_key(t): t for t in chunk}
                rows = self.db.execute(f"SELECT key, vec FROM vectors WHERE key IN ({','.join('?' * len(by_key))})",
                                       list(by_key)).fetchall()
                for key, blob in rows:
                    if len(blob) == 4 * self.dim:  # a row of another width is not this encoder's
                        out[by_key[key]] = np.frombuffer(blob, dtype=np.float32).copy()
        return out

    def put_many(self, items: dict[str, np.ndarray]) -> None:
        rows = [(text_key(t), np.asarray(v, dtype=np.float32).tobytes()) for t, v in items.items()]
        with self._lock:
            self.db.execute("BEGIN IMMEDIATE")  # take the write lock now: a deferred one cannot wait for it
            try:
                self.db.executemany("INSERT OR IGNORE INTO vectors (key, vec) VALUES (?, ?)", rows)
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise

    def import_npz_once(self, legacy: str | Path) -> int:
        """Add the vectors of the .npz cache earlier versions kept (texts, vectors), the first time
        this store is opened; returns how many were read. The file is left where it is."""
        with self._lock:
            if self.db.execute("PRAGMA user_version").fetchone()[0] >= 1:
                return 0
        items = []
        try:
            with np.load(legacy, allow_pickle=True) as z:  # our own cache file, written by np.savez
                items = list(zip(z["texts"].tolist(), z["vectors"]))
        except (OSError, ValueError, KeyError):
            pass  # missing or unreadable: nothing to carry over
        for lo in range(0, len(items), 50_000):
            self.put_many(dict(items[lo: lo + 50_000]))
        with self._lock:
            self.db.execute("PRAGMA user_version = 1")
        return len(items)

    def __len__(self) -> int:
        with self._lock:
            return self.db.execute("SELECT COUNT(*) FROM vectors").fetchone()[0]

    def close(self) -> None:
        self.db.close()


def warn_unusable(path: str | Path, error: Exception) -> None:
    """One line on stderr naming the cache file, what failed and the fix."""
    print(f"warning: the embedding cache {path} failed ({error}); running without it. Delete the file to "
          "start a new one.", file=sys.stderr)


def open_store(path: str | Path, dim: int) -> EmbeddingStore | None:
    """The store at `path`, or None (after warn_unusable) when the file is not a readable SQLite
    database."""
    try:
        return EmbeddingStore(path, dim)
    except sqlite3.Error as e:
        warn_unusable(path, e)
        return None
