"""The HAR benchmark: pooled OLS ``y ~ 1 + vol_1 + vol_5 + vol_22 + vol_63``.

:class:`HAR` fits on rows (NumPy or CuPy; least squares on centred data);
:meth:`HAR.from_moments` gives the same fit from the sufficient statistics of the
``stats`` engine without touching the rows again.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin

from wsb_gpu.backend import array_namespace, matrix, to_numpy, to_pandas
from wsb_gpu.datasets import HAR_COLUMNS as HAR_COLUMNS  # re-exported: the list lives with the dataset columns
from wsb_gpu.errors import WsbError
from wsb_gpu.models.base import Model, Window
from wsb_gpu.models.moments import LinearFit, Moments, moments_sse, solve_ols
from wsb_gpu.models.validation import checked

if TYPE_CHECKING:
    from wsb_gpu.backend import Array, Frame
    from wsb_gpu.signals.families import FeatureSet

_FLOATS = (np.float64, np.float32)  # other numeric input becomes float64


class HAR(RegressorMixin, BaseEstimator):
    """Pooled OLS with an intercept (a scikit-learn regressor, without hyperparameters).

    NumPy input is checked as scikit-learn's estimators check it; CuPy input for its shape
    only, and the fit stays on the device (least squares on centred data).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> X = rng.uniform(size=(100, 4)); y = 0.1 + X @ [0.4, 0.3, 0.2, 0.1]
    >>> m = HAR().fit(X, y)
    >>> np.round(m.coef_, 8).tolist(), round(m.intercept_, 8)
    ([0.4, 0.3, 0.2, 0.1], 0.1)
    """

    def fit(self, X: Array, y: Any) -> HAR:
        X, y = checked(self, X, y, reset=True, dtype=_FLOATS, y_numeric=True, ensure_min_samples=2)
        if X.shape[0] <= X.shape[1]:
            msg = f"HAR.fit needs more rows than columns, got X {X.shape} and y {y.shape}; use more training years"
            raise WsbError(msg)
        xp = array_namespace(X, y)
        mx = xp.mean(X, axis=0)
        my = xp.mean(y)
        # lstsq is not in the array API standard: NumPy's / CuPy's own (array_api_compat passes it on).
        coef, *_ = xp.linalg.lstsq(X - mx, y - my, rcond=None)
        self.coef_ = np.asarray(to_numpy(coef), dtype=np.float64)
        self.intercept_ = float(to_numpy(my)) - float(to_numpy(mx) @ self.coef_)
        self.mean_ = np.asarray(to_numpy(mx), dtype=np.float64)
        self.scale_ = np.ones_like(self.coef_)
        return self

    def predict(self, X: Array) -> Any:
        X = checked(self, X, reset=False, dtype=_FLOATS)
        xp = array_namespace(X)
        return X @ xp.asarray(self.coef_) + self.intercept_

    @classmethod
    def from_moments(cls, m: Moments) -> HAR:
        """The OLS fit from moments of ``[vol_1, vol_5, vol_22, vol_63, y]``."""
        fit = solve_ols(m)
        model = cls()
        model.coef_ = fit.coef
        model.intercept_ = fit.intercept
        model.mean_ = fit.mean
        model.scale_ = np.ones_like(fit.coef)
        model.n_features_in_ = int(fit.coef.size)
        return model

    def to_fit(self) -> LinearFit:
        return LinearFit(self.coef_, self.intercept_, self.mean_, self.scale_, 0.0)


class HARModel(Model):
    """The benchmark: pooled OLS of the target on the four HAR terms, per window.

    From the window's moments with the ``stats`` engine (exact, no pass over the rows), else
    from its collected rows with :class:`HAR`.
    """

    name = "har"
    uses_feature_sets = False  # the benchmark: the HAR terms only, whatever the set

    def columns(self, window: Window) -> list[str]:
        return list(window.sample.har_columns)

    def fit(self, window: Window) -> HARModel:
        self._start(window)
        if window.engine == "stats":
            self.fit_ = HAR.from_moments(window.moments(self.columns_)).to_fit()
        else:
            X, y, _ = window.rows(self.columns_)
            self.fit_ = HAR().fit(X, y).to_fit()
        return self

    def predict_array(self, X: Array) -> Any:
        return self.fit_.predict_array(X)

    def test_sse(self, window: Window) -> tuple[float, int] | None:
        if window.engine != "stats":
            return None
        tm = window.test_moments(self.columns_)
        return float(moments_sse(tm, self.fit_.coef, self.fit_.intercept)[0]), tm.n

    @property
    def linear(self) -> LinearFit:
        return self.fit_

    @property
    def lam(self) -> float:
        return float("nan")


class LogHARModel(Model):
    """log-HAR: OLS of ``log y`` on the logs of the four HAR terms, back-transformed.

    ``log y = b0 + sum_w b_w log vol_w + e``; the forecast is ``exp(b0 + b' log x + s²/2)``
    with ``s²`` the residual variance of the training fit (the lognormal mean correction:
    ``exp`` of a mean log forecast is the median, ``s²/2`` restores the mean). Values at or
    below the window's floor (``train.forecast_floor`` x the training mean of the target; a
    day without a price change has ``vol_1 = 0``) enter as the floor. The forecast is positive by construction (QLIKE still raises a forecast below the floor
    to it, as for every model).
    Fitted on the window's training rows (five columns collected; the ``stats`` engine's
    moments are of the untransformed columns).
    """

    name = "log_har"
    settings = ("forecast_floor",)
    uses_feature_sets = False

    def __init__(self, feature_set: FeatureSet | None = None, *, forecast_floor: float) -> None:
        super().__init__(feature_set)
        self.forecast_floor = forecast_floor

    def columns(self, window: Window) -> list[str]:
        return list(window.sample.har_columns)

    def fit(self, window: Window) -> LogHARModel:
        self._start(window)
        S, data = window.sample, window.data
        rows = window.learnable(data)
        part = rows[rows["year"].isin(list(window.train_years))][[*self.columns_, S.target]].compute()
        X, y = matrix(part, self.columns_), matrix(part, [S.target])[:, 0]
        xp = array_namespace(X)
        floor = window.floor
        if not math.isfinite(floor):  # a Window built outside the training stage
            floor = float(self.forecast_floor) * float(to_numpy(xp.mean(y)))
        self.floor_ = floor
        Xl, yl = self._log(X), xp.log(xp.maximum(y, self.floor_))
        har = HAR().fit(Xl, yl)
        resid = yl - har.predict(Xl)
        dof = max(int(X.shape[0]) - int(X.shape[1]) - 1, 1)
        self.sigma2_ = float(to_numpy(xp.sum(resid * resid))) / dof
        self.fit_ = har.to_fit()
        self.n_train_ = int(X.shape[0])
        return self

    def _log(self, X: Array) -> Any:
        xp = array_namespace(X)
        return xp.log(xp.maximum(X, self.floor_))

    def predict_array(self, X: Array) -> Any:
        xp = array_namespace(X)
        return xp.exp(self.fit_.predict_array(self._log(X)) + 0.5 * self.sigma2_)

    def info(self) -> dict[str, Any]:
        return {
            "coef": self.fit_.coef.tolist(),
            "intercept": self.fit_.intercept,
            "sigma2": self.sigma2_,
            "floor": self.floor_,
            "n_train": self.n_train_,
        }


class HARFEModel(Model):
    """HAR with stock effects: the HAR slopes of the within (fixed-effects) estimator and a
    per-stock intercept, shrunk toward the pooled one for short histories.

    On the window's training rows: every column and the target demeaned by its stock's
    training mean, ``beta`` by least squares on the demeaned rows (the within estimator,
    Wooldridge 2010, ch. 10; the same slopes as OLS with one dummy per stock); a stock's
    intercept ``a_s = mean(y_s) - mean(x_s) @ beta``, the pooled one ``a = mean(y) - mean(x) @
    beta``, and the forecast's intercept ``a + n_s / (n_s + shrinkage) * (a_s - a)`` (a stock
    with few training rows keeps mostly the pooled level; ``shrinkage = 0`` is the plain
    fixed-effects fit; ``train.har_fe.shrinkage``). A stock without training rows gets the
    pooled intercept.

    Opt-in (``--models har,har_fe,…``): the Diebold–Mariano tests and the report still compare
    every forecast with pooled HAR (docs/methodology.md, "What it is compared against").
    """

    name = "har_fe"
    sections = ("har_fe",)
    uses_feature_sets = False
    predicts_by_key = True  # the forecast needs the row's stock

    def __init__(self, feature_set: FeatureSet | None = None, *, shrinkage: float) -> None:
        super().__init__(feature_set)
        self.shrinkage = shrinkage

    def columns(self, window: Window) -> list[str]:
        return list(window.sample.har_columns)

    def fit(self, window: Window) -> HARFEModel:
        self._start(window)
        S = window.sample
        rows = window.learnable(window.data)
        part = rows[rows["year"].isin(list(window.train_years))][["permno", *self.columns_, S.target]].compute()
        part = to_pandas(part)
        if part.shape[0] <= len(self.columns_) + 1:
            msg = f"HAR with stock effects needs more training rows than terms, got {part.shape[0]}; use more training years"
            raise WsbError(msg)
        self.coef_, self.intercept_, self.stocks_, self.alpha_, self.n_stock_ = fe_fit(
            part["permno"].to_numpy(np.int64),
            part[self.columns_].to_numpy(np.float64),
            part[S.target].to_numpy(np.float64),
            float(self.shrinkage),
        )
        return self

    def stock_intercepts(self, permno: Any) -> np.ndarray:
        """The intercept of each of ``permno`` (the pooled one for a stock not seen in training)."""
        permno = np.asarray(permno, dtype=np.int64)
        out = np.full(permno.shape, self.intercept_)
        if self.stocks_.size:
            i = np.minimum(np.searchsorted(self.stocks_, permno), self.stocks_.size - 1)
            seen = self.stocks_[i] == permno
            out[seen] = self.alpha_[i[seen]]
        return out

    def predict_frame(self, frame: Frame) -> np.ndarray:
        X = np.asarray(to_numpy(matrix(frame, self.columns_)), dtype=np.float64)
        return X @ self.coef_ + self.stock_intercepts(to_numpy(frame["permno"].values))

    def predict(self, frame: Frame) -> np.ndarray:
        return self.predict_frame(frame)

    def predict_array(self, X: Array) -> Any:
        """Forecasts with the pooled intercept (a matrix has no stock)."""
        xp = array_namespace(X)
        return X @ xp.asarray(self.coef_) + self.intercept_

    def info(self) -> dict[str, Any]:
        return {
            "coef": self.coef_.tolist(),
            "intercept": self.intercept_,
            "shrinkage": float(self.shrinkage),
            "stocks": int(self.stocks_.size),
            "intercept_sd": float(np.std(self.alpha_)) if self.alpha_.size else float("nan"),
        }


def fe_fit(
    permno: np.ndarray, X: np.ndarray, y: np.ndarray, shrinkage: float
) -> tuple[np.ndarray, float, np.ndarray, np.ndarray, np.ndarray]:
    """The within estimator with shrunk stock intercepts (see :class:`HARFEModel`).

    Returns ``(beta, pooled intercept, stocks (sorted), their intercepts, their row counts)``.

    >>> rng = np.random.default_rng(0)
    >>> permno = np.repeat([1, 2, 3], 50); X = rng.normal(size=(150, 2))
    >>> y = X @ [0.5, -0.2] + np.repeat([1.0, 2.0, 3.0], 50)
    >>> beta, a, stocks, alpha, n = fe_fit(permno, X, y, 0.0)
    >>> np.round(beta, 8).tolist(), np.round(alpha, 8).tolist(), n.tolist()
    ([0.5, -0.2], [1.0, 2.0, 3.0], [50, 50, 50])
    """
    stocks, inverse, n = np.unique(permno, return_inverse=True, return_counts=True)
    k = stocks.size

    def means(a: np.ndarray) -> np.ndarray:
        out = np.zeros((k, *a.shape[1:]))
        np.add.at(out, inverse, a)
        return out / n.reshape(-1, *([1] * (a.ndim - 1)))

    mx, my = means(X), means(y)
    beta, *_ = np.linalg.lstsq(X - mx[inverse], y - my[inverse], rcond=None)
    raw = my - mx @ beta
    pooled = float(y.mean() - X.mean(axis=0) @ beta)
    alpha = pooled + n / (n + shrinkage) * (raw - pooled)
    return beta, pooled, stocks, alpha, n
