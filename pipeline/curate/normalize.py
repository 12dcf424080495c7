"""Text normalization: one canonical form for the same text, before filters and dedup look at it.

Unicode repair is ftfy's (Speer 2019): mojibake such as "cafÃ©" back to "café", terminal
escape codes removed, surrogates fixed. ftfy walks the text line by line in Python (about
1 MB/s), so only texts that show a sign of damage are handed to it: a UTF-8 lead byte
read as Latin-1/cp1252 followed by a continuation byte read the same way (the signature of
mojibake), a C1 control character, a lone surrogate or an escape character. Clean text,
the vast majority, skips ftfy and gets the cheap fixes below only.
"""
from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass

import pyarrow as pa

from pipeline.config.curate import NormalizeConfig
from pipeline.curate.records import kept_mask, set_column

_LINE_BREAKS = re.compile(r"\r\n|[\r\x85\u2028\u2029]")
# C0/C1 control characters except \t and \n, plus invisible characters that only get in the way
# of matching (byte-order mark / zero-width no-break space, zero-width space).
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ufeff\u200b]")
_TRAILING = re.compile(r"[ \t]+$", re.MULTILINE)
_BLANK_RUNS = re.compile(r"\n{4,}")  # 3 or more blank lines
# Characters a UTF-8 continuation byte (0x80-0xBF) turns into when decoded as cp1252 or Latin-1.
_CONTINUATION = "\u0080-\u00bf\u20ac\u201a\u0192\u201e\u2026\u2020\u2021\u02c6\u2030\u0160\u2039\u0152" \
                "\u017d\u2018\u2019\u201c\u201d\u2022\u2013\u2014\u02dc\u2122\u0161\u203a\u0153\u017e\u0178"
_DAMAGE = re.compile(f"[\u00c2-\u00f4][{_CONTINUATION}]|[\u0080-\u009f\ud800-\udfff\x1b]")


@functools.lru_cache(maxsize=1)
def _ftfy_config():
    import ftfy

    # DataTrove's FTFYFormatter choices: repair encodings, keep the author's quotes, ligatures,
    # character widths and line breaks; HTML entities are left to the HTML extractors.
    return ftfy.TextFixerConfig(unescape_html=False, fix_latin_ligatures=False, fix_character_width=False,
                                uncurl_quotes=False, fix_line_breaks=False, explain=False, normalization="NFC")


def looks_damaged(text: str) -> bool:
    if text.isascii():
        return "\x1b" in text
    return _DAMAGE.search(text) is not None


def fix_unicode(text: str) -> str:
    """ftfy's repair of `text` when it shows signs of damage (else `text` unchanged)."""
    if not looks_damaged(text):
        return text
    import ftfy

    return ftfy.fix_text(text, _ftfy_config())


def normalize_text(text: str, repair: bool = True) -> str:
    """Unicode repaired (ftfy, when damaged) and NFC, one kind of line ending, no control characters,
    no trailing spaces, at most 2 blank lines in a row (PEP 8 code keeps its two blank lines), no
    blank lines at either end."""
    if repair:
        text = fix_unicode(text)
    if not text.isascii():
        text = unicodedata.normalize("NFC", text)
    text = _LINE_BREAKS.sub("\n", text)
    text = _CONTROL.sub("", text)
    text = _TRAILING.sub("", text)
    text = _BLANK_RUNS.sub("\n\n\n", text)
    return text.strip("\n")


@dataclass(frozen=True)
class Normalize:
    """The normalize step: kept rows get normalized text; rejected rows pass through untouched."""

    cfg: NormalizeConfig

    def __call__(self, batch: pa.Table) -> pa.Table:
        texts = batch["text"].to_pylist()
        out = [normalize_text(t, self.cfg.fix_unicode) if keep else t for t, keep in zip(texts, kept_mask(batch))]
        return set_column(batch, "text", out, pa.large_string())


def normalize_batch(batch: pa.Table) -> pa.Table:
    return Normalize(NormalizeConfig())(batch)
