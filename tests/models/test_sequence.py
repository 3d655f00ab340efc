"""The sequence models: the window builder, the embedding projection, learning a lag,
determinism and the by-key predictions of the three architectures."""

from __future__ import annotations

import pickle
import subprocess
import sys
from functools import cache

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest

from wsb_gpu.backend import Backend
from wsb_gpu.config import load_settings
from wsb_gpu.errors import WsbError
from wsb_gpu.models.base import Sample, Window, in_years
from wsb_gpu.models.moments import collect_moments
from wsb_gpu.models.sequence import (
    CNNLSTMModel,
    CNNModel,
    LSTMModel,
    fit_pca,
    gather,
    sequence_index,
)
from wsb_gpu.signals.families import FeatureSet
from wsb_gpu.training.build import hyperparameters_of

torch = pytest.importorskip("torch")

HAR = ["vol_1", "vol_5", "vol_22", "vol_63"]
EMB = [f"e{j:03d}" for j in range(12)]
YEARS = (2015, 2016, 2017)
TEST_YEAR = 2018


@cache
def _base_params():
    return load_settings(overrides={"backend": "cpu", "cluster.kind": "none"}).params("train")


def _params(**sequence):
    p = _base_params()
    small = {"length": 6, "hidden": 8, "filters": 8, "kernel": 2, "dense": 8, "epochs": 2, "batch_size": 64}
    return p.model_copy(update={"sequence": p.sequence.model_copy(update={**small, **sequence})})


def _make(cls, params, feature_set=None):
    """A model of ``cls`` with its settings from ``params`` (as the training stage makes it)."""
    return cls(feature_set, **hyperparameters_of(cls, params))


def _window(df: pd.DataFrame, har: list[str], features: list[str]) -> Window:
    """A window over ``df`` (rows in any order, years 2015-2018) as the training stage builds
    one: the sample's Dask frame and the per-month moments of its HAR terms."""
    S = Sample(dd.from_pandas(df, npartitions=3), "y_1", har, features, "features", "posts")
    months = collect_moments(S.ddf, har, "y_1")
    train, test = in_years(months, YEARS), in_years(months, [TEST_YEAR])
    return Window(TEST_YEAR, YEARS, S, train, test, har, "estimator", Backend("cpu", "tests"))


def _panel(n_stocks=12, per_year=40, seed=0, lag=None) -> pd.DataFrame:
    """Stocks of unequal lengths (some start late), shuffled rows. With ``lag``, the target is
    ``vol_1`` of ``lag`` rows earlier plus a little noise (and no function of row t alone)."""
    rng = np.random.default_rng(seed)
    frames = []
    for s in range(n_stocks):
        skip = int(rng.integers(0, per_year))  # a late listing
        n = 4 * per_year - skip
        day = 16_000 + skip + np.arange(n)
        year = YEARS[0] + (skip + np.arange(n)) // per_year
        f = pd.DataFrame({"permno": 10_000 + 7 * s, "day": day, "year": year})
        for c in HAR:
            f[c] = rng.normal(size=n)
        E = rng.normal(size=(n, 3)) @ rng.normal(size=(3, len(EMB)))
        for j, c in enumerate(EMB):
            f[c] = E[:, j]
        f["p_net"] = rng.normal(size=n)
        if lag is None:
            f["y_1"] = 0.5 * f["vol_1"] + 0.1 * rng.normal(size=n)
        else:
            f["y_1"] = np.r_[np.zeros(lag), f["vol_1"].to_numpy()[:-lag]] + 0.1 * rng.normal(size=n)
        frames.append(f)
    df = pd.concat(frames, ignore_index=True)
    df["period"] = df["year"] * 12 + (df["day"] - 16_000) % 12
    df["date"] = pd.to_datetime(df["day"], unit="D")
    return df.sample(frac=1.0, random_state=seed).reset_index(drop=True)


# --- (1) the window builder --------------------------------------------------------------


def _reference(permno, day, X, rows, L):
    """Plain Python: each row's last L rows of its own stock with day <= its day, zero-padded
    on the left."""
    out = np.zeros((len(rows), L, X.shape[1]), dtype=X.dtype)
    for b, r in enumerate(rows):
        past = [i for i in range(len(permno)) if permno[i] == permno[r] and day[i] <= day[r]]
        past = sorted(past, key=lambda i: day[i])[-L:]
        for k, i in enumerate(past):
            out[b, L - len(past) + k] = X[i]
    return out


@pytest.mark.parametrize("lib", ["numpy", "torch"])
def test_windows_stay_in_the_stock_and_never_look_ahead(lib):
    rng = np.random.default_rng(1)
    lengths = [1, 2, 5, 9, 30, 3]
    permno = np.concatenate([np.full(n, p) for n, p in zip(lengths, [3, 8, 2**62, 11, 40, 41])])
    day = np.concatenate([np.sort(rng.choice(100, n, replace=False)) for n in lengths])
    order = np.lexsort((day, permno))
    permno, day = permno[order], day[order]
    n = len(permno)
    # Columns: row number + 1 (0 is padding), the day, and noise.
    X = np.column_stack([np.arange(1, n + 1), day, rng.normal(size=n)]).astype(np.float32)
    start = sequence_index(permno)
    rows = rng.permutation(n)
    for L in (1, 4, 12):
        if lib == "torch":
            seq, mask = gather(torch.from_numpy(X), torch.from_numpy(start), torch.from_numpy(rows), L)
            seq, mask = seq.numpy(), mask.numpy()
        else:
            seq, mask = gather(X, start, rows, L)
        assert seq.shape == (n, L, 3) and mask.shape == (n, L)
        np.testing.assert_array_equal(seq, _reference(permno, day, X, rows, L))
        for b, r in enumerate(rows):
            src = seq[b, mask[b], 0].astype(int) - 1
            assert (permno[src] == permno[r]).all(), "a window crosses a stock boundary"
            assert (day[src] <= day[r]).all() and src[-1] == r, "a window holds a row after t"
            assert (np.diff(src) == 1).all()
            assert (seq[b, ~mask[b]] == 0).all(), "padding is not zero"
            # The mask is a prefix of padding then real rows.
            assert (np.diff(mask[b].astype(int)) >= 0).all()


def test_history_is_sorted_collected_once_and_shared():
    df = _panel(n_stocks=4, per_year=10)
    W = _window(df, HAR, [*HAR, *EMB])
    keys, X, y = W.history(["vol_5", "e001"])
    assert list(keys.columns) == ["permno", "day", "year"]
    k = keys.to_numpy()
    assert (np.lexsort((k[:, 1], k[:, 0])) == np.arange(len(k))).all()
    ref = df.sort_values(["permno", "day"])
    np.testing.assert_allclose(X, ref[["vol_5", "e001"]].to_numpy(np.float32))
    np.testing.assert_allclose(y, ref["y_1"].to_numpy())
    kept = W._history
    _, X1, _ = W.history(["e001"])
    assert W._history is kept  # a subset is read from the kept rows
    np.testing.assert_array_equal(X1[:, 0], X[:, 1])


# --- (2) learning a lag, (3) determinism -------------------------------------------------


def test_lstm_learns_a_lag_that_row_t_alone_cannot_explain():
    df = _panel(n_stocks=30, per_year=60, lag=3)
    W = _window(df, ["vol_1"], ["vol_1"])
    p = _params(length=5, hidden=16, epochs=12, patience=4, learning_rate=0.01)
    m = _make(LSTMModel, p).fit(W)
    test = df[df["year"] == TEST_YEAR]
    y = test["y_1"].to_numpy()
    mse = float(np.mean((m.predict_frame(test) - y) ** 2))
    # The best linear forecast from row t alone (fitted on the test rows themselves).
    A = np.column_stack([np.ones(len(test)), test["vol_1"]])
    linear = float(np.mean((y - A @ np.linalg.lstsq(A, y, rcond=None)[0]) ** 2))
    info = m.info()
    assert mse < 0.1 * y.var() and mse < 0.1 * linear, (mse, linear, info)
    assert min(info["valid_mse"]) < 0.1 * y.var()
    assert info["valid_mse"][info["best_epoch"] - 1] == min(info["valid_mse"])


def test_same_seed_same_forecasts_and_the_global_rng_is_left_alone():
    df = _panel(n_stocks=6, per_year=30)
    W = _window(df, HAR, HAR)
    test = df[df["year"] == TEST_YEAR]
    state = torch.random.get_rng_state()
    a = _make(LSTMModel, _params(epochs=2)).fit(W).predict_frame(test)
    b = _make(LSTMModel, _params(epochs=2)).fit(W).predict_frame(test)
    c = _make(LSTMModel, _params(epochs=2, seed=1)).fit(W).predict_frame(test)
    assert np.isfinite(a).all()
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert torch.equal(torch.random.get_rng_state(), state)


# --- (4) the three architectures end to end ----------------------------------------------


@pytest.mark.parametrize("cls", [LSTMModel, CNNModel, CNNLSTMModel])
def test_architecture_fits_a_window_and_predicts_a_shuffled_partition(cls):
    df = _panel(n_stocks=8, per_year=30)
    fs = FeatureSet("text", ("embedding",), (*EMB, "p_net"))
    W = _window(df, HAR, [*HAR, *EMB, "p_net"])
    m = _make(cls, _params(pca_components=3), fs).fit(W)
    assert cls.predicts_by_key and m.columns_ == [*HAR, *EMB, "p_net"]
    info = m.info()
    assert info["n_inputs"] == len(HAR) + 1 + 3 and info["pca_components"] == 3
    assert info["n_fit"] == int(df["year"].isin(YEARS[:-1]).sum())
    assert info["n_valid"] == int((df["year"] == YEARS[-1]).sum())
    assert 1 <= info["best_epoch"] <= info["epochs"] <= 2 and info["fit_s"] > 0

    test = df[df["year"] == TEST_YEAR].sort_values(["permno", "day"]).reset_index(drop=True)
    ordered = m.predict_frame(test)
    assert ordered.dtype == np.float64 and np.isfinite(ordered).all()
    perm = np.random.default_rng(3).permutation(len(test))
    shuffled = test.iloc[perm]
    np.testing.assert_array_equal(m.predict_frame(shuffled), ordered[perm])
    # The prediction pass ships the fitted model to the workers: no torch state in it.
    assert not any(type(v).__module__.startswith("torch") for v in vars(m).values())
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(m)).predict_frame(shuffled), ordered[perm])
    # Rows the model has no forecast for: a training-year day and an unknown stock.
    other = pd.concat([df[df["year"] == YEARS[0]].head(3), test.head(2).assign(permno=1)])
    assert np.isnan(m.predict_frame(other)).all()
    with pytest.raises(WsbError, match="predicts by key"):
        m.predict_array(np.zeros((1, len(m.columns_))))


def test_cnn_refuses_a_sequence_shorter_than_its_kernel_and_pooling():
    df = _panel(n_stocks=3, per_year=10)
    W = _window(df, HAR, HAR)
    with pytest.raises(WsbError, match="length >= 3"):
        _make(CNNModel, _params(length=2, kernel=2)).fit(W)


def test_import_does_not_load_torch():
    code = "import sys, wsb_gpu.models.sequence; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


# --- (5) the embedding projection ---------------------------------------------------------


def test_pca_is_fitted_on_the_training_years_only():
    df = _panel(n_stocks=8, per_year=30)
    fs = FeatureSet("text", ("embedding",), tuple(EMB))
    model = _make(LSTMModel, _params(pca_components=4), fs)
    a = model.prepare(_window(df, HAR, [*HAR, *EMB]))

    changed = df.copy()
    is_test = changed["year"] == TEST_YEAR
    changed.loc[is_test, EMB] = np.random.default_rng(9).normal(size=(int(is_test.sum()), len(EMB))) * 50
    b = model.prepare(_window(changed, HAR, [*HAR, *EMB]))
    for u, v in zip(a.pca, b.pca):
        np.testing.assert_array_equal(u, v)
    np.testing.assert_array_equal(a.Z[a.fit_rows], b.Z[b.fit_rows])
    assert not np.array_equal(a.Z[a.test_rows], b.Z[b.test_rows])

    # The axes are the training rows' principal axes ...
    train = df[df["year"].isin(YEARS)][EMB].to_numpy(np.float32).astype(np.float64)  # as collected
    vt = np.linalg.svd(train - train.mean(0), full_matrices=False)[2][:4]
    np.testing.assert_allclose(np.abs(a.pca[1].T @ vt.T), np.eye(4), atol=1e-6)
    np.testing.assert_allclose(a.pca[0], train.mean(0), rtol=1e-10, atol=1e-12)
    # ... so a change in a training year moves them.
    moved = df.copy()
    first = moved["year"] == YEARS[0]
    moved.loc[first, "e000"] = moved.loc[first, "e000"] * 10
    c = model.prepare(_window(moved, HAR, [*HAR, *EMB]))
    assert not np.allclose(a.pca[1], c.pca[1])


def test_fit_pca_ignores_masked_rows_and_treats_missing_as_the_mean():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(200, 5)) @ rng.normal(size=(5, 5))
    rows = np.arange(200) < 150
    mean, axes = fit_pca(X, 2, rows=rows, block=16)
    ref_mean, ref_axes = fit_pca(X[:150], 2)
    np.testing.assert_allclose(mean, ref_mean, rtol=1e-12)
    np.testing.assert_allclose(axes, ref_axes, rtol=1e-8, atol=1e-10)
    Y = X.copy()
    Y[160:, :] = np.nan  # outside the fitted rows: no effect
    np.testing.assert_allclose(fit_pca(Y, 2, rows=rows)[1], ref_axes, rtol=1e-8, atol=1e-10)
