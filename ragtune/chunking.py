"""Cut long texts into passages of about `size` characters or tokens, with overlap.

Chunks end at paragraph, line or sentence boundaries when one is near, so a passage rarely starts or
stops mid-sentence. "tokens" are counted as words and punctuation marks (a regex, no tokenizer to load):
close to, and slightly below, a BERT word-piece count for English prose.
"""
from __future__ import annotations

import re

_TOKEN = re.compile(r"\w+|[^\w\s]")
# A sentence ends at . ! ? followed by whitespace and an upper-case letter, digit, quote or bracket.
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(\[])")


def length(text: str, unit: str = "chars") -> int:
    if unit == "chars":
        return len(text)
    if unit == "tokens":
        return len(_TOKEN.findall(text))
    raise ValueError(f"unknown chunk unit {unit!r}")


def split_sentences(text: str) -> list[str]:
    """Sentences of one paragraph (line breaks inside a paragraph become spaces)."""
    flat = " ".join(text.split())
    return [s for s in _SENTENCE_END.split(flat) if s]


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
            for w in sent.split(" "):  # a sentence longer than a chunk: cut between words
                cand = f"{cur} {w}" if cur else w
                if cur and length(cand, unit) > size:
                    out.append((cur, sep))
                    sep, cur = " ", w
                else:
                    cur = cand
            if cur:
                out.append((cur[:size] if unit == "chars" else cur, sep))
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
