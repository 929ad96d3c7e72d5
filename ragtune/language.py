"""The corpus language (params `language`, an ISO 639-1 code): how BM25 splits, filters and stems words.

- Words are runs of Unicode word characters, lower-cased; one-character words are dropped (bm25s'
  default pattern), except in the scripts below.
- Scripts written without spaces between words (Han, Hiragana, Katakana, Thai, Lao, Khmer, Myanmar) and
  Hangul (Korean words carry their particles: 서울에서 = 서울 + 에서) are cut into overlapping character
  bigrams, as Lucene's CJK analyzer does: 서울에서 -> 서울 울에 에서. A one-character run stays a token.
  This depends on the script, not on `language`, so mixed text works too.
- Stopwords: bm25s' list for the language where it has one (da de en es fr it ko nl no pt ru sv tr zh),
  removed before bigrams are cut, so a Korean stopword is matched as a whole word.
- Stemming: the Snowball stemmer (PyStemmer) for the language where there is one, including English.
- Any other ISO 639-1 code (e.g. ja, vi): no stopwords, no stemming, and the rules above.
"""
from __future__ import annotations

import functools
import os
import re

# ISO 639-1 code -> Snowball stemmer name (PyStemmer's Stemmer.algorithms()).
STEMMERS = {
    "ar": "arabic", "hy": "armenian", "eu": "basque", "ca": "catalan", "cs": "czech", "da": "danish",
    "nl": "dutch", "en": "english", "eo": "esperanto", "et": "estonian", "fi": "finnish", "fr": "french",
    "de": "german", "el": "greek", "hi": "hindi", "hu": "hungarian", "id": "indonesian", "ga": "irish",
    "it": "italian", "lt": "lithuanian", "ne": "nepali", "no": "norwegian", "nb": "norwegian",
    "fa": "persian", "pl": "polish", "pt": "portuguese", "ro": "romanian", "ru": "russian", "sr": "serbian",
    "st": "sesotho", "es": "spanish", "sv": "swedish", "ta": "tamil", "tr": "turkish", "yi": "yiddish",
}
# ISO 639-1 code -> bm25s stopword list name.
STOPWORDS = {"da": "da", "de": "de", "en": "en", "es": "es", "fr": "fr", "it": "it", "ko": "ko", "nl": "nl",
             "no": "no", "nb": "no", "pt": "pt", "ru": "ru", "sv": "sv", "tr": "tr", "zh": "zh"}

ISO_639_1 = tuple("""aa ab ae af ak am an ar as av ay az ba be bg bi bm bn bo br bs ca ce ch co cr cs cu cv
cy da de dv dz ee el en eo es et eu fa ff fi fj fo fr fy ga gd gl gn gu gv ha he hi ho hr ht hu hy hz ia id
ie ig ii ik io is it iu ja jv ka kg ki kj kk kl km kn ko kr ks ku kv kw ky la lb lg li ln lo lt lu lv mg mh
mi mk ml mn mr ms mt my na nb nd ne ng nl nn no nr nv ny oc oj om or os pa pi pl ps pt qu rm rn ro ru rw sa
sc sd se sg si sk sl sm sn so sq sr ss st su sv sw ta te tg th ti tk tl tn to tr ts tt tw ty ug uk ur uz ve
vi vo wa wo xh yi yo za zh zu""".split())

UNSPACED = ("\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff\u1100-\u11ff\u3040-\u30ff\u3130-\u318f\u3400-\u4dbf"
             "\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff")
_HAS_UNSPACED = re.compile(f"[{UNSPACED}]")
_WORD = re.compile(r"(?u)\w+")
_RUNS = re.compile(f"[{UNSPACED}]+|[^{UNSPACED}]+")
_PLAIN = re.compile(r"(?u)\b\w\w+\b")  # bm25s' default token pattern


def bigrams(run: str) -> list[str]:
    """Overlapping character bigrams of a run; a one-character run is itself."""
    return [run] if len(run) == 1 else [run[i:i + 2] for i in range(len(run) - 1)]


def import_bm25s():
    """bm25s, with JAX (its optional top-k backend) kept on the CPU unless the user chose otherwise.

    Importing bm25s runs a JAX op where JAX is installed (Colab, many GPU images), and JAX on a GPU takes
    75% of the GPU's memory at once: 108 of 140 GiB on the H200 run (bench/results/2026-12-04-gpu), which
    the torch models in the same stage then cannot use.
    """
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    import bm25s

    return bm25s


@functools.lru_cache(maxsize=None)
def stopwords(language: str) -> frozenset[str]:
    if language not in STOPWORDS:
        return frozenset()
    return frozenset(import_bm25s().tokenization._infer_stopwords(STOPWORDS[language]))  # bm25s' own lists


def stemmer(language: str):
    """A PyStemmer stemmer (has .stemWords) for the language, or None."""
    if language not in STEMMERS:
        return None
    import Stemmer

    return Stemmer.Stemmer(STEMMERS[language])


def words(text: str, language: str) -> list[str]:
    """BM25 tokens of a text before stemming: lower-cased words, stopwords out, unspaced scripts as bigrams."""
    stop = stopwords(language)
    text = text.lower()
    if not _HAS_UNSPACED.search(text):  # fast path: bm25s' default tokens
        return [w for w in _PLAIN.findall(text) if w not in stop]
    out: list[str] = []
    for w in _WORD.findall(text):
        if w in stop:
            continue
        for run in _RUNS.findall(w):
            if _HAS_UNSPACED.match(run):
                out.extend(bigrams(run))
            elif len(run) > 1:
                out.append(run)
    return out


def describe(language: str) -> str:
    """One line for the logs: what BM25 does for this language."""
    stem = STEMMERS.get(language)
    return (f"language {language}: stopwords {'bm25s ' + STOPWORDS[language] if language in STOPWORDS else 'none'}, "
            f"stemmer {stem or 'none'}, unspaced scripts as character bigrams")
