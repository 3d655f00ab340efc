"""Metrics and the Diebold–Mariano test against independent implementations."""

import math

import numpy as np

from wsb_gpu.models.metrics import diebold_mariano, newey_west_lag, newey_west_variance, r2, r2_oos


def _dm_reference(d, lag):
    # Written from the textbook formula with explicit loops, independent of the module.
    T = len(d)
    mean = sum(d) / T
    u = [x - mean for x in d]
    gamma = [sum(u[t] * u[t - k] for t in range(k, T)) / T for k in range(lag + 1)]
    lrv = gamma[0] + 2 * sum((1 - k / (lag + 1)) * gamma[k] for k in range(1, lag + 1))
    stat = mean / math.sqrt(lrv / T)
    p = 2 * (1 - 0.5 * (1 + math.erf(abs(stat) / math.sqrt(2))))
    return stat, p


def test_dm_matches_reference():
    rng = np.random.default_rng(3)
    e = rng.normal(size=400)
    d = 0.1 + e + 0.5 * np.concatenate([[0], e[:-1]])  # MA(1): autocorrelated
    stat, p, lag = diebold_mariano(d)
    assert lag == math.floor(4 * (400 / 100) ** (2 / 9))
    ref_stat, ref_p = _dm_reference(list(d), lag)
    assert abs(stat - ref_stat) < 1e-12 and abs(p - ref_p) < 1e-12
    # One-sided: "the model's loss is lower" -> P(Z <= stat).
    _, p_less, _ = diebold_mariano(d, alternative="less")
    assert abs(p_less - 0.5 * (1 + math.erf(ref_stat / math.sqrt(2)))) < 1e-12
    _, p_less_neg, _ = diebold_mariano(-d, alternative="less")
    assert p_less_neg < 0.05 < p_less


def test_dm_at_lag_zero_is_the_plain_t_statistic():
    rng = np.random.default_rng(4)
    d = rng.normal(size=100)
    stat, _, _ = diebold_mariano(d, lag=0)
    assert abs(stat - d.mean() / (d.std() / math.sqrt(100))) < 1e-12
    assert abs(newey_west_variance(d, 0) - np.var(d)) < 1e-14


def test_dm_degenerate_series_is_nan():
    assert math.isnan(diebold_mariano(np.zeros(50))[0])
    assert math.isnan(diebold_mariano(np.array([1.0]))[0])
    assert newey_west_lag(100) == 4


def test_r2_definitions():
    y = np.array([1.0, 2.0, 3.0, 4.0])
    yhat = np.array([1.5, 2.0, 2.5, 4.0])
    sse = 0.5
    assert abs(r2(y, yhat) - (1 - sse / 5.0)) < 1e-15
    assert abs(r2_oos(y, yhat, 0.0) - (1 - sse / 30.0)) < 1e-15
