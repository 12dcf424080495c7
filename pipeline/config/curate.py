"""The `curate` section: which curation steps run and their thresholds.

Every rule threshold defaults to the value its paper published; the comment under each
field names the source. Each step can be switched off on its own.
"""
from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from pipeline.config.base import Section

PII_KINDS = ("email", "phone", "ip_address", "credit_card", "iban", "us_ssn", "aws_access_key",
             "aws_secret_key", "api_key", "private_key", "bearer_token")
"""Every kind of personal data or secret the pii step knows (see `pii.py`)."""


class ReadConfig(Section):
    max_file_bytes: int = Field(default=16_000_000, ge=1)
    """html, text and pdf files larger than this are rejected (`too_large`) without being read."""
    max_code_bytes: int = Field(default=200_000, ge=1)
    """Code files larger than this are rejected (`too_large`): at that size a source file is
    almost always generated code or data."""
    max_doc_bytes: int = Field(default=16_000_000, ge=1)
    """A single record (JSONL line, Parquet text, WARC payload) larger than this is rejected
    (`too_large`) unread: at that size a "document" is a dump (a book is about 1 MB). Below it, a long
    document is processed in pieces (`curate.split`); every step's cost is linear in its length."""
    html_extractor: Literal["builtin", "resiliparse", "trafilatura"] = "builtin"
    """Main text of `html` files: `builtin` keeps the whole body with its indentation (right for
    documentation pages you own); `resiliparse`/`trafilatura` keep the main content only."""
    warc_extractor: Literal["resiliparse", "trafilatura", "builtin"] = "resiliparse"
    """Main text of WARC HTML responses. resiliparse is the DCLM choice (Li et al. 2024) and about ten
    times faster than trafilatura, the FineWeb choice (the `ownlm[trafilatura]` extra installs it)."""


class ShardConfig(Section):
    target_bytes: int = Field(default=64 << 20, ge=1)
    """Input bytes per shard: one Ray task reads, filters and writes one shard, and a rerun after
    a crash redoes only the shards that did not finish. Files are never cut across shards."""
    min_shards: int = Field(default=8, ge=1)
    """A small corpus is still cut into this many shards (when it has that many files), so that
    every CPU gets work. The plan depends on the data only, never on the cluster size."""


class NormalizeConfig(Section):
    enabled: bool = True
    """Unicode NFC, one line ending, control characters removed, whitespace tidied."""
    fix_unicode: bool = True
    """Repair mojibake and other broken Unicode with ftfy (only texts that show its signs are
    handed to ftfy, which is slow)."""


class SplitConfig(Section):
    enabled: bool = True
    max_chars: int = Field(default=100_000, ge=1000)
    """Documents longer than this are cut into pieces at paragraph boundaries (then lines, then
    spaces); pieces get ids `<id>#<k>`."""


class LanguageConfig(Section):
    enabled: bool = True
    languages: list[str] = Field(default_factory=lambda: ["en", "de", "fr", "es", "it", "pt", "nl", "ru",
                                                          "zh", "ja"], min_length=2)
    """ISO 639-1 codes the detector chooses among (lingua, offline). It must know more languages than
    it keeps, or everything looks like the kept one."""
    keep: list[str] = Field(default_factory=lambda: ["en"])
    """Languages kept; others are rejected (`language`). Empty keeps every language (ids only)."""
    min_confidence: float = Field(default=0.5, ge=0, le=1)
    """Below this confidence the language is `unknown` (rejected when `keep` is set)."""
    max_chars: int = Field(default=1000, ge=100)
    """The detector reads this many leading characters (its cost grows with the length)."""
    skip_kinds: list[str] = Field(default_factory=lambda: ["code", "markup"])
    """Kinds not judged by natural language (their `meta.lang` stays unset)."""


class GopherQualityConfig(Section):
    """Gopher quality rules: Rae et al. 2021, "Scaling Language Models: Methods, Analysis & Insights
    from Training Gopher", appendix A.1.1 (MassiveWeb quality filter)."""

    enabled: bool = True
    kinds: list[str] | None = None
    """Kinds judged by these rules; None: every kind that is not code."""
    min_words: int = 50
    """"between 50 and 100,000 words" (the reason for fewer is `too_short`)."""
    max_words: int = 100_000
    """Upper word bound (reason `too_long`)."""
    min_mean_word_length: float = 3
    """"mean word length is outside the range of 3 to 10 characters"."""
    max_mean_word_length: float = 10
    max_symbol_word_ratio: float = 0.1
    """"symbol-to-word ratio greater than 0.1 for either the hash symbol or the ellipsis"."""
    max_bullet_lines_ratio: float = 0.9
    """"more than 90% of lines starting with a bullet point"."""
    max_ellipsis_lines_ratio: float = 0.3
    """"more than 30% ending with an ellipsis"."""
    min_alpha_words_ratio: float = 0.8
    """"80% of words in a document contain at least one alphabetic character"."""
    min_stop_words: int = 2
    """"at least two of the following English words: the, be, to, of, and, that, have, with"."""


class GopherRepetitionConfig(Section):
    """Gopher repetition rules: Rae et al. 2021, table A1 (thresholds as published)."""

    enabled: bool = True
    kinds: list[str] | None = None
    """Kinds judged by these rules; None: every kind that is not code."""
    dup_line_frac: float = 0.30
    dup_para_frac: float = 0.30
    dup_line_char_frac: float = 0.20
    dup_para_char_frac: float = 0.20
    top_ngram_char_frac: dict[int, float] = Field(default_factory=lambda: {2: 0.20, 3: 0.18, 4: 0.16})
    """Most frequent n-gram's share of characters, per n."""
    dup_ngram_char_frac: dict[int, float] = Field(
        default_factory=lambda: {5: 0.15, 6: 0.14, 7: 0.13, 8: 0.12, 9: 0.11, 10: 0.10})
    """Share of characters inside repeated n-grams, per n."""


class C4Config(Section):
    """C4 rules: Raffel et al. 2020, "Exploring the Limits of Transfer Learning with a Unified
    Text-to-Text Transformer", section 2.2, plus the line rules of its reference code
    (tensorflow_datasets c4_utils: long words, policy lines). Lines are removed, pages dropped."""

    enabled: bool = True
    kinds: list[str] | None = Field(default_factory=lambda: ["web"])
    """Kinds cleaned by these rules (C4 is for crawled pages); None: every kind that is not code."""
    terminal_punctuation: bool = False
    """"We only retained lines that ended in a terminal punctuation mark". Off by default as in
    FineWeb (Penedo et al. 2024), which found it removes too much; FineWeb's own line-punctuation
    rule runs instead."""
    min_words_per_line: int = 3
    """"only retained lines that contained at least 3 words"."""
    min_sentences: int = 5
    """"We discarded any page with fewer than 5 sentences"."""
    max_word_length: int = 1000
    """Lines with a longer word are removed (reference code)."""
    lorem_ipsum: bool = True
    """"we removed any page where the phrase 'lorem ipsum' appeared"."""
    javascript: bool = True
    """"we removed any line with the word Javascript"."""
    curly_bracket: bool = True
    """"we removed any pages that contained a curly bracket"."""
    policy: bool = True
    """Lines about terms of use, privacy or cookie policies are removed (reference code)."""
    remove_citations: bool = True
    """Wikipedia-style citation markers ([1], [edit], [citation needed]) are removed."""
    bad_words_file: str | None = None
    """A file with one word or phrase per line (for example the LDNOOBW list that C4 used); a page
    containing one is dropped. None: this rule is off (the list is not bundled)."""


class FineWebConfig(Section):
    """FineWeb rules: Penedo et al. 2024, "The FineWeb Datasets", section 3.3.3 (thresholds as
    published; `new_line_ratio` from its reference implementation in DataTrove)."""

    enabled: bool = True
    kinds: list[str] | None = Field(default_factory=lambda: ["web"])
    """Kinds judged by these rules (FineWeb is for crawled pages); None: every kind that is not code."""
    min_line_punct_ratio: float = 0.12
    """"fraction of lines ending with punctuation <= 0.12" removes the document."""
    max_short_line_ratio: float = 0.67
    """"fraction of lines shorter than 30 characters >= 0.67" removes the document."""
    short_line_chars: int = 30
    max_dup_line_char_ratio: float = 0.1
    """"fraction of characters in duplicated lines >= 0.1" removes the document."""
    max_newline_word_ratio: float = 0.3
    """Newlines per word above this: a list, not prose (DataTrove's FineWebQualityFilter)."""


class CodeRulesConfig(Section):
    """Code rules: Chen et al. 2021 (Codex), section 3.1, and the StarCoder data filters
    (Li et al. 2023, section 4): "average line length greater than 100, maximum line length greater
    than 1000, or a small percentage of alphanumeric characters" and auto-generated files."""

    enabled: bool = True
    min_words: int = 5
    """Code with fewer words is dropped (`too_short`)."""
    max_line_length: int = 1000
    """A longer line means minified or generated code (`code_long_lines`)."""
    max_mean_line_length: float = 100
    """(`code_mean_line_length`)."""
    min_alnum_fraction: float = 0.25
    """Fewer letters and digits than this share means data or noise (`code_low_alnum`)."""
    autogenerated: bool = True
    """Drop files whose first lines say they are generated (`code_autogenerated`)."""


class QualityConfig(Section):
    enabled: bool = True
    code_kinds: list[str] = Field(default_factory=lambda: ["code", "markup"])
    """Kinds judged by the code rules; every other kind is judged as text. `markup` is what
    `kind: auto` makes of raw HTML or XML that is not read as a page (an `.xml`, a record's markup)."""
    gopher_quality: GopherQualityConfig = Field(default_factory=GopherQualityConfig)
    gopher_repetition: GopherRepetitionConfig = Field(default_factory=GopherRepetitionConfig)
    c4: C4Config = Field(default_factory=C4Config)
    fineweb: FineWebConfig = Field(default_factory=FineWebConfig)
    code: CodeRulesConfig = Field(default_factory=CodeRulesConfig)


class PiiConfig(Section):
    enabled: bool = True
    kinds: list[Literal[PII_KINDS]] = Field(default_factory=lambda: list(PII_KINDS))  # type: ignore[valid-type]
    """What to redact; each match becomes a typed placeholder such as `<EMAIL>` or `<IP_ADDRESS>`."""
    public_ips_only: bool = True
    """Leave private, loopback and documentation addresses (10.0.0.1, ::1) alone: they identify nobody."""


class DecontaminateConfig(Section):
    enabled: bool = True
    files: list[str] = Field(default_factory=lambda: ["{tasks}/pyfacts.jsonl"])
    """Evaluation files (JSONL, JSON, Parquet or plain text) whose text must not be trained on.
    `{tasks}` is the bundled task folder, `{root}` the storage root."""
    fields: list[str] | None = None
    """For JSONL/JSON/Parquet: the fields holding evaluation text; None: every string field."""
    ngram: int = Field(default=13, ge=3)
    """Word n-gram length (13: GPT-3, Brown et al. 2020, appendix C)."""
    min_words: int = Field(default=8, ge=3)
    """An evaluation text shorter than `ngram` words but at least this long is matched whole
    (GPT-3 lowered n to 8 for short examples)."""
    mode: Literal["drop", "cut"] = "drop"
    """drop: reject a document that shares an n-gram (`contaminated`); cut: remove the matching
    spans and keep the rest."""


class FuzzyDedupConfig(Section):
    enabled: bool = True
    threshold: float = Field(default=0.8, gt=0, lt=1)
    """Jaccard similarity of word shingles above which two documents are near duplicates."""
    num_perm: int = Field(default=128, ge=16, le=1024)
    """MinHash permutations. Bands x rows come from the threshold (datasketch's optimal parameters)."""
    shingle_words: int = Field(default=5, ge=1)
    """Words per shingle (5: DataTrove's and Gopher's choice)."""
    false_positive_weight: float = Field(default=0.1, ge=0, le=1)
    """Weight of false positives against false negatives in datasketch's choice of bands x rows. Low by
    default because `verify` removes false positives afterwards, so the search can lean to recall
    (0.8 gives 14 bands x 9 rows: a pair at Jaccard 0.8 becomes a candidate with probability 0.87, at
    0.84 with 0.96). Without verification, 0.5 is the balanced choice."""
    verify: bool = True
    """Check every candidate pair by its true Jaccard similarity before merging (removes the LSH
    false positives; costs a second read of the candidate documents only)."""
    seed: int = 1
    driver_components_max_pairs: int = Field(default=1_000_000, ge=0)
    """Up to this many (verified) pairs, the clusters are the connected components found on the driver
    by scipy (the pairs are gathered there: 16 bytes each, so the default is 16 MB), which is faster
    for a small corpus; above it they are found on Ray Data in large-star / small-star rounds (two
    shuffles per round, a few rounds), so that no process holds every pair. 0: always distributed."""


class DedupConfig(Section):
    exact: bool = True
    """Drop documents whose normalized text repeats another one (`exact_duplicate`)."""
    fuzzy: FuzzyDedupConfig = Field(default_factory=FuzzyDedupConfig)
    """MinHash LSH near-duplicate removal (`near_duplicate`)."""


class CurateConfig(Section):
    read: ReadConfig = Field(default_factory=ReadConfig)
    shards: ShardConfig = Field(default_factory=ShardConfig)
    normalize: NormalizeConfig = Field(default_factory=NormalizeConfig)
    split: SplitConfig = Field(default_factory=SplitConfig)
    language: LanguageConfig = Field(default_factory=LanguageConfig)
    quality: QualityConfig = Field(default_factory=QualityConfig)
    pii: PiiConfig = Field(default_factory=PiiConfig)
    decontaminate: DecontaminateConfig = Field(default_factory=DecontaminateConfig)
    dedup: DedupConfig = Field(default_factory=DedupConfig)
    rows_per_shard: int = Field(default=2000, ge=1)
    """Documents per output Parquet file (at most)."""

    @model_validator(mode="after")
    def _known_languages(self):
        bad = unknown_language_codes(self.language.languages + self.language.keep)
        if bad:
            raise ValueError(f"language: unknown ISO 639-1 code(s) {', '.join(bad)}")
        missing = sorted(set(self.language.keep) - set(self.language.languages))
        if missing:
            raise ValueError(f"language.keep: {', '.join(missing)} not in language.languages "
                             "(the detector can only find languages it knows)")
        return self


def unknown_language_codes(codes: list[str]) -> list[str]:
    """The codes among `codes` that are not ISO 639-1 codes lingua (the language detector) knows."""
    from lingua import Language

    known = {language.iso_code_639_1.name.lower() for language in Language.all()}
    return sorted({c for c in codes if c.lower() not in known})
