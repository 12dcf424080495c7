"""Language identification among the configured languages."""
from __future__ import annotations

import json

import pytest
from curate_texts import PROSE, doc

from pipeline.config.curate import (
    LanguageConfig,
)
from pipeline.curate.langid import IdentifyLanguage, detect
from pipeline.curate.records import make_batch


def test_language_is_detected_among_configured_languages_and_filtered():
    cfg = LanguageConfig(languages=["en", "de", "fr"], keep=["en"])
    assert detect(PROSE, cfg)[0] == "en"
    german = "Der schnelle braune Fuchs springt über den faulen Hund, während die Katze vom Fenster aus zusieht."
    french = "Le renard brun rapide saute par-dessus le chien paresseux pendant que le chat regarde par la fenêtre."
    assert detect(german, cfg)[0] == "de" and detect(french, cfg)[0] == "fr"
    batch = make_batch([doc(PROSE), doc(german, id_="d2"), doc("def f(): pass", kind="code", id_="d3"),
                        doc(german, reason="too_short", id_="d4")])
    out = IdentifyLanguage(cfg)(batch)
    assert out["reason"].to_pylist() == ["", "language", "", "too_short"]
    assert out["_lang"].to_pylist() == ["en", "de", None, None]
    assert json.loads(out["meta"][1].as_py())["lang"] == "de"


def test_language_below_confidence_is_unknown():
    cfg = LanguageConfig(languages=["en", "de"], keep=["en"], min_confidence=0.99)
    assert detect("ok", cfg)[0] == "unknown" and detect("", cfg) == ("unknown", 0.0)


def test_language_config_rejects_unknown_codes_and_unreachable_keep():
    from pydantic import ValidationError

    from pipeline.config.curate import CurateConfig

    with pytest.raises(ValidationError, match="unknown ISO 639-1 code"):
        CurateConfig.model_validate({"language": {"languages": ["en", "xx"]}})
    with pytest.raises(ValidationError, match="not in language.languages"):
        CurateConfig.model_validate({"language": {"languages": ["en", "de"], "keep": ["fr"]}})
