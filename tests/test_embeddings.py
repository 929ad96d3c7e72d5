import shutil

import numpy as np

from ragtune.embeddings import encode_corpus, encode_queries, model_fingerprint, texts_fingerprint
from ragtune.params import defaults

SECURITY = defaults()["security"]  # the loaders take params["security"] explicitly

TEXTS = ["python function module", "search index retrieval rank score", "train test split", "a"]


def test_encode_corpus_normalised_float32_and_cached(tiny_model, tmp_path):
    emb = encode_corpus(tiny_model, TEXTS, batch_size=2, device="cpu", cache_dir=tmp_path, security=SECURITY)
    assert emb.dtype == np.float32 and emb.shape == (4, 32)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, rtol=1e-5)
    files = list(tmp_path.glob("*.npy"))
    assert len(files) == 1
    # Prove the second call reads the cache: plant a recognisable array under the same key.
    planted = np.full_like(emb, 0.5)
    np.save(files[0], planted)
    np.testing.assert_array_equal(encode_corpus(tiny_model, TEXTS, batch_size=2, device="cpu",
                                                cache_dir=tmp_path, security=SECURITY), planted)


def test_cache_key_changes_with_texts_length_and_model(tiny_model, tmp_path):
    encode_corpus(tiny_model, TEXTS, device="cpu", cache_dir=tmp_path, security=SECURITY)
    encode_corpus(tiny_model, TEXTS[:3], device="cpu", cache_dir=tmp_path, security=SECURITY)
    encode_corpus(tiny_model, TEXTS, max_seq_length=16, device="cpu", cache_dir=tmp_path, security=SECURITY)
    other = tmp_path / "model2"
    shutil.copytree(tiny_model, other)
    (other / "config.json").write_text((other / "config.json").read_text() + "\n")
    encode_corpus(str(other), TEXTS, device="cpu", cache_dir=tmp_path, security=SECURITY)
    assert len(list(tmp_path.glob("*.npy"))) == 4
    assert not list(tmp_path.glob(".*tmp*"))  # atomic writes left no temp files


def test_unreadable_cache_is_recomputed(tiny_model, tmp_path):
    first = encode_corpus(tiny_model, TEXTS, device="cpu", cache_dir=tmp_path, security=SECURITY)
    (cache,) = tmp_path.glob("*.npy")
    cache.write_bytes(b"garbage")
    np.testing.assert_allclose(encode_corpus(tiny_model, TEXTS, device="cpu", cache_dir=tmp_path, security=SECURITY), first,
                               atol=1e-6)


def test_matches_a_bare_sentence_transformer(tiny_model, tmp_path):
    from sentence_transformers import SentenceTransformer

    bare = SentenceTransformer(tiny_model, device="cpu").encode(TEXTS, normalize_embeddings=True)
    np.testing.assert_allclose(encode_corpus(tiny_model, TEXTS, device="cpu", cache_dir=tmp_path, security=SECURITY), bare,
                               atol=1e-5)
    np.testing.assert_allclose(encode_queries(tiny_model, TEXTS, device="cpu", security=SECURITY), bare, atol=1e-5)


def test_empty_input(tiny_model, tmp_path):
    assert encode_queries(tiny_model, [], device="cpu", security=SECURITY).shape == (0, 32)
    assert encode_corpus(tiny_model, [], device="cpu", cache_dir=tmp_path, security=SECURITY).shape == (0, 32)


def test_fingerprints(tiny_model, tmp_path):
    assert model_fingerprint("org/some-model") == model_fingerprint("org/some-model") != model_fingerprint("org/x")
    copy = tmp_path / "m"
    shutil.copytree(tiny_model, copy)
    (copy / "README.md").write_text("a model card does not change embeddings")
    assert model_fingerprint(str(copy)) == model_fingerprint(tiny_model)
    assert texts_fingerprint(["ab", "c"]) != texts_fingerprint(["a", "bc"])


def test_sharded_cache_resumes_and_splits_across_processes(tiny_model, tmp_path, monkeypatch):
    import ragtune.embeddings as embeddings

    whole = encode_corpus(tiny_model, TEXTS, device="cpu", cache_dir=tmp_path / "one", security=SECURITY)
    monkeypatch.setattr(embeddings, "SHARD_DOCS", 1)
    cache = tmp_path / "sharded"
    # Two torchrun workers without a process group (the barrier is then a no-op): each writes its shards.
    for rank in (1, 0):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("LOCAL_RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "2")
        shards = embeddings.fill_cache(tiny_model, TEXTS, batch_size=2, max_seq_length=None, device="cpu",
                                       cache_dir=cache, security=SECURITY)
        if rank == 1:  # the first worker to run wrote exactly its own share: shards 1 and 3
            assert sorted(cache.glob("*.npy")) == [shards[1][0], shards[3][0]]
    files = sorted(cache.glob("*.npy"))
    assert [f.name[-19:] for f in files] == [f"-{i:05d}-of-00004.npy" for i in range(4)]
    for var in ("RANK", "LOCAL_RANK", "WORLD_SIZE"):
        monkeypatch.delenv(var)
    np.testing.assert_allclose(encode_corpus(tiny_model, TEXTS, device="cpu", cache_dir=cache, security=SECURITY),
                               whole, atol=1e-6)
    # A killed run resumes: written shards are read (a planted one proves it), only the missing one is encoded.
    np.save(files[0], np.full((1, 32), 0.5, dtype=np.float32))
    files[2].unlink()
    again = encode_corpus(tiny_model, TEXTS, device="cpu", cache_dir=cache, security=SECURITY)
    np.testing.assert_array_equal(again[0], np.full(32, 0.5, dtype=np.float32))
    np.testing.assert_allclose(again[1:], whole[1:], atol=1e-6)
    assert files[2].is_file()


def test_bfloat16_autocast_has_its_own_cache_entry_and_close_embeddings(tiny_model, tmp_path):
    from ragtune.models import inference_precision

    full = encode_corpus(tiny_model, TEXTS, device="cpu", cache_dir=tmp_path, security=SECURITY)
    with inference_precision("bfloat16", "cpu"):
        half = encode_corpus(tiny_model, TEXTS, device="cpu", cache_dir=tmp_path, security=SECURITY)
        assert encode_queries(tiny_model, TEXTS, device="cpu", security=SECURITY).dtype == np.float32
    assert half.dtype == np.float32 and len(list(tmp_path.glob("*.npy"))) == 2  # not float32's cache
    assert not np.array_equal(half, full)  # bfloat16 really ran
    assert (half * full).sum(axis=1).min() > 0.99  # cosine to the float32 embedding
