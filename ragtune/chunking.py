"""Cut long texts into passages of about `size` characters or tokens, with overlap.

Chunks end at paragraph, line or sentence boundaries when one is near, so a passage rarely starts or
stops mid-sentence. "tokens" are counted as words and punctuation marks (a regex, no tokenizer to load):
close to, and slightly below, a BERT word-piece count for English prose; in scripts written without
spaces (Chinese, Japanese, Thai ...) and in Hangul every character counts as a token, as BERT's CJK
handling does. Nothing here depends on the language setting: the rules follow the script.
"""
from __future__ import annotations

import re

from .language import UNSPACED

_TOKEN = re.compile(f"[{UNSPACED}]|[^\\W{UNSPACED}]+|[^\\w\\s]")
# Sentence ends: . ! ? … then whitespace; danda, Arabic/Urdu question mark and full stop, Armenian,
# Ethiopic and Myanmar full stops then whitespace; CJK full stops and marks with or without whitespace.
_BOUNDARY = re.compile(r"(?<=[.!?…])\s+|(?<=[।॥؟۔։።။])\s+|(?<=[。！？｡])\s*")
_OPENERS = "\"'([“‘«¿¡「『（"
_CLOSERS = "」』）”’\"')]»。！？｡"


def length(text: str, unit: str = "chars") -> int:
    if unit == "chars":
        return len(text)
    if unit == "tokens":
        return len(_TOKEN.findall(text))
    raise ValueError(f"unknown chunk unit {unit!r}")


def _starts_sentence(flat: str, at: int, after_western: bool) -> bool:
    """After . ! ? a sentence starts with a letter that is not lower-case (upper-case, or a caseless
    script), a digit, or an opening quote or bracket ("e.g. this" goes on); after a CJK mark, with
    anything but a closing quote or bracket."""
    nxt = flat[at]
    if after_western:
        return (nxt.isalnum() and not nxt.islower()) or nxt in _OPENERS
    return nxt not in _CLOSERS


def split_sentences(text: str) -> list[str]:
    """Sentences of one paragraph (line breaks inside a paragraph become spaces)."""
    flat = " ".join(text.split())
    out, start = [], 0
    for m in _BOUNDARY.finditer(flat):
        if m.end() >= len(flat) or m.end() <= start:
            continue
        if _starts_sentence(flat, m.end(), flat[m.start() - 1] in ".!?…"):
            out.append(flat[start:m.start()])
            start = m.end()
    out.append(flat[start:])
    return [s for s in out if s]


def _words(sentence: str, size: int, unit: str) -> list[tuple[str, str]]:
    """(word, separator before it) for the sentence's space-separated words; a word longer than `size`
    (unspaced text such as Chinese) is cut into slices of `size` characters joined by "", so nothing is
    lost and no space is added."""
    out = []
    for w in sentence.split(" "):
        if length(w, unit) > size:
            out.extend((w[i:i + size], " " if i == 0 else "") for i in range(0, len(w), size))
        else:
            out.append((w, " "))
    return out


Piece = tuple[str, str]  # (text, separator that joins it to the piece before)


def _join(pieces: list[Piece]) -> str:
    return "".join((sep if i else "") + text for i, (text, sep) in enumerate(pieces)).strip()


def _pieces(text: str, size: int, unit: str) -> list[Piece]:
    """Paragraphs, split further into sentences and then words until each fits in `size`."""
    out: list[Piece] = []
    for para in re.split(r"\n\s*\n", text):
        para = para.strip("\n")
        if not para.strip():
            continue
        if length(para, unit) <= size:
            out.append((para, "\n\n"))
            continue
        sep = "\n\n"  # the first piece of a paragraph starts a paragraph; the rest continue it
        for sent in split_sentences(para):
            if length(sent, unit) <= size:
                out.append((sent, sep))
                sep = " "
                continue
            cur = ""
            for w, joint in _words(sent, size, unit):  # a sentence longer than a chunk: cut between words
                cand = f"{cur}{joint}{w}" if cur else w
                if cur and length(cand, unit) > size:
                    out.append((cur, sep))
                    sep, cur = joint, w
                else:
                    cur = cand
            if cur:
                out.append((cur, sep))
                sep = " "
    return out


def chunk_text(text: str, size: int = 1000, overlap: int = 200, unit: str = "chars",
               min_size: int | None = None) -> list[str]:
    """Greedily pack paragraphs/sentences into chunks of at most `size`; consecutive chunks share up to
    `overlap` of trailing pieces. A last chunk shorter than `min_size` (default size // 4) is merged
    into the previous one when that keeps it under 1.5 x size, so no tiny fragments are left."""
    if size <= 0 or overlap < 0 or overlap >= size:
        raise ValueError(f"need 0 <= overlap < size, got size={size}, overlap={overlap}")
    min_size = size // 4 if min_size is None else min_size
    chunks: list[list[Piece]] = []
    shared: list[int] = []  # how many leading pieces each chunk repeats from the previous one
    cur: list[Piece] = []
    n_shared = 0
    for piece in _pieces(text, size, unit):
        if cur and length(_join(cur + [piece]), unit) > size:
            chunks.append(cur)
            shared.append(n_shared)
            tail: list[Piece] = []  # trailing pieces of the previous chunk that fit in the overlap
            for p in reversed(cur):
                if length(_join([p] + tail), unit) > overlap:
                    break
                tail.insert(0, p)
            # The overlap must leave room for the new piece, else the chunk would exceed `size`.
            while tail and length(_join(tail + [piece]), unit) > size:
                tail.pop(0)
            cur, n_shared = tail + [piece], len(tail)
        else:
            cur.append(piece)
    if cur:
        chunks.append(cur)
        shared.append(n_shared)
    if len(chunks) >= 2 and length(_join(chunks[-1]), unit) < min_size:
        merged = chunks[-2] + chunks[-1][shared[-1]:]
        if length(_join(merged), unit) <= 1.5 * size:
            chunks[-2:] = [merged]
    return [t for t in (_join(c) for c in chunks) if t]
