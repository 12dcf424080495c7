"""The config: presets load, overrides apply, and a bad config lists every problem before any work."""
import pytest

from pipeline.config import ConfigError, CurateConfig, apply_override, load_config, preset_path


def test_quickstart_loads_with_root(tmp_path):
    cfg = load_config(None, root=str(tmp_path))
    assert cfg.root == tmp_path.resolve()
    assert cfg.tracking_uri == f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"
    assert cfg.model.preset == "tiny"
    assert {s.format for s in cfg.data.sources} >= {"html", "code", "text", "jsonl"}


def test_overrides_are_typed_and_reach_nested_lists(tmp_path):
    cfg = load_config(None, ["train.max_steps=7", "train.lr=1e-3", "model.preset=debug",
                             "model.n_layers=1", "data.sources.0.weight=2.5", "eval.tasks=[]",
                             "tokenize.seq_len=64", "train.warmup_steps=2"], root=str(tmp_path))
    assert cfg.train.max_steps == 7 and cfg.train.lr == pytest.approx(1e-3)
    assert cfg.model.build().n_layers == 1
    assert cfg.data.sources[0].weight == 2.5
    assert cfg.eval.tasks == []


def test_every_problem_is_listed_with_its_key():
    with pytest.raises(ConfigError) as e:
        load_config(None, ["train.lr=-1", "train.batch_size=zero", "train.bogus=1", "tokenizer.vocab_size=10",
                           "model.preset=huge"])
    msg = str(e.value)
    assert len(e.value.problems) == 5, msg
    assert "train.lr" in msg and "greater than 0" in msg
    assert "train.batch_size" in msg
    assert "train.bogus: unknown key; allowed:" in msg and "max_steps" in msg
    assert "tokenizer.vocab_size" in msg
    # a cross-section check still runs when other sections have field errors
    assert "model.preset: unknown preset 'huge'" in msg


def test_cross_section_checks_name_the_fix():
    with pytest.raises(ConfigError) as e:
        load_config(None, ["model.preset=huge"])
    assert "model.preset: unknown preset 'huge'; allowed: debug" in str(e.value)
    with pytest.raises(ConfigError) as e:
        load_config(None, ["model.preset=debug", "tokenize.seq_len=4096", "train.warmup_steps=500",
                           "model.n_heads=3", "model.colour=red"])
    msg = str(e.value)
    assert "model.colour: unknown key" in msg
    assert "train.warmup_steps (500) must be below train.max_steps" in msg
    with pytest.raises(ConfigError) as e:
        load_config(None, ["model.preset=debug", "tokenize.seq_len=4096"])
    assert "tokenize.seq_len (4096) exceeds the model's max_seq_len" in str(e.value)
    with pytest.raises(ConfigError) as e:
        load_config(None, ["model.preset=debug", "model.n_heads=3"])
    assert "divisible" in str(e.value)


def test_missing_file_malformed_yaml_and_bad_override(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="expected section.key=value"):
        load_config(None, ["train.max_steps"])
    missing = tmp_path / "nosources.yaml"
    missing.write_text("train: {max_steps: 5}\n")
    with pytest.raises(ConfigError, match="data: required key is missing"):
        load_config(missing)


def test_named_preset_and_apply_override_on_lists():
    assert load_config("quickstart").model.preset == "tiny"
    assert preset_path("quickstart").is_file()
    raw = {"a": {"b": [{"c": 1}]}}
    apply_override(raw, "a.b.0.c=2")
    assert raw == {"a": {"b": [{"c": 2}]}}
    with pytest.raises(ValueError, match="not an index"):
        apply_override(raw, "a.b.5.c=2")


def test_curate_config_defaults_cite_published_thresholds():
    c = CurateConfig()
    q = c.quality
    assert (q.gopher_quality.min_words, q.gopher_quality.max_words, q.gopher_quality.min_stop_words) == (50, 100_000, 2)
    assert q.gopher_repetition.dup_ngram_char_frac[10] == 0.10 and q.gopher_repetition.top_ngram_char_frac[2] == 0.20
    assert (q.c4.min_sentences, q.c4.min_words_per_line, q.fineweb.min_line_punct_ratio) == (5, 3, 0.12)
    assert (c.decontaminate.ngram, c.dedup.fuzzy.threshold, c.dedup.fuzzy.shingle_words) == (13, 0.8, 5)


def test_tokenize_num_actors_is_the_old_name_of_concurrency():
    assert load_config(overrides=["tokenize.num_actors=3"]).tokenize.concurrency == 3
    with pytest.raises(ConfigError, match="old name of concurrency"):
        load_config(overrides=["tokenize.num_actors=3", "tokenize.concurrency=2"])
