"""The CPU policy's on-disk embedding cache: a real SQLite file shared by processes, looked up by
text, vectors returned bit for bit, an earlier version's .npz carried over once, and a broken file
reported and run without."""
import subprocess
import sys

import numpy as np

from citeagent.policies.candidate import EMBED_DIM, Featurizer
from citeagent.policies.embedding_store import EmbeddingStore, open_store


class CountingEncoder:
    """Deterministic vectors per text, and a count of the texts it was asked to encode."""

    def __init__(self):
        self.encoded = []

    def encode(self, texts):
        self.encoded.extend(texts)
        return np.stack([np.random.default_rng(abs(hash(t)) % (1 << 32)).standard_normal(EMBED_DIM).astype(np.float32)
                         for t in texts])


def test_vectors_come_back_bit_for_bit_and_only_new_texts_are_encoded(tmp_path):
    path = tmp_path / "emb.sqlite"
    first = CountingEncoder()
    a = Featurizer(first, store=open_store(path, EMBED_DIM)).embed(["alpha", "beta", "alpha", "\ud800 lone surrogate"])
    assert first.encoded == ["alpha", "beta", "\ud800 lone surrogate"]  # each text once
    second = CountingEncoder()  # another process: a new memo, the same file
    f = Featurizer(second, store=open_store(path, EMBED_DIM))
    b = f.embed(["beta", "gamma", "alpha", "\ud800 lone surrogate"])
    assert second.encoded == ["gamma"]
    assert np.array_equal(b[0], a[1]) and np.array_equal(b[2], a[0]) and np.array_equal(b[3], a[3])
    assert len(f.store) == 4


def test_the_memo_forgets_its_oldest_texts_beside_a_store_and_their_vectors_come_back_bit_for_bit(tmp_path,
                                                                                                    monkeypatch):
    import citeagent.policies.candidate as candidate

    monkeypatch.setattr(candidate, "MEMO_TEXTS", 8)
    enc = CountingEncoder()
    f = Featurizer(enc, store=open_store(tmp_path / "emb.sqlite", EMBED_DIM))
    texts = [f"text {i}" for i in range(20)]
    first = f.embed(texts)  # all 20 come back, though the memo keeps fewer
    assert len(first) == 20 and len(f.cache) <= 8 and "text 19" in f.cache and "text 0" not in f.cache
    again = f.embed(texts[:3])
    assert np.array_equal(again, first[:3]) and enc.encoded == texts  # from the store, never re-encoded
    bare = Featurizer(CountingEncoder())  # no store: the memo is all there is, and keeps everything
    bare.embed(texts)
    assert len(bare.cache) == 20


def test_two_processes_write_to_one_store_at_once(tmp_path):
    path = tmp_path / "emb.sqlite"
    code = ("import sys, numpy as np\nfrom citeagent.policies.embedding_store import EmbeddingStore\n"
            "s = EmbeddingStore(sys.argv[1], 4)\n"
            "for i in range(200):\n    s.put_many({f'{sys.argv[2]}{i}': np.full(4, i, np.float32)})\n")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(path), p]) for p in ("a", "b")]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    s = EmbeddingStore(path, 4)
    assert len(s) == 400
    got = s.get_many(["a7", "b199", "c1"])
    assert set(got) == {"a7", "b199"} and np.array_equal(got["b199"], np.full(4, 199, np.float32))


def test_an_earlier_npz_cache_is_carried_over_once(tmp_path):
    legacy = tmp_path / "emb.npz"
    vecs = np.arange(3 * EMBED_DIM, dtype=np.float32).reshape(3, EMBED_DIM)
    np.savez(legacy, texts=np.array(["x", "y", "z"], dtype=object), vectors=vecs)
    store = EmbeddingStore(tmp_path / "emb.sqlite", EMBED_DIM)
    assert store.import_npz_once(legacy) == 3
    assert np.array_equal(store.get_many(["y"])["y"], vecs[1])
    assert store.import_npz_once(legacy) == 0  # once: a later open does not read it again
    assert legacy.is_file()  # left where it was
    fresh = EmbeddingStore(tmp_path / "other.sqlite", EMBED_DIM)
    assert fresh.import_npz_once(tmp_path / "missing.npz") == 0 and len(fresh) == 0


def test_a_broken_cache_file_is_reported_and_the_policy_runs_without_it(tmp_path, capsys):
    path = tmp_path / "emb.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    assert open_store(path, EMBED_DIM) is None
    err = capsys.readouterr().err
    assert str(path) in err and "Delete the file" in err
    enc = CountingEncoder()
    f = Featurizer(enc, store=None)
    assert f.embed(["alpha"]).shape == (1, EMBED_DIM)
    # a store that fails later (here: closed under it) is dropped with the same message
    store = EmbeddingStore(tmp_path / "ok.sqlite", EMBED_DIM)
    f = Featurizer(enc, store=store)
    store.close()
    assert f.embed(["beta"]).shape == (1, EMBED_DIM) and f.store is None
    assert "ok.sqlite" in capsys.readouterr().err
