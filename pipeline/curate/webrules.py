"""C4's line and page rules (Raffel et al. 2020, section 2.2) and FineWeb's rules (Penedo et al.
2024, section 3.3.3), for crawled pages.

C4 cleans a page line by line and can drop it whole; `c4_clean` returns the cleaned text or
the reason. One deliberate difference from C4's reference code: blank lines survive as
paragraph breaks (C4 dropped them with the other short lines), which changes no decision but
keeps the structure of what is kept.
"""
from __future__ import annotations

import re
from pathlib import Path

from pipeline.config.curate import C4Config, FineWebConfig
from pipeline.curate.textstats import TERMINAL_PUNCTUATION, TextView, duplicates

_CITATION = re.compile(r"\[\d*\]|\[edit\]|\[citation needed\]", re.IGNORECASE)
_C4_END = (".", "?", "!", '"', "'")  # C4's "terminal punctuation mark": period, !, ?, end quotation
_POLICY = ("terms of use", "privacy policy", "cookie policy", "uses cookies", "use of cookies", "use cookies")
# A sentence ends at terminal punctuation followed by a space or the end of the line (an
# approximation of the punkt tokenizer C4 used; every line holds at least one sentence).
_SENTENCE_END = re.compile(r"[.!?]+[\"')\]]*(?=\s|$)")


def c4_clean(text: str, cfg: C4Config, bad_words: frozenset[str] = frozenset()) -> tuple[str, str]:
    """(cleaned text, "") or ("", reason): C4's rules applied line by line, then the sentence count."""
    kept: list[str] = []
    sentences = 0
    for line in text.split("\n"):
        line = line.strip()
        if not line:
            if kept and kept[-1]:
                kept.append("")  # a paragraph break
            continue
        words = line.split()
        if len(line) > cfg.max_word_length and max(map(len, words)) > cfg.max_word_length:
            continue
        if cfg.remove_citations:
            line = _CITATION.sub("", line)
        if cfg.terminal_punctuation and (not line.endswith(_C4_END) or line.endswith("...")):
            continue
        if len(words) < cfg.min_words_per_line:
            continue
        lowered = line.lower()
        if cfg.lorem_ipsum and "lorem ipsum" in lowered:
            return "", "c4_lorem_ipsum"
        if cfg.javascript and "javascript" in lowered:
            continue
        if cfg.curly_bracket and "{" in line:
            return "", "c4_curly_bracket"
        if cfg.policy and any(p in lowered for p in _POLICY):
            continue
        if bad_words and _has_bad_word(lowered, bad_words):
            return "", "c4_bad_words"
        sentences += max(1, len(_SENTENCE_END.findall(line)))
        kept.append(line)
    if sentences < cfg.min_sentences:
        return "", "c4_too_few_sentences"
    return "\n".join(kept).strip("\n"), ""


def _has_bad_word(lowered: str, bad_words: frozenset[str]) -> bool:
    words = re.findall(r"\w+", lowered)
    if bad_words.intersection(words):
        return True
    return any(" " in phrase and phrase in lowered for phrase in bad_words)


def load_bad_words(path: str | None) -> frozenset[str]:
    if not path:
        return frozenset()
    lines = Path(path).expanduser().read_text(encoding="utf-8").splitlines()
    return frozenset(line.strip().lower() for line in lines if line.strip())


def fineweb(view: TextView, cfg: FineWebConfig) -> str:
    lines = view.nonblank_lines
    if not lines:
        return "too_short"
    if sum(line.rstrip().endswith(TERMINAL_PUNCTUATION) for line in lines) / len(lines) <= cfg.min_line_punct_ratio:
        return "fineweb_line_punct_ratio"
    if sum(len(line) <= cfg.short_line_chars for line in lines) / len(lines) >= cfg.max_short_line_ratio:
        return "fineweb_short_line_ratio"
    chars = len(view.text) - view.text.count("\n")
    if chars and duplicates(lines)[1] / chars >= cfg.max_dup_line_char_ratio:
        return "fineweb_dup_line_chars"
    if view.words and view.text.count("\n") / len(view.words) > cfg.max_newline_word_ratio:
        return "fineweb_list_ratio"
    return ""
