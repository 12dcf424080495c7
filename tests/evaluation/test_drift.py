"""Drift statistics: the alarm needs significance and size, PSI behaves as defined, windows are cut
from documents joined by end-of-text as packing joins them. Cross-checked against scipy's own test."""
import numpy as np
import pytest

from evaluation.drift import drift, psi, rows_without_padding, sample_evenly, windows_from_documents


def test_a_large_sample_with_a_trivial_shift_is_significant_but_raises_no_alarm():
    rng = np.random.default_rng(0)
    ref, cur = rng.normal(0, 1, 200_000), rng.normal(0.03, 1, 200_000)
    d = drift(ref, cur)
    assert d.p_value < 0.01  # significant ...
    assert d.ks_statistic < 0.1 and d.psi < 0.2  # ... but small
    assert not d.alarm


def test_a_real_shift_alarms_and_matches_scipy():
    from scipy.stats import ks_2samp

    rng = np.random.default_rng(1)
    ref, cur = rng.normal(0, 1, 300), rng.normal(1.0, 1, 300)
    d = drift(ref, cur)
    expected = ks_2samp(ref, cur)
    assert d.ks_statistic == pytest.approx(expected.statistic) and d.p_value == pytest.approx(expected.pvalue)
    assert d.alarm and d.psi > 0.2


def test_a_small_sample_cannot_alarm_without_significance():
    d = drift([1.0, 1.1, 0.9, 1.05], [1.3, 1.4, 1.2])
    assert d.ks_statistic > 0.5 and d.p_value > 0.01 and not d.alarm


def test_psi_is_zero_for_the_same_distribution_and_grows_with_the_shift():
    rng = np.random.default_rng(2)
    ref = rng.normal(0, 1, 5000)
    same, near, far = (psi(ref, rng.normal(m, 1, 5000)) for m in (0.0, 0.3, 1.5))
    assert same < 0.02 < near < far


def test_windows_join_documents_with_end_of_text_and_have_a_fixed_length():
    windows = windows_from_documents([[1, 2, 3], [4, 5], [6, 7, 8, 9]], eot_id=0, length=4, n=10)
    assert windows.tolist() == [[1, 2, 3, 0], [4, 5, 0, 6], [7, 8, 9, 0]]
    assert len(windows_from_documents([[1] * 100], eot_id=0, length=4, n=5)) == 5


def test_sampling_spreads_evenly_and_padded_rows_are_dropped():
    assert sample_evenly(10, 3).tolist() == [0, 4, 9]
    assert sample_evenly(3, 10).tolist() == [0, 1, 2]
    rows = np.array([[1, 2, 3], [4, 5, 9], [6, 9, 9]])
    assert rows_without_padding(rows, pad_id=9).tolist() == [[1, 2, 3]]
