"""Metric names MLflow accepts, from every part of the project through one function."""
from evaluation.arena import rating_metrics
from evaluation.names import clean_metric_name, metric_name
from evaluation.perplexity import perplexity_metrics


def test_each_part_keeps_only_safe_characters_and_never_adds_a_level():
    assert metric_name("eval", "arc easy", "acc,none") == "eval/arc_easy/acc_none"
    assert metric_name("eval", "source", "web/forum", "loss") == "eval/source/web_forum/loss"
    assert metric_name("arena", "model-v1.2", "rating") == "arena/model-v1.2/rating"


def test_a_whole_name_is_cleaned_part_by_part():
    assert clean_metric_name("eval/my task/acc,none") == "eval/my_task/acc_none"
    assert clean_metric_name("train/loss") == "train/loss"


def test_the_metric_makers_use_it():
    ppl = {"loss": 1.0, "perplexity": 2.7, "bits_per_token": 1.4, "sources": {"web/forum": {"loss": 1.0}}}
    assert "eval/source/web_forum/loss" in perplexity_metrics(ppl)
    assert set(rating_metrics([{"model": "a b", "rating": 1000.0, "battles": 3}])) == \
        {"arena/a_b/rating", "arena/a_b/battles"}
