"""Every reject reason names the setting behind it (or its cause in the input), in the error of a
run that keeps nothing and in the report."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

import pipeline.curate as curate_package
from pipeline.config import SourceConfig
from pipeline.curate import readers
from pipeline.curate.reasons import REJECT_CAUSES, explain, reject_cause
from pipeline.curate.records import CurateError
from pipeline.curate.report import Tally
from pipeline.curate.run import _check_counts
from pipeline.curate.shards import DEDUP_REASONS

_RULE_REASON = re.compile(r'"((?:gopher|c4|fineweb|code)_[a-z0-9_]+|too_short|too_long|language|contaminated|'
                          r'downsampled)"')


def emitted_reasons() -> set[str]:
    """The reasons the code can give: the readers' table, the rules' return values, the dedup verdicts."""
    table = readers.__doc__.split("reason ", 1)[1].split("Blank JSONL")[0]
    found = set(re.findall(r"^    ([a-z_0-9]+)\s{2,}", table, re.MULTILINE))
    for path in Path(curate_package.__file__).parent.glob("*.py"):
        if path.name != "reasons.py":
            found |= set(_RULE_REASON.findall(path.read_text()))
    found.discard("code_kinds")
    return found | set(DEDUP_REASONS.values())


def test_every_reason_has_a_cause():
    reasons = emitted_reasons()
    assert {"too_large", "binary", "invalid_utf8", "language", "gopher_stop_words", "c4_curly_bracket",
            "fineweb_line_punct_ratio", "code_long_lines", "near_duplicate", "downsampled"} <= reasons
    assert [r for r in sorted(reasons) if reject_cause(r) == "unknown reason"] == []
    assert set(REJECT_CAUSES) >= reasons - {r for r in reasons if re.fullmatch(r"gopher_(top|dup)_\d+gram", r)}


@pytest.mark.parametrize("reason, names", [
    ("too_large", ["curate.read.max_file_bytes", "curate.read.max_code_bytes", "curate.read.max_doc_bytes"]),
    ("language", ["curate.language.keep"]),
    ("gopher_stop_words", ["curate.quality.gopher_quality.min_stop_words"]),
    ("gopher_top_3gram", ["curate.quality.gopher_repetition.top_ngram_char_frac[3]"]),
    ("gopher_dup_10gram", ["curate.quality.gopher_repetition.dup_ngram_char_frac[10]"]),
    ("binary", ["the file's bytes"]),
    ("invalid_utf8", ["the file's bytes", "not UTF-8"]),
    ("near_duplicate", ["curate.dedup.fuzzy.threshold"]),
])
def test_a_reason_names_its_setting(reason, names):
    assert all(name in reject_cause(reason) for name in names)


def test_a_run_that_keeps_nothing_names_the_setting_behind_each_reject():
    tally = Tally(["read"], {("s", "too_large"): {"rows": 1}, ("s", "language"): {"rows": 3}})
    with pytest.raises(CurateError) as err:
        _check_counts(tally, [SourceConfig(name="s", format="text", path="x")], [None], {"docs": 0})
    message = str(err.value)
    assert message.startswith("curation kept no documents; rejected: language 3 (curate.language.keep")
    assert "too_large 1 (curate.read.max_file_bytes (html, text, pdf files), curate.read.max_code_bytes" in message
    assert "check curate.quality" not in message
    assert explain({"binary": 2}) == f"binary 2 ({REJECT_CAUSES['binary']})"
