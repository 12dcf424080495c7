"""Gopher's quality and repetition rules (Rae et al. 2021, appendix A.1.1 and table A1).

Each function returns the reason of the first rule a document breaks, or "" (kept). The
reasons name the rule: `gopher_dup_line_frac`, `gopher_top_3gram`, ...; the word-count bounds
are the general `too_short` / `too_long`. Thresholds come from the config, whose defaults
are the published values.
"""
from __future__ import annotations

import numpy as np

from pipeline.config.curate import GopherQualityConfig, GopherRepetitionConfig
from pipeline.curate.textstats import TextView, duplicates

STOP_WORDS = frozenset({"the", "be", "to", "of", "and", "that", "have", "with"})
"""Gopher: "at least two of the following English words: the, be, to, of, and, that, have, with"."""


def gopher_quality(view: TextView, cfg: GopherQualityConfig) -> str:
    text, words = view.text, view.words
    n = len(words)
    if n < cfg.min_words:
        return "too_short"
    if n > cfg.max_words:
        return "too_long"
    mean = float(view.word_lengths.mean())
    if not cfg.min_mean_word_length <= mean <= cfg.max_mean_word_length:
        return "gopher_mean_word_length"
    if text.count("#") / n > cfg.max_symbol_word_ratio:
        return "gopher_hash_ratio"
    if (text.count("...") + text.count("…")) / n > cfg.max_symbol_word_ratio:
        return "gopher_ellipsis_ratio"
    lines = view.nonblank_lines
    if sum(line.lstrip().startswith(("•", "-", "*", "‣", "◦")) for line in lines) / len(lines) \
            > cfg.max_bullet_lines_ratio:
        return "gopher_bullet_lines"
    if sum(line.rstrip().endswith(("...", "…")) for line in lines) / len(lines) > cfg.max_ellipsis_lines_ratio:
        return "gopher_ellipsis_lines"
    if view.alpha_token_count() / len(view.tokens) < cfg.min_alpha_words_ratio:
        return "gopher_alpha_words"
    if len(STOP_WORDS.intersection(w.lower() for w in words if len(w) <= 4)) < cfg.min_stop_words:
        return "gopher_stop_words"
    return ""


def gopher_repetition(view: TextView, cfg: GopherRepetitionConfig) -> str:
    text = view.text
    if not text:
        return "too_short"
    paragraphs = view.paragraphs
    dup, chars = duplicates(paragraphs)
    if dup / len(paragraphs) > cfg.dup_para_frac:
        return "gopher_dup_para_frac"
    if chars / len(text) > cfg.dup_para_char_frac:
        return "gopher_dup_para_char_frac"
    lines = view.lines
    dup, chars = duplicates(lines)
    if lines and dup / len(lines) > cfg.dup_line_frac:
        return "gopher_dup_line_frac"
    if chars / len(text) > cfg.dup_line_char_frac:
        return "gopher_dup_line_char_frac"
    for n, limit in sorted(cfg.top_ngram_char_frac.items()):
        if top_ngram_chars(view, n) / len(text) > limit:
            return f"gopher_top_{n}gram"
    dup_items = sorted(cfg.dup_ngram_char_frac.items())
    if dup_items and _has_repeated_ngram(view, dup_items[0][0]):  # else no longer n-gram repeats either
        for n, limit in dup_items:
            if duplicated_ngram_chars(view, n) / len(text) > limit:
                return f"gopher_dup_{n}gram"
    return ""


def top_ngram_chars(view: TextView, n: int) -> int:
    """Characters covered by the most frequent word n-gram: its length (words joined by spaces)
    times its count; 0 when no n-gram repeats."""
    keys = view.ngram_keys(n)
    if len(keys) == 0:
        return 0
    _, first, counts = np.unique(keys, return_index=True, return_counts=True)
    best = counts.max()
    if best < 2:
        return 0
    i = int(first[counts == best].min())  # the earliest of the most frequent, like Counter.most_common
    return int(view.word_lengths[i: i + n].sum() + n - 1) * int(best)


def _has_repeated_ngram(view: TextView, n: int) -> bool:
    keys = view.ngram_keys(n)
    return len(keys) > len(np.unique(keys))


def duplicated_ngram_chars(view: TextView, n: int) -> int:
    """Characters in repeated word n-grams, counted once each: scanning left to right, an n-gram
    seen before adds its characters and the scan jumps past it (Gopher's definition, as DataTrove
    implements it)."""
    keys = view.ngram_keys(n).tolist()
    lengths = view.word_lengths
    seen: set[int] = set()
    chars, i = 0, 0
    while i < len(keys):
        if keys[i] in seen:
            chars += int(lengths[i: i + n].sum())
            i += n
        else:
            seen.add(keys[i])
            i += 1
    return chars
