"""Elastic net from moments and from rows against independent computations."""

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import ElasticNet

from wsb_gpu.backend import Backend
from wsb_gpu.config import load_settings
from wsb_gpu.errors import WsbError
from wsb_gpu.models.base import Sample, Window, in_years
from wsb_gpu.models.enet import (
    EnetModel,
    StandardizedEnet,
    enet_cv_from_moments,
    enet_cv_from_rows,
    enet_lambda_grid,
    enet_lambda_max,
    enet_path_from_moments,
)
from wsb_gpu.models.moments import Moments, collect_moments, solve_ols
from wsb_gpu.models.ridge import solve_ridge_path
from wsb_gpu.models.splits import BlockedTimeFolds, month_period

TIGHT = {"max_iter": 100_000, "tol": 1e-26}  # moves below 1e-13 sd(y)


def _data(n=400, p=8, seed=0, offset=20.0, sparse=True):
    """Rows with large means, uneven scales, correlated columns and (optionally) a sparse truth."""
    rng = np.random.default_rng(seed)
    L = np.eye(p) + 0.3 * rng.normal(size=(p, p)) / np.sqrt(p)
    X = offset + (rng.normal(size=(n, p)) @ L) * rng.uniform(0.05, 3, p)
    beta = rng.normal(size=p) / X.std(0)
    if sparse:
        beta[p // 2 :] = 0.0
    y = 1.5 + X @ beta + rng.normal(size=n)
    return X, y


def _moments(X, y):
    return Moments.from_array(np.column_stack([X, y]))


def _standardise(X):
    sd = X.std(0)
    sd[sd < 1e-12] = 1.0
    return (X - X.mean(0)) / sd, sd


def _sklearn(X, y, lam, a):
    """scikit-learn's ElasticNet on the standardised rows, back on the original scale."""
    Z, sd = _standardise(X)
    ref = ElasticNet(alpha=lam, l1_ratio=a, tol=1e-14, max_iter=200_000).fit(Z, y)
    coef = ref.coef_ / sd
    return coef, ref.intercept_ - X.mean(0) @ coef


def _kkt_gap(X, y, coef, icpt, lam, a, free):
    """How far (coef, icpt) is from the optimality conditions of the exact objective
    (1/2n)||y - b0 - Zw||^2 + lam (a ||w_pen||_1 + (1-a)/2 ||w_pen||^2), w = coef * sd."""
    Z, sd = _standardise(X)
    w = coef * sd
    resid = y - (icpt + X @ coef)
    grad = Z.T @ resid / len(y)  # minus the gradient of the loss
    gaps = [abs(resid.mean()), *np.abs(grad[:free])]
    for j in range(free, X.shape[1]):
        gj = grad[j] - lam * (1 - a) * w[j]
        gaps.append(abs(gj - lam * a * np.sign(w[j])) if w[j] != 0 else max(abs(gj) - lam * a, 0.0))
    return max(gaps)


def test_l1_ratio_zero_is_ridge_with_n_times_lambda():
    X, y = _data(sparse=False)
    m = _moments(X, y)
    for lam in (0.01, 0.3, 5.0):
        got = enet_path_from_moments(m, [lam], 0.0, **TIGHT)
        coef, icpt, _, _ = solve_ridge_path(m, [m.n * lam])
        np.testing.assert_allclose(got.coef[:, 0], coef[:, 0], rtol=1e-8, atol=1e-12)
        np.testing.assert_allclose(got.intercept, icpt, rtol=1e-8)


def test_tiny_lambda_is_ols():
    X, y = _data()
    m = _moments(X, y)
    ols = solve_ols(m)
    for a in (0.2, 1.0):
        got = enet_path_from_moments(m, [1e-11], a, **TIGHT)
        np.testing.assert_allclose(got.coef[:, 0], ols.coef, rtol=1e-7)
        np.testing.assert_allclose(got.intercept[0], ols.intercept, rtol=1e-7)


@pytest.mark.parametrize("constant", [False, True])
def test_stats_path_equals_sklearn_on_standardised_data(constant):
    X, y = _data(p=10)
    if constant:
        X[:, 3] = 7.0
    m = _moments(X, y)
    for a in (0.1, 0.5, 1.0):
        top = enet_lambda_max(m, a)
        lambdas = top * np.array([0.5, 0.1, 0.01])
        path = enet_path_from_moments(m, lambdas, a, **TIGHT)
        assert path.converged
        for j, lam in enumerate(lambdas):
            ref_coef, ref_icpt = _sklearn(X, y, lam, a)
            np.testing.assert_allclose(path.coef[:, j], ref_coef, rtol=1e-6, atol=1e-9)
            np.testing.assert_allclose(path.intercept[j], ref_icpt, rtol=1e-6)
            est = StandardizedEnet(alpha=lam, l1_ratio=a, tol=1e-14, max_iter=200_000).fit(X, y)
            np.testing.assert_allclose(est.coef_, ref_coef, rtol=1e-6, atol=1e-9)
        # Sparse solutions: the largest λ keeps some coefficients at exactly zero.
        assert 0 < np.count_nonzero(path.coef[:, 0]) < X.shape[1]
        if constant:
            assert path.scale[3] == 1.0 and np.all(path.coef[3] == 0.0)


def test_free_block_is_unpenalised():
    X, y = _data(p=9, seed=4)
    m = _moments(X, y)
    k = 4
    for a in (0.3, 1.0):
        top = enet_lambda_max(m, a, free=k)
        # At and above lambda_max: the text block is exactly zero, the HAR block is OLS on it alone.
        path = enet_path_from_moments(m, [top, 10 * top], a, free=k, **TIGHT)
        assert np.all(path.coef[k:] == 0.0)
        ols = np.linalg.lstsq(np.column_stack([np.ones(len(X)), X[:, :k]]), y, rcond=None)[0]
        for j in range(2):
            np.testing.assert_allclose(path.coef[:k, j], ols[1:], rtol=1e-9)
            np.testing.assert_allclose(path.intercept[j], ols[0], rtol=1e-9)
        # Below it: the optimality conditions of the exact objective hold, and scikit-learn on
        # the text columns residualised on the HAR ones (plain least squares here) agrees.
        Z, sd = _standardise(X)
        Zf = np.column_stack([np.ones(len(X)), Z[:, :k]])
        proj = Zf @ np.linalg.lstsq(Zf, np.column_stack([Z[:, k:], y]), rcond=None)[0]
        Zt_res, y_res = Z[:, k:] - proj[:, :-1], y - proj[:, -1]
        for lam in top * np.array([0.7, 0.2, 0.02]):
            got = enet_path_from_moments(m, [lam], a, free=k, **TIGHT)
            assert _kkt_gap(X, y, got.coef[:, 0], got.intercept[0], lam, a, k) < 1e-10
            ref = ElasticNet(alpha=lam, l1_ratio=a, tol=1e-14, max_iter=200_000).fit(Zt_res, y_res)
            np.testing.assert_allclose(got.coef[k:, 0] * sd[k:], ref.coef_, rtol=1e-6, atol=1e-9)
            est = StandardizedEnet(alpha=lam, l1_ratio=a, free=k, tol=1e-14, max_iter=200_000).fit(X, y)
            np.testing.assert_allclose(est.coef_, got.coef[:, 0], rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("free", [0, 3])
def test_lambda_max_is_tight(free):
    X, y = _data(seed=2)
    m = _moments(X, y)
    for a in (0.1, 1.0):
        top = enet_lambda_max(m, a, free=free)
        path = enet_path_from_moments(m, [top, 0.999 * top], a, free=free, **TIGHT)
        assert np.all(path.coef[free:, 0] == 0.0)
        assert np.count_nonzero(path.coef[free:, 1]) >= 1
    grid = enet_lambda_grid(m, [0.5, 1.0], n_lambdas=4, eps=1e-2, free=free)
    np.testing.assert_allclose(grid[:, 0], [enet_lambda_max(m, 0.5, free), enet_lambda_max(m, 1.0, free)])
    np.testing.assert_allclose(grid[:, -1] / grid[:, 0], 1e-2)
    with pytest.raises(WsbError, match="use the ridge model"):
        enet_lambda_grid(m, [0.0, 1.0])


def test_cv_engines_agree():
    X, y = _data(n=720, p=12, seed=3)
    periods = np.repeat(np.arange(12), 60)
    table = {int(k): _moments(X[periods == k], y[periods == k]) for k in range(12)}
    blocks = BlockedTimeFolds(3).blocks(list(range(12)))
    ratios = [0.2, 0.7, 1.0]
    a = enet_cv_from_moments(table, blocks, ratios, n_lambdas=8, free=4, **TIGHT)
    b = enet_cv_from_rows(X, y, periods, BlockedTimeFolds(3), ratios, n_lambdas=8, free=4, tol=1e-14, max_iter=200_000)
    np.testing.assert_allclose(a.lambdas, b.lambdas, rtol=1e-10)
    np.testing.assert_allclose(a.fold_mse, b.fold_mse, rtol=1e-7)
    # At the defaults (each solver stops on its own rule) the choice is the same.
    a0 = enet_cv_from_moments(table, blocks, ratios, n_lambdas=8, free=4)
    b0 = enet_cv_from_rows(X, y, periods, BlockedTimeFolds(3), ratios, n_lambdas=8, free=4)
    assert np.argmin(a0.cv_mse) == np.argmin(b0.cv_mse) == np.argmin(a.cv_mse)
    np.testing.assert_allclose(a0.fold_mse, a.fold_mse, rtol=1e-4)
    # The same grid cell (the two grids differ by round-off: moments vs rows).
    assert np.argmin(a.cv_mse) == np.argmin(b.cv_mse) and a.l1_ratio == b.l1_ratio
    assert a.fit.lam == pytest.approx(b.fit.lam, rel=1e-12)
    np.testing.assert_allclose(a.fit.coef, b.fit.coef, rtol=1e-6, atol=1e-6 * np.abs(b.fit.coef).max())
    assert a.cv_mse.shape == (3, 8) and a.fold_mse.shape == (3, 3, 8) and a.converged
    # A choice inside the grid, with some text coefficients kept and some dropped.
    assert 0 < np.argmin(a.cv_mse) % 8 < 7 and 0 < np.count_nonzero(a.fit.coef[4:]) < 8


# --- through the model, on a Window ------------------------------------------------------

HAR = ["vol_1", "vol_5", "vol_22", "vol_63"]
TEXT = [f"t{j}" for j in range(6)]


def _frame(seed=0, n_per_month=40, years=(2015, 2016, 2017, 2018)):
    rng = np.random.default_rng(seed)
    year = np.repeat(years, 12 * n_per_month)
    month = np.tile(np.repeat(np.arange(1, 13), n_per_month), len(years))
    n = year.size
    h = 0.02 * np.exp(0.4 * rng.normal(size=n))
    df = pd.DataFrame({c: h * np.exp(0.2 * rng.normal(size=n)) for c in HAR})
    for c in TEXT:
        df[c] = rng.normal(size=n)
    df["y"] = 0.002 + 0.6 * df["vol_1"] + 0.002 * df["t0"] - 0.001 * df["t1"] + 0.005 * rng.normal(size=n)
    df["year"], df["period"] = year, month_period(year, month)
    # The keys a window collects its rows by: n_per_month stocks, one day per month.
    df["permno"], df["day"] = np.arange(n) % n_per_month, np.arange(n) // n_per_month
    return df


def _window(df, engine, train_years=(2015, 2016, 2017), test_year=2018):
    ddf = dd.from_pandas(df, npartitions=3)
    sample = Sample(ddf, "y", HAR, HAR + TEXT, "features", "posts")
    stat_cols = HAR + TEXT if engine == "stats" else HAR
    months = collect_moments(ddf, stat_cols, "y")
    return Window(
        test_year,
        train_years,
        sample,
        in_years(months, train_years),
        in_years(months, [test_year]),
        stat_cols,
        engine,
        Backend("cpu"),
    )


def _params(**enet):
    p = load_settings(overrides={"backend": "cpu"}).params("train")
    return p.model_copy(update={"enet": p.enet.model_copy(update={"n_lambdas": 6, **enet})})


def _model(params):
    """The elastic net with the ``train.enet`` settings of ``params``."""
    return EnetModel(None, **params.enet.to_dict())


def test_model_engines_agree_on_a_window():
    df = _frame()
    params = _params()
    fits = {e: _model(params).fit(_window(df, e)) for e in ("stats", "estimator")}
    s, e = fits["stats"], fits["estimator"]
    assert s.l1_ratio == e.l1_ratio and s.lam == pytest.approx(e.lam, rel=1e-12)
    assert np.argmin(s.cv_.cv_mse) == np.argmin(e.cv_.cv_mse)
    np.testing.assert_allclose(s.linear.coef, e.linear.coef, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(s.linear.intercept, e.linear.intercept, rtol=1e-6)
    info = s.info()
    assert info["unpenalised"] == HAR and info["l1_ratio"] == s.l1_ratio and info["lambda"] == s.lam
    assert np.asarray(info["lambdas"]).shape == (len(params.enet.l1_ratios), 6)
    assert info["nonzero"] == np.count_nonzero(s.linear.coef[4:])
    # The exact test-year SSE from the moments equals the row-by-row one.
    window = _window(df, "stats")
    sse, n = s.test_sse(window)
    test = df[df.year == 2018]
    pred = s.predict_array(test[HAR + TEXT].to_numpy())
    assert n == len(test)
    assert abs(sse - np.sum((test["y"].to_numpy() - pred) ** 2)) < 1e-10 * sse
    assert e.test_sse(_window(df, "estimator")) is None


def test_cv_reads_only_training_months():
    df = _frame(seed=1)
    params = _params(penalize_har=True)
    altered = df.copy()
    test = altered.year == 2018
    altered.loc[test, "y"] = 10 * altered.loc[test, "y"] + 3.0
    altered.loc[test, "t2"] = altered.loc[test, "y"]  # a column that would predict the test year perfectly
    for engine in ("stats", "estimator"):
        wa, wb = _window(df, engine), _window(altered, engine)
        a, b = _model(params).fit(wa), _model(params).fit(wb)
        assert a.free_ == 0
        if engine == "stats":  # the test months did change
            assert a.test_sse(wa)[0] != b.test_sse(wb)[0]
        np.testing.assert_array_equal(a.cv_.lambdas, b.cv_.lambdas)
        np.testing.assert_array_equal(a.cv_.cv_mse, b.cv_.cv_mse)
        assert (a.l1_ratio, a.lam) == (b.l1_ratio, b.lam)
        np.testing.assert_array_equal(a.linear.coef, b.linear.coef)


@pytest.mark.gpu
def test_gpu_estimator_agrees_with_stats(backend):
    xp = backend.xp
    X, y = _data(n=720, p=12, seed=3)
    periods = np.repeat(np.arange(12), 60)
    table = {int(k): _moments(X[periods == k], y[periods == k]) for k in range(12)}
    blocks = BlockedTimeFolds(3).blocks(list(range(12)))
    kw = {"n_lambdas": 8, "free": 4, "max_iter": 100_000, "tol": 1e-10}
    stats = enet_cv_from_moments(table, blocks, [0.2, 0.7, 1.0], **kw)
    rows = enet_cv_from_rows(
        xp.asarray(X), xp.asarray(y), periods, BlockedTimeFolds(3), [0.2, 0.7, 1.0], backend=backend, **kw
    )
    assert np.argmin(stats.cv_mse) == np.argmin(rows.cv_mse)
    np.testing.assert_allclose(rows.fit.coef, stats.fit.coef, rtol=1e-5, atol=1e-5 * np.abs(stats.fit.coef).max())
