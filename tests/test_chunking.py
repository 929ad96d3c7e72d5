import pytest

from ragtune.chunking import chunk_text, length, split_sentences

PROSE = "\n\n".join(
    " ".join(f"Sentence {p}.{s} says something useful about topic {p}." for s in range(6)) for p in range(8))


def test_chunks_respect_size_and_cover_the_text():
    chunks = chunk_text(PROSE, size=300, overlap=0)
    assert all(len(c) <= 300 for c in chunks) and len(chunks) > 5
    # No overlap: the chunks are the text's sentences, in order, each once.
    assert " ".join(" ".join(chunks).split()) == " ".join(PROSE.split())


def test_chunks_end_at_sentence_boundaries_and_keep_paragraphs():
    for c in chunk_text(PROSE, size=300, overlap=0):
        assert c.startswith("Sentence") and c.endswith(".")
    joined = chunk_text("First para.\n\nSecond para.", size=100, overlap=0)
    assert joined == ["First para.\n\nSecond para."]


def test_overlap_repeats_trailing_sentences():
    chunks = chunk_text(PROSE, size=200, overlap=120)  # paragraphs (~300) split into sentences
    assert all(len(c) <= 200 for c in chunks)
    shared = [a for a, b in zip(chunks, chunks[1:]) if split_sentences(b)[0] in split_sentences(a)]
    assert len(shared) >= len(chunks) // 2
    no_overlap = chunk_text(PROSE, size=200, overlap=0)
    assert len(no_overlap) < len(chunks)


def test_tiny_last_chunk_is_merged():
    text = "A" * 10 + ". " + "Word " * 50 + "\n\nEnd."
    chunks = chunk_text(text, size=200, overlap=0)
    assert chunks[-1].endswith("End.") and len(chunks[-1]) > 10


def test_overlong_sentence_is_cut_between_words():
    text = " ".join(f"w{i}" for i in range(500))
    chunks = chunk_text(text, size=100, overlap=0)
    assert all(len(c) <= 150 for c in chunks)
    assert " ".join(chunks).split() == text.split()


def test_token_unit_counts_words_and_punctuation():
    assert length("Hello, world!", "tokens") == 4
    chunks = chunk_text(PROSE, size=40, overlap=10, unit="tokens")
    assert all(length(c, "tokens") <= 40 for c in chunks)


def test_bad_sizes_raise():
    with pytest.raises(ValueError):
        chunk_text("x", size=10, overlap=10)


def test_sentences_in_other_scripts_and_punctuation():
    text = ("Привет мир. Как дела? Über alles! z.B. dies. 서울은 크다. 부산도 크다. 我很好。你呢？「好。」他说。"
            "क्या हाल है। ठीक है।")
    assert split_sentences(text) == ["Привет мир.", "Как дела?", "Über alles! z.B. dies.", "서울은 크다.",
                                     "부산도 크다.", "我很好。", "你呢？", "「好。」他说。", "क्या हाल है।", "ठीक है।"]


def test_unspaced_text_counts_characters_and_is_never_cut_off():
    from ragtune.chunking import length

    assert length("我很好你呢", "tokens") == 5 and length("Hello, world", "tokens") == 3
    text = "北京是中国的首都" * 20  # 160 characters, no space, no sentence end
    for unit in ("chars", "tokens"):
        chunks = chunk_text(text, 50, 10, unit)
        assert "".join(chunks) == text and all(length(c, unit) <= 75 for c in chunks)  # a tiny last one is merged
