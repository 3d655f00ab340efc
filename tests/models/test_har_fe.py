"""HAR with stock effects: the within estimator against OLS with one dummy per stock (an
independent computation), the shrinkage of short histories, unseen stocks, and the model
through the train stage."""

import numpy as np
import pandas as pd
import pytest

from wsb_gpu.models.har import fe_fit


def _dummy_ols(permno, X, y):
    """OLS of y on X and one dummy per stock (no common intercept): slopes and intercepts."""
    stocks = np.unique(permno)
    D = (permno[:, None] == stocks[None, :]).astype(float)
    coef, *_ = np.linalg.lstsq(np.column_stack([X, D]), y, rcond=None)
    return coef[: X.shape[1]], coef[X.shape[1] :]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_within_estimator_equals_ols_with_stock_dummies(seed):
    rng = np.random.default_rng(seed)
    sizes = rng.integers(5, 80, 12)
    permno = np.repeat(np.arange(100, 112), sizes)
    X = rng.gamma(2.0, 0.01, size=(permno.size, 4))
    level = rng.uniform(0.0, 0.05, 12)
    y = X @ [0.3, 0.2, 0.2, 0.1] + np.repeat(level, sizes) + rng.normal(0, 0.005, permno.size)
    beta, pooled, stocks, alpha, n = fe_fit(permno, X, y, 0.0)
    b_ref, a_ref = _dummy_ols(permno, X, y)
    np.testing.assert_allclose(beta, b_ref, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(alpha, a_ref, rtol=1e-8, atol=1e-12)
    assert stocks.tolist() == list(range(100, 112)) and n.tolist() == sizes.tolist()
    assert pooled == pytest.approx(y.mean() - X.mean(axis=0) @ b_ref, rel=1e-10)
    # Shrinkage pulls each intercept toward the pooled one by n / (n + k); the slopes stay.
    b_k, _, _, a_k, _ = fe_fit(permno, X, y, 50.0)
    np.testing.assert_allclose(b_k, b_ref, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(a_k, pooled + sizes / (sizes + 50.0) * (a_ref - pooled), rtol=1e-8, atol=1e-12)
    assert np.all(np.abs(a_k - pooled) <= np.abs(a_ref - pooled) + 1e-15)


def test_unseen_stocks_get_the_pooled_intercept():
    from wsb_gpu.models.har import HARFEModel

    m = HARFEModel(shrinkage=0.0)
    m.coef_, m.intercept_ = np.array([1.0]), 0.5
    m.stocks_, m.alpha_ = np.array([3, 7]), np.array([0.1, 0.2])
    assert m.stock_intercepts([7, 3, 5, 99, 1]).tolist() == [0.2, 0.1, 0.5, 0.5, 0.5]


def test_har_fe_through_the_train_stage(tmp_path):
    """Its forecasts are X @ beta + the stock's shrunk intercept, both from the training years
    (independent dummy OLS)."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "stages"))
    from test_train import HAR, features_of, make_panel, run, write

    panel = make_panel()
    feats = features_of(panel)
    fdir = write(feats, tmp_path / "features")
    out, metrics, _ = run(tmp_path, "fe", features=fdir, models=["har", "har_fe"])
    pooled = metrics[metrics.test_year == "all"].set_index("model")
    assert set(pooled.index) == {"har", "har_fe"}
    rows = feats.dropna(subset=["y_1", *HAR]).copy()
    rows = rows[rows["n_posts"].fillna(0) > 0]
    rows["year"] = pd.to_datetime(rows["date"]).dt.year
    pred = pd.read_parquet(out / "predictions")
    pred["year"] = pd.to_datetime(pred["date"].astype("datetime64[s]")).dt.year
    for year in sorted(pred["year"].unique()):
        tr = rows[(rows.year >= year - 3) & (rows.year < year)]
        b, a = _dummy_ols(tr["permno"].to_numpy(), tr[HAR].to_numpy(), tr["y_1"].to_numpy())
        stocks = np.unique(tr["permno"].to_numpy())
        n = tr.groupby("permno").size().reindex(stocks).to_numpy()
        pooled_a = tr["y_1"].mean() - tr[HAR].mean().to_numpy() @ b
        shrunk = dict(zip(stocks, pooled_a + n / (n + 60.0) * (a - pooled_a)))
        test = rows[rows.year == year].sort_values(["permno", "date"])
        want = test[HAR].to_numpy() @ b + test["permno"].map(shrunk).fillna(pooled_a).to_numpy()
        got = pred[pred.year == year].sort_values(["permno", "date"])["yhat_har_fe"].to_numpy()
        np.testing.assert_allclose(got, want, rtol=1e-7, atol=1e-12)
