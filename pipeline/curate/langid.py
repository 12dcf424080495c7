"""Language identification, offline: lingua (Stahl, lingua-rs), restricted to the configured languages.

Restricting the detector to the languages a corpus can hold makes it faster and more accurate
than an all-language model, and needs no download (lingua's models ship in its wheel). The
detector runs in low-accuracy mode on the first `max_chars` characters: lingua's documentation
notes that mode loses accuracy on short texts only, and documents here are at least a few
sentences by the time they arrive. The result goes into `meta.lang` (ISO 639-1, or
`unknown` below `min_confidence`) and `meta.lang_score`; documents not in `keep` become
`language` rejects. The report counts documents per language.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import pyarrow as pa

from pipeline.config.curate import LanguageConfig
from pipeline.curate.records import KEPT, kept_mask, set_column, with_meta

UNKNOWN = "unknown"
LANG_COLUMN = "_lang"


@functools.lru_cache(maxsize=4)
def detector(languages: tuple[str, ...]):
    """One lingua detector per process and language set (building it is cheap; its models load on
    first use, about a second)."""
    from lingua import IsoCode639_1, LanguageDetectorBuilder

    isos = [IsoCode639_1.from_str(code.lower()) for code in languages]
    return LanguageDetectorBuilder.from_iso_codes_639_1(*isos).with_low_accuracy_mode().build()


def detect(text: str, cfg: LanguageConfig) -> tuple[str, float]:
    """(ISO 639-1 code or `unknown`, confidence) of the most likely configured language."""
    sample = text[: cfg.max_chars]
    if not sample.strip():
        return UNKNOWN, 0.0
    values = detector(tuple(cfg.languages)).compute_language_confidence_values(sample)
    if not values:
        return UNKNOWN, 0.0
    best = values[0]
    code = best.language.iso_code_639_1.name.lower()
    return (code if best.value >= cfg.min_confidence else UNKNOWN), round(float(best.value), 4)


@dataclass(frozen=True)
class IdentifyLanguage:
    """The language step: `meta.lang`, `meta.lang_score` and a `_lang` column on kept rows of text
    kinds; rows in other languages become `language` rejects."""

    cfg: LanguageConfig

    def __call__(self, batch: pa.Table) -> pa.Table:
        texts, kinds = batch["text"].to_pylist(), batch["kind"].to_pylist()
        reasons, metas = batch["reason"].to_pylist(), batch["meta"].to_pylist()
        langs: list[str | None] = [None] * len(texts)
        keep = set(self.cfg.keep)
        for i, kept in enumerate(kept_mask(batch)):
            if not kept or kinds[i] in self.cfg.skip_kinds:
                continue
            lang, score = detect(texts[i], self.cfg)
            langs[i] = lang
            metas[i] = with_meta(metas[i], lang=lang, lang_score=score)
            if keep and lang not in keep:
                reasons[i] = "language"
        batch = set_column(batch, "meta", metas, pa.string())
        batch = set_column(batch, "reason", [r or KEPT for r in reasons], pa.string())
        return set_column(batch, LANG_COLUMN, langs, pa.string())
