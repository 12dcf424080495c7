"""Decontamination against evaluation texts."""
from __future__ import annotations

import json

import pytest
from curate_inputs import PROSE

from pipeline.config.curate import DecontaminateConfig
from pipeline.curate.records import CurateError, make_batch


def test_decontamination_drops_or_cuts_documents_quoting_eval_texts(tmp_path):
    from pipeline.curate.decontaminate import Decontaminate, build_index

    evals = tmp_path / "task.jsonl"
    long_q = "Which function of the standard library returns the number of items held in a list or a tuple?"
    evals.write_text(json.dumps({"question": long_q, "choices": ["len", "size"]}) + "\n"
                     + json.dumps({"question": "What does len of the word hello return here?"}) + "\n"
                     + json.dumps({"question": "Too short to match"}) + "\n")
    index = build_index(DecontaminateConfig(files=[str(evals)]), tmp_path)
    assert index.texts == 5 and set(index.keys) == {13, 9}  # two choices and one question too short
    quoting = f"In class today the teacher asked: {long_q.lower().replace('?', '')}! Nobody knew."
    batch = make_batch([{"id": "1", "text": quoting, "source": "s", "kind": "web", "meta": "{}"},
                        {"id": "2", "text": "So what does len of the word hello return here, really?", "source": "s",
                         "kind": "web", "meta": "{}"},
                        {"id": "3", "text": PROSE + " too short to match", "source": "s", "kind": "web", "meta": "{}"}])
    dropped = Decontaminate(index, "drop")(batch)
    assert dropped["reason"].to_pylist() == ["contaminated", "contaminated", ""]
    cut = Decontaminate(index, "cut")(batch).to_pylist()
    assert cut[0]["text"] == "In class today the teacher asked: ! Nobody knew." and cut[0]["reason"] == ""
    assert json.loads(cut[0]["meta"]) == {"decontaminated": 1}
    with pytest.raises(CurateError, match="does not exist"):
        build_index(DecontaminateConfig(files=["{root}/missing.jsonl"]), tmp_path)


def test_bundled_eval_task_is_the_default_decontamination_set(tmp_path):
    from pipeline.curate.decontaminate import build_index

    index = build_index(DecontaminateConfig(), tmp_path)
    assert index.files[0].endswith("evaluation/tasks/pyfacts.jsonl") and not index.empty
