import pytest

from ragtune import io
from ragtune.ingest import ingest
from ragtune.language import ISO_639_1, STEMMERS, STOPWORDS, words
from ragtune.mining import mine
from ragtune.params import defaults, validate
from ragtune.errors import UserError
from ragtune.retrieval import BM25Index

GERMAN = {"d1": "Die Katzen schlafen gern in der warmen Sonne.",
          "d2": "Der Hund bellt laut im Garten und jagt die Vögel.",
          "d3": "Die Züge fahren pünktlich nach Berlin und München.",
          "d4": "Ein Computer rechnet schneller als ein Mensch.",
          "d5": "Wir kochen Suppe mit Kartoffeln und Karotten."}
KOREAN = {"d1": "서울에서 가장 큰 공원은 한강 공원입니다.",
          "d2": "부산은 바다와 해산물로 유명한 도시입니다.",
          "d3": "제주도에는 한라산과 아름다운 해변이 있습니다.",
          "d4": "고양이는 하루에 열여섯 시간을 잡니다.",
          "d5": "김치는 배추와 고춧가루로 만듭니다."}


def _corpus(texts):
    return {d: {"title": "", "text": t} for d, t in texts.items()}


def test_words_per_language():
    assert words("Die Katzen schlafen und die Hunde bellen", "de") == ["katzen", "schlafen", "hunde", "bellen"]
    assert words("The cats and the dogs", "en") == ["cats", "dogs"]
    # Hangul and Han: character bigrams (Korean words carry particles), stopwords removed as whole words first
    assert words("서울에서 그리고 我很好", "ko") == ["서울", "울에", "에서", "我很", "很好"]
    assert words("x 猫", "ja") == ["猫"]  # a one-character CJK word is kept, a one-letter Latin one is not
    assert set(STEMMERS) <= set(ISO_639_1) and set(STOPWORDS) <= set(ISO_639_1)


def test_german_stemming_and_stopwords_apply():
    de, en = BM25Index(_corpus(GERMAN), "de"), BM25Index(_corpus(GERMAN), "en")
    # "Katze" only matches "Katzen" through the German stemmer (both stem to "katz").
    assert list(de.search({"q": "Katze"}, 5)["q"]) == ["d1"]
    assert en.search({"q": "Katze"}, 5)["q"] == {}
    # German stopwords: a query of only "die und der" matches nothing in German, everything sharing them in English.
    assert de.search({"q": "die und der"}, 5)["q"] == {}
    assert len(en.search({"q": "die und der"}, 5)["q"]) >= 3


def test_korean_bigrams_find_words_with_particles():
    import bm25s

    # What bm25s does alone: whitespace words, so "서울에서" (Seoul + "in") is one token and "서울" misses it.
    plain = bm25s.tokenize([KOREAN["d1"]], stopwords="ko", return_ids=False, show_progress=False)[0]
    assert "서울에서" in plain and "서울" not in plain
    ko = BM25Index(_corpus(KOREAN), "ko")
    assert list(ko.search({"q": "서울 공원"}, 5)["q"])[0] == "d1"
    assert list(ko.search({"q": "고양이가 잠을"}, 5)["q"])[0] == "d4"


@pytest.mark.parametrize("texts, lang, query, positive", [(GERMAN, "de", "Wann fährt der Zug nach München?", "d3"),
                                                          (KOREAN, "ko", "한라산은 어디에 있나요", "d3")])
def test_ingest_and_mining_in_the_corpus_language(tmp_path, texts, lang, query, positive):
    folder = tmp_path / "beir"
    folder.mkdir()
    io.write_corpus(folder / "corpus.jsonl", _corpus(texts))
    io.write_queries(folder / "queries.jsonl", {"q1": {"text": query}, "q2": {"text": texts["d4"][:12]}})
    io.write_qrels(folder / "qrels" / "train.tsv", {"q1": {positive: 1}})
    io.write_qrels(folder / "qrels" / "test.tsv", {"q2": {"d4": 1}})
    ingest(dict(defaults()["ingest"], source="beir", path=str(folder)), seed=0, out_dir=tmp_path / "raw")
    corpus = io.read_corpus(tmp_path / "raw" / "corpus.jsonl")
    queries = io.read_queries(tmp_path / "raw" / "queries.jsonl")
    cfg = dict(defaults()["mine"], range_min=1, range_max=5, num_negatives=2)
    (group,), _, stats = mine(corpus, queries, {"q1": {positive: 1}}, {}, cfg, seed=0, language=lang, security=defaults()["security"])
    assert stats["train_recall@5"] == 1.0 and group["pos"] == [texts[positive]]
    assert group["pos_scores"][0] > 0  # found by BM25 in its own language
    if lang == "de":
        # German stopwords: "der", "nach" retrieve nothing, so no document but d3 (rank 1, skipped) is a
        # candidate and the negatives are random; read as English, "der" pulls in d1 and d2 as hard negatives.
        assert stats["window_candidates"] == 0 and stats["random_negatives_topup"] == 2
        _, _, en = mine(corpus, queries, {"q1": {positive: 1}}, {}, cfg, seed=0, language="en", security=defaults()["security"])
        assert en["window_candidates"] == 2 and en["random_negatives_topup"] == 0


def test_language_param():
    assert defaults()["language"] == "en" and validate({"language": "ko"})["language"] == "ko"
    with pytest.raises(UserError, match=r"^params.yaml: language: unknown value 'german'; allowed: aa, ab"):
        validate({"language": "german"})
