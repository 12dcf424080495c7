"""`train.num_workers: MIN..MAX`: an elastic Ray Train run (Ray Train 2.60's ScalingConfig takes a
(min, max) tuple); a plain number stays a fixed worker group."""
import pytest

from pipeline.config import ConfigError, load_config
from pipeline.train.launch import scaling_config


def test_a_worker_range_makes_an_elastic_scaling_config():
    tc = load_config(None, ["train.num_workers=2..4"]).train
    assert (tc.min_workers, tc.num_workers) == (2, 4)
    scaling = scaling_config(tc)
    assert scaling.elasticity_enabled and (scaling.min_workers, scaling.max_workers) == (2, 4)
    # the dumped section (what reaches the workers and the stage fingerprint) reads back the same
    assert type(tc).model_validate(tc.model_dump()) == tc

    fixed = scaling_config(load_config(None, ["train.num_workers=3"]).train)
    assert not fixed.elasticity_enabled and fixed.num_workers == 3
    assert scaling_config(load_config(None, ["train.num_workers=2..2"]).train).num_workers == 2


@pytest.mark.parametrize("value, message", [("4..2", "minimum above its maximum"),
                                             ("two..4", "not a number or a range MIN..MAX")])
def test_a_bad_worker_range_is_named(value, message):
    with pytest.raises(ConfigError) as e:
        load_config(None, [f"train.num_workers={value}"])
    assert any(p.startswith("train") and message in p for p in e.value.problems), e.value.problems
