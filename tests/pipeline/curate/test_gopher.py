"""Gopher quality and repetition rules."""
from __future__ import annotations

from curate_texts import ARTICLE

from pipeline.config.curate import (
    GopherQualityConfig,
    GopherRepetitionConfig,
)
from pipeline.curate.gopher import duplicated_ngram_chars, gopher_quality, gopher_repetition, top_ngram_chars
from pipeline.curate.textstats import TextView


def test_gopher_quality_keeps_prose_and_names_each_rule():
    cfg = GopherQualityConfig()
    assert gopher_quality(TextView(ARTICLE), cfg) == ""
    assert gopher_quality(TextView("too few words here"), cfg) == "too_short"
    assert gopher_quality(TextView("word " * 100_001), cfg) == "too_long"
    assert gopher_quality(TextView("a b c d e " * 20), cfg) == "gopher_mean_word_length"
    assert gopher_quality(TextView(ARTICLE + " #tag" * 200), cfg) == "gopher_hash_ratio"
    assert gopher_quality(TextView(ARTICLE + " ..." * 200), cfg) == "gopher_ellipsis_ratio"
    bullets = "\n".join(f"- item {i} of the shopping list with the things and that stuff" for i in range(20))
    assert gopher_quality(TextView(bullets), cfg) == "gopher_bullet_lines"
    assert gopher_quality(TextView("\n".join(["and so the story went on and on with the rest..."] * 10)),
                          cfg) == "gopher_ellipsis_lines"
    numbers = ARTICLE + " " + " ".join(["12345 67890 +++ ==="] * 200)
    assert gopher_quality(TextView(numbers), cfg) == "gopher_alpha_words"
    no_stop = " ".join(["lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor"] * 6)
    assert gopher_quality(TextView(no_stop), cfg) == "gopher_stop_words"


def test_gopher_repetition_rules():
    cfg = GopherRepetitionConfig()
    assert gopher_repetition(TextView(ARTICLE), cfg) == ""
    assert gopher_repetition(TextView("\n\n".join(["same paragraph here"] * 3 + ["other"] * 2)),
                             cfg) == "gopher_dup_para_frac"
    lines = "\n".join(["buy now and save big"] * 5 + [f"unique line {i}" for i in range(5)])
    assert gopher_repetition(TextView(lines), cfg) == "gopher_dup_line_frac"
    assert gopher_repetition(TextView(ARTICLE + " hello world" * 400), cfg) == "gopher_top_2gram"
    phrase = "the five words repeat here and "
    assert gopher_repetition(TextView(ARTICLE.replace("\n\n", " ") + " " + phrase * 60), cfg).startswith("gopher_")


def test_gopher_ngram_arithmetic_matches_the_definitions():
    view = TextView("a b a b a b c")
    assert top_ngram_chars(view, 2) == 3 * 3  # "a b" (3 characters) three times
    view = TextView("one two three one two three four")
    # the second "one two" repeats: its letters count (6), and the scan jumps past it
    assert duplicated_ngram_chars(view, 2) == len("one") + len("two")
    assert duplicated_ngram_chars(TextView("x y z w"), 2) == 0
