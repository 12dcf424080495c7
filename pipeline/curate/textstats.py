"""One view of a document's text that every quality rule reads: words, lines, paragraphs.

Each is computed once, on first use, with C-speed regular expressions; rules that need only
some of them (most documents are decided by the first rules) pay for nothing else.
"""
from __future__ import annotations

import re
from functools import cached_property

import numpy as np

WORD = re.compile(r"\w+(?:[-'’.]\w+)*")
"""A word: letters/digits/underscore, with inner hyphens, apostrophes and dots (don't, e.g, 3.11)."""
_ALNUM_RUNS = re.compile(r"[^\W_]+")
_ALPHA_TOKEN = re.compile(r"\S*[^\W\d_]\S*")  # a whitespace token with at least one letter
_PARAGRAPH_BREAK = re.compile(r"\n{2,}")
_LINE_BREAKS = re.compile(r"\n+")
# The common subset of Unicode terminal punctuation (Latin, CJK, Devanagari, Arabic, Armenian, Ethiopic).
TERMINAL_PUNCTUATION = tuple(".!?…。！？｡‼‽⁇⁈⁉।॥؟۔։።፧")


class TextView:
    def __init__(self, text: str):
        self.text = text

    @cached_property
    def words(self) -> list[str]:
        """Words without surrounding punctuation (tokens made only of symbols are not words)."""
        return WORD.findall(self.text)

    @cached_property
    def tokens(self) -> list[str]:
        """Whitespace-separated tokens, punctuation attached."""
        return self.text.split()

    @cached_property
    def lines(self) -> list[str]:
        """Non-empty lines (runs of newlines count as one break)."""
        return [line for line in _LINE_BREAKS.split(self.text) if line]

    @cached_property
    def nonblank_lines(self) -> list[str]:
        return [line for line in self.text.split("\n") if line.strip()]

    @cached_property
    def paragraphs(self) -> list[str]:
        return _PARAGRAPH_BREAK.split(self.text.strip())

    @cached_property
    def word_ids(self) -> np.ndarray:
        """Each word as a small integer (equal words, equal ids), for n-gram arithmetic."""
        vocab: dict[str, int] = {}
        return np.fromiter((vocab.setdefault(w, len(vocab)) for w in self.words), dtype=np.int64,
                           count=len(self.words))

    @cached_property
    def word_lengths(self) -> np.ndarray:
        return np.fromiter(map(len, self.words), dtype=np.int64, count=len(self.words))

    def alpha_token_count(self) -> int:
        return len(_ALPHA_TOKEN.findall(self.text))

    def alnum_count(self) -> int:
        return len(self.text) - len(_ALNUM_RUNS.sub("", self.text))

    def ngram_keys(self, n: int) -> np.ndarray:
        """One 64-bit key per word n-gram (position i covers words i..i+n-1); equal n-grams, equal keys."""
        ids = self.word_ids.astype(np.uint64)
        if len(ids) < n:
            return np.zeros(0, dtype=np.uint64)
        keys = np.zeros(len(ids) - n + 1, dtype=np.uint64)
        with np.errstate(over="ignore"):
            for j in range(n):  # a polynomial in a large odd constant, wrapping at 2**64
                keys = keys * np.uint64(0x100000001B3) + ids[j: len(ids) - n + 1 + j] + np.uint64(1)
        return keys


def duplicates(items: list[str]) -> tuple[int, int]:
    """(elements that repeat an earlier one, their characters) — Gopher's definition."""
    seen: set[str] = set()
    count = chars = 0
    for item in items:
        if item in seen:
            count += 1
            chars += len(item)
        else:
            seen.add(item)
    return count, chars
